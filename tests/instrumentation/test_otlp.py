"""With ``OTEL_METRICS_EXPORTER=otlp`` the same instruments are pushed over OTLP/gRPC
(here to an in-process collector), besides the Prometheus endpoint."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.proto.collector.metrics.v1 import (
    metrics_service_pb2,
    metrics_service_pb2_grpc,
)
from prometheus_client import CollectorRegistry, generate_latest

from aigateway.instrumentation.aggregation import InProcessHistograms
from aigateway.instrumentation.metrics import (
    GatewayMetrics,
    MetricsSetupError,
    create_meter_provider,
    otlp_readers_from_env,
    prometheus_reader,
)
from tests.instrumentation.collector import Collector, collecting


@pytest.fixture
def collector() -> Iterator[tuple[Collector, int]]:
    with collecting(
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server,
        metrics_service_pb2.ExportMetricsServiceResponse(),
    ) as served:
        yield served


def test_otlp_push_alongside_prometheus(
    collector: tuple[Collector, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    servicer, port = collector
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
    histograms = InProcessHistograms()
    readers = otlp_readers_from_env(histograms)
    assert len(readers) == 1
    registry = CollectorRegistry()
    provider = create_meter_provider(
        [prometheus_reader(registry, histograms), *readers], histograms, cardinality=100
    )
    metrics = GatewayMetrics.create(provider.get_meter("aigateway"), histograms)
    metrics.requests.add(1, ("b", "m", "success"))
    metrics.total_latency.record(0.3, ("b", "m", "success"))
    assert provider.force_flush(10_000)
    names = {
        metric.name
        for request in servicer.requests
        for rm in request.resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
    }
    # The counters, and the histograms aggregated in process, without the slot.
    assert names == {"aigateway_requests_total", "aigateway_total_latency_seconds"}
    assert (
        b'aigateway_requests_total{backend="b",model="m",status="success"} 1.0'
        in generate_latest(registry)
    )
    provider.shutdown()


def test_no_otlp_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_METRICS_EXPORTER", raising=False)
    assert otlp_readers_from_env(InProcessHistograms()) == []
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "prometheus")
    assert otlp_readers_from_env(InProcessHistograms()) == []


def test_missing_otlp_extra_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_otlp(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("opentelemetry.exporter.otlp"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "otlp")
    monkeypatch.setattr(builtins, "__import__", no_otlp)
    with pytest.raises(MetricsSetupError, match=r"aigateway\[otlp\]"):
        otlp_readers_from_env(InProcessHistograms())
