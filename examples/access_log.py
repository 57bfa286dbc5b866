"""Example: an access log as a ``ProcessorWrapper``, one JSON line per request.

Written when the request's ext_proc stream ends, whatever happened: request id, method,
path, status, outcome, backend and model, token counts (from the facts the processor
publishes, ``aigateway.instrumentation.Facts``), duration, and the values of a few chosen
headers. It leaves out what carries credentials: other header values, query strings,
exception messages.

It needs no configuration, so ``aigateway serve`` can load it by itself::

    aigateway serve --config examples/envoy/config.yaml --wrap examples/access_log.py:AccessLog

``compose_wrappers.py`` composes it with a budget guard and the tenant header.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Collection
from typing import Any

from aigateway.extproc import Headers, Outcome, Processor, ProcessorWrapper, Result
from aigateway.instrumentation import FactKey, facts_in

ACCESS_LOG = logging.getLogger("aigateway.access")

_MAX_FIELD = 128  # client-supplied values in a log line are bounded
_FACTS: tuple[FactKey, ...] = ("backend", "model", "input_tokens", "output_tokens", "error")


class AccessLog(ProcessorWrapper):
    """Writes one JSON line per request to the ``aigateway.access`` logger (INFO).

    Fields: ``request_id`` (Envoy's ``x-request-id``), ``method``, ``path`` (without the
    query string, which may carry keys), ``status`` (what the client got), ``outcome``
    (``ok``, ``refused`` for a local reply, ``upstream_error``, ``cancelled``,
    ``failed``), ``backend`` and ``model`` (``-`` before routing), ``input_tokens`` and
    ``output_tokens`` when the backend reported usage, ``duration_ms``, and the values
    of ``log_headers`` (``x-tenant`` is logged as ``tenant``).
    """

    __slots__ = (
        "_fields",
        "_start",
        "clock",
        "log_headers",
        "logger",
    )

    def __init__(
        self,
        inner: Processor,
        *,
        log_headers: Collection[str] = (),
        logger: logging.Logger = ACCESS_LOG,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(inner)
        self.log_headers = log_headers
        self.logger = logger
        self.clock = clock
        self._start: float | None = None
        self._fields: dict[str, Any] = {}

    async def on_request_headers(self, headers: Headers) -> Result:
        self._start = self.clock()
        fields = self._fields
        fields["request_id"] = _bounded(headers.get("x-request-id", "-"))
        fields["method"] = _bounded(headers.method)
        fields["path"] = _bounded(headers.path.partition("?")[0])
        for name in self.log_headers:
            fields[_field_name(name)] = _bounded(headers.get(name))
        return self._note(await self.inner.on_request_headers(headers))

    async def on_request_body(self, body: bytes, end_of_stream: bool) -> Result:
        return self._note(await self.inner.on_request_body(body, end_of_stream))

    async def on_response_headers(self, headers: Headers) -> Result:
        return self._note(await self.inner.on_response_headers(headers))

    async def on_response_body(self, body: bytes, end_of_stream: bool) -> Result:
        return self._note(await self.inner.on_response_body(body, end_of_stream))

    async def on_stream_end(self, outcome: Outcome) -> None:
        try:
            await self.inner.on_stream_end(outcome)
        finally:
            # Written whatever happened inside: the log line is this wrapper's `finally`.
            self._write(outcome)

    def _note(self, result: Result) -> Result:
        # Learn what the processor tells Envoy; never change it.
        facts = facts_in(result.dynamic_metadata)
        if facts:
            fields = self._fields
            for key in _FACTS:
                if key in facts:
                    fields[key] = facts[key]
        return result

    def _write(self, outcome: Outcome) -> None:
        fields = self._fields
        line: dict[str, Any] = {
            "request_id": fields.get("request_id", "-"),
            "method": fields.get("method", "-"),
            "path": fields.get("path", "-"),
            "status": outcome.status if outcome.status is not None else "-",
            "outcome": _outcome(outcome, "error" in fields),
            "backend": fields.get("backend", "-"),
            "model": fields.get("model", "-"),
        }
        for key in ("input_tokens", "output_tokens", "error"):
            if key in fields:
                line[key] = fields[key]
        for name in self.log_headers:
            line[_field_name(name)] = fields.get(_field_name(name), "-")
        if outcome.error is not None:
            # The type only: exception messages may quote headers or bodies.
            line["exception"] = type(outcome.error).__name__
        if self._start is not None:
            line["duration_ms"] = round((self.clock() - self._start) * 1000, 1)
        self.logger.info("%s", json.dumps(line, separators=(",", ":"), default=str))


def _outcome(outcome: Outcome, reported_error: bool) -> str:
    if outcome.succeeded and not reported_error:
        return "ok"
    if outcome.cancelled:
        return "cancelled"
    if outcome.error is not None:
        return "failed"
    if outcome.local_reply:
        return "refused"
    # A non-2xx upstream answer, or a 2xx the processor reported as broken (metadata
    # `error`), as the metrics wrapper counts it.
    return "upstream_error"


def _field_name(header: str) -> str:
    return header.removeprefix("x-").replace("-", "_")


def _bounded(value: str | None) -> str:
    return (value or "-")[:_MAX_FIELD]
