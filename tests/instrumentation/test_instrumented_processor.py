"""InstrumentedProcessor records every request exactly once, with the right labels,
whatever its inner processor does. Driven through the servicer like Envoy would."""

from __future__ import annotations

import json
from collections import Counter as Tally
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics.export import HistogramDataPoint

from aigateway.extproc.framework.processor import (
    CONTINUE,
    Headers,
    ImmediateResponse,
    Outcome,
    Processor,
    ProcessorWrapper,
    Result,
)
from aigateway.extproc.framework.router import Router
from aigateway.extproc.framework.server import ExternalProcessorServicer
from aigateway.extproc.gateway.app import build_router
from aigateway.extproc.gateway.backends import RoutingTable
from aigateway.extproc.gateway.config import ResolvedSecrets, parse_config
from aigateway.instrumentation.aggregation import (
    InProcessHistograms,
    ProducingInMemoryMetricReader,
)
from aigateway.instrumentation.facts import published
from aigateway.instrumentation.instrumented import Instrumentation, InstrumentedProcessor
from aigateway.instrumentation.metrics import GatewayMetrics, create_meter_provider
from tests.contract import BUCKETS
from tests.extproc.framework.fake_envoy import (
    Aborted,
    Conversation,
    request_body,
    request_headers,
    response_body,
    response_headers,
)

