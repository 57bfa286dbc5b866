"""The gateway's metric instruments (README, "Metrics") and the OpenTelemetry setup that
exports them to Prometheus (and, on request, over OTLP)."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry.metrics import CallbackOptions, Histogram, Meter, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader
from opentelemetry.sdk.metrics.view import View
from prometheus_client import CollectorRegistry

log = logging.getLogger("aigateway.metrics")

METER_NAME = "aigateway"

REQUESTS = "aigateway_requests_total"
TOKENS = "aigateway_model_tokens"  # the Prometheus exporter adds "_total" to counters
FIRST_TOKEN_LATENCY = "aigateway_first_token_latency_seconds"
INTER_TOKEN_LATENCY = "aigateway_inter_token_latency_seconds"
TOTAL_LATENCY = "aigateway_total_latency_seconds"

FIRST_TOKEN_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60)
INTER_TOKEN_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 1, 2.5)
TOTAL_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300)

#: The Prometheus families exported, with their HELP texts (a contract: dashboards use them).
FAMILIES = {
    "aigateway_requests": "Total number of requests processed",
    "aigateway_model_tokens": "Total number of tokens processed by model and type",
    FIRST_TOKEN_LATENCY: "Time to receive first token in streaming responses",
    INTER_TOKEN_LATENCY: "Time between consecutive tokens in streaming responses",
    TOTAL_LATENCY: "Time spent processing request",
}


class CounterTotals:
    """Running totals of one counter by label values, reported to OpenTelemetry by an
    observable counter when metrics are collected.

    Why not a plain ``Counter``: each SDK measurement costs ~16-19 us (it copies, sorts
    and hashes the attributes), and a request adds to up to six counter series; here
    each is one dict update under a lock. The exported data is the same cumulative sum
    per series. The lock is there because collection runs on the exporter's thread.
    """

    __slots__ = ("_lock", "_totals", "labels")

    def __init__(self, labels: tuple[str, ...]) -> None:
        self.labels = labels
        self._lock = threading.Lock()
        self._totals: dict[tuple[str, ...], int] = {}

    def add(self, amount: int, values: tuple[str, ...]) -> None:
        """Add ``amount`` to the series with these label values (in ``labels`` order)."""
        with self._lock:
            self._totals[values] = self._totals.get(values, 0) + amount

    def observe(self, options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            items = list(self._totals.items())
        labels = self.labels
        return [
            Observation(total, dict(zip(labels, values, strict=True))) for values, total in items
        ]


@dataclass(slots=True, frozen=True)
class GatewayMetrics:
    """The five instruments, created once from an injected meter."""

    requests: CounterTotals
    tokens: CounterTotals
    first_token_latency: Histogram
    inter_token_latency: Histogram
    total_latency: Histogram

    @classmethod
    def create(cls, meter: Meter) -> GatewayMetrics:
        requests = CounterTotals(("backend", "model", "status"))
        tokens = CounterTotals(("backend", "model", "type"))
        meter.create_observable_counter(
            REQUESTS, callbacks=[requests.observe], description=FAMILIES["aigateway_requests"]
        )
        meter.create_observable_counter(
            TOKENS, callbacks=[tokens.observe], description=FAMILIES["aigateway_model_tokens"]
        )
        return cls(
            requests=requests,
            tokens=tokens,
            first_token_latency=_histogram(meter, FIRST_TOKEN_LATENCY, FIRST_TOKEN_BUCKETS),
            inter_token_latency=_histogram(meter, INTER_TOKEN_LATENCY, INTER_TOKEN_BUCKETS),
            total_latency=_histogram(meter, TOTAL_LATENCY, TOTAL_BUCKETS),
        )


def _histogram(meter: Meter, name: str, buckets: Sequence[float]) -> Histogram:
    # No unit: with unit "s" the exporter would append "_seconds" to a name that has it.
    return meter.create_histogram(
        name, description=FAMILIES[name], explicit_bucket_boundaries_advisory=buckets
    )


def cardinality_limit(models: int, backends: int) -> int:
    """Series per instrument the config allows (labels are bounded by the config), with
    room to spare; the SDK folds anything past it into an overflow series."""
    label_pairs = (models + 1) * (backends + 1)
    return max(100, label_pairs * 6)


def create_meter_provider(readers: Sequence[MetricReader], *, cardinality: int) -> MeterProvider:
    views = [View(instrument_name="aigateway_*", aggregation_cardinality_limit=cardinality)]
    return MeterProvider(metric_readers=list(readers), views=views, shutdown_on_exit=False)


def prometheus_reader(registry: CollectorRegistry) -> MetricReader:
    from opentelemetry.exporter.prometheus import PrometheusMetricReader

    return PrometheusMetricReader(
        disable_target_info=True, scope_info_enabled=False, registry=registry
    )


class MetricsSetupError(Exception):
    """Metrics cannot be exported as asked (a missing extra, a bad setting)."""


def otlp_readers_from_env() -> list[MetricReader]:
    """An OTLP push reader when ``OTEL_METRICS_EXPORTER`` names ``otlp`` (the standard
    ``OTEL_EXPORTER_OTLP_*`` variables configure it)."""
    exporters = {e.strip() for e in os.environ.get("OTEL_METRICS_EXPORTER", "").split(",")}
    if "otlp" not in exporters:
        return []
    try:
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    except ImportError as exc:
        if "opentelemetry.proto" in str(exc):
            # xds-protos (the Envoy protos) ships an older copy of these modules; the
            # one installed last wins.
            raise MetricsSetupError(
                "OTLP export needs opentelemetry-proto's own modules, which xds-protos"
                " overwrote: pip install --force-reinstall --no-deps opentelemetry-proto"
            ) from None
        raise MetricsSetupError(
            "OTEL_METRICS_EXPORTER=otlp needs the otlp extra: pip install 'aigateway[otlp]'"
        ) from None
    return [PeriodicExportingMetricReader(OTLPMetricExporter())]


def start_metrics_http_server(host: str, port: int, registry: CollectorRegistry) -> Any:
    """Serve ``/metrics`` from ``registry`` on a background thread; returns the server
    (``.server_port``, ``.shutdown()``). Raises ``OSError`` if the port is taken."""
    from prometheus_client import start_http_server

    server, _thread = start_http_server(port, addr=host, registry=registry)
    return server
