"""The OpenTelemetry setup a running gateway needs: a meter provider with the
Prometheus reader (and OTLP when the environment asks for it), the families the config
asks for, a tracer provider when ``OTEL_TRACES_EXPORTER`` asks for one, and the
:class:`Instrumentation` every processor gets wrapped in."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry.metrics import Meter
from prometheus_client import CollectorRegistry

from aigateway.instrumentation.aggregation import InProcessHistograms
from aigateway.instrumentation.instrumented import (
    HeaderLabel,
    Instrumentation,
    genai_latest_experimental,
)
from aigateway.instrumentation.metrics import (
    METER_NAME,
    SCHEMAS,
    CostTotals,
    GatewayMetrics,
    GenAIMetrics,
    LimitMetrics,
    Price,
    cardinality_limit,
    create_meter_provider,
    otlp_readers_from_env,
    prometheus_reader,
)
from aigateway.instrumentation.tracing import TRACER_NAME, tracer_provider_from_env


@dataclass(slots=True)
class Telemetry:
    """What :func:`setup_telemetry` built: the Prometheus ``registry`` to serve, the
    ``instrumentation`` to wrap processors in, and ``shutdown`` to flush exporters."""

    registry: CollectorRegistry
    instrumentation: Instrumentation
    shutdown: Callable[[], Any]


def create_instrumentation(
    meter: Meter,
    histograms: InProcessHistograms,
    *,
    models: Collection[str],
    backends: Collection[str],
    schema: str = "aigateway",
    header_labels: Sequence[HeaderLabel] = (),
    prices: Mapping[str, Price] | None = None,
    providers: Mapping[str, str] | None = None,
    rules: Collection[str] = (),
    latest_experimental: bool | None = None,
    **kwargs: Any,
) -> Instrumentation:
    """The :class:`Instrumentation` recording the families of ``schema`` (``aigateway``,
    ``genai`` or ``both``), plus the cost counter when ``prices`` name a model, on
    ``meter`` and ``histograms`` (of a provider made by ``create_meter_provider``).
    ``models`` and ``backends`` are the only label values allowed (anything else is
    recorded as ``unknown``); ``providers`` maps each backend to its
    ``gen_ai.provider.name``; ``header_labels`` are added to every family; ``rules``
    (the names of the config's limits rules) bring the limits families;
    ``latest_experimental`` (default: as ``OTEL_SEMCONV_STABILITY_OPT_IN`` says) adds
    what the GenAI conventions have not released yet. ``kwargs`` go to
    :class:`Instrumentation` (tracer, clocks)."""
    if schema not in SCHEMAS:
        raise ValueError(f"schema must be one of {', '.join(SCHEMAS)}, not {schema!r}")
    labels = tuple(header_labels)
    extra = tuple(h.label for h in labels)
    cardinality = cardinality_limit(len(models), len(backends), [len(h.values) for h in labels])
    if latest_experimental is None:
        latest_experimental = genai_latest_experimental()
    gateway = genai = None
    if schema in ("aigateway", "both"):
        gateway = GatewayMetrics.create(
            meter, histograms, extra_labels=extra, cardinality=cardinality
        )
    if schema in ("genai", "both"):
        genai = GenAIMetrics.create(
            histograms,
            extra_labels=extra,
            cardinality=cardinality,
            latest_experimental=latest_experimental,
        )
    return Instrumentation.create(
        gateway,
        models=models,
        backends=backends,
        genai=genai,
        costs=CostTotals.create(meter, prices or {}, extra_labels=extra),
        limits=LimitMetrics.create(meter, extra_labels=extra) if rules else None,
        rules=frozenset(rules),
        header_labels=labels,
        providers=dict(providers or {}),
        latest_experimental=latest_experimental,
        **kwargs,
    )


def setup_telemetry(
    *,
    models: Collection[str],
    backends: Collection[str],
    schema: str = "aigateway",
    header_labels: Sequence[HeaderLabel] = (),
    prices: Mapping[str, Price] | None = None,
    providers: Mapping[str, str] | None = None,
    rules: Collection[str] = (),
) -> Telemetry:
    """:func:`create_instrumentation`'s families exported to a fresh Prometheus registry
    (and over OTLP when ``OTEL_METRICS_EXPORTER`` names ``otlp``), and spans over OTLP
    when ``OTEL_TRACES_EXPORTER`` names ``otlp``.

    Raises :class:`~aigateway.instrumentation.metrics.MetricsSetupError` when OTLP is
    asked for but cannot be set up.
    """
    labels = tuple(header_labels)
    cardinality = cardinality_limit(len(models), len(backends), [len(h.values) for h in labels])
    histograms = InProcessHistograms()
    registry = CollectorRegistry(auto_describe=True)
    readers = [prometheus_reader(registry, histograms), *otlp_readers_from_env(histograms)]
    tracer_provider = tracer_provider_from_env()
    provider = create_meter_provider(readers, histograms, cardinality=cardinality)
    instrumentation = create_instrumentation(
        provider.get_meter(METER_NAME),
        histograms,
        models=models,
        backends=backends,
        schema=schema,
        header_labels=labels,
        prices=prices,
        providers=providers,
        rules=rules,
        tracer=None if tracer_provider is None else tracer_provider.get_tracer(TRACER_NAME),
    )

    def shutdown() -> None:
        provider.shutdown()
        if tracer_provider is not None:
            tracer_provider.shutdown()

    return Telemetry(registry, instrumentation, shutdown)