CONFIG = parse_config(
    {
        "backends": [
            {"name": "b1", "schema": "openai", "endpoint": "http://127.0.0.1:1"},
            {"name": "b2", "schema": "anthropic", "endpoint": "http://127.0.0.1:2"},
        ],
        "models": [{"name": "m1", "backend": "b1"}, {"name": "m2", "backend": "b2"}],
    }
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Metrics:
    """Reads data points back from an in-memory reader."""

    def __init__(self) -> None:
        histograms = InProcessHistograms()
        self.reader = ProducingInMemoryMetricReader(histograms)
        self.provider = create_meter_provider([self.reader], histograms, cardinality=100)
        self.instruments = GatewayMetrics.create(self.provider.get_meter("test"), histograms)
        self.clock = FakeClock()
        self.instrumentation = Instrumentation.create(
            self.instruments, models={"m1", "m2"}, backends={"b1", "b2"}, clock=self.clock
        )

    def points(self, name: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        if data is None:
            return []
        return [
            p
            for rm in data.resource_metrics
            for sm in rm.scope_metrics
            for m in sm.metrics
            if m.name == name
            for p in m.data.data_points
        ]

    def counts(self, name: str) -> Tally[tuple[tuple[str, Any], ...]]:
        return Tally({tuple(sorted(p.attributes.items())): p.value for p in self.points(name)})

    def requests(self) -> dict[str, Any]:
        return {
            (p.attributes["backend"], p.attributes["model"], p.attributes["status"]): p.value
            for p in self.points("aigateway_requests_total")
        }

    def tokens(self) -> dict[str, Any]:
        return {p.attributes["type"]: p.value for p in self.points("aigateway_model_tokens")}

    def histogram(self, name: str) -> list[HistogramDataPoint]:
        return self.points(name)


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


def servicer(metrics: Metrics, factory: Any = None) -> ExternalProcessorServicer:
    if factory is None:
        router = build_router(
            RoutingTable(CONFIG, ResolvedSecrets(CONFIG, Path())),
            instrument=metrics.instrumentation.wrap,
        )
    else:
        router = Router({"/v1/chat/completions": factory}, wrap=metrics.instrumentation.wrap)
    return ExternalProcessorServicer(router)


def chat(**extra: Any) -> bytes:
    return json.dumps(
        {"model": "m1", "messages": [{"role": "user", "content": "a b"}], **extra}
    ).encode()


USAGE = {"prompt_tokens": 2, "completion_tokens": 4, "total_tokens": 6}


async def test_success_counts_once_with_tokens_and_no_latency_for_non_streamed(
    metrics: Metrics,
) -> None:
    conv = Conversation(servicer(metrics))
    await conv.send(request_headers())
    await conv.send(request_body(chat()))
    await conv.send(response_headers())
    metrics.clock.now += 1.5
    await conv.send(response_body({"choices": [], "usage": USAGE}))
    await conv.close()
    assert metrics.requests() == {("b1", "m1", "success"): 1}
    assert metrics.tokens() == {"prompt": 2, "completion": 4, "total": 6}
    (total,) = metrics.histogram("aigateway_total_latency_seconds")
    assert total.count == 1 and total.sum == pytest.approx(1.5)
    assert total.attributes == {"backend": "b1", "model": "m1", "status": "success"}
    assert metrics.histogram("aigateway_first_token_latency_seconds") == []
    assert metrics.histogram("aigateway_inter_token_latency_seconds") == []


def sse(doc: Any) -> bytes:
    return b"data: " + (doc if isinstance(doc, bytes) else json.dumps(doc).encode()) + b"\n\n"


async def test_streamed_success_records_first_and_inter_token_latency(metrics: Metrics) -> None:
    conv = Conversation(servicer(metrics))
    await conv.send(request_headers())
    await conv.send(request_body(chat(stream=True)))
    metrics.clock.now += 0.2
    await conv.send(response_headers(content_type="text/event-stream"))
    metrics.clock.now += 0.3  # first chunk 0.5 s after request headers
    await conv.send(
        response_body(sse({"choices": [{"delta": {"content": "x"}}]}), end_of_stream=False)
    )
    metrics.clock.now += 0.6  # last chunk 0.6 s later, 4 completion tokens -> 0.2 s each
    await conv.send(response_body(sse({"choices": [], "usage": USAGE}) + sse(b"[DONE]")))
    await conv.close()
    (first,) = metrics.histogram("aigateway_first_token_latency_seconds")
    assert first.count == 1 and first.sum == pytest.approx(0.5)
    assert first.attributes == {"backend": "b1", "model": "m1"}
    (inter,) = metrics.histogram("aigateway_inter_token_latency_seconds")
    assert inter.count == 1 and inter.sum == pytest.approx(0.2)
    assert list(first.explicit_bounds) == BUCKETS["aigateway_first_token_latency_seconds"]
    assert metrics.requests() == {("b1", "m1", "success"): 1}


async def test_upstream_500_is_one_error_without_tokens(metrics: Metrics) -> None:
    conv = Conversation(servicer(metrics))
    await conv.send(request_headers())
    await conv.send(request_body(chat(stream=True)))
    await conv.send(response_headers(500))
    await conv.send(response_body(b"oops"))
    await conv.close()
    assert metrics.requests() == {("b1", "m1", "error"): 1}
    assert metrics.tokens() == {}
    assert metrics.histogram("aigateway_first_token_latency_seconds") == []


@pytest.mark.parametrize(
    ("body", "labels"),
    [
        (b"{bad json", ("unknown", "unknown", "error")),
        (
            json.dumps(
                {"model": "not-configured", "messages": [{"role": "user", "content": "x"}]}
            ).encode(),
            ("unknown", "unknown", "error"),
        ),
    ],
)
async def test_before_routing_labels_are_unknown(
    metrics: Metrics, body: bytes, labels: tuple[str, ...]
) -> None:
    conv = Conversation(servicer(metrics))
    await conv.send(request_headers())
    await conv.send(request_body(body))
    await conv.close()
    assert metrics.requests() == {labels: 1}


async def test_routing_headers_a_client_sends_never_become_labels(metrics: Metrics) -> None:
    # Even naming a configured backend and model: labels come from the processor only.
    conv = Conversation(servicer(metrics))
    await conv.send(
        request_headers(extra=[("x-ai-gateway-model", "m1"), ("x-ai-gateway-backend", "b1")])
    )
    await conv.send(request_body(b"{bad"))
    await conv.close()
    assert metrics.requests() == {("unknown", "unknown", "error"): 1}


async def test_client_cancellation_is_one_error(metrics: Metrics) -> None:
    conv = Conversation(servicer(metrics))
    await conv.send(request_headers())
    await conv.send(request_body(chat(stream=True)))
    await conv.send(response_headers(content_type="text/event-stream"))
    await conv.send(
        response_body(sse({"choices": [{"delta": {"content": "x"}}]}), end_of_stream=False)
    )
    await conv.cancel()
    assert metrics.requests() == {("b1", "m1", "error"): 1}
    # The client got a first token before it left: that latency is real and recorded.
    assert len(metrics.histogram("aigateway_first_token_latency_seconds")) == 1


PHASES = ["request_headers", "request_body", "response_headers", "response_body"]


def failing_in(phase: str, exc: BaseException) -> type[Processor]:
    class Failing(Processor):
        async def on_request_headers(self, headers: Headers) -> Result:
            if phase == "request_headers":
                raise exc
            return CONTINUE

        async def on_request_body(self, body: bytes, end_of_stream: bool) -> Result:
            if phase == "request_body":
                raise exc
            return Result(
                set_headers=(("x-ai-gateway-model", "m1"), ("x-ai-gateway-backend", "b1")),
                clear_route_cache=True,
                dynamic_metadata=published({"backend": "b1", "model": "m1"}),
            )

        async def on_response_headers(self, headers: Headers) -> Result:
            if phase == "response_headers":
                raise exc
            return Result(stream_response_body=True)

        async def on_response_body(self, body: bytes, end_of_stream: bool) -> Result:
            if phase == "response_body":
                raise exc
            return CONTINUE

    return Failing


@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize(
    "exc", [RuntimeError("bug"), ImmediateResponse.error(403, "no")], ids=["exception", "reply"]
)
async def test_a_failure_in_any_phase_is_exactly_one_error(
    metrics: Metrics, phase: str, exc: BaseException
) -> None:
    conv = Conversation(servicer(metrics, failing_in(phase, exc)))
    steps = [
        request_headers(),
        request_body(chat()),
        response_headers(content_type="text/event-stream"),
        response_body(b"data: x\n\n", end_of_stream=True),
    ]
    try:
        for step in steps:
            answer = await conv.send(step)
            if answer.HasField("immediate_response"):
                break
        await conv.close()
    except Aborted:
        pass  # a failure after the response was committed resets the stream
    routed = PHASES.index(phase) > 1
    labels = ("b1", "m1") if routed else ("unknown", "unknown")
    assert metrics.requests() == {(*labels, "error"): 1}


async def test_labels_come_from_the_facts_only_not_from_routing_headers(
    metrics: Metrics,
) -> None:
    # One channel: a processor that routes with headers but publishes no facts is unknown.
    class HeadersOnly(Processor):
        async def on_request_body(self, body: bytes, end_of_stream: bool) -> Result:
            return Result(
                set_headers=(("x-ai-gateway-model", "m1"), ("x-ai-gateway-backend", "b1")),
                clear_route_cache=True,
            )

    conv = Conversation(servicer(metrics, HeadersOnly))
    await conv.send(request_headers())
    await conv.send(request_body(chat()))
    await conv.send(response_headers())
    await conv.send(response_body(b"{}"))
    await conv.close()
    assert metrics.requests() == {("unknown", "unknown", "success"): 1}


class Repeats(Processor):
    """Sees phases more than once (a broken peer, a test): still one record."""


async def test_records_nothing_twice_when_phases_repeat(metrics: Metrics) -> None:
    wrapped = metrics.instrumentation.wrap(Repeats())
    headers = Headers([(":path", "/v1/chat/completions")])
    await wrapped.on_request_headers(headers)
    await wrapped.on_request_headers(headers)
    await wrapped.on_stream_end(Outcome(response_complete=True, status=200))
    await wrapped.on_stream_end(Outcome(response_complete=True, status=200))
    assert metrics.requests() == {("unknown", "unknown", "success"): 1}
    assert sum(p.count for p in metrics.histogram("aigateway_total_latency_seconds")) == 1


async def test_on_stream_end_failure_still_records(metrics: Metrics) -> None:
    class EndFails(Processor):
        async def on_stream_end(self, outcome: Outcome) -> None:
            raise RuntimeError("cleanup failed")

    wrapped = InstrumentedProcessor(EndFails(), metrics.instrumentation)
    await wrapped.on_request_headers(Headers([]))
    with pytest.raises(RuntimeError):
        await wrapped.on_stream_end(Outcome(response_complete=True, status=200))
    assert metrics.requests() == {("unknown", "unknown", "error"): 1}


async def test_metadata_error_makes_a_2xx_an_error(metrics: Metrics) -> None:
    conv = Conversation(servicer(metrics))
    await conv.send(request_headers())
    await conv.send(request_body(chat(stream=True)))
    await conv.send(response_headers(content_type="text/event-stream"))
    await conv.send(
        response_body(sse({"choices": [{"delta": {"content": "x"}}]}), end_of_stream=True)
    )
    await conv.close()  # no [DONE]: truncated
    assert metrics.requests() == {("b1", "m1", "error"): 1}


async def test_reasoning_and_cached_tokens_by_type(metrics: Metrics) -> None:
    conv = Conversation(servicer(metrics))
    await conv.send(request_headers())
    await conv.send(request_body(chat()))
    await conv.send(response_headers())
    usage = {
        **USAGE,
        "prompt_tokens_details": {"cached_tokens": 1},
        "completion_tokens_details": {"reasoning_tokens": 3},
    }
    await conv.send(response_body({"choices": [], "usage": usage}))
    await conv.close()
    assert metrics.tokens() == {
        "prompt": 2,
        "completion": 4,
        "total": 6,
        "cached_prompt": 1,
        "reasoning": 3,
    }


# -- when a request is recorded (docs/architecture.md, "Accounting rules") ------------


def sse_events(*docs: Any) -> bytes:
    return b"".join(b"data: " + json.dumps(d).encode() + b"\n\n" for d in docs)


DONE = b"data: [DONE]\n\n"


async def test_a_stream_is_recorded_at_its_terminal_event(metrics: Metrics) -> None:
    conv = Conversation(servicer(metrics))
    await conv.send(request_headers())
    await conv.send(request_body(chat(stream=True)))
    await conv.send(response_headers(content_type="text/event-stream"))
    metrics.clock.now += 1
    await conv.send(
        response_body(sse_events({"choices": [{"delta": {"content": "a"}}]}), end_of_stream=False)
    )
    metrics.clock.now += 2
    await conv.send(
        response_body(sse_events({"choices": [], "usage": USAGE}) + DONE, end_of_stream=False)
    )
    # Recorded now, before the upstream ends its body: a scrape already sees it.
    assert metrics.requests() == {("b1", "m1", "success"): 1}
    (total,) = metrics.histogram("aigateway_total_latency_seconds")
    assert total.sum == pytest.approx(3.0)  # ends at the terminal event
    metrics.clock.now += 10  # the upstream's end of body arrives late...
    await conv.send(response_body(b"", end_of_stream=True))
    await conv.close()
    assert metrics.requests() == {("b1", "m1", "success"): 1}
    (total,) = metrics.histogram("aigateway_total_latency_seconds")
    assert (total.count, total.sum) == (1, pytest.approx(3.0))
    assert metrics.tokens() == {"prompt": 2, "completion": 4, "total": 6}


async def test_a_client_hanging_up_after_the_terminal_event_is_a_success(
    metrics: Metrics,
) -> None:
    conv = Conversation(servicer(metrics))
    await conv.send(request_headers())
    await conv.send(request_body(chat(stream=True)))
    await conv.send(response_headers(content_type="text/event-stream"))
    await conv.send(
        response_body(
            sse_events(
                {"choices": [{"delta": {"content": "a b"}}]}, {"choices": [], "usage": USAGE}
            )
            + DONE,
            end_of_stream=False,
        )
    )
    await conv.cancel()  # the client left with [DONE]; Envoy cancels the stream
    assert metrics.requests() == {("b1", "m1", "success"): 1}
    assert metrics.tokens() == {"prompt": 2, "completion": 4, "total": 6}


async def test_usage_reported_before_a_client_leaves_is_counted(metrics: Metrics) -> None:
    conv = Conversation(servicer(metrics))
    await conv.send(request_headers())
    await conv.send(request_body(json.loads(chat(stream=True)) | {"model": "m2"}))
    await conv.send(response_headers(content_type="text/event-stream"))
    start = {
        "type": "message_start",
        "message": {"id": "msg_1", "usage": {"input_tokens": 7, "output_tokens": 1}},
    }
    await conv.send(
        response_body(
            b"event: message_start\ndata: " + json.dumps(start).encode() + b"\n\n",
            end_of_stream=False,
        )
    )
    await conv.cancel()
    assert metrics.requests() == {("b2", "m2", "error"): 1}
    assert metrics.tokens() == {"prompt": 7, "completion": 1, "total": 8}


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (json.loads(chat()) | {"messages": []}, 400),  # fails validation
        (json.loads(chat()) | {"model": "m2", "n": 2}, 400),  # the backend cannot express it
        (json.loads(chat()) | {"model": "m2", "tools": [{"type": "web_search"}]}, 400),
    ],
)
async def test_a_refusal_after_routing_is_labelled_with_the_model(
    metrics: Metrics, body: dict[str, Any], status: int
) -> None:
    conv = Conversation(servicer(metrics))
    await conv.send(request_headers())
    answer = await conv.send(request_body(body))
    assert answer.immediate_response.status.code == status
    await conv.close()
    model = body["model"]
    backend = {"m1": "b1", "m2": "b2"}[model]
    assert metrics.requests() == {(backend, model, "error"): 1}


