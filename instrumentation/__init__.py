"""Telemetry for any processor, as a decorator: wrap a
:class:`~aigateway.extproc.Processor` in an :class:`InstrumentedProcessor` and it records
each request once, by backend and model, through OpenTelemetry (the gateway's own
``aigateway_*`` metrics, the GenAI semantic conventions' ``gen_ai.*``, costs, a span);
the processor itself never touches a metric.

:class:`Instrumentation` holds what every request shares (the instruments, the label
values the config allows) and makes one :class:`InstrumentedProcessor` per request;
:func:`setup_telemetry` builds it with the Prometheus (and OTLP) exporters.
:class:`Facts` is what a processor publishes for it and for Envoy's access log.
"""

from aigateway.instrumentation.facts import (
    METADATA_NAMESPACE,
    FactKey,
    Facts,
    facts_in,
    published,
)
from aigateway.instrumentation.instrumented import (
    HeaderLabel,
    Instrumentation,
    InstrumentedProcessor,
)
from aigateway.instrumentation.metrics import (
    GatewayMetrics,
    GenAIMetrics,
    MetricsSetupError,
    Price,
    start_metrics_http_server,
)
from aigateway.instrumentation.telemetry import Telemetry, setup_telemetry

__all__ = [
    "METADATA_NAMESPACE",
    "FactKey",
    "Facts",
    "GatewayMetrics",
    "GenAIMetrics",
    "HeaderLabel",
    "Instrumentation",
    "InstrumentedProcessor",
    "MetricsSetupError",
    "Price",
    "Telemetry",
    "facts_in",
    "published",
    "setup_telemetry",
    "start_metrics_http_server",
]
