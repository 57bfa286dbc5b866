"""``InstrumentedProcessor``: the metrics decorator around any :class:`Processor`.

The wrapped processor knows nothing of metrics: it reports facts (which backend and model
it routed to, the usage the backend reported, an error) as dynamic metadata and routing
headers. The wrapper starts the clock at request headers, watches every phase through
one helper, times streamed body chunks, and records each request exactly once, at the
moment its response is complete (``docs/architecture.md``, "Accounting rules"):

- the answer to the end of the response body, or to bodiless response headers;
- an immediate response (a local reply, or the error reply for a processor exception);
- a result with ``end_of_response``: a stream's terminal event passed to the client;
- else, as a fallback, the end of the ext_proc stream (the client left mid-stream, the
  upstream reset or timed out): always an error.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from aigateway.extproc.framework.processor import (
    METADATA_NAMESPACE,
    Headers,
    ImmediateResponse,
    Outcome,
    Processor,
    ProcessorWrapper,
    Result,
)
from aigateway.instrumentation.metrics import GatewayMetrics

UNKNOWN = "unknown"

# Token types by the metadata field that carries them.
TOKEN_TYPES = (
    ("input_tokens", "prompt"),
    ("output_tokens", "completion"),
    ("total_tokens", "total"),
    ("cached_input_tokens", "cached_prompt"),
    ("cache_write_input_tokens", "cache_write_prompt"),
    ("reasoning_tokens", "reasoning"),
)


@dataclass(slots=True, frozen=True)
class Instrumentation:
    """What every :class:`InstrumentedProcessor` shares: the instruments, the label
    values allowed (from the config, so clients cannot grow the label set), the routing
    header names the processors set, and the clock. Use it as a wrap:
    ``Router(..., wrap=instrumentation.wrap)``."""

    metrics: GatewayMetrics
    models: frozenset[str]
    backends: frozenset[str]
    model_header: str = "x-ai-gateway-model"
    backend_header: str = "x-ai-gateway-backend"
    clock: Callable[[], float] = field(default=time.perf_counter)

    @classmethod
    def create(
        cls,
        metrics: GatewayMetrics,
        *,
        models: Collection[str],
        backends: Collection[str],
        **kwargs: Any,
    ) -> Instrumentation:
        return cls(metrics, frozenset(models), frozenset(backends), **kwargs)

    def wrap(self, processor: Processor) -> InstrumentedProcessor:
        return InstrumentedProcessor(processor, self)


def _innermost(processor: Processor) -> Processor:
    while isinstance(processor, ProcessorWrapper):
        processor = processor.inner
    return processor


class InstrumentedProcessor(ProcessorWrapper):
    """Records one request's metrics around ``inner``; see the module docstring.

    Labels come only from what the processor reports after routing (its routing headers
    and its ``backend``/``model`` metadata), never from headers the client sent, and
    only take values from the config; anything else is ``unknown``.
    """

    __slots__ = (
        "_backend",
        "_counted",
        "_failed",
        "_first_chunk",
        "_last_chunk",
        "_metadata",
        "_model",
        "_recorded",
        "_start",
        "_status",
        "_streamed",
        "instrumentation",
    )

    def __init__(self, inner: Processor, instrumentation: Instrumentation) -> None:
        super().__init__(inner)
        self.instrumentation = instrumentation
        self._counted = _innermost(inner).counted
        self._start: float | None = None
        self._backend = UNKNOWN
        self._model = UNKNOWN
        self._failed = False  # a phase raised, or answered with a local error
        self._status = 0  # what the client gets: the upstream's status, or ours
        self._streamed = False
        self._first_chunk: float | None = None
        self._last_chunk = 0.0
        self._metadata: dict[str, Any] = {}
        self._recorded = False

    # -- phases: call inner through one observer, never change what passes -------------

    async def on_request_headers(self, headers: Headers) -> Result:
        if self._start is None:
            self._start = self.instrumentation.clock()
        return await self._observe(self.inner.on_request_headers(headers))

    async def on_request_body(self, body: bytes, end_of_stream: bool) -> Result:
        return await self._observe(self.inner.on_request_body(body, end_of_stream))

    async def on_response_headers(self, headers: Headers) -> Result:
        self._status = headers.status
        result = await self._observe(self.inner.on_response_headers(headers))
        self._streamed = result.stream_response_body and not headers.end_of_stream
        if headers.end_of_stream:
            self._record_complete()
        return result

    async def on_response_body(self, body: bytes, end_of_stream: bool) -> Result:
        if self._streamed and body and not self._recorded:
            now = self.instrumentation.clock()
            if self._first_chunk is None:
                self._first_chunk = now
            self._last_chunk = now
        result = await self._observe(self.inner.on_response_body(body, end_of_stream))
        if end_of_stream:
            self._record_complete()
        return result

    async def on_stream_end(self, outcome: Outcome) -> None:
        try:
            await self._observe_end(self.inner.on_stream_end(outcome))
        finally:
            if not self._recorded:
                # The response never completed: the client left, the upstream reset or
                # timed out. Trailers are the one clean end still seen only here.
                ok = outcome.succeeded and not self._failed and "error" not in self._metadata
                self._record(ok)

    # -- bookkeeping -------------------------------------------------------------------

    async def _observe(self, phase: Awaitable[Result]) -> Result:
        """Run one phase of ``inner``: learn from its result, or from what it raised."""
        try:
            result = await phase
        except ImmediateResponse as reply:
            self._status = reply.status
            if reply.dynamic_metadata:
                self._note_metadata(reply.dynamic_metadata)
            if not 200 <= reply.status < 300:
                self._failed = True
            self._record_complete()
            raise
        except Exception:
            # The server answers a JSON 500 (or resets a committed stream).
            self._failed = True
            self._record_complete()
            raise
        if result.set_headers:
            self._note_headers(result)
        if result.dynamic_metadata:
            self._note_metadata(result.dynamic_metadata)
        if result.end_of_response:
            self._record_complete()
        return result

    async def _observe_end(self, phase: Awaitable[None]) -> None:
        try:
            await phase
        except Exception:
            self._failed = True
            raise

    def _note_headers(self, result: Result) -> None:
        inst = self.instrumentation
        status = result.header(":status")
        if status is not None and status.isdigit():
            self._status = int(status)  # the processor changed what the client gets
        backend = result.header(inst.backend_header)
        if backend is not None:
            self._backend = backend if backend in inst.backends else UNKNOWN
        model = result.header(inst.model_header)
        if model is not None:
            self._model = model if model in inst.models else UNKNOWN

    def _note_metadata(self, metadata: Mapping[str, Mapping[str, Any]]) -> None:
        fields = metadata.get(METADATA_NAMESPACE)
        if not fields:
            return
        self._metadata.update(fields)
        inst = self.instrumentation
        backend = fields.get("backend")
        if isinstance(backend, str):
            self._backend = backend if backend in inst.backends else UNKNOWN
        model = fields.get("model")
        if isinstance(model, str):
            self._model = model if model in inst.models else UNKNOWN

    def _succeeded(self) -> bool:
        return 200 <= self._status < 300 and not self._failed and "error" not in self._metadata

    def _record_complete(self) -> None:
        if not self._recorded:
            self._record(self._succeeded())

    def _record(self, success: bool) -> None:
        self._recorded = True
        if not self._counted:
            return
        inst = self.instrumentation
        metrics = inst.metrics
        now = inst.clock()
        start = self._start if self._start is not None else now
        meta = self._metadata
        status = "success" if success else "error"
        backend, model = self._backend, self._model
        metrics.requests.add(1, (backend, model, status))
        labels = {"backend": backend, "model": model}
        metrics.total_latency.record(now - start, {**labels, "status": status})
        # Tokens the backend reported are counted whatever the status: it bills them.
        for key, token_type in TOKEN_TYPES:
            count = meta.get(key)
            if isinstance(count, int | float) and not isinstance(count, bool) and count >= 0:
                metrics.tokens.add(int(count), (backend, model, token_type))
        first = self._first_chunk
        if first is None or not 200 <= self._status < 300:
            return
        metrics.first_token_latency.record(first - start, labels)
        completion = _count(meta, "output_tokens")
        if completion > 1:
            metrics.inter_token_latency.record(
                (self._last_chunk - first) / (completion - 1), labels
            )


def _count(meta: Mapping[str, Any], key: str) -> int:
    value = meta.get(key)
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0