@pytest.mark.parametrize("path", ["/v1/models", "/v1/models/m1", "/v1/messages/count_tokens"])
async def test_answers_that_are_not_llm_requests_are_not_counted_but_still_wrapped(
    metrics: Metrics, path: str
) -> None:
    # The gateway leaves these paths out of the metrics wrapper; your wraps see them all.
    seen: list[str] = []

    class Sees(ProcessorWrapper):
        async def on_request_headers(self, headers: Headers) -> Result:
            seen.append(headers.path)
            return await self.inner.on_request_headers(headers)

    router = build_router(
        RoutingTable(CONFIG, ResolvedSecrets(CONFIG, Path())),
        wrap=Sees,
        instrument=metrics.instrumentation.wrap,
    )
    conv = Conversation(ExternalProcessorServicer(router))
    if path.startswith("/v1/models"):
        answer = await conv.send(request_headers(path, method="GET", end_of_stream=True))
        assert answer.immediate_response.status.code == 200
    else:
        await conv.send(request_headers(path))
        tokens = {"model": "m2", "messages": [{"role": "user", "content": "a b"}]}
        assert (await conv.send(request_body(tokens))).HasField("request_body")
        await conv.send(response_headers())
        await conv.send(response_body({"input_tokens": 2}))
    await conv.close()
    assert seen == [path]
    assert metrics.requests() == {}
    assert metrics.histogram("aigateway_total_latency_seconds") == []


