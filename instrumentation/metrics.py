"""The gateway's metric families (docs/metrics.md, "Families") and the
OpenTelemetry setup that exports them to Prometheus (and, on request, over OTLP).

Two sets of families, chosen by ``metrics.schema``: the gateway's own ``aigateway_*``
(:class:`GatewayMetrics`) and the OpenTelemetry GenAI semantic conventions' ``gen_ai.*``
(:class:`GenAIMetrics`); ``aigateway_model_cost_usd_total`` (:class:`CostTotals`) comes
with either whenever a model has a price. Every family takes the extra labels of
``metrics.labels_from_headers``. Counters and histograms are aggregated in process
(``aggregation.py`` says why) and exported through the SDK's readers.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from opentelemetry.metrics import CallbackOptions, Meter, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader
from opentelemetry.sdk.metrics.view import View
from prometheus_client import CollectorRegistry

from aigateway.instrumentation.aggregation import (
    CounterTotals,
    HistogramTotals,
    InProcessHistograms,
    ProducingPeriodicReader,
    ProducingReader,
)

log = logging.getLogger("aigateway.metrics")

METER_NAME = "aigateway"

REQUESTS = "aigateway_requests_total"
ATTEMPTS = "aigateway_backend_attempts"  # exported as aigateway_backend_attempts_total
TOKENS = "aigateway_model_tokens"  # the Prometheus exporter adds "_total" to counters
COST = "aigateway_model_cost_usd"  # exported as aigateway_model_cost_usd_total
FIRST_TOKEN_LATENCY = "aigateway_first_token_latency_seconds"
INTER_TOKEN_LATENCY = "aigateway_inter_token_latency_seconds"
TOTAL_LATENCY = "aigateway_total_latency_seconds"

FIRST_TOKEN_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60)
INTER_TOKEN_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 1, 2.5)
TOTAL_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300)

#: The ``aigateway_*`` Prometheus families with their HELP texts (a contract: dashboards
#: use them). The cost family exists only when a model has a price.
FAMILIES = {
    "aigateway_requests": "Total number of requests processed",
    "aigateway_model_tokens": "Total number of tokens processed by model and type",
    "aigateway_backend_attempts": "Attempts to send a request to a backend, by result",
    FIRST_TOKEN_LATENCY: "Time to receive first token in streaming responses",
    INTER_TOKEN_LATENCY: "Time between consecutive tokens in streaming responses",
    TOTAL_LATENCY: "Time spent processing request",
}
COST_HELP = "Estimated cost in US dollars of the tokens processed, from configured prices"

# -- the GenAI semantic conventions (docs/metrics.md, "GenAI semantic conventions") ---------------

GENAI_TOKEN_USAGE = "gen_ai.client.token.usage"
GENAI_DURATION = "gen_ai.server.request.duration"
GENAI_TIME_TO_FIRST_TOKEN = "gen_ai.server.time_to_first_token"
GENAI_TIME_PER_OUTPUT_TOKEN = "gen_ai.server.time_per_output_token"
#: The client's view of the backend (the gateway is its client); newer than the
#: conventions' last release: only with the opt-in (docs/metrics.md, "GenAI semantic conventions").
GENAI_TIME_TO_FIRST_CHUNK = "gen_ai.client.operation.time_to_first_chunk"
GENAI_TIME_PER_OUTPUT_CHUNK = "gen_ai.client.operation.time_per_output_chunk"

GENAI_DURATION_BUCKETS = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)  # fmt: skip
GENAI_TIME_TO_FIRST_TOKEN_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
)  # fmt: skip
GENAI_TIME_PER_OUTPUT_TOKEN_BUCKETS = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5,
)  # fmt: skip
GENAI_CHUNK_BUCKETS = GENAI_DURATION_BUCKETS
GENAI_TOKEN_BUCKETS = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
)  # fmt: skip

#: Names, units and descriptions as the conventions give them (the Prometheus exporter
#: turns them into gen_ai_client_token_usage, gen_ai_server_request_duration_seconds...).
GENAI_FAMILIES = {
    GENAI_TOKEN_USAGE: ("{token}", "Number of input and output tokens used."),
    GENAI_DURATION: (
        "s",
        "Generative AI server request duration such as time-to-last byte or last output token.",
    ),
    GENAI_TIME_TO_FIRST_TOKEN: ("s", "Time to generate first token for successful responses."),
    GENAI_TIME_PER_OUTPUT_TOKEN: (
        "s",
        "Time per output token generated after the first token for successful responses.",
    ),
    GENAI_TIME_TO_FIRST_CHUNK: (
        "s",
        "Time to receive the first chunk, measured from when the client issues the"
        " generation request to when the first chunk is received in the response stream.",
    ),
    GENAI_TIME_PER_OUTPUT_CHUNK: (
        "s",
        "Time per output chunk, recorded for each chunk received after the first one,"
        " measured as the time elapsed from the end of the previous chunk to the end of"
        " the current chunk.",
    ),
}

OPERATION = "gen_ai.operation.name"
PROVIDER = "gen_ai.provider.name"
REQUEST_MODEL = "gen_ai.request.model"
RESPONSE_MODEL = "gen_ai.response.model"
TOKEN_TYPE = "gen_ai.token.type"
ERROR_TYPE = "error.type"
#: The attributes every GenAI family has, in this order (response model when reported).
GENAI_LABELS = (OPERATION, PROVIDER, REQUEST_MODEL, RESPONSE_MODEL)

SCHEMAS = ("aigateway", "genai", "both")


@dataclass(slots=True, frozen=True)
class GatewayMetrics:
    """The ``aigateway_*`` families. ``extra_labels`` (from ``labels_from_headers``)
    follow the family's own labels in every series' label values."""

    requests: CounterTotals
    tokens: CounterTotals
    #: Every attempt of a request to a model with several backends.
    attempts: CounterTotals
    first_token_latency: HistogramTotals
    inter_token_latency: HistogramTotals
    total_latency: HistogramTotals

    @classmethod
    def create(
        cls,
        meter: Meter,
        histograms: InProcessHistograms,
        *,
        extra_labels: tuple[str, ...] = (),
        cardinality: int = 2000,
    ) -> GatewayMetrics:
        requests = CounterTotals(("backend", "model", "status", *extra_labels))
        tokens = CounterTotals(("backend", "model", "type", *extra_labels))
        meter.create_observable_counter(
            REQUESTS, callbacks=[requests.observe], description=FAMILIES["aigateway_requests"]
        )
        meter.create_observable_counter(
            TOKENS, callbacks=[tokens.observe], description=FAMILIES["aigateway_model_tokens"]
        )
        attempts = CounterTotals(("backend", "model", "result", *extra_labels))
        meter.create_observable_counter(
            ATTEMPTS, callbacks=[attempts.observe], description=FAMILIES[ATTEMPTS]
        )

        def histogram(name: str, labels: tuple[str, ...], bounds: Sequence[float]) -> Any:
            # No unit: with unit "s" the exporter would append "_seconds" to a name that has it.
            return histograms.add(
                HistogramTotals(
                    name,
                    labels=(*labels, *extra_labels),
                    bounds=bounds,
                    description=FAMILIES[name],
                    limit=cardinality,
                )
            )

        return cls(
            requests=requests,
            tokens=tokens,
            attempts=attempts,
            first_token_latency=histogram(
                FIRST_TOKEN_LATENCY, ("backend", "model"), FIRST_TOKEN_BUCKETS
            ),
            inter_token_latency=histogram(
                INTER_TOKEN_LATENCY, ("backend", "model"), INTER_TOKEN_BUCKETS
            ),
            total_latency=histogram(TOTAL_LATENCY, ("backend", "model", "status"), TOTAL_BUCKETS),
        )


@dataclass(slots=True, frozen=True)
class GenAIMetrics:
    """The GenAI semantic-convention families: label values start with
    :data:`GENAI_LABELS`' (operation, provider, request model, response model or
    ``None``), then the family's own (``gen_ai.token.type``; ``error.type`` or ``None``
    on the duration), then the extra labels."""

    token_usage: HistogramTotals
    duration: HistogramTotals
    time_to_first_token: HistogramTotals
    time_per_output_token: HistogramTotals
    #: The client chunk timings, with ``OTEL_SEMCONV_STABILITY_OPT_IN`` only (else ``None``).
    time_to_first_chunk: HistogramTotals | None = None
    time_per_output_chunk: HistogramTotals | None = None

    @classmethod
    def create(
        cls,
        histograms: InProcessHistograms,
        *,
        extra_labels: tuple[str, ...] = (),
        cardinality: int = 2000,
        latest_experimental: bool = False,
    ) -> GenAIMetrics:
        def histogram(name: str, own: tuple[str, ...], bounds: Sequence[float]) -> Any:
            unit, description = GENAI_FAMILIES[name]
            return histograms.add(
                HistogramTotals(
                    name,
                    labels=(*GENAI_LABELS, *own, *extra_labels),
                    bounds=bounds,
                    description=description,
                    unit=unit,
                    limit=cardinality,
                )
            )

        return cls(
            token_usage=histogram(GENAI_TOKEN_USAGE, (TOKEN_TYPE,), GENAI_TOKEN_BUCKETS),
            duration=histogram(GENAI_DURATION, (ERROR_TYPE,), GENAI_DURATION_BUCKETS),
            time_to_first_token=histogram(
                GENAI_TIME_TO_FIRST_TOKEN, (), GENAI_TIME_TO_FIRST_TOKEN_BUCKETS
            ),
            time_per_output_token=histogram(
                GENAI_TIME_PER_OUTPUT_TOKEN, (), GENAI_TIME_PER_OUTPUT_TOKEN_BUCKETS
            ),
            time_to_first_chunk=histogram(GENAI_TIME_TO_FIRST_CHUNK, (), GENAI_CHUNK_BUCKETS)
            if latest_experimental
            else None,
            time_per_output_chunk=histogram(GENAI_TIME_PER_OUTPUT_CHUNK, (), GENAI_CHUNK_BUCKETS)
            if latest_experimental
            else None,
        )


# -- costs --------------------------------------------------------------------------------


@dataclass(slots=True, frozen=True)
class Price:
    """A model's price in USD per million tokens (``models[].price``). Cached prompt
    tokens (cache reads) cost ``cached_input``, cache writes ``cache_write``; either
    missing costs ``input`` (docs/metrics.md, "Costs")."""

    input: float
    output: float
    cached_input: float | None = None
    cache_write: float | None = None


_MILLION = Decimal(1_000_000)


def _decimal(value: float) -> Decimal:
    # The shortest repr of a float is the decimal the config file wrote (0.15, not
    # 0.1499999...), so sums of tokens times prices are exact until the final rounding.
    return Decimal(repr(value))


class CostTotals:
    """Tokens by rate (uncached prompt, cached prompt, cache writes, completion) per
    series, priced when metrics are collected: each exported value is the exact decimal
    sum rounded once to a float, so it never drifts however many requests add to it."""

    __slots__ = ("_lock", "_rates", "_tokens", "labels")

    def __init__(self, prices: Mapping[str, Price], labels: tuple[str, ...]) -> None:
        self.labels = labels
        self._rates = {
            model: tuple(
                _decimal(rate)
                for rate in (
                    p.input,
                    p.input if p.cached_input is None else p.cached_input,
                    p.input if p.cache_write is None else p.cache_write,
                    p.output,
                )
            )
            for model, p in prices.items()
        }
        self._lock = threading.Lock()
        self._tokens: dict[tuple[str, ...], list[int]] = {}

    def priced(self, model: str) -> bool:
        return model in self._rates

    def add(
        self,
        values: tuple[str, ...],
        *,
        prompt: int,
        cached: int,
        cache_write: int,
        completion: int,
    ) -> None:
        """Add one request's tokens to the series ``values`` (model second, as labelled).
        Prompt tokens include cache reads and writes, as the processors report them."""
        uncached = max(prompt - cached - cache_write, 0)
        with self._lock:
            tokens = self._tokens.get(values)
            if tokens is None:
                tokens = self._tokens[values] = [0, 0, 0, 0]
            tokens[0] += uncached
            tokens[1] += cached
            tokens[2] += cache_write
            tokens[3] += completion

    def observe(self, options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            items = [(values, tuple(tokens)) for values, tokens in self._tokens.items()]
        out = []
        for values, tokens in items:
            rates = self._rates[values[1]]
            cost = sum((Decimal(n) * r for n, r in zip(tokens, rates, strict=True)), Decimal())
            out.append(
                Observation(float(cost / _MILLION), dict(zip(self.labels, values, strict=True)))
            )
        return out

    @classmethod
    def create(
        cls, meter: Meter, prices: Mapping[str, Price], *, extra_labels: tuple[str, ...] = ()
    ) -> CostTotals | None:
        """The cost counter, or ``None`` when no model has a price (no family then)."""
        if not prices:
            return None
        costs = cls(prices, ("backend", "model", *extra_labels))
        meter.create_observable_counter(COST, callbacks=[costs.observe], description=COST_HELP)
        return costs


# -- limits -------------------------------------------------------------------------------

RATE_LIMITED = "aigateway_rate_limited"  # exported as aigateway_rate_limited_total
RATE_LIMITED_HELP = "Requests refused by a limits rule"
LIMITS_STORE_ERRORS = "aigateway_rate_limit_store_errors"
LIMITS_STORE_ERRORS_HELP = (
    "Requests admitted or refused without their limits checked, the budget store being unreachable"
)


@dataclass(slots=True, frozen=True)
class LimitMetrics:
    """The families of ``limits:``: refusals by rule (with the model's labels and the
    extra labels) and decisions made while the store was unreachable (by decision)."""

    rate_limited: CounterTotals
    store_errors: CounterTotals

    @classmethod
    def create(cls, meter: Meter, *, extra_labels: tuple[str, ...] = ()) -> LimitMetrics:
        rate_limited = CounterTotals(("backend", "model", "rule", *extra_labels))
        store_errors = CounterTotals(("decision",))
        meter.create_observable_counter(
            RATE_LIMITED, callbacks=[rate_limited.observe], description=RATE_LIMITED_HELP
        )
        meter.create_observable_counter(
            LIMITS_STORE_ERRORS,
            callbacks=[store_errors.observe],
            description=LIMITS_STORE_ERRORS_HELP,
        )
        return cls(rate_limited, store_errors)


# -- the pipeline -------------------------------------------------------------------------

#: How many distinct ``gen_ai.response.model`` values each configured model may report
#: before further ones are recorded as ``_OTHER`` (backends are not clients, but a
#: label value must still be bounded).
RESPONSE_MODELS_PER_MODEL = 4


def cardinality_limit(models: int, backends: int, header_values: Sequence[int] = ()) -> int:
    """Series per family the config allows, with room to spare; past it new series fold
    into one overflow series. Per ``aigateway_*`` family: (backend or ``unknown``) x
    (model or ``unknown``) x at most 6 values of its own label, times each header label's
    values plus ``other`` and ``none``. GenAI families: (model or ``unknown``) x up to 4
    operations x (response models + ``_OTHER`` + none) x 16 error or token types, times
    the header labels. The larger of the two serves every family."""
    headers = math.prod(n + 2 for n in header_values)
    gateway = (models + 1) * (backends + 1) * 6
    genai = (models + 1) * 4 * (RESPONSE_MODELS_PER_MODEL + 2) * 16
    return max(100, max(gateway, genai) * headers)


def create_meter_provider(
    readers: Sequence[MetricReader], histograms: InProcessHistograms, *, cardinality: int
) -> MeterProvider:
    views = [View(instrument_name="aigateway_*", aggregation_cardinality_limit=cardinality)]
    provider = MeterProvider(metric_readers=list(readers), views=views, shutdown_on_exit=False)
    histograms.bind(provider.get_meter(METER_NAME))
    return provider


def prometheus_reader(registry: CollectorRegistry, histograms: InProcessHistograms) -> MetricReader:
    from opentelemetry.exporter.prometheus import PrometheusMetricReader

    class Reader(ProducingReader, PrometheusMetricReader):
        """The Prometheus exporter, with the in-process histograms."""

    reader: MetricReader = Reader(
        histograms, disable_target_info=True, scope_info_enabled=False, registry=registry
    )
    return reader


class MetricsSetupError(Exception):
    """Telemetry cannot be exported as asked (a missing extra, a bad setting)."""


def otlp_import_error(variable: str) -> MetricsSetupError:
    """What to tell the operator when an OTLP exporter cannot be imported."""
    return MetricsSetupError(f"{variable}=otlp needs the otlp extra: pip install 'aigateway[otlp]'")


def exporters_named(variable: str) -> set[str]:
    """The exporters an ``OTEL_*_EXPORTER`` variable names (comma-separated)."""
    return {e.strip() for e in os.environ.get(variable, "").split(",")}


def otlp_readers_from_env(histograms: InProcessHistograms) -> list[MetricReader]:
    """An OTLP push reader when ``OTEL_METRICS_EXPORTER`` names ``otlp`` (the standard
    ``OTEL_EXPORTER_OTLP_*`` variables configure it). Its histograms are cumulative
    whatever the temporality preference says; counters follow it."""
    if "otlp" not in exporters_named("OTEL_METRICS_EXPORTER"):
        return []
    try:
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    except ImportError:
        raise otlp_import_error("OTEL_METRICS_EXPORTER") from None
    return [ProducingPeriodicReader(histograms, OTLPMetricExporter())]


def start_metrics_http_server(host: str, port: int, registry: CollectorRegistry) -> Any:
    """Serve ``/metrics`` from ``registry`` on a background thread; returns the server
    (``.server_port``, ``.shutdown()``). Raises ``OSError`` if the port is taken."""
    from prometheus_client import start_http_server

    server, _thread = start_http_server(port, addr=host, registry=registry)
    return server
