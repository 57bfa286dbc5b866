"""What ``metrics.schema``, ``labels_from_headers`` and prices add: the GenAI
semantic-convention families from the same requests and under the same accounting rules
as the ``aigateway_*`` ones, header labels on every family, exact costs, and the
per-request timings published for Envoy's access log. Exact data points, read back from
an in-memory reader."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

import pytest
from prometheus_client import generate_latest

from aigateway.extproc.framework.processor import (
    Headers,
    Processor,
    Result,
)
from aigateway.extproc.framework.router import Router
from aigateway.extproc.framework.server import ExternalProcessorServicer
from aigateway.extproc.gateway.app import build_router
from aigateway.extproc.gateway.backends import RoutingTable
from aigateway.extproc.gateway.config import ResolvedSecrets
from aigateway.instrumentation.aggregation import (
    InProcessHistograms,
    ProducingInMemoryMetricReader,
)
from aigateway.instrumentation.facts import METADATA_NAMESPACE, UnrecordedRequest
from aigateway.instrumentation.instrumented import HeaderLabel, Instrumentation
from aigateway.instrumentation.metrics import Price, create_meter_provider
from aigateway.instrumentation.telemetry import create_instrumentation, setup_telemetry
from tests.extproc.framework.fake_envoy import (
    Conversation,
    metadata,
    request_body,
    request_headers,
    response_body,
    response_headers,
)
from tests.instrumentation.test_instrumented_processor import (
    CONFIG,
    DONE,
    FakeClock,
    chat,
    sse,
)

TENANT = HeaderLabel("x-tenant-id", "tenant", frozenset({"acme", "globex"}))
PROVIDERS = {"b1": "openai", "b2": "anthropic"}

DURATION = "gen_ai.server.request.duration"
TOKEN_USAGE = "gen_ai.client.token.usage"
TTFT = "gen_ai.server.time_to_first_token"
TPOT = "gen_ai.server.time_per_output_token"
GENAI = {DURATION, TOKEN_USAGE, TTFT, TPOT}
TTFC = "gen_ai.client.operation.time_to_first_chunk"
TPOC = "gen_ai.client.operation.time_per_output_chunk"


class Driven(Protocol):
    """What the request helpers below drive: a clock and a servicer."""

    clock: FakeClock

    def servicer(self) -> ExternalProcessorServicer: ...


class Recorded:
    """An instrumentation with the given options, its points read back exactly."""

    def __init__(
        self,
        schema: str = "both",
        header_labels: Iterable[HeaderLabel] = (TENANT,),
        prices: dict[str, Price] | None = None,
        latest_experimental: bool = False,
    ) -> None:
        histograms = InProcessHistograms()
        self.reader = ProducingInMemoryMetricReader(histograms)
        provider = create_meter_provider([self.reader], histograms, cardinality=1000)
        self.clock = FakeClock()
        self.instrumentation: Instrumentation = create_instrumentation(
            provider.get_meter("test"),
            histograms,
            models={"m1", "m2"},
            backends={"b1", "b2"},
            schema=schema,
            header_labels=tuple(header_labels),
            prices=prices,
            providers=PROVIDERS,
            clock=self.clock,
            latest_experimental=latest_experimental,
        )

    def metrics(self) -> dict[str, list[Any]]:
        data = self.reader.get_metrics_data()
        if data is None:
            return {}
        return {
            m.name: list(m.data.data_points)
            for rm in data.resource_metrics
            for sm in rm.scope_metrics
            for m in sm.metrics
        }

    def points(self, name: str) -> dict[tuple[tuple[str, Any], ...], Any]:
        """Attributes (sorted) -> the point: value for sums, (count, sum) for histograms."""
        return {
            tuple(sorted(p.attributes.items())): (
                (p.count, pytest.approx(p.sum)) if hasattr(p, "bucket_counts") else p.value
            )
            for p in self.metrics().get(name, [])
        }

    def servicer(self, factory: Any = None) -> ExternalProcessorServicer:
        wrap = self.instrumentation.wrap
        if factory is None:
            table = RoutingTable(CONFIG, ResolvedSecrets(CONFIG, Path()))
            return ExternalProcessorServicer(build_router(table, instrument=wrap))
        return ExternalProcessorServicer(Router({"/v1/chat/completions": factory}, wrap=wrap))


def attrs(**kv: Any) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted((k.replace("__", "."), v) for k, v in kv.items()))


def genai(model: str, provider: str, tenant: str, **more: Any) -> tuple[tuple[str, Any], ...]:
    return attrs(
        gen_ai__operation__name="chat" if model != "unknown" else "unknown",
        gen_ai__provider__name=provider,
        gen_ai__request__model=model,
        tenant=tenant,
        **more,
    )


USAGE = {"prompt_tokens": 2, "completion_tokens": 4, "total_tokens": 6}
ANSWERED_BY = "gpt-4o-mini-2024-07-18"


def tenant(value: str) -> list[tuple[str, str]]:
    return [("x-tenant-id", value)]


async def stream_on_m1(rec: Driven, headers: list[tuple[str, str]]) -> list[Any]:
    """A streamed success: first chunk 0.5 s after request headers, the last one 0.6 s
    later with 4 completion tokens (0.2 s each), recorded at [DONE] 1.1 s in."""
    conv = Conversation(rec.servicer())
    answers = [await conv.send(request_headers(extra=headers))]
    answers.append(await conv.send(request_body(chat(stream=True))))
    rec.clock.now += 0.2
    answers.append(await conv.send(response_headers(content_type="text/event-stream")))
    rec.clock.now += 0.3
    first = {"model": ANSWERED_BY, "choices": [{"delta": {"content": "x"}}]}
    answers.append(await conv.send(response_body(sse(first), end_of_stream=False)))
    rec.clock.now += 0.6
    last = {"model": ANSWERED_BY, "choices": [{"delta": {}, "finish_reason": "stop"}]}
    tail = sse(last) + sse({"choices": [], "usage": USAGE}) + sse(b"[DONE]")
    answers.append(await conv.send(response_body(tail)))
    await conv.close()
    return answers


async def upstream_500_on_m2(rec: Driven, headers: list[tuple[str, str]]) -> None:
    conv = Conversation(rec.servicer())
    await conv.send(request_headers(extra=headers))
    await conv.send(request_body(json.loads(chat()) | {"model": "m2"}))
    rec.clock.now += 0.25
    await conv.send(response_headers(500))
    await conv.send(response_body(b'{"type":"error","error":{"type":"api_error"}}'))
    await conv.close()


async def bad_json(rec: Driven, headers: list[tuple[str, str]]) -> Any:
    conv = Conversation(rec.servicer())
    await conv.send(request_headers(extra=headers))
    answer = await conv.send(request_body(b"{bad"))
    await conv.close()
    return answer


async def test_both_records_both_sets_from_the_same_requests() -> None:
    rec = Recorded("both")
    await stream_on_m1(rec, tenant("acme"))
    await upstream_500_on_m2(rec, tenant("initech"))  # not listed: other
    await bad_json(rec, [])  # no header: none

    assert rec.points("aigateway_requests_total") == {
        attrs(backend="b1", model="m1", status="success", tenant="acme"): 1,
        attrs(backend="b2", model="m2", status="error", tenant="other"): 1,
        attrs(backend="unknown", model="unknown", status="error", tenant="none"): 1,
    }
    assert rec.points("aigateway_total_latency_seconds") == {
        attrs(backend="b1", model="m1", status="success", tenant="acme"): (1, 1.1),
        attrs(backend="b2", model="m2", status="error", tenant="other"): (1, 0.25),
        attrs(backend="unknown", model="unknown", status="error", tenant="none"): (1, 0),
    }
    # The same requests in the GenAI conventions: error.type only on failures, the
    # response model only when the backend reported one.
    m1 = genai("m1", "openai", "acme", gen_ai__response__model=ANSWERED_BY)
    assert rec.points(DURATION) == {
        m1: (1, 1.1),
        genai("m2", "anthropic", "other", error__type="upstream_http_500"): (1, 0.25),
        genai("unknown", "unknown", "none", error__type="invalid_request_error"): (1, 0),
    }
    assert rec.points(TOKEN_USAGE) == {
        tuple(sorted((*m1, ("gen_ai.token.type", "input")))): (1, 2),
        tuple(sorted((*m1, ("gen_ai.token.type", "output")))): (1, 4),
    }
    assert rec.points(TTFT) == {m1: (1, 0.5)}
    assert rec.points(TPOT) == {m1: (1, 0.2)}
    # ... and the same latencies as the gateway's own families.
    assert rec.points("aigateway_first_token_latency_seconds") == {
        attrs(backend="b1", model="m1", tenant="acme"): (1, 0.5)
    }
    assert rec.points("aigateway_inter_token_latency_seconds") == {
        attrs(backend="b1", model="m1", tenant="acme"): (1, 0.2)
    }


async def test_genai_alone_exports_no_aigateway_family_and_aigateway_alone_no_genai() -> None:
    rec = Recorded("genai")
    await stream_on_m1(rec, tenant("acme"))
    await upstream_500_on_m2(rec, [])
    assert set(rec.metrics()) == GENAI
    rec = Recorded("aigateway")
    await stream_on_m1(rec, tenant("acme"))
    assert set(rec.metrics()) == {
        "aigateway_requests_total",
        "aigateway_model_tokens",
        "aigateway_first_token_latency_seconds",
        "aigateway_inter_token_latency_seconds",
        "aigateway_total_latency_seconds",
    }


async def test_the_client_chunk_timings_come_with_the_opt_in() -> None:
    rec = Recorded("genai", latest_experimental=True)
    conv = Conversation(rec.servicer())
    await conv.send(request_headers(extra=tenant("acme")))
    await conv.send(request_body(chat(stream=True)))
    await conv.send(response_headers(content_type="text/event-stream"))
    # Chunks 0.5 s, 0.55 s, 1.05 s and 1.35 s after request headers: one time to first
    # chunk, then one observation per further chunk, the gap since the one before.
    rec.clock.now += 0.5
    first = {"model": ANSWERED_BY, "choices": [{"delta": {"content": "x"}}]}
    for gap in (0.05, 0.5):
        await conv.send(response_body(sse(first), end_of_stream=False))
        rec.clock.now += gap
    await conv.send(response_body(sse(first), end_of_stream=False))
    rec.clock.now += 0.3
    last = {"model": ANSWERED_BY, "choices": [{"delta": {}, "finish_reason": "stop"}]}
    await conv.send(response_body(sse(last) + sse({"choices": [], "usage": USAGE}) + DONE))
    await conv.close()
    m1 = genai("m1", "openai", "acme", gen_ai__response__model=ANSWERED_BY)
    assert set(rec.metrics()) == GENAI | {TTFC, TPOC}
    assert rec.points(TTFC) == {m1: (1, 0.5)}
    assert rec.points(TPOC) == {m1: (3, 0.85)}
    (point,) = rec.metrics()[TPOC]
    assert list(point.explicit_bounds) == [0.01 * 2**i for i in range(14)]
    # 0.05 in (0.04, 0.08], 0.3 in (0.16, 0.32], 0.5 in (0.32, 0.64]
    assert list(point.bucket_counts) == [0, 0, 0, 1, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0]
    assert (point.min, point.max) == (pytest.approx(0.05), pytest.approx(0.5))
    # A non-streamed request has neither.
    await upstream_500_on_m2(rec, [])
    assert rec.points(TTFC) == {m1: (1, 0.5)}
    assert rec.points(TPOC) == {m1: (3, 0.85)}


async def test_a_long_stream_has_one_chunk_gap_per_chunk_after_the_first() -> None:
    # More chunks than are kept unfolded (PendingObservations.FOLD_AT): none is lost.
    rec = Recorded("genai", header_labels=(), latest_experimental=True)
    conv = Conversation(rec.servicer())
    await conv.send(request_headers())
    await conv.send(request_body(chat(stream=True)))
    await conv.send(response_headers(content_type="text/event-stream"))
    word = {"model": ANSWERED_BY, "choices": [{"delta": {"content": "x"}}]}
    for _ in range(600):
        rec.clock.now += 0.01
        await conv.send(response_body(sse(word), end_of_stream=False))
    await conv.send(response_body(sse({"choices": [], "usage": USAGE}) + DONE))
    await conv.close()
    ((count, total),) = rec.points(TPOC).values()
    assert (count, total) == (600, pytest.approx(5.99))


async def test_header_labels_go_on_every_family() -> None:
    rec = Recorded("both", prices={"m1": Price(1, 2)})
    await stream_on_m1(rec, tenant("globex"))
    found = rec.metrics()
    assert set(found) == GENAI | {
        "aigateway_requests_total",
        "aigateway_model_tokens",
        "aigateway_model_cost_usd",
        "aigateway_first_token_latency_seconds",
        "aigateway_inter_token_latency_seconds",
        "aigateway_total_latency_seconds",
    }
    for name, points in found.items():
        assert {p.attributes["tenant"] for p in points} == {"globex"}, name


async def test_header_values_are_compared_exactly_and_the_first_one_counts() -> None:
    rec = Recorded("aigateway")
    for headers in (tenant("Acme"), tenant("acme "), [*tenant("acme"), *tenant("globex")]):
        await bad_json(rec, headers)
    assert rec.points("aigateway_requests_total") == {
        attrs(backend="unknown", model="unknown", status="error", tenant="other"): 2,
        attrs(backend="unknown", model="unknown", status="error", tenant="acme"): 1,
    }


def reporting(fields: dict[str, Any]) -> type[Processor]:
    """A processor that routes to m1 on b1 and reports ``fields`` with its answer."""

    class Reports(Processor):
        async def on_request_body(self, body: bytes, end_of_stream: bool) -> Result:
            return Result(
                dynamic_metadata={
                    METADATA_NAMESPACE: {"backend": "b1", "model": "m1", "operation": "chat"}
                }
            )

        async def on_response_body(self, body: bytes, end_of_stream: bool) -> Result:
            return Result(dynamic_metadata={METADATA_NAMESPACE: fields})

    return Reports


async def run(rec: Recorded, factory: Any, status: int = 200) -> Any:
    conv = Conversation(rec.servicer(factory))
    await conv.send(request_headers())
    await conv.send(request_body(b"{}"))
    await conv.send(response_headers(status))
    answer = await conv.send(response_body(b"{}"))
    await conv.close()
    return answer


async def test_a_models_response_models_are_bounded() -> None:
    rec = Recorded("genai", header_labels=())
    for i in range(6):
        await run(rec, reporting({"response_model": f"v{i}"}))
    seen = [dict(k)["gen_ai.response.model"] for k in rec.points(DURATION)]
    assert sorted(seen) == ["_OTHER", "v0", "v1", "v2", "v3"]
    assert sum(count for count, _ in rec.points(DURATION).values()) == 6


async def test_an_operation_outside_the_conventions_is_other() -> None:
    rec = Recorded("genai", header_labels=())
    await run(rec, reporting({"operation": "summarize"}))
    ((key, _),) = rec.points(DURATION).items()
    assert dict(key)["gen_ai.operation.name"] == "_OTHER"


# -- costs ------------------------------------------------------------------------------

#: USD per million tokens; the rest of the prompt at input, cache reads at cached_input,
#: cache writes at cache_write, the completion at output (docs/metrics.md, "Costs").
PRICE = Price(input=2, output=8, cached_input=0.5, cache_write=2.5)


def usage(prompt: int, completion: int, cached: int = 0, write: int = 0) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "input_tokens": prompt,
        "output_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if cached:
        fields["cached_input_tokens"] = cached
    if write:
        fields["cache_write_input_tokens"] = write
    return fields


def cost(rec: Recorded) -> dict[tuple[tuple[str, Any], ...], Any]:
    return rec.points("aigateway_model_cost_usd")


async def test_cost_prices_each_kind_of_token_at_its_rate() -> None:
    rec = Recorded("aigateway", prices={"m1": PRICE})
    # 1000 prompt tokens: 200 read from the cache, 100 written to it, 700 at the input
    # rate; 50 completion tokens: (700*2 + 200*0.5 + 100*2.5 + 50*8) / 1e6 USD.
    await run(rec, reporting(usage(1000, 50, cached=200, write=100)))
    assert cost(rec) == {attrs(backend="b1", model="m1", tenant="none"): 0.00215}
    # Tokens the backend reported cost whatever the status: it bills them.
    await run(rec, reporting(usage(1000, 0)), status=500)
    assert cost(rec) == {attrs(backend="b1", model="m1", tenant="none"): 0.00415}


async def test_missing_cache_rates_cost_the_input_rate() -> None:
    rec = Recorded("aigateway", header_labels=(), prices={"m1": Price(input=2, output=8)})
    await run(rec, reporting(usage(1000, 50, cached=200, write=100)))
    assert cost(rec) == {attrs(backend="b1", model="m1"): (1000 * 2 + 50 * 8) / 1e6}


async def test_cost_sums_are_exact_however_many_requests_add_up() -> None:
    # Adding 3 tokens at 0.1 USD per million ten times in floats gives
    # 3.0000000000000005e-06; the counter keeps tokens and prices them once.
    rec = Recorded("aigateway", header_labels=(), prices={"m1": Price(input=0.1, output=0)})
    for _ in range(10):
        await run(rec, reporting(usage(3, 0)))
    assert cost(rec) == {attrs(backend="b1", model="m1"): 3e-06}


async def test_no_price_no_cost_family_and_unpriced_models_no_series() -> None:
    rec = Recorded("both", header_labels=())
    assert rec.instrumentation.costs is None
    await run(rec, reporting(usage(10, 10)))
    assert "aigateway_model_cost_usd" not in rec.metrics()
    rec = Recorded("both", header_labels=(), prices={"m2": PRICE})
    await run(rec, reporting(usage(10, 10)))  # m1 has no price
    assert "aigateway_model_cost_usd" not in rec.metrics()


# -- per-request timings in the dynamic metadata -----------------------------------------


async def test_the_answer_that_completes_a_stream_carries_its_timings() -> None:
    rec = Recorded("aigateway", header_labels=())
    answers = await stream_on_m1(rec, [])
    *before, last = answers
    timings = {k: v for k, v in metadata(last).items() if k.endswith("_ms")}
    assert timings == {
        "first_token_latency_ms": 500.0,
        "inter_token_latency_ms": 200.0,
        "total_latency_ms": 1100.0,
    }
    assert metadata(last)["output_tokens"] == 4  # the processor's own facts are kept
    for answer in before:
        assert not any(k.endswith("_ms") for k in metadata(answer))


async def test_a_non_streamed_answer_and_an_immediate_response_carry_the_total() -> None:
    rec = Recorded("aigateway", header_labels=())
    conv = Conversation(rec.servicer())
    await conv.send(request_headers())
    await conv.send(request_body(chat()))
    await conv.send(response_headers())
    rec.clock.now += 1.5
    last = await conv.send(response_body({"choices": [], "usage": USAGE}))
    await conv.close()
    assert {k: v for k, v in metadata(last).items() if k.endswith("_ms")} == {
        "total_latency_ms": 1500.0
    }
    rec.clock.now += 1
    answer = await bad_json(rec, [])
    assert answer.HasField("immediate_response")
    assert {k: v for k, v in metadata(answer).items() if k.endswith("_ms")} == {
        "total_latency_ms": 0.0
    }


async def test_a_request_that_never_completed_publishes_no_timings() -> None:
    rec = Recorded("aigateway", header_labels=())
    conv = Conversation(rec.servicer())
    answers = [await conv.send(request_headers()), await conv.send(request_body(chat(stream=True)))]
    answers.append(await conv.send(response_headers(content_type="text/event-stream")))
    chunk = sse({"choices": [{"delta": {"content": "x"}}]})
    answers.append(await conv.send(response_body(chunk, end_of_stream=False)))
    await conv.cancel()  # the client left: recorded at the end of the stream
    assert rec.points("aigateway_requests_total") == {
        attrs(backend="b1", model="m1", status="error"): 1
    }
    for answer in answers:
        assert not any(k.endswith("_ms") for k in metadata(answer))


async def test_uncounted_requests_publish_no_timings() -> None:
    rec = Recorded("aigateway", header_labels=())
    conv = Conversation(rec.servicer())
    answer = await conv.send(request_headers("/v1/models", method="GET", end_of_stream=True))
    await conv.close()
    assert not any(k.endswith("_ms") for k in metadata(answer))
    assert rec.metrics() == {}


def test_header_values_without_headers_are_none() -> None:
    inst = Recorded().instrumentation
    assert inst.header_values(None) == ("none",)
    assert inst.header_values(Headers([("x-tenant-id", "acme")])) == ("acme",)


def test_the_cardinality_limit_grows_with_the_header_labels() -> None:
    # 1 model, 1 backend: without header labels the limit is 768 series per family; two
    # labels of 20 values allow 22 x 22 combinations of each of the 4 others.
    labels = [
        HeaderLabel(f"x-{name}", name, frozenset(f"{name}{i}" for i in range(20)))
        for name in ("tenant", "team")
    ]
    telemetry = setup_telemetry(models={"m"}, backends={"b"}, header_labels=labels)
    metrics = telemetry.instrumentation.metrics
    assert metrics is not None
    tenants, teams = ([*label.values, "other", "none"] for label in labels)
    for backend, model in (("b", "m"), ("unknown", "unknown")):
        for status in ("success", "error"):
            for tenant in tenants:
                for team in teams:
                    values = (backend, model, status, tenant, team)
                    metrics.requests.add(1, values)
                    metrics.total_latency.record(0.1, values)
    text = generate_latest(telemetry.registry).decode()
    telemetry.shutdown()
    assert "overflow" not in text
    assert text.count("aigateway_requests_total{") == 2 * 2 * 22 * 22 > 768
    assert text.count("aigateway_total_latency_seconds_count{") == 2 * 2 * 22 * 22


def test_a_request_no_processor_recorded_is_one_error_on_every_family() -> None:
    """What Envoy answered without a processor (docs/architecture.md, "Requests no
    processor recorded"): the facts its processor had published before it was lost, or
    none; labels bounded by the config as every request's."""
    rec = Recorded("both")
    rec.instrumentation.record_unrecorded(
        UnrecordedRequest(
            facts={"backend": "b1", "model": "m1", "operation": "chat", "input_tokens": 3.0},
            headers=(("x-tenant-id", "acme"),),
            duration=0.5,
            cause="processor_lost",
        )
    )
    rec.instrumentation.record_unrecorded(
        UnrecordedRequest(
            facts={"backend": "spoofed", "model": "also-spoofed"},
            headers=(),
            duration=0.25,
            cause="processor_unavailable",
        )
    )
    rec.instrumentation.record_unrecorded(
        UnrecordedRequest(facts={}, headers=(), duration=0.0, cause="processor_unavailable")
    )
    assert rec.points("aigateway_requests_total") == {
        attrs(backend="b1", model="m1", status="error", tenant="acme"): 1,
        attrs(backend="unknown", model="unknown", status="error", tenant="none"): 2,
    }
    assert rec.points("aigateway_total_latency_seconds") == {
        attrs(backend="b1", model="m1", status="error", tenant="acme"): (1, 0.5),
        attrs(backend="unknown", model="unknown", status="error", tenant="none"): (2, 0.25),
    }
    assert rec.points("aigateway_model_tokens") == {
        attrs(backend="b1", model="m1", tenant="acme", type="prompt"): 3
    }
    assert rec.points(DURATION) == {
        genai("m1", "openai", "acme", error__type="processor_lost"): (1, 0.5),
        genai("unknown", "unknown", "none", error__type="processor_unavailable"): (2, 0.25),
    }