async def test_an_unknown_path_is_a_counted_error(metrics: Metrics) -> None:
    conv = Conversation(servicer(metrics))
    answer = await conv.send(request_headers("/v1/nothing-here"))
    assert answer.immediate_response.status.code == 404
    await conv.close()
    assert metrics.requests() == {("unknown", "unknown", "error"): 1}


async def test_cache_writes_have_their_own_token_type(metrics: Metrics) -> None:
    class Reports(Processor):
        async def on_request_body(self, body: bytes, end_of_stream: bool) -> Result:
            return Result(
                dynamic_metadata={
                    "aigateway": {
                        "backend": "b2",
                        "model": "m2",
                        "input_tokens": 10,
                        "output_tokens": 2,
                        "total_tokens": 12,
                        "cached_input_tokens": 3,
                        "cache_write_input_tokens": 5,
                    }
                }
            )

    conv = Conversation(servicer(metrics, Reports))
    await conv.send(request_headers())
    await conv.send(request_body(chat()))
    await conv.send(response_headers())
    await conv.send(response_body(b"{}"))
    await conv.close()
    assert metrics.requests() == {("b2", "m2", "success"): 1}
    assert metrics.tokens() == {
        "prompt": 10,
        "completion": 2,
        "total": 12,
        "cached_prompt": 3,
        "cache_write_prompt": 5,
    }
