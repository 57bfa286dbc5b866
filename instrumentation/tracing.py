"""Traces: one span per request, exported over OTLP when ``OTEL_TRACES_EXPORTER`` names
``otlp`` (docs/traces-and-logs.md, "Traces"). The span's parent is the request's W3C
``traceparent``, so a trace Envoy (or the client) started continues through the gateway.
"""

from __future__ import annotations

from opentelemetry.propagators.textmap import Getter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Span, SpanKind, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from aigateway.extproc.framework.processor import Headers
from aigateway.instrumentation.metrics import exporters_named, otlp_import_error

TRACER_NAME = "aigateway"
#: The span event at the first streamed chunk (time to first token).
FIRST_TOKEN_EVENT = "first_token"

_PROPAGATOR = TraceContextTextMapPropagator()


class _TraceparentOnly(Getter[Headers]):
    """Reads ``traceparent`` and nothing else: ``tracestate`` is opaque data a client
    chose, and no header value but the configured label headers' reaches telemetry."""

    def get(self, carrier: Headers, key: str) -> list[str] | None:
        if key != "traceparent":
            return None
        value = carrier.get(key)
        return None if value is None else [value]

    def keys(self, carrier: Headers) -> list[str]:
        return ["traceparent"] if "traceparent" in carrier else []


_GETTER = _TraceparentOnly()


def start_request_span(tracer: Tracer, headers: Headers, start_time: int) -> Span:
    """The request's span, a child of its ``traceparent`` when it has a valid one. Named
    when the request is recorded, once the operation and model are known."""
    parent = _PROPAGATOR.extract(headers, getter=_GETTER)
    return tracer.start_span("unknown", context=parent, kind=SpanKind.CLIENT, start_time=start_time)


def tracer_provider_from_env() -> TracerProvider | None:
    """A tracer provider exporting over OTLP/gRPC in batches when
    ``OTEL_TRACES_EXPORTER`` names ``otlp`` (the standard ``OTEL_EXPORTER_OTLP_*``
    variables configure it, ``OTEL_SERVICE_NAME`` names the service, ``aigateway`` by
    default); ``None`` otherwise: then requests cost nothing for tracing."""
    if "otlp" not in exporters_named("OTEL_TRACES_EXPORTER"):
        return None
    try:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    except ImportError:
        raise otlp_import_error("OTEL_TRACES_EXPORTER") from None
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: "aigateway"}))
    provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider
