"""Attempts of requests to models with several backends (docs/architecture.md, "Routing
over several backends"): the names Envoy and the processor share, the result of each
attempt from Envoy's own per-attempt log, and the rest a backend takes when its answer
says it has no quota left.

Envoy's load balancer picks the backend of every attempt; the processor in the cluster's
upstream filter chain translates for it (``RoutedProcessor`` with ``attempt=True``).
How an attempt ended is only fully known to Envoy: a connection that fails never reaches
the upstream filter chain, and a timeout or a reset is only the silent end of its stream
there. So Envoy's router logs every attempt (``upstream_log``) to the processor's gRPC
server, and :class:`AttemptLog` turns each entry into one :class:`Attempt` fact.
"""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, ClassVar

from aigateway.extproc.framework._protos.envoy.service.accesslog.v3 import als_pb2, als_pb2_grpc
from aigateway.instrumentation.facts import Attempt, AttemptResult
from aigateway.translators.wire.jsoncodec import loads_or_none

#: The gRPC metadata value (``x-extproc-chain``) of the upstream filter chain's streams.
ATTEMPT_CHAIN = "attempt"
#: Set by Envoy on every attempt from the picked endpoint's metadata: its backend.
ATTEMPT_BACKEND_HEADER = "x-ai-gateway-attempt-backend"
#: Set on an attempt's response headers: the backend that answered (read and removed
#: by the listener's processor, which translates the answer back).
ANSWERED_BY_HEADER = "x-ai-gateway-answered-by"
#: Set on an attempt's response headers when header labels are configured: the client's
#: values of the header labels' headers (JSON), for Envoy's per-attempt log; the
#: listener's processor removes it from the answer it translates.
CLIENT_LABELS_HEADER = "x-ai-gateway-client-labels"
#: The dynamic metadata the listener's processor publishes for every attempt (Envoy
#: forwards it to the attempts' processor), so that every attempt starts from the
#: client's request: the client's path, and the client headers an attempt may need
#: (name: value, in a namespace of their own: flat strings are cheap to publish).
CLIENT_NAMESPACE = "aigateway.client"
CLIENT_PATH = "path"
CLIENT_HEADERS_NAMESPACE = "aigateway.client.headers"

#: The ``log_name`` of Envoy's per-attempt log to the processor.
ATTEMPT_LOG_NAME = "aigateway-attempts"
#: The custom tags that name an attempt's backend and model in that log.
ATTEMPT_TAG_BACKEND = "backend"
ATTEMPT_TAG_MODEL = "model"


def client_labels(text: str | None) -> dict[str, str]:
    """The client's header values an attempt named (:data:`CLIENT_LABELS_HEADER`)."""
    if not text:
        return {}
    loaded = loads_or_none(text)  # ours, but never trusted to be JSON
    if not isinstance(loaded, dict):
        return {}
    return {str(k): v for k, v in loaded.items() if isinstance(v, str)}


def attempt_result(status: int, flags: Any) -> AttemptResult:
    """The result of an attempt from its status and Envoy's response flags
    (``envoy.data.accesslog.v3.ResponseFlags``)."""
    if flags.upstream_connection_failure:
        return "connect_failure"
    if flags.upstream_request_timeout:
        return "timeout"
    if (
        flags.upstream_remote_reset
        or flags.upstream_connection_termination
        or flags.upstream_protocol_error
        or flags.local_reset
    ):
        return "reset"
    if status == 429:
        return "rate_limited"
    if 400 <= status < 500:
        return "client_error"
    if status >= 500:
        return "server_error"
    if status == 0:
        return "reset"  # ended without a status or a reason Envoy names
    return "success"


class NamedAccessLog(als_pb2_grpc.AccessLogServiceServicer):  # type: ignore[misc]
    """``envoy.service.accesslog.v3.AccessLogService`` for one of Envoy's logs: hands
    the HTTP entries of the streams named ``log_name`` to :meth:`take`."""

    log_name: ClassVar[str]

    async def StreamAccessLogs(
        self, request_iterator: Any, context: Any
    ) -> als_pb2.StreamAccessLogsResponse:
        ours = False
        async for message in request_iterator:
            if message.HasField("identifier"):  # only the stream's first message has it
                ours = message.identifier.log_name == self.log_name
            if ours:
                self.take(message.http_logs.log_entry)
        return als_pb2.StreamAccessLogsResponse()

    def take(self, entries: Any) -> None:
        """One message's entries (``HTTPAccessLogEntry``)."""
        raise NotImplementedError


class AttemptLog(NamedAccessLog):
    """Envoy's per-attempt log: hands each attempt to ``record``."""

    log_name = ATTEMPT_LOG_NAME

    def __init__(self, record: Callable[[Attempt], None]) -> None:
        self._record = record

    def take(self, entries: Any) -> None:
        for entry in entries:
            self._record(self.attempt(entry))

    @staticmethod
    def attempt(entry: Any) -> Attempt:
        common = entry.common_properties
        tags: Mapping[str, str] = common.custom_tags
        status = entry.response.response_code.value
        # The client's values of the header labels' headers: named by the attempt in its
        # answer; without one, as the attempt left them (docs/metrics.md, "Families").
        answered: Mapping[str, str] = entry.response.response_headers
        labels = answered.get(CLIENT_LABELS_HEADER)
        if labels is not None:
            headers = client_labels(labels)
        else:
            headers = dict(entry.request.request_headers)
        return Attempt(
            backend=tags.get(ATTEMPT_TAG_BACKEND, ""),
            model=tags.get(ATTEMPT_TAG_MODEL, ""),
            result=attempt_result(status, common.response_flags),
            status=status,
            headers=tuple(headers.items()),
        )


# -- rest ---------------------------------------------------------------------------------

#: The dynamic metadata namespace Envoy's subset load balancer reads for a request.
LB_NAMESPACE = "envoy.lb"
#: At most this many resting backends are left out of one request (Envoy's bootstrap has
#: a subset for every such set); more rest than that, and the longest rests are.
MAX_RESTING = 3


def without_key(backend: str) -> str:
    """The endpoint metadata key (``envoy.lb``) every endpoint but ``backend``'s has."""
    return f"without-{backend}"


def leave_out(resting: tuple[str, ...], backends: tuple[str, ...]) -> dict[str, Any] | None:
    """The ``envoy.lb`` metadata that leaves ``resting`` out of a request to a model
    with ``backends``; ``None`` when none rests, or all do (then every one may serve)."""
    if not resting or len(resting) >= len(backends):
        return None
    return {without_key(b): True for b in resting[:MAX_RESTING]}


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_OPENAI_LIMITS = ("requests", "tokens")
_ANTHROPIC_LIMITS = ("requests", "tokens", "input-tokens", "output-tokens")


def _go_duration(text: str) -> float | None:
    """OpenAI's reset durations (``1s``, ``6m0s``, ``20ms``, ``1h2m3.5s``) in seconds."""
    text = text.strip()
    total, end = 0.0, 0
    for match in _DURATION_PART.finditer(text):
        if match.start() != end:
            return None
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        end = match.end()
    return total if end == len(text) and end > 0 else None


def _seconds_until(when: datetime, now: float) -> float:
    return when.timestamp() - now


def _rfc3339(text: str, now: float) -> float | None:
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        return None
    return _seconds_until(when, now)


def _retry_after(text: str, now: float) -> float | None:
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return _seconds_until(when, now) if when.tzinfo is not None else None


def rest_seconds(status: int, headers: Mapping[str, str], now: float) -> float | None:
    """How long a backend's answer says it can take no more requests: a 429's
    ``retry-after``, or a limit whose remaining count is 0 (OpenAI's and Azure's
    ``x-ratelimit-remaining-*`` with ``x-ratelimit-reset-*``, Anthropic's
    ``anthropic-ratelimit-*-remaining`` with ``*-reset``); ``None`` when it says nothing
    of the kind. ``now`` is the wall clock (``time.time()``)."""
    longest: float | None = None

    def note(seconds: float | None) -> None:
        nonlocal longest
        if seconds is not None and seconds > 0 and (longest is None or seconds > longest):
            longest = seconds

    if status == 429:
        value = headers.get("retry-after")
        if value:
            note(_retry_after(value, now))
    for limit in _OPENAI_LIMITS:
        if (headers.get(f"x-ratelimit-remaining-{limit}") or "").strip() == "0":
            note(_go_duration(headers.get(f"x-ratelimit-reset-{limit}") or ""))
    for limit in _ANTHROPIC_LIMITS:
        if (headers.get(f"anthropic-ratelimit-{limit}-remaining") or "").strip() == "0":
            note(_rfc3339(headers.get(f"anthropic-ratelimit-{limit}-reset") or "", now))
    return longest


class RestingBackends:
    """Which backends rest until when, in this process (docs/configuration.md, "Several
    backends per model": each process learns it from the answers it sees)."""

    __slots__ = ("_until",)

    def __init__(self) -> None:
        self._until: dict[str, float] = {}

    def note(self, backend: str, status: int, headers: Mapping[str, str]) -> None:
        """Learn from one answer of ``backend``."""
        seconds = rest_seconds(status, headers, time.time())
        if seconds is not None:
            until = time.monotonic() + min(seconds, _LONGEST_REST)
            if until > self._until.get(backend, 0.0):
                self._until[backend] = until

    def resting(self, backends: tuple[str, ...]) -> tuple[str, ...]:
        """Those of ``backends`` resting now, the longest rest first."""
        if not self._until:
            return ()
        now = time.monotonic()
        until = self._until
        return tuple(
            sorted((b for b in backends if until.get(b, 0.0) > now), key=lambda b: -until[b])
        )


# A reset further away than this is more likely a wrong clock than a real quota.
_LONGEST_REST = 3600.0
