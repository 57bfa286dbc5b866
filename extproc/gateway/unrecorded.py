"""Requests Envoy answered itself and no processor recorded (docs/architecture.md,
"Requests no processor recorded").

A processor records every request whose ext_proc stream it started, whatever the exit
(``InstrumentedProcessor``), unless it dies first; a request that never reached one is
recorded by none. Envoy knows both cases: its ext_proc filter fails the request with a
transport error of the processor's stream. Envoy's access log sends exactly those
requests (filtered in Envoy: the details below, and no :data:`RECORDED_FACT`, which only
the answer that completes a recorded request carries) to :class:`UnrecordedLog`, served
by a process that outlives the processors (``serve --workers``' parent), which records
each once as an error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from google.protobuf import json_format

from aigateway.extproc.gateway.attempts import (
    CLIENT_HEADERS_NAMESPACE,
    CLIENT_NAMESPACE,
    CLIENT_PATH,
    NamedAccessLog,
)
from aigateway.extproc.gateway.routed import ORIGINAL_PATH_HEADER
from aigateway.instrumentation.facts import (
    METADATA_NAMESPACE,
    RECORDED_FACT,
    Facts,
    UnrecordedCause,
    UnrecordedRequest,
)

#: The ``log_name`` of Envoy's log of requests no processor recorded.
UNRECORDED_LOG_NAME = "aigateway-unrecorded"
#: Envoy's response code details when its ext_proc filter could not reach a processor:
#: gRPC UNAVAILABLE from Envoy's own connection handling (refused, reset before the
#: processor answered, no healthy processor). A live processor's own UNAVAILABLE (its
#: server cancelling calls when a drain times out) names the server's message instead,
#: and that processor records those streams itself.
UNAVAILABLE_DETAILS = (
    "ext_proc_error_gRPC_error_14{upstream_",
    "ext_proc_error_gRPC_error_14{no_healthy_upstream",
)
#: ...and when the connection of a processor that had answered ended under the stream
#: (gRPC INTERNAL with the connection's termination: the process is gone).
LOST_DETAILS = (
    "ext_proc_error_gRPC_error_13{upstream_reset_after_response_started{connection_termination}"
)
#: Every details prefix of a request no processor recorded, with why.
UNRECORDED_DETAILS: tuple[tuple[str, UnrecordedCause], ...] = (
    *((d, "processor_unavailable") for d in UNAVAILABLE_DETAILS),
    (LOST_DETAILS, "processor_lost"),
)


def unrecorded_cause(details: str) -> UnrecordedCause | None:
    """Why no processor recorded a request Envoy ended with ``details``; ``None`` when
    one did (or will: it is alive and ends its stream with a record)."""
    for prefix, cause in UNRECORDED_DETAILS:
        if details.startswith(prefix):
            return cause
    return None


class UnrecordedLog(NamedAccessLog):
    """Envoy's log of requests no processor recorded: hands each to ``record``."""

    log_name = UNRECORDED_LOG_NAME

    def __init__(
        self,
        record: Callable[[UnrecordedRequest], None],
        counted: Callable[[str], bool] = lambda _path: True,
    ) -> None:
        self._record = record
        self._counted = counted

    def take(self, entries: Any) -> None:
        for entry in entries:
            request = self.request(entry)
            if request is not None:
                self._record(request)

    def request(self, entry: Any) -> UnrecordedRequest | None:
        """The request an entry (``HTTPAccessLogEntry``) stands for, or ``None`` when a
        processor recorded it (Envoy's filter leaves those out; a hand-written log may
        not) or its path is not counted (the models list: ``counted``)."""
        cause = unrecorded_cause(entry.response.response_code_details)
        if cause is None:
            return None
        common = entry.common_properties
        metadata = common.metadata.filter_metadata
        logged = entry.request.request_headers
        headers = {k: v for k, v in logged.items() if k != ORIGINAL_PATH_HEADER}
        path = logged.get(ORIGINAL_PATH_HEADER) or entry.request.path
        if CLIENT_NAMESPACE in metadata:
            # A model with several backends: its attempts changed the request headers;
            # the client's path and headers are what the listener's processor published.
            path = metadata[CLIENT_NAMESPACE].fields[CLIENT_PATH].string_value or path
        if CLIENT_HEADERS_NAMESPACE in metadata:
            for name, value in metadata[CLIENT_HEADERS_NAMESPACE].fields.items():
                headers[name] = value.string_value
        if not self._counted(path):
            return None
        facts: Facts = {}
        if METADATA_NAMESPACE in metadata:
            facts = cast("Facts", json_format.MessageToDict(metadata[METADATA_NAMESPACE]))
        if RECORDED_FACT in facts:
            return None
        return UnrecordedRequest(
            facts=facts,
            headers=tuple(headers.items()),
            duration=common.duration.ToTimedelta().total_seconds(),
            cause=cause,
        )
