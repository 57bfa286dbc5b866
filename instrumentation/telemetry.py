"""The OpenTelemetry setup a running gateway needs: a meter provider with the
Prometheus reader (and OTLP when the environment asks for it), the gateway's
instruments, and the :class:`Instrumentation` every processor gets wrapped in."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry

from aigateway.instrumentation.instrumented import Instrumentation
from aigateway.instrumentation.metrics import (
    METER_NAME,
    GatewayMetrics,
    cardinality_limit,
    create_meter_provider,
    otlp_readers_from_env,
    prometheus_reader,
)


@dataclass(slots=True)
class Telemetry:
    """What :func:`setup_telemetry` built: the Prometheus ``registry`` to serve, the
    ``instrumentation`` to wrap processors in, and ``shutdown`` to flush exporters."""

    registry: CollectorRegistry
    instrumentation: Instrumentation
    shutdown: Callable[[], Any]


def setup_telemetry(
    *,
    models: Collection[str],
    backends: Collection[str],
    model_header: str = "x-ai-gateway-model",
    backend_header: str = "x-ai-gateway-backend",
) -> Telemetry:
    """Instruments exported to a fresh Prometheus registry (and over OTLP when
    ``OTEL_METRICS_EXPORTER`` names ``otlp``). ``models`` and ``backends`` are the only
    label values allowed; anything else is recorded as ``unknown``.

    Raises :class:`~aigateway.instrumentation.metrics.MetricsSetupError` when OTLP is
    asked for but cannot be set up.
    """
    registry = CollectorRegistry(auto_describe=True)
    readers = [prometheus_reader(registry), *otlp_readers_from_env()]
    provider = create_meter_provider(
        readers, cardinality=cardinality_limit(len(models), len(backends))
    )
    instrumentation = Instrumentation.create(
        GatewayMetrics.create(provider.get_meter(METER_NAME)),
        models=models,
        backends=backends,
        model_header=model_header,
        backend_header=backend_header,
    )
    return Telemetry(registry, instrumentation, provider.shutdown)
