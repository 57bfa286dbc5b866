"""``InstrumentedProcessor``: the telemetry decorator around any :class:`Processor`.

The wrapped processor knows nothing of metrics: it reports facts (which backend and model
it routed to, the usage the backend reported, an error) as dynamic metadata, typed by
:class:`~aigateway.instrumentation.facts.Facts`; the wrapper reads them from there only.
The wrapper starts the clock at request headers, watches every phase through one helper,
times streamed body chunks, and records each request exactly once, at the moment its
response is complete (``docs/architecture.md``, "Accounting rules"):

- the answer to the end of the response body, or to bodiless response headers;
- an immediate response (a local reply, or the error reply for a processor exception);
- a result with ``end_of_response``: a stream's terminal event passed to the client;
- else, as a fallback, the end of the ext_proc stream (the client left mid-stream, the
  upstream reset or timed out): always an error.

That one record step feeds every family the config asks for (``aigateway_*``, the
GenAI conventions' ``gen_ai.*``, costs), ends the request's span when tracing is on, and
adds the request's timings to the dynamic metadata of the answer that completes it
(the ``*_latency_ms`` facts, for Envoy's access log). A request recorded by the fallback has
no answer left to carry them: its access-log line shows no timings.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from opentelemetry.trace import Span, Status, StatusCode, Tracer

from aigateway.extproc.framework.processor import (
    LOCAL_REPLY_DETAILS_PREFIX,
    Headers,
    ImmediateResponse,
    Outcome,
    Processor,
    ProcessorWrapper,
    Result,
)
from aigateway.instrumentation.aggregation import PendingObservations
from aigateway.instrumentation.facts import (
    ATTEMPT_RESULTS,
    METADATA_NAMESPACE,
    Attempt,
    Facts,
    TokenFact,
    UnrecordedRequest,
    facts_in,
)
from aigateway.instrumentation.metrics import (
    ERROR_TYPE,
    OPERATION,
    PROVIDER,
    REQUEST_MODEL,
    RESPONSE_MODEL,
    RESPONSE_MODELS_PER_MODEL,
    CostTotals,
    GatewayMetrics,
    GenAIMetrics,
    LimitMetrics,
)
from aigateway.instrumentation.tracing import FIRST_TOKEN_EVENT, start_request_span

UNKNOWN = "unknown"
#: A GenAI attribute value outside its bounded set (the conventions' own fallback value).
OTHER = "_OTHER"
#: Header label values: a value the config does not list, and no such header.
OTHER_HEADER_VALUE = "other"
NO_HEADER_VALUE = "none"

# Token types by the fact that carries them.
TOKEN_TYPES: tuple[tuple[TokenFact, str], ...] = (
    ("input_tokens", "prompt"),
    ("output_tokens", "completion"),
    ("total_tokens", "total"),
    ("cached_input_tokens", "cached_prompt"),
    ("cache_write_input_tokens", "cache_write_prompt"),
    ("reasoning_tokens", "reasoning"),
)

#: ``gen_ai.operation.name`` values the conventions define; a processor reporting
#: anything else is recorded as ``_OTHER``.
GENAI_OPERATIONS = frozenset(
    {
        "chat",
        "generate_content",
        "text_completion",
        "embeddings",
        "retrieval",
        "create_agent",
        "invoke_agent",
        "execute_tool",
        "invoke_workflow",
    }
)

#: Span attributes for the token counts the backend reported.
_SPAN_TOKENS: tuple[tuple[TokenFact, str], ...] = (
    ("input_tokens", "gen_ai.usage.input_tokens"),
    ("output_tokens", "gen_ai.usage.output_tokens"),
    ("cached_input_tokens", "gen_ai.usage.cache_read.input_tokens"),
    ("cache_write_input_tokens", "gen_ai.usage.cache_creation.input_tokens"),
    ("reasoning_tokens", "gen_ai.usage.reasoning.output_tokens"),
)
_MAX_RESPONSE_MODEL = 256


@dataclass(slots=True, frozen=True)
class HeaderLabel:
    """A label taken from a request header (``metrics.labels_from_headers``): the
    header's value when ``values`` lists it, ``other`` when not, ``none`` without it."""

    header: str
    label: str
    values: frozenset[str]


