"""``InstrumentedProcessor``: the metrics decorator around any :class:`Processor`.

The wrapped processor knows nothing of metrics. The wrapper starts the clock at request
headers, learns backend and model from the routing headers, watches every phase for
exceptions, times streamed body chunks, and records the request exactly once, in
``on_stream_end`` (the ``finally`` of a request), from the outcome and the usage the
inner processor published as dynamic metadata.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping
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
_TOKEN_TYPES = (
    ("input_tokens", "prompt"),
    ("output_tokens", "completion"),
    ("total_tokens", "total"),
    ("cached_input_tokens", "cached_prompt"),
    ("reasoning_tokens", "reasoning"),
)


@dataclass(slots=True, frozen=True)
class Instrumentation:
    """What every :class:`InstrumentedProcessor` shares: the instruments, the label
    values allowed (from the config, so clients cannot grow the label set), the routing
    header names, and the clock."""

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


class InstrumentedProcessor(ProcessorWrapper):
    """Records one request's metrics around ``inner``; see the module docstring."""

    __slots__ = (
        "_backend",
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
        self._start: float | None = None
        self._backend = UNKNOWN
        self._model = UNKNOWN
        self._failed = False
        self._status = 0
        self._streamed = False
        self._first_chunk: float | None = None
        self._last_chunk = 0.0
        self._metadata: dict[str, Any] = {}
        self._recorded = False

    # -- phases: call inner, note what matters, never change what passes ---------------

    async def on_request_headers(self, headers: Headers) -> Result:
        if self._start is None:
            self._start = self.instrumentation.clock()
        self._labels(headers.get)
        try:
            result = await self.inner.on_request_headers(headers)
        except BaseException as exc:
            self._note_exception(exc)
            raise
        return self._note(result)

    async def on_request_body(self, body: bytes, end_of_stream: bool) -> Result:
        try:
            result = await self.inner.on_request_body(body, end_of_stream)
        except BaseException as exc:
            self._note_exception(exc)
            raise
        return self._note(result)

    async def on_response_headers(self, headers: Headers) -> Result:
        self._status = headers.status
        try:
            result = await self.inner.on_response_headers(headers)
        except BaseException as exc:
            self._note_exception(exc)
            raise
        self._streamed = result.stream_response_body and not headers.end_of_stream
        return self._note(result)

    async def on_response_body(self, body: bytes, end_of_stream: bool) -> Result:
        if self._streamed and body:
            now = self.instrumentation.clock()
            if self._first_chunk is None:
                self._first_chunk = now
            self._last_chunk = now
        try:
            result = await self.inner.on_response_body(body, end_of_stream)
        except BaseException as exc:
            self._note_exception(exc)
            raise
        return self._note(result)

    async def on_stream_end(self, outcome: Outcome) -> None:
        try:
            await self.inner.on_stream_end(outcome)
        except BaseException as exc:
            self._note_exception(exc)
            raise
        finally:
            if not self._recorded:
                self._recorded = True
                self._record(outcome)

    # -- bookkeeping -------------------------------------------------------------------

    def _note(self, result: Result) -> Result:
        if result.set_headers:
            self._labels(result.header)
        if result.dynamic_metadata:
            fields = result.dynamic_metadata.get(METADATA_NAMESPACE)
            if fields:
                self._metadata.update(fields)
        return result

    def _note_exception(self, exc: BaseException) -> None:
        if isinstance(exc, ImmediateResponse) and 200 <= exc.status < 300:
            return  # a local answer that is not an error (e.g. a models list)
        self._failed = True

    def _labels(self, get: Callable[[str], str | None]) -> None:
        inst = self.instrumentation
        backend = get(inst.backend_header)
        if backend is not None:
            self._backend = backend if backend in inst.backends else UNKNOWN
        model = get(inst.model_header)
        if model is not None:
            self._model = model if model in inst.models else UNKNOWN

    def _record(self, outcome: Outcome) -> None:
        inst = self.instrumentation
        metrics = inst.metrics
        now = inst.clock()
        start = self._start if self._start is not None else now
        meta = self._metadata
        success = outcome.succeeded and not self._failed and "error" not in meta
        status = "success" if success else "error"
        backend, model = self._backend, self._model
        metrics.requests.add(1, (backend, model, status))
        labels = {"backend": backend, "model": model}
        metrics.total_latency.record(now - start, {**labels, "status": status})
        for key, token_type in _TOKEN_TYPES:
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
