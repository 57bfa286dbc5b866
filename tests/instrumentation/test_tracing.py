"""One span per request when tracing is on: named ``{operation} {model}``, with the
GenAI attributes, a child of the request's ``traceparent``, time to first token as an
event, and exported over OTLP (here to an in-process collector)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from aigateway.extproc.framework.server import ExternalProcessorServicer
from aigateway.extproc.gateway.app import build_router
from aigateway.extproc.gateway.backends import RoutingTable
from aigateway.extproc.gateway.config import ResolvedSecrets
from aigateway.instrumentation import HeaderLabel, setup_telemetry
from aigateway.instrumentation.aggregation import (
    InProcessHistograms,
    ProducingInMemoryMetricReader,
)
from aigateway.instrumentation.instrumented import genai_latest_experimental
from aigateway.instrumentation.metrics import create_meter_provider
from aigateway.instrumentation.telemetry import create_instrumentation
from tests.extproc.framework.fake_envoy import (
    Conversation,
    request_body,
    request_headers,
    response_body,
    response_headers,
)
from tests.instrumentation.collector import Collector, collecting
from tests.instrumentation.test_families import ANSWERED_BY, stream_on_m1, upstream_500_on_m2
from tests.instrumentation.test_instrumented_processor import CONFIG, FakeClock, chat

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
WALL_START = 1_700_000_000_000_000_000  # ns


class Traced:
    """A servicer whose instrumentation traces into memory, with fake clocks."""

    def __init__(self, *, latest_experimental: bool = False) -> None:
        self.exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        histograms = InProcessHistograms()
        meters = create_meter_provider(
            [ProducingInMemoryMetricReader(histograms)], histograms, cardinality=100
        )
        self.clock = FakeClock()
        self.instrumentation = create_instrumentation(
            meters.get_meter("test"),
            histograms,
            models={"m1", "m2"},
            backends={"b1", "b2"},
            header_labels=(HeaderLabel("x-tenant-id", "tenant", frozenset({"acme"})),),
            providers={"b1": "openai", "b2": "anthropic"},
            tracer=provider.get_tracer("test"),
            clock=self.clock,
            wall_clock=lambda: WALL_START,
            latest_experimental=latest_experimental,
        )

    def servicer(self) -> ExternalProcessorServicer:
        table = RoutingTable(CONFIG, ResolvedSecrets(CONFIG, Path()))
        return ExternalProcessorServicer(build_router(table, instrument=self.instrumentation.wrap))

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())


@pytest.fixture
def traced() -> Traced:
    return Traced()


async def test_a_streamed_request_is_one_span_child_of_its_traceparent(traced: Traced) -> None:
    await stream_on_m1(
        traced,
        [("traceparent", TRACEPARENT), ("tracestate", "vendor=secret"), ("x-tenant-id", "acme")],
    )
    (span,) = traced.spans()
    assert span.name == "chat m1"
    assert span.kind is SpanKind.CLIENT
    assert span.context is not None and span.parent is not None
    assert format(span.context.trace_id, "032x") == TRACE_ID
    assert format(span.parent.span_id, "016x") == PARENT_ID
    assert span.parent.is_remote
    assert not span.context.trace_state  # tracestate is a client's data: not carried
    assert dict(span.attributes or {}) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "m1",
        "gen_ai.response.model": ANSWERED_BY,
        "gen_ai.usage.input_tokens": 2,
        "gen_ai.usage.output_tokens": 4,
        "gen_ai.response.finish_reasons": ("stop",),
        "aigateway.backend": "b1",
        "aigateway.tenant": "acme",
    }
    assert span.status.status_code is StatusCode.UNSET
    # Timestamps on the metrics' clock: first token 0.5 s in, recorded at [DONE] 1.1 s in.
    assert (span.start_time, span.end_time) == (WALL_START, WALL_START + 1_100_000_000)
    assert [(e.name, e.timestamp) for e in span.events] == [
        ("first_token", WALL_START + 500_000_000)
    ]


async def test_a_failed_request_has_error_type_and_error_status(traced: Traced) -> None:
    await upstream_500_on_m2(traced, [])
    (span,) = traced.spans()
    assert span.name == "chat m2"
    assert span.status.status_code is StatusCode.ERROR
    attributes = dict(span.attributes or {})
    assert attributes["error.type"] == "upstream_http_500"
    assert attributes["gen_ai.provider.name"] == "anthropic"
    assert attributes["aigateway.tenant"] == "none"
    assert span.events == ()
    assert span.parent is None  # no traceparent: a trace of its own


@pytest.mark.parametrize(
    "traceparent",
    [f"00-{'0' * 32}-{PARENT_ID}-01", "garbage", f"00-{TRACE_ID}-{PARENT_ID}"],
)
async def test_an_unusable_traceparent_starts_a_new_trace(traced: Traced, traceparent: str) -> None:
    conv = Conversation(traced.servicer())
    await conv.send(request_headers(extra=[("traceparent", traceparent)]))
    await conv.send(request_body(b"{bad"))
    await conv.close()
    (span,) = traced.spans()
    assert span.parent is None
    assert span.name == "unknown"  # refused before routing: no operation, no model
    assert dict(span.attributes or {})["error.type"] == "invalid_request_error"


async def test_the_models_list_has_no_span(traced: Traced) -> None:
    conv = Conversation(traced.servicer())
    await conv.send(request_headers("/v1/models", method="GET", end_of_stream=True))
    await conv.close()
    assert traced.spans() == []


async def test_a_client_gone_mid_stream_is_an_error_span(traced: Traced) -> None:
    conv = Conversation(traced.servicer())
    await conv.send(request_headers())
    await conv.send(request_body(chat(stream=True)))
    await conv.send(response_headers(content_type="text/event-stream"))
    traced.clock.now += 0.25
    chunk = b'data: {"choices":[{"delta":{"content":"x"}}]}\n\n'
    await conv.send(response_body(chunk, end_of_stream=False))
    await conv.cancel()
    (span,) = traced.spans()
    assert dict(span.attributes or {})["error.type"] == "cancelled"
    assert [(e.name, e.timestamp) for e in span.events] == [
        ("first_token", WALL_START + 250_000_000)
    ]


def test_no_tracing_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
    telemetry = setup_telemetry(models={"m"}, backends={"b"})
    assert telemetry.instrumentation.tracer is None
    telemetry.shutdown()


# -- over OTLP ----------------------------------------------------------------------------


@pytest.fixture
def collector() -> Iterator[tuple[Collector, int]]:
    with collecting(
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server,
        trace_service_pb2.ExportTraceServiceResponse(),
    ) as served:
        yield served


async def test_spans_are_pushed_over_otlp(
    collector: tuple[Collector, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    servicer, port = collector
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    telemetry = setup_telemetry(
        models={"m1", "m2"}, backends={"b1", "b2"}, providers={"b1": "openai"}
    )
    table = RoutingTable(CONFIG, ResolvedSecrets(CONFIG, Path()))
    conv = Conversation(
        ExternalProcessorServicer(build_router(table, instrument=telemetry.instrumentation.wrap))
    )
    await conv.send(request_headers(extra=[("traceparent", TRACEPARENT)]))
    await conv.send(request_body(chat()))
    await conv.send(response_headers())
    usage = {"prompt_tokens": 2, "completion_tokens": 4, "total_tokens": 6}
    await conv.send(response_body(json.dumps({"choices": [], "usage": usage}).encode()))
    await conv.close()
    telemetry.shutdown()  # flushes the batch
    spans = [
        (resource.resource, span)
        for request in servicer.requests
        for resource in request.resource_spans
        for scope in resource.scope_spans
        for span in scope.spans
    ]
    ((resource, span),) = spans
    assert span.name == "chat m1"
    assert span.trace_id.hex() == TRACE_ID and span.parent_span_id.hex() == PARENT_ID
    attributes = {a.key: a.value for a in span.attributes}
    assert attributes["gen_ai.provider.name"].string_value == "openai"
    assert attributes["gen_ai.usage.output_tokens"].int_value == 4
    service = {a.key: a.value.string_value for a in resource.attributes}["service.name"]
    assert service == "aigateway"


async def test_the_attributes_still_in_development_need_the_opt_in() -> None:
    traced = Traced(latest_experimental=True)
    await stream_on_m1(traced, [])
    (span,) = traced.spans()
    attributes = dict(span.attributes or {})
    assert attributes["gen_ai.request.stream"] is True
    assert attributes["gen_ai.response.time_to_first_chunk"] == 0.5


@pytest.mark.parametrize("stream", [True, False])
async def test_request_stream_is_what_the_client_asked_even_when_refused(stream: bool) -> None:
    traced = Traced(latest_experimental=True)
    conv = Conversation(traced.servicer())
    await conv.send(request_headers())
    await conv.send(request_body(json.loads(chat(stream=stream)) | {"model": "m2"}))
    await conv.send(response_headers(429))  # the answer is an error, not a stream
    await conv.send(response_body(b'{"type":"error","error":{"type":"rate_limit_error"}}'))
    await conv.close()
    (span,) = traced.spans()
    attributes = dict(span.attributes or {})
    assert attributes["gen_ai.request.stream"] is stream
    assert "gen_ai.response.time_to_first_chunk" not in attributes


def test_the_opt_in_is_read_from_otel_semconv_stability_opt_in() -> None:
    opted = {"OTEL_SEMCONV_STABILITY_OPT_IN": "http, gen_ai_latest_experimental"}
    assert genai_latest_experimental(opted)
    assert not genai_latest_experimental({"OTEL_SEMCONV_STABILITY_OPT_IN": "http"})
    assert not genai_latest_experimental({})