def genai_latest_experimental(env: Mapping[str, str] = os.environ) -> bool:
    """``OTEL_SEMCONV_STABILITY_OPT_IN`` lists ``gen_ai_latest_experimental``."""
    values = env.get("OTEL_SEMCONV_STABILITY_OPT_IN", "").split(",")
    return "gen_ai_latest_experimental" in (v.strip() for v in values)


@dataclass(slots=True, frozen=True)
class Instrumentation:
    """What every :class:`InstrumentedProcessor` shares: the families to record (any of
    ``metrics``, ``genai``, ``costs`` may be ``None``), the label values allowed (from
    the config, so clients cannot grow the label set), the header labels, each backend's
    ``gen_ai.provider.name``, the tracer (``None``: no tracing) and the clocks. Use it as a wrap:
    ``Router(..., wrap=instrumentation.wrap)``."""

    metrics: GatewayMetrics | None
    models: frozenset[str]
    backends: frozenset[str]
    clock: Callable[[], float] = field(default=time.perf_counter)
    genai: GenAIMetrics | None = None
    costs: CostTotals | None = None
    header_labels: tuple[HeaderLabel, ...] = ()
    providers: Mapping[str, str] = field(default_factory=dict)
    tracer: Tracer | None = None
    #: Wall-clock nanoseconds, for span timestamps (durations come from ``clock``).
    wall_clock: Callable[[], int] = field(default=time.time_ns)
    #: The families of ``limits:`` and its rule names (the ``rule`` label's values).
    limits: LimitMetrics | None = None
    rules: frozenset[str] = frozenset()
    #: Emit the GenAI attributes still in development too (docs/traces-and-logs.md,
    #: "GenAI conventions"), as ``OTEL_SEMCONV_STABILITY_OPT_IN`` asks.
    latest_experimental: bool = field(default_factory=lambda: genai_latest_experimental())
    #: The ``gen_ai.response.model`` values each model has reported (bounded).
    _response_models: dict[str, set[str]] = field(default_factory=dict, init=False)

    @classmethod
    def create(
        cls,
        metrics: GatewayMetrics | None,
        *,
        models: Collection[str],
        backends: Collection[str],
        **kwargs: Any,
    ) -> Instrumentation:
        return cls(metrics, frozenset(models), frozenset(backends), **kwargs)

    def wrap(self, processor: Processor) -> InstrumentedProcessor:
        return InstrumentedProcessor(processor, self)

    def record_attempt(self, attempt: Attempt) -> None:
        """One attempt of a request to a model with several backends, as Envoy logged
        it (labels bounded by the config, as every family's)."""
        if self.metrics is None:
            return
        self.metrics.attempts.add(
            1,
            (
                attempt.backend if attempt.backend in self.backends else UNKNOWN,
                attempt.model if attempt.model in self.models else UNKNOWN,
                attempt.result if attempt.result in ATTEMPT_RESULTS else UNKNOWN,
                *self.header_values(Headers(list(attempt.headers))),
            ),
        )

    def record_unrecorded(self, request: UnrecordedRequest) -> None:
        """A request Envoy answered itself that no processor recorded: one error, through
        the same record step as every request, with the facts it had published."""
        InstrumentedProcessor(Processor(), self).record_lost(request)

    def header_values(self, headers: Headers | None) -> tuple[str, ...]:
        """The header labels' values for a request with these headers."""
        if not self.header_labels:
            return ()
        if headers is None:
            return tuple(NO_HEADER_VALUE for _ in self.header_labels)
        out = []
        for label in self.header_labels:
            value = headers.get(label.header)
            if value is None:
                out.append(NO_HEADER_VALUE)
            else:
                out.append(value if value in label.values else OTHER_HEADER_VALUE)
        return tuple(out)

    def operation(self, reported: Any) -> str:
        if not isinstance(reported, str):
            return UNKNOWN
        return reported if reported in GENAI_OPERATIONS else OTHER

    def response_model(self, model: str, reported: Any) -> str | None:
        """``reported`` if ``model`` has reported at most a few distinct values so far,
        else ``_OTHER``; ``None`` when nothing was reported."""
        if not isinstance(reported, str) or not reported:
            return None
        seen = self._response_models.setdefault(model, set())
        if reported in seen:
            return reported
        if len(seen) >= RESPONSE_MODELS_PER_MODEL or len(reported) > _MAX_RESPONSE_MODEL:
            return OTHER
        seen.add(reported)
        return reported


class InstrumentedProcessor(ProcessorWrapper):
    """Records one request's telemetry around ``inner``; see the module docstring.

    Labels come only from what the processor reports after routing (its ``backend`` and
    ``model`` facts), never from headers the client sent, and only take values from the
    config; anything else is ``unknown``. Header labels take
    only the values the config lists.
    """

    __slots__ = (
        "_backend",
        "_chunk_gaps",
        "_error_type",
        "_extra",
        "_failed",
        "_first_chunk",
        "_last_chunk",
        "_metadata",
        "_model",
        "_recorded",
        "_span",
        "_start",
        "_status",
        "_streamed",
        "_wall_start",
        "instrumentation",
    )

    def __init__(self, inner: Processor, instrumentation: Instrumentation) -> None:
        super().__init__(inner)
        self.instrumentation = instrumentation
        self._start: float | None = None
        self._wall_start = 0
        self._backend = UNKNOWN
        self._model = UNKNOWN
        self._extra: tuple[str, ...] | None = None  # header label values
        self._failed = False  # a phase raised, or answered with a local error
        self._error_type: str | None = None  # why, when the wrapper saw it
        self._status = 0  # what the client gets: the upstream's status, or ours
        self._streamed = False
        self._first_chunk: float | None = None
        self._last_chunk = 0.0
        # The gaps between streamed chunks, when the client chunk metrics are on.
        self._chunk_gaps: PendingObservations | None = None
        self._metadata: Facts = {}
        self._recorded = False
        self._span: Span | None = None

    # -- phases: call inner through one observer; what passes is never changed, but for
    # -- the timings added to the answer that completes the response --------------------

    async def on_request_headers(self, headers: Headers) -> Result:
        if self._start is None:
            inst = self.instrumentation
            self._start = inst.clock()
            self._extra = inst.header_values(headers)
            if inst.tracer is not None:
                self._wall_start = inst.wall_clock()
                self._span = start_request_span(inst.tracer, headers, self._wall_start)
        return await self._observe(self.inner.on_request_headers(headers))

    async def on_request_body(self, body: bytes, end_of_stream: bool) -> Result:
        return await self._observe(self.inner.on_request_body(body, end_of_stream))

    async def on_response_headers(self, headers: Headers) -> Result:
        self._status = headers.status
        result = await self._observe(
            self.inner.on_response_headers(headers), ends=headers.end_of_stream
        )
        self._streamed = result.stream_response_body and not headers.end_of_stream
        genai = self.instrumentation.genai
        if self._streamed and genai is not None and genai.time_per_output_chunk is not None:
            self._chunk_gaps = PendingObservations(genai.time_per_output_chunk)
        return result

    async def on_response_body(self, body: bytes, end_of_stream: bool) -> Result:
        if self._streamed and body and not self._recorded:
            now = self.instrumentation.clock()
            if self._first_chunk is None:
                self._first_chunk = now
            elif self._chunk_gaps is not None:
                gaps = self._chunk_gaps.values
                gaps.append(now - self._last_chunk)
                if len(gaps) == PendingObservations.FOLD_AT:
                    self._chunk_gaps.fold()
            self._last_chunk = now
        return await self._observe(
            self.inner.on_response_body(body, end_of_stream), ends=end_of_stream
        )

    async def on_stream_end(self, outcome: Outcome) -> None:
        try:
            await self._observe_end(self.inner.on_stream_end(outcome))
        finally:
            if not self._recorded:
                # The response never completed: the client left, the upstream reset or
                # timed out. Trailers are the one clean end still seen only here.
                ok = outcome.succeeded and not self._failed and "error" not in self._metadata
                if not ok and self._error_type is None:
                    self._error_type = _ending(outcome)
                self._record(ok)

    def record_lost(self, request: UnrecordedRequest) -> None:
        """Record ``request``, which no processor recorded (its own, lost, never ran)."""
        inst = self.instrumentation
        self._start = inst.clock() - request.duration
        self._extra = inst.header_values(Headers(list(request.headers)))
        self._failed = True
        self._error_type = request.cause
        if request.facts:
            self._note_metadata({METADATA_NAMESPACE: request.facts})
        self._record(False)

    # -- bookkeeping -------------------------------------------------------------------

    async def _observe(self, phase: Awaitable[Result], *, ends: bool = False) -> Result:
        """Run one phase of ``inner``: learn from its result, or from what it raised.
        ``ends``: this phase answers the last message of the response."""
        try:
            result = await phase
        except ImmediateResponse as reply:
            self._status = reply.status
            if reply.dynamic_metadata:
                self._note_metadata(reply.dynamic_metadata)
            if not 200 <= reply.status < 300:
                self._failed = True
                self._error_type = reply.details.removeprefix(LOCAL_REPLY_DETAILS_PREFIX)
            timings = self._complete()
            if timings:
                reply.dynamic_metadata = _with_fields(reply.dynamic_metadata, timings)
            raise
        except Exception as exc:
            # The server answers a JSON 500 (or resets a committed stream).
            self._failed = True
            self._error_type = type(exc).__qualname__
            self._complete()
            raise
        if result.set_headers:
            self._note_status(result)
        if result.dynamic_metadata:
            self._note_metadata(result.dynamic_metadata)
        if result.end_of_response or ends:
            timings = self._complete()
            if timings:
                result = dataclasses.replace(
                    result, dynamic_metadata=_with_fields(result.dynamic_metadata, timings)
                )
        return result

    async def _observe_end(self, phase: Awaitable[None]) -> None:
        try:
            await phase
        except Exception as exc:
            self._failed = True
            self._error_type = type(exc).__qualname__
            raise

    def _note_status(self, result: Result) -> None:
        status = result.header(":status")
        if status is not None and status.isdigit():
            self._status = int(status)  # the processor changed what the client gets

    def _note_metadata(self, metadata: Mapping[str, Mapping[str, Any]]) -> None:
        facts = facts_in(metadata)
        if not facts:
            return
        self._metadata.update(facts)
        inst = self.instrumentation
        backend = facts.get("backend")
        if isinstance(backend, str):
            self._backend = backend if backend in inst.backends else UNKNOWN
        model = facts.get("model")
        if isinstance(model, str):
            self._model = model if model in inst.models else UNKNOWN

    def _succeeded(self) -> bool:
        return 200 <= self._status < 300 and not self._failed and "error" not in self._metadata

    def _complete(self) -> Facts | None:
        """Record the request now that its response is complete (once); its timings."""
        if self._recorded:
            return None
        return self._record(self._succeeded())

    def _record(self, success: bool) -> Facts | None:
        """The one record step: every family, the span; returns the timings to publish."""
        self._recorded = True
        inst = self.instrumentation
        now = inst.clock()
        start = self._start if self._start is not None else now
        total = now - start
        meta = self._metadata
        backend, model = self._backend, self._model
        extra = self._extra if self._extra is not None else inst.header_values(None)
        status = "success" if success else "error"
        first = self._first_chunk if 200 <= self._status < 300 else None
        first_token = None if first is None else first - start
        completion = _count(meta, "output_tokens")
        inter_token = (
            (self._last_chunk - first) / (completion - 1)
            if first is not None and completion > 1
            else None
        )

        metrics = inst.metrics
        if metrics is not None:
            metrics.requests.add(1, (backend, model, status, *extra))
            metrics.total_latency.record(total, (backend, model, status, *extra))
            # Tokens the backend reported are counted whatever the status: it bills them.
            for key, token_type in TOKEN_TYPES:
                count = meta.get(key)
                if _is_count(count):
                    metrics.tokens.add(int(count), (backend, model, token_type, *extra))
            if first_token is not None:
                metrics.first_token_latency.record(first_token, (backend, model, *extra))
            if inter_token is not None:
                metrics.inter_token_latency.record(inter_token, (backend, model, *extra))

        error_type = None if success else self._error_type_of_failure()
        genai, span = inst.genai, self._span
        if genai is not None or span is not None:
            operation = inst.operation(meta.get("operation"))
            provider = inst.providers.get(backend, UNKNOWN)
            if genai is not None:
                base = (
                    operation,
                    provider,
                    model,
                    inst.response_model(model, meta.get("response_model")),
                )
                genai.duration.record(total, (*base, error_type, *extra))
                prompt = _count(meta, "input_tokens")
                if prompt > 0:
                    genai.token_usage.record(prompt, (*base, "input", *extra))
                if completion > 0:
                    genai.token_usage.record(completion, (*base, "output", *extra))
                if first_token is not None:
                    genai.time_to_first_token.record(first_token, (*base, *extra))
                if inter_token is not None:
                    genai.time_per_output_token.record(inter_token, (*base, *extra))
                if first_token is not None and genai.time_to_first_chunk is not None:
                    genai.time_to_first_chunk.record(first_token, (*base, *extra))
                chunks, gaps = genai.time_per_output_chunk, self._chunk_gaps
                if chunks is not None and gaps is not None and first is not None:
                    chunks.record_pending(gaps, (*base, *extra))
            if span is not None:
                self._end_span(span, operation, provider, error_type, first_token, total, extra)

        costs = inst.costs
        if costs is not None and costs.priced(model):
            prompt = _count(meta, "input_tokens")
            cached = _count(meta, "cached_input_tokens")
            cache_write = _count(meta, "cache_write_input_tokens")
            if prompt or completion:
                costs.add(
                    (backend, model, *extra),
                    prompt=prompt,
                    cached=cached,
                    cache_write=cache_write,
                    completion=completion,
                )

        limits = inst.limits
        if limits is not None:
            rule = meta.get("rate_limited")
            if isinstance(rule, str):
                rule = rule if rule in inst.rules else UNKNOWN
                limits.rate_limited.add(1, (backend, model, rule, *extra))
            decision = meta.get("rate_limit_store_error")
            if decision in ("allow", "deny"):
                limits.store_errors.add(1, (decision,))

        timings: Facts = {"total_latency_ms": _ms(total)}
        if first_token is not None:
            timings["first_token_latency_ms"] = _ms(first_token)
        if inter_token is not None:
            timings["inter_token_latency_ms"] = _ms(inter_token)
        return timings

    def _error_type_of_failure(self) -> str:
        """``error.type`` of a failed request: what the processor reported, else what the
        wrapper saw (a local reply's reason, an exception's type, how the stream ended),
        else the status the client got."""
        reported = self._metadata.get("error")
        if isinstance(reported, str) and reported:
            return reported
        if self._error_type is not None:
            return self._error_type
        return str(self._status) if self._status else "incomplete"

    def _end_span(
        self,
        span: Span,
        operation: str,
        provider: str,
        error_type: str | None,
        first_token: float | None,
        total: float,
        extra: tuple[str, ...],
    ) -> None:
        inst, meta, model = self.instrumentation, self._metadata, self._model
        span.update_name(f"{operation} {model}" if model != UNKNOWN else operation)
        attributes: dict[str, Any] = {
            OPERATION: operation,
            PROVIDER: provider,
            REQUEST_MODEL: model,
            "aigateway.backend": self._backend,
        }
        reported = meta.get("response_model")
        if isinstance(reported, str) and reported:
            attributes[RESPONSE_MODEL] = reported[:_MAX_RESPONSE_MODEL]
        if inst.latest_experimental:
            # What the client asked for (a refused stream too), else what it got.
            attributes["gen_ai.request.stream"] = meta.get("stream") is True or self._streamed
            if self._streamed and first_token is not None:
                attributes["gen_ai.response.time_to_first_chunk"] = first_token
        for key, name in _SPAN_TOKENS:
            count = meta.get(key)
            if _is_count(count):
                attributes[name] = int(count)
        reasons = meta.get("finish_reasons")
        if isinstance(reasons, list | tuple) and all(isinstance(r, str) for r in reasons):
            attributes["gen_ai.response.finish_reasons"] = list(reasons)
        for label, value in zip(inst.header_labels, extra, strict=True):
            attributes[f"aigateway.{label.label}"] = value
        if error_type is not None:
            attributes[ERROR_TYPE] = error_type
            span.set_status(Status(StatusCode.ERROR))
        span.set_attributes(attributes)
        if first_token is not None:
            span.add_event(FIRST_TOKEN_EVENT, timestamp=self._wall_start + _ns(first_token))
        span.end(end_time=self._wall_start + _ns(total))


def _ending(outcome: Outcome) -> str:
    """``error.type`` of a request whose response never completed."""
    if outcome.error is not None:
        return type(outcome.error).__qualname__
    return "cancelled" if outcome.cancelled else "incomplete"


def _with_fields(
    metadata: Mapping[str, Mapping[str, Any]] | None, fields: Facts
) -> dict[str, Mapping[str, Any]]:
    """``metadata`` with ``fields`` added to its facts (a copy)."""
    out = dict(metadata or {})
    out[METADATA_NAMESPACE] = {**out.get(METADATA_NAMESPACE, {}), **fields}
    return out


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def _ns(seconds: float) -> int:
    return round(seconds * 1_000_000_000)


def _is_count(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0


def _count(meta: Facts, key: TokenFact) -> int:
    value = meta.get(key)
    return int(value) if _is_count(value) else 0
