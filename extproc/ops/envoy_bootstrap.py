"""Generates the Envoy bootstrap that puts our processor in front of the backends
(docs/architecture.md, "Protocol rules"): one listener, ``ext_proc`` then ``router``, a
route per backend chosen by the backend header the processor sets, and a cluster per backend."""

from __future__ import annotations

import ipaddress
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aigateway.extproc.framework.addresses import Address
from aigateway.extproc.framework.processor import LOCAL_REPLY_DETAILS_PREFIX
from aigateway.extproc.framework.server import CHAIN_METADATA_KEY, LARGE_BODY_BYTES
from aigateway.extproc.gateway.attempts import (
    ANSWERED_BY_HEADER,
    ATTEMPT_BACKEND_HEADER,
    ATTEMPT_CHAIN,
    ATTEMPT_LOG_NAME,
    ATTEMPT_TAG_BACKEND,
    ATTEMPT_TAG_MODEL,
    CLIENT_HEADERS_NAMESPACE,
    CLIENT_LABELS_HEADER,
    CLIENT_NAMESPACE,
    CLIENT_PATH,
    LB_NAMESPACE,
    MAX_RESTING,
    without_key,
)
from aigateway.extproc.gateway.config import Backend, GatewayConfig, Model
from aigateway.extproc.gateway.forwarded_headers import GATEWAY_HEADER_PREFIX
from aigateway.extproc.gateway.routed import ORIGINAL_PATH_HEADER
from aigateway.extproc.gateway.unrecorded import UNRECORDED_DETAILS, UNRECORDED_LOG_NAME
from aigateway.instrumentation.facts import FACT_KEYS, METADATA_NAMESPACE, RECORDED_FACT

EXTPROC_CLUSTER = "aigateway-extproc"
#: The large-body worker of ``serve --workers`` (docs/reliability.md, "Large bodies").
LARGE_BODY_CLUSTER = "aigateway-extproc-large"
UNRECORDED_CLUSTER = "aigateway-unrecorded"
SYSTEM_CA_BUNDLES = (
    "/etc/ssl/certs/ca-certificates.crt",  # Debian, Ubuntu, Alpine
    "/etc/pki/tls/certs/ca-bundle.crt",  # Fedora, RHEL
    "/etc/ssl/cert.pem",  # macOS, BSD
)

_T = "type.googleapis.com/envoy."
_XDS = "type.googleapis.com/xds."


def _type(name: str) -> str:
    """A typed_config ``@type`` for an Envoy proto message name (after ``envoy.``)."""
    return _T + name


_HTTP2_OPTIONS = {
    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
        "@type": _type("extensions.upstreams.http.v3.HttpProtocolOptions"),
        "explicit_http_config": {"http2_protocol_options": {}},
    }
}

# Measured with the large-body burst (benchmarks/NOTES.md, "Large bodies"): one stream
# per connection at a time, or a large body on a shared connection held every other
# stream behind it until the message timeout, and the requests it timed out were never
# counted. Connections are reused one stream after another (no handshake per request).
_EXTPROC_HTTP2_OPTIONS = {
    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
        "@type": _type("extensions.upstreams.http.v3.HttpProtocolOptions"),
        "explicit_http_config": {
            "http2_protocol_options": {
                "max_concurrent_streams": 1,
                "initial_stream_window_size": 1024 * 1024,
                "initial_connection_window_size": 4 * 1024 * 1024,
            }
        },
    }
}

# A stream refused by a dead or restarting worker is opened again on another
# (docs/reliability.md, "Workers"); nothing was sent to it yet.
_EXTPROC_RETRY = {
    "retry_on": "connect-failure,refused-stream,reset-before-request",
    "num_retries": 2,
    "retry_back_off": {"base_interval": "0.05s", "max_interval": "0.25s"},
}

# The JSON access log line of each request. `path` is what the client called (the
# processor sets x-ai-gateway-original-path when it rewrites :path), `upstream_path` what the
# backend got. The rest is every fact the request published (instrumentation/facts.py),
# from routing on, so requests refused after routing, cut short or reset still show
# backend and model; the timings come with the answer that completes the response.
_ACCESS_LOG_FORMAT = {
    "time": "%START_TIME%",
    "request_id": "%REQ(X-REQUEST-ID)%",
    "method": "%REQ(:METHOD)%",
    "path": "%REQ(X-AI-GATEWAY-ORIGINAL-PATH?:PATH)%",
    "upstream_path": "%REQ(:PATH)%",
    "status": "%RESPONSE_CODE%",
    "details": "%RESPONSE_CODE_DETAILS%",
    "flags": "%RESPONSE_FLAGS%",
    "duration_ms": "%DURATION%",
    "upstream": "%UPSTREAM_HOST%",
    **{name: f"%DYNAMIC_METADATA({METADATA_NAMESPACE}:{name})%" for name in FACT_KEYS},
}


# A model with several backends: its attempts removed the client's path header before
# their backends; the client's path is in the metadata the listener's processor published.
_CLIENT_PATH_CEL = (
    f"'{CLIENT_NAMESPACE}' in metadata.filter_metadata"
    f" ? metadata.filter_metadata['{CLIENT_NAMESPACE}']['{CLIENT_PATH}']"
    f" : ('{ORIGINAL_PATH_HEADER}' in request.headers"
    f" ? request.headers['{ORIGINAL_PATH_HEADER}'] : request.path)"
)


def _access_log_format(config: GatewayConfig) -> dict[str, str]:
    if any(m.several for m in config.models):
        return {**_ACCESS_LOG_FORMAT, "path": f"%CEL({_CLIENT_PATH_CEL})%"}
    return _ACCESS_LOG_FORMAT


@dataclass(slots=True, frozen=True)
class EnvoyOptions:
    listen: Address
    extproc: list[Address]
    admin: Address
    #: ext_proc per-message timeout: how long Envoy waits for one answer.
    message_timeout_seconds: float = 10.0
    access_log: bool = True
    #: A CA bundle for https backends; ``None`` picks the system's.
    ca_bundle: str | None = None
    #: TLS to the processor (when it listens beyond loopback): ``None`` is plaintext.
    extproc_tls: ExtprocTls | None = None
    #: Where ``serve --workers``' parents count the requests no processor recorded
    #: (empty: nothing counts them, as with a single ``serve``).
    unrecorded: tuple[Address, ...] = ()
    #: ``serve --workers``' large-body workers: requests whose body may be
    #: ``LARGE_BODY_BYTES`` or more are processed there (empty: by the processors above).
    large_body: tuple[Address, ...] = ()


@dataclass(slots=True, frozen=True)
class ExtprocTls:
    """How Envoy reaches a processor served with ``--tls-cert``/``--tls-key``."""

    #: The CA that signed the processor's certificate.
    ca: str
    #: The name to send as SNI and to require in the certificate (DNS SAN).
    sni: str | None = None
    #: A client certificate and key, for a processor that asks for one (--tls-client-ca).
    cert: str | None = None
    key: str | None = None


def _extproc_transport(tls: ExtprocTls) -> dict[str, Any]:
    validation: dict[str, Any] = {"trusted_ca": {"filename": tls.ca}}
    context: dict[str, Any] = {
        "alpn_protocols": ["h2"],
        "validation_context": validation,
    }
    if tls.sni:
        validation["match_typed_subject_alt_names"] = [
            {"san_type": "DNS", "matcher": {"exact": tls.sni}}
        ]
    if tls.cert and tls.key:
        context["tls_certificates"] = [
            {"certificate_chain": {"filename": tls.cert}, "private_key": {"filename": tls.key}}
        ]
    upstream: dict[str, Any] = {
        "@type": _type("extensions.transport_sockets.tls.v3.UpstreamTlsContext"),
        "common_tls_context": context,
    }
    if tls.sni:
        upstream["sni"] = tls.sni
    return {"name": "envoy.transport_sockets.tls", "typed_config": upstream}


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _endpoints(addresses: list[Address]) -> tuple[list[dict[str, Any]], bool]:
    """Envoy's endpoints for our processes' addresses, and whether a host needs DNS."""
    endpoints: list[dict[str, Any]] = []
    dns = False
    for address in addresses:
        if address.unix_path is not None:
            endpoints.append({"endpoint": {"address": {"pipe": {"path": address.unix_path}}}})
            continue
        # Envoy connects here: "all interfaces" means this machine.
        host = address.url_host().strip("[]")
        dns = dns or not _is_ip(host)
        endpoints.append(
            {
                "endpoint": {
                    "address": {"socket_address": {"address": host, "port_value": address.port}}
                }
            }
        )
    return endpoints, dns


def _processor_cluster(
    name: str,
    addresses: list[Address],
    options: EnvoyOptions,
    settings: dict[str, Any],
    failover: list[Address] | None = None,
) -> dict[str, Any]:
    """A cluster of the gateway's own gRPC servers at ``addresses`` (TLS as the
    processors'), with ``settings`` between its connect timeout and its endpoints, and
    ``failover`` as the next priority, used while none of ``addresses`` is healthy."""
    endpoints, dns = _endpoints(addresses)
    localities: list[dict[str, Any]] = [{"lb_endpoints": endpoints}]
    if failover:
        fallback, fallback_dns = _endpoints(failover)
        dns = dns or fallback_dns
        localities.append({"priority": 1, "lb_endpoints": fallback})
    cluster: dict[str, Any] = {
        "name": name,
        "type": "STRICT_DNS" if dns else "STATIC",
        "connect_timeout": "1s",
        **settings,
        "load_assignment": {"cluster_name": name, "endpoints": localities},
    }
    if options.extproc_tls is not None:
        cluster["transport_socket"] = _extproc_transport(options.extproc_tls)
    return cluster


def _unrecorded_cluster(options: EnvoyOptions, counters: list[Address]) -> dict[str, Any]:
    """``serve --workers``' parents, which count what no processor recorded."""
    settings = {"typed_extension_protocol_options": _HTTP2_OPTIONS}
    return _processor_cluster(UNRECORDED_CLUSTER, counters, options, settings)


def _cel_filter(expression: str) -> dict[str, Any]:
    """An access log's (or a local reply mapper's) filter: what the CEL ``expression``
    holds for."""
    return {
        "extension_filter": {
            "name": "envoy.access_loggers.extension_filters.cel",
            "typed_config": {
                "@type": _type("extensions.access_loggers.filters.cel.v3.ExpressionFilter"),
                "expression": expression,
            },
        }
    }


def _unrecorded_log(config: GatewayConfig) -> dict[str, Any]:
    """Every request Envoy answered itself that no processor recorded, to the counter
    (docs/architecture.md, "Requests no processor recorded"): no fact of a recorded
    request, and the ext_proc filter failed it for a processor unreachable or gone."""
    failed = " || ".join(
        f"response.code_details.startsWith('{d}')" for d, _cause in UNRECORDED_DETAILS
    )
    facts = f"metadata.filter_metadata.{METADATA_NAMESPACE}"
    recorded = f"has({facts}) && has({facts}.{RECORDED_FACT})"
    # The details first: they alone turn away nearly every request.
    expression = f"({failed}) && !({recorded})"
    common: dict[str, Any] = {
        "log_name": UNRECORDED_LOG_NAME,
        "transport_api_version": "V3",
        "grpc_service": {"envoy_grpc": {"cluster_name": UNRECORDED_CLUSTER}},
        "buffer_flush_interval": "0.1s",
    }
    # The client's path (the paths not counted are left out) and the header labels.
    headers = [ORIGINAL_PATH_HEADER, *(h.header for h in config.metrics.labels_from_headers)]
    typed: dict[str, Any] = {
        "@type": _type("extensions.access_loggers.grpc.v3.HttpGrpcAccessLogConfig"),
        "common_config": common,
        "additional_request_headers_to_log": headers,
    }
    return {
        "name": "envoy.access_loggers.http_grpc",
        "filter": _cel_filter(expression),
        "typed_config": typed,
    }


def _extproc_settings(buffer_limit: int) -> dict[str, Any]:
    return {
        "lb_policy": "LEAST_REQUEST",
        "per_connection_buffer_limit_bytes": buffer_limit * 2,
        "typed_extension_protocol_options": _EXTPROC_HTTP2_OPTIONS,
        # A worker that is down or draining (health NOT_SERVING) gets no new streams: the
        # first refused connection ejects it at once, health checks keep it out until it
        # serves again (docs/reliability.md, "Workers").
        "health_checks": [
            {
                "timeout": "1s",
                "interval": "0.5s",
                "no_traffic_interval": "0.5s",
                "unhealthy_threshold": 1,
                "healthy_threshold": 1,
                "grpc_health_check": {},
            }
        ],
        "outlier_detection": {
            "split_external_local_origin_errors": True,
            "consecutive_local_origin_failure": 1,
            "interval": "1s",
            "base_ejection_time": "1s",
            "max_ejection_percent": 100,
        },
    }


def _extproc_cluster(options: EnvoyOptions, buffer_limit: int) -> dict[str, Any]:
    settings = _extproc_settings(buffer_limit)
    return _processor_cluster(EXTPROC_CLUSTER, options.extproc, options, settings)


def _large_body_cluster(options: EnvoyOptions, buffer_limit: int) -> dict[str, Any]:
    """The large-body workers, and the other workers as a lower priority: while no
    large-body worker is healthy (restarting, recycled) large bodies go to the others
    rather than fail (docs/reliability.md, "Large bodies")."""
    settings = _extproc_settings(buffer_limit)
    addresses = list(options.large_body)
    return _processor_cluster(
        LARGE_BODY_CLUSTER, addresses, options, settings, failover=options.extproc
    )


def _socket(address: Address) -> dict[str, Any]:
    if address.unix_path is not None:
        return {"pipe": {"path": address.unix_path}}
    host = address.host or "0.0.0.0"
    return {"socket_address": {"address": host, "port_value": address.port}}


def _ca_bundle(options: EnvoyOptions) -> str | None:
    if options.ca_bundle:
        return options.ca_bundle
    for path in SYSTEM_CA_BUNDLES:
        if Path(path).exists():
            return path
    return None


def _backend_cluster(backend: Backend, options: EnvoyOptions, buffer_limit: int) -> dict[str, Any]:
    cluster: dict[str, Any] = {
        "name": backend.name,
        "type": "STRICT_DNS",
        "dns_lookup_family": "V4_PREFERRED",
        "connect_timeout": "5s",
        "per_connection_buffer_limit_bytes": buffer_limit,
        "load_assignment": {
            "cluster_name": backend.name,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {
                            "endpoint": {
                                "address": {
                                    "socket_address": {
                                        "address": backend.host,
                                        "port_value": backend.port,
                                    }
                                }
                            }
                        }
                    ]
                }
            ],
        },
    }
    if backend.tls:
        cluster["transport_socket"] = _tls_socket(backend, options)
    return cluster


def _tls_socket(backend: Backend, options: EnvoyOptions) -> dict[str, Any]:
    tls: dict[str, Any] = {
        "@type": _type("extensions.transport_sockets.tls.v3.UpstreamTlsContext"),
        "sni": backend.host,
    }
    ca = _ca_bundle(options)
    if ca is not None:
        tls["common_tls_context"] = {
            "validation_context": {
                "trusted_ca": {"filename": ca},
                "match_typed_subject_alt_names": [
                    {"san_type": "DNS", "matcher": {"exact": backend.host}}
                ],
            }
        }
    return {"name": "envoy.transport_sockets.tls", "typed_config": tls}


def model_cluster_name(index: int) -> str:
    """The cluster of ``config.models[index]`` when it has several backends (a dot: no
    backend name has one)."""
    return f"model.{index}"


def _model_cluster(
    config: GatewayConfig, index: int, options: EnvoyOptions, buffer_limit: int
) -> dict[str, Any]:
    """A model's backends as one cluster (docs/architecture.md, "Routing over several
    backends"): priorities as Envoy priorities (renumbered 0, 1, ... in order), weights
    as endpoint weights, each endpoint naming its backend in its metadata, and the
    processor in the upstream filter chain translating every attempt for its backend."""
    model = config.models[index]
    name = model_cluster_name(index)
    tiers = sorted({t.priority for t in model.targets})
    localities: list[dict[str, Any]] = []
    tls_matches: list[dict[str, Any]] = []
    for rank, priority in enumerate(tiers):
        endpoints: list[dict[str, Any]] = []
        for target in model.targets:
            if target.priority != priority:
                continue
            backend = config.backend(target.backend)
            metadata: dict[str, Any] = {
                METADATA_NAMESPACE: {"backend": backend.name, "model": model.name},
                # In every subset that leaves another backend out.
                LB_NAMESPACE: {
                    without_key(t.backend): True for t in model.targets if t.backend != backend.name
                },
            }
            if backend.tls:
                metadata[_TLS_MATCH] = {"backend": backend.name}
                tls_matches.append(
                    {
                        "name": backend.name,
                        "match": {"backend": backend.name},
                        "transport_socket": _tls_socket(backend, options),
                    }
                )
            endpoints.append(
                {
                    "endpoint": {
                        "address": {
                            "socket_address": {"address": backend.host, "port_value": backend.port}
                        },
                        # auto_host_rewrite sends this as the Host (SigV4 signs it).
                        "hostname": backend.authority,
                    },
                    "load_balancing_weight": target.weight,
                    "metadata": {"filter_metadata": metadata},
                }
            )
        localities.append({"priority": rank, "lb_endpoints": endpoints})
    cluster: dict[str, Any] = {
        "name": name,
        "type": "STRICT_DNS",
        "dns_lookup_family": "V4_PREFERRED",
        "connect_timeout": "5s",
        "lb_policy": "ROUND_ROBIN",
        "per_connection_buffer_limit_bytes": buffer_limit,
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": _type("extensions.upstreams.http.v3.HttpProtocolOptions"),
                "explicit_http_config": {"http_protocol_options": {}},
                "http_filters": _attempt_filters(config, options),
            }
        },
        "load_assignment": {"cluster_name": name, "endpoints": localities},
        # Envoy allows 3 retries in flight per cluster by default: under load most
        # requests would get the first backend's failure instead of the fallback.
        "circuit_breakers": {
            "thresholds": [
                {
                    "priority": "DEFAULT",
                    "retry_budget": {
                        "budget_percent": {"value": 100.0},
                        "min_retry_concurrency": 64,
                    },
                }
            ]
        },
    }
    if tls_matches:
        cluster["transport_socket_matches"] = tls_matches
    # The processor leaves resting backends out by naming them in the request's
    # `envoy.lb` metadata; one subset per set of backends it may leave out.
    names = [t.backend for t in model.targets]
    cluster["lb_subset_config"] = {
        "fallback_policy": "ANY_ENDPOINT",
        "subset_selectors": [
            {"keys": [without_key(b) for b in combo]}
            for size in range(1, min(len(names) - 1, MAX_RESTING) + 1)
            for combo in itertools.combinations(names, size)
        ],
    }
    outliers = [
        o for o in (config.backend(t.backend).outlier for t in model.targets) if o is not None
    ]
    if outliers:
        # One setting per cluster: the strictest of the model's backends'
        # (docs/configuration.md, "Several backends per model").
        cluster["outlier_detection"] = {
            "consecutive_5xx": min(o.consecutive_failures for o in outliers),
            "base_ejection_time": f"{max(o.ejection_seconds for o in outliers):g}s",
            "max_ejection_time": f"{max(o.ejection_seconds for o in outliers):g}s",
            "interval": "1s",
            "max_ejection_percent": 100,
            "enforcing_success_rate": 0,
            "enforcing_failure_percentage": 0,
        }
    return cluster


# Envoy picks an endpoint's TLS settings by this metadata (transport_socket_matches).
_TLS_MATCH = "envoy.transport_socket_match"


def _attempt_filters(config: GatewayConfig, options: EnvoyOptions) -> list[dict[str, Any]]:
    return [
        {
            # The backend the load balancer picked, from its endpoint's metadata, for the
            # processor (a client cannot set it: it is overwritten here on every attempt).
            "name": "envoy.filters.http.header_mutation",
            "typed_config": {
                "@type": _type("extensions.filters.http.header_mutation.v3.HeaderMutation"),
                "mutations": {
                    "request_mutations": [
                        {
                            "append": {
                                "header": {
                                    "key": ATTEMPT_BACKEND_HEADER,
                                    "value": f"%UPSTREAM_METADATA({METADATA_NAMESPACE}:backend)%",
                                },
                                "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                            }
                        }
                    ]
                },
            },
        },
        {
            "name": "envoy.filters.http.ext_proc",
            "typed_config": {
                "@type": _type("extensions.filters.http.ext_proc.v3.ExternalProcessor"),
                # The processor serves these streams with its attempt router.
                "grpc_service": _processor_service(EXTPROC_CLUSTER, attempt=True),
                "failure_mode_allow": False,
                "message_timeout": f"{options.message_timeout_seconds:g}s",
                # Request headers and body to translate; response headers to say which
                # backend answered. The response body is the listener's processor's.
                "processing_mode": _processing_mode(response_body="NONE"),
                # The client's path and headers, as the listener's processor published
                # them: every attempt starts from the client's request.
                "metadata_options": {
                    "forwarding_namespaces": {
                        "untyped": [CLIENT_NAMESPACE, CLIENT_HEADERS_NAMESPACE]
                    }
                },
            },
        },
        {
            "name": "envoy.filters.http.upstream_codec",
            "typed_config": {
                "@type": _type("extensions.filters.http.upstream_codec.v3.UpstreamCodec")
            },
        },
    ]


_RETRY_ON = {"connect-failure": "connect-failure", "reset": "reset"}


def _retry_policy(model: Model) -> dict[str, Any]:
    retry = model.retry_policy
    retry_on = [_RETRY_ON[o] for o in retry.on if o in _RETRY_ON]
    codes: list[int] = []
    if "429" in retry.on:
        codes.append(429)
    if "5xx" in retry.on:
        # Envoy's own "5xx" also retries resets; the status codes keep `on` exact.
        codes.extend(range(500, 600))
    if codes:
        retry_on.append("retriable-status-codes")
    first_tier = min(t.priority for t in model.targets)
    policy: dict[str, Any] = {
        "retry_on": ",".join(retry_on),
        "num_retries": retry.attempts - 1,
        # A retry goes to a backend not tried yet for this request...
        "retry_host_predicate": [
            {
                "name": "envoy.retry_host_predicates.previous_hosts",
                "typed_config": {
                    "@type": _type("extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate")
                },
            }
        ],
        "host_selection_retry_max_attempts": 5,
        # ...and to the next priority once the first one's backends were each tried.
        "retry_priority": {
            "name": "envoy.retry_priorities.previous_priorities",
            "typed_config": {
                "@type": _type(
                    "extensions.retry.priority.previous_priorities.v3.PreviousPrioritiesConfig"
                ),
                "update_frequency": sum(1 for t in model.targets if t.priority == first_tier),
            },
        },
    }
    if codes:
        policy["retriable_status_codes"] = codes
    if retry.per_try_timeout_seconds is not None:
        policy["per_try_timeout"] = f"{retry.per_try_timeout_seconds:g}s"
    return policy


def _processing_mode(*, response_body: str) -> dict[str, str]:
    """What the processor sees: request headers and the whole request body, response
    headers, and the response body as ``response_body`` says; never trailers."""
    return {
        "request_header_mode": "SEND",
        "request_body_mode": "BUFFERED",
        "request_trailer_mode": "SKIP",
        "response_header_mode": "SEND",
        "response_body_mode": response_body,
        "response_trailer_mode": "SKIP",
    }


def _processor_service(cluster: str, *, attempt: bool = False) -> dict[str, Any]:
    """The ext_proc filter's gRPC service: the processors of ``cluster``, and for an
    attempt's stream the initial metadata that selects the attempt router."""
    service: dict[str, Any] = {"envoy_grpc": {"cluster_name": cluster}}
    if attempt:
        service["initial_metadata"] = [{"key": CHAIN_METADATA_KEY, "value": ATTEMPT_CHAIN}]
    service["retry_policy"] = _EXTPROC_RETRY
    return service


def _ext_proc_filter(config: GatewayConfig, options: EnvoyOptions) -> dict[str, Any]:
    return {
        "name": "envoy.filters.http.ext_proc",
        "typed_config": {
            "@type": _type("extensions.filters.http.ext_proc.v3.ExternalProcessor"),
            "grpc_service": _processor_service(EXTPROC_CLUSTER),
            # Without the processor, requests would reach backends unrouted and unmetered.
            "failure_mode_allow": False,
            "allow_mode_override": True,
            "message_timeout": f"{options.message_timeout_seconds:g}s",
            "processing_mode": _processing_mode(response_body="BUFFERED"),
            # Envoy drops dynamic metadata from namespaces not listed here.
            "metadata_options": {
                "receiving_namespaces": {
                    "untyped": [
                        METADATA_NAMESPACE,
                        LB_NAMESPACE,
                        CLIENT_NAMESPACE,
                        CLIENT_HEADERS_NAMESPACE,
                    ]
                    if any(m.several for m in config.models)
                    else [METADATA_NAMESPACE]
                }
            },
        },
    }


#: The response details of Envoy's replies to requests it could not parse (its HTTP/1 and
#: HTTP/2 codecs': a bad method or header character, too many or too large headers).
_CODEC_ERRORS = ("http1.", "http2.")


def _details_start_with(expr_id: int, prefix: str) -> dict[str, Any]:
    """``response.code_details.startsWith(prefix)`` as a parsed CEL expression (ids from
    ``expr_id`` to ``expr_id + 3``)."""
    details = {
        "id": expr_id + 1,
        "select_expr": {
            "operand": {"id": expr_id + 2, "ident_expr": {"name": "response"}},
            "field": "code_details",
        },
    }
    return {
        "id": expr_id,
        "call_expr": {
            "target": details,
            "function": "startsWith",
            "args": [{"id": expr_id + 3, "const_expr": {"string_value": prefix}}],
        },
    }


def _codec_error_expression() -> dict[str, Any]:
    """Any of :data:`_CODEC_ERRORS`, parsed: Envoy 1.40's ``CelMatcher`` takes no CEL text."""
    tests = [_details_start_with(10 * (i + 1), p) for i, p in enumerate(_CODEC_ERRORS)]
    return {"id": 1, "call_expr": {"function": "_||_", "args": tests}}


def _skipped_on_codec_errors(ext_proc: dict[str, Any]) -> dict[str, Any]:
    """``ext_proc``, but for Envoy's replies to requests it could not parse: Envoy closes
    such a connection right after its reply, which ext_proc would hold for the processor,
    so the client got no answer at all (docs/reliability.md, "Hostile and odd requests")."""
    skip = {
        "predicate": {
            "single_predicate": {
                "input": {
                    "name": "envoy.matching.inputs.cel_data_input",
                    "typed_config": {"@type": _XDS + "type.matcher.v3.HttpAttributesCelMatchInput"},
                },
                "custom_match": {
                    "name": "envoy.matching.matchers.cel_matcher",
                    "typed_config": {
                        "@type": _XDS + "type.matcher.v3.CelMatcher",
                        "expr_match": {"cel_expr_parsed": {"expr": _codec_error_expression()}},
                    },
                },
            }
        },
        "on_match": {
            "action": {
                "name": "skip",
                "typed_config": {
                    "@type": _type("extensions.filters.common.matcher.action.v3.SkipFilter")
                },
            }
        },
    }
    return {
        "name": ext_proc["name"],
        "typed_config": {
            "@type": _type("extensions.common.matching.v3.ExtensionWithMatcher"),
            "xds_matcher": {"matcher_list": {"matchers": [skip]}},
            "extension_config": ext_proc,
        },
    }


# What a request no route sent to a backend gets (the processor chose none).
_NO_BACKEND_REPLY: dict[str, Any] = {
    "direct_response": {
        "status": 404,
        "body": {
            "inline_string": '{"error":{"message":"No backend was selected for this'
            ' request.","type":"invalid_request_error","param":null,"code":"no_route"}}'
        },
    },
    "response_headers_to_add": [
        {
            "header": {"key": "content-type", "value": "application/json"},
            "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
        }
    ],
}


def at_least_regex(threshold: int) -> str:
    """An RE2 regex whose full match is a decimal integer (leading zeros allowed) of at
    least ``threshold``: longer numbers, then those of its length, digit by digit."""
    if threshold < 0:
        raise ValueError("the threshold must not be negative")
    digits = str(threshold)
    alternatives = [f"[1-9][0-9]{{{len(digits)},}}"]
    for i, digit in enumerate(digits):
        if digit == "9":
            continue
        higher = "9" if digit == "8" else f"[{int(digit) + 1}-9]"
        rest = len(digits) - i - 1
        alternatives.append(digits[:i] + higher + (f"[0-9]{{{rest}}}" if rest else ""))
    alternatives.append(digits)
    return "0*(?:" + "|".join(alternatives) + ")"


_LARGE_BODY_ROUTES = ("large-body", "large-body-unsized")


def _large_body_headers() -> list[list[dict[str, Any]]]:
    """The requests whose body may be large, as header matchers, one list per route of
    ``_LARGE_BODY_ROUTES``: a content-length of ``LARGE_BODY_BYTES`` or more, or none on
    a method that has a body (its size is unknown until it has arrived)."""
    return [
        [
            {
                "name": "content-length",
                "string_match": {"safe_regex": {"regex": at_least_regex(LARGE_BODY_BYTES)}},
            }
        ],
        [
            {"name": "content-length", "present_match": True, "invert_match": True},
            {
                "name": ":method",
                "string_match": {"safe_regex": {"regex": "GET|HEAD"}},
                "invert_match": True,
            },
        ],
    ]


def _large_body_processor(*, attempt: bool = False) -> dict[str, Any]:
    """The ext_proc filter's per-route config sending its stream to the large-body
    workers (``attempt``: the upstream filter's stream of an attempt, which reads the
    route too and needs the attempt chain the override would otherwise drop)."""
    service = _processor_service(LARGE_BODY_CLUSTER, attempt=attempt)
    return {
        "envoy.filters.http.ext_proc": {
            "@type": _type("extensions.filters.http.ext_proc.v3.ExtProcPerRoute"),
            "overrides": {"grpc_service": service},
        }
    }


def _large_body_attempt_routes(route: dict[str, Any]) -> list[dict[str, Any]]:
    """``route`` (a model with several backends) for large bodies, matched first: each
    attempt's processor reads the route's ext_proc config and takes its stream to the
    large-body workers, since it gets the whole body again."""
    return [
        {
            **route,
            "name": f"{route['name']}.{name}",
            "match": {**route["match"], "headers": [*route["match"]["headers"], *headers]},
            "typed_per_filter_config": _large_body_processor(attempt=True),
        }
        for name, headers in zip(_LARGE_BODY_ROUTES, _large_body_headers(), strict=True)
    ]


def _large_body_routes() -> list[dict[str, Any]]:
    """The routes matched when the listener's ext_proc stream starts on a request with a
    large body (no backend or model header yet: the client's are removed first): they
    send that stream to the large-body workers, and answer as ``no-backend`` should the
    processor choose no backend (docs/reliability.md, "Large bodies")."""
    return [
        {
            "name": name,
            "match": {"prefix": "/", "headers": headers},
            **_NO_BACKEND_REPLY,
            "typed_per_filter_config": _large_body_processor(),
        }
        for name, headers in zip(_LARGE_BODY_ROUTES, _large_body_headers(), strict=True)
    ]


def _routes(config: GatewayConfig, options: EnvoyOptions) -> list[dict[str, Any]]:
    routes: list[dict[str, Any]] = []
    for backend in config.backends:
        routes.append(
            {
                "name": backend.name,
                "match": {
                    "prefix": "/",
                    "headers": [
                        {"name": config.headers.backend, "string_match": {"exact": backend.name}}
                    ],
                },
                "route": {
                    "cluster": backend.name,
                    "timeout": f"{backend.timeout_seconds:g}s",
                    # The processor signs (SigV4) for this exact host.
                    "host_rewrite_literal": backend.authority,
                },
            }
        )
    for index, model in enumerate(config.models):
        if not model.several:
            continue
        timeout = max(config.backend(t.backend).timeout_seconds for t in model.targets)
        route: dict[str, Any] = {
            "name": model_cluster_name(index),
            "match": {
                "prefix": "/",
                "headers": [{"name": config.headers.model, "string_match": {"exact": model.name}}],
            },
            "route": {
                "cluster": model_cluster_name(index),
                "timeout": f"{timeout:g}s",
                "auto_host_rewrite": True,
                "retry_policy": _retry_policy(model),
            },
            # Envoy's own reply when every attempt failed names the last one's backend
            # (an answer already names its backend: the attempt's processor set it).
            "response_headers_to_add": [
                {
                    "header": {
                        "key": ANSWERED_BY_HEADER,
                        "value": f"%UPSTREAM_METADATA({METADATA_NAMESPACE}:backend)%",
                    },
                    "append_action": "ADD_IF_ABSENT",
                }
            ],
        }
        if options.large_body:
            routes.extend(_large_body_attempt_routes(route))
        routes.append(route)
    if options.large_body:
        routes.extend(_large_body_routes())
    routes.append({"name": "no-backend", "match": {"prefix": "/"}, **_NO_BACKEND_REPLY})
    return routes


def _local_reply_mapper(condition: str, body: dict[str, Any]) -> dict[str, Any]:
    expression = f"{condition} && !response.code_details.startsWith('{LOCAL_REPLY_DETAILS_PREFIX}')"
    return {
        "filter": _cel_filter(expression),
        "body_format_override": {"json_format": body, "content_type": "application/json"},
    }


_LOCAL_MESSAGE = "%LOCAL_REPLY_BODY% (%RESPONSE_CODE_DETAILS%)"
_CLIENT_ERROR = "response.code >= 400 && response.code < 500"
_SERVER_ERROR = "response.code >= 500"
# The Anthropic Messages API's paths answer errors in Anthropic's shape.
_MESSAGES_PATH = "request.url_path.startsWith('/v1/messages')"


def _openai_error(error_type: str) -> dict[str, Any]:
    return {
        "error": {
            "message": _LOCAL_MESSAGE,
            "type": error_type,
            "param": None,
            "code": "%RESPONSE_CODE%",
        }
    }


def _anthropic_error(error_type: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type, "message": _LOCAL_MESSAGE}}


def _local_reply_config() -> dict[str, Any]:
    # Envoy's own replies (413 payload too large, 500 when the processor is unreachable,
    # 503/504 upstream failures) come as plain text; map them to the client API's error
    # JSON. The processor's replies already are JSON: their details start with "aigateway_".
    return {
        "mappers": [
            _local_reply_mapper(
                f"{_MESSAGES_PATH} && {_CLIENT_ERROR}", _anthropic_error("invalid_request_error")
            ),
            _local_reply_mapper(
                f"{_MESSAGES_PATH} && {_SERVER_ERROR}", _anthropic_error("api_error")
            ),
            _local_reply_mapper(_CLIENT_ERROR, _openai_error("invalid_request_error")),
            _local_reply_mapper(_SERVER_ERROR, _openai_error("server_error")),
        ]
    }


def _early_header_mutation(config: GatewayConfig) -> dict[str, Any]:
    """Removes the gateway's own headers from what the client sent, before any filter or
    the access log reads them (docs/architecture.md, "Headers a backend receives")."""
    mutations: list[dict[str, Any]] = [
        {"remove_on_match": {"key_matcher": {"prefix": GATEWAY_HEADER_PREFIX}}}
    ]
    for name in (config.headers.model, config.headers.backend):
        if not name.startswith(GATEWAY_HEADER_PREFIX):
            mutations.append({"remove": name})
    return {
        "name": "envoy.http.early_header_mutation.header_mutation",
        "typed_config": {
            "@type": _type(
                "extensions.http.early_header_mutation.header_mutation.v3.HeaderMutation"
            ),
            "mutations": mutations,
        },
    }


# One line per attempt (docs/architecture.md, "Routing over several backends").
_ATTEMPT_LOG_FORMAT: dict[str, str] = {
    "time": "%START_TIME%",
    "request_id": "%REQ(X-REQUEST-ID)%",
    "backend": f"%UPSTREAM_METADATA({METADATA_NAMESPACE}:backend)%",
    "status": "%RESPONSE_CODE%",
    "flags": "%RESPONSE_FLAGS%",
    "failure": "%UPSTREAM_TRANSPORT_FAILURE_REASON%",
    "duration_ms": "%DURATION%",
    "upstream": "%UPSTREAM_HOST%",
}


def _router_filter(config: GatewayConfig, options: EnvoyOptions) -> dict[str, Any]:
    router: dict[str, Any] = {"@type": _type("extensions.filters.http.router.v3.Router")}
    if any(m.several for m in config.models):
        router["upstream_log"] = _attempt_logs(config, options)
    return {"name": "envoy.filters.http.router", "typed_config": router}


def _attempt_logs(config: GatewayConfig, options: EnvoyOptions) -> list[dict[str, Any]]:
    """The router's log of every attempt of a request to a model with several backends
    (the processor sets no backend header on those): to the processor, which counts
    attempts by result, and to stdout with the access log."""
    only_several = {
        "header_filter": {
            "header": {
                "name": config.headers.backend,
                "present_match": True,
                "invert_match": True,
            }
        }
    }
    logs: list[dict[str, Any]] = [
        {
            "name": "envoy.access_loggers.http_grpc",
            "filter": only_several,
            "typed_config": {
                "@type": _type("extensions.access_loggers.grpc.v3.HttpGrpcAccessLogConfig"),
                "common_config": {
                    "log_name": ATTEMPT_LOG_NAME,
                    "transport_api_version": "V3",
                    "grpc_service": {"envoy_grpc": {"cluster_name": EXTPROC_CLUSTER}},
                    "buffer_flush_interval": "0.1s",
                    "custom_tags": [
                        {
                            "tag": ATTEMPT_TAG_BACKEND,
                            "metadata": {
                                "kind": {"host": {}},
                                "metadata_key": {
                                    "key": METADATA_NAMESPACE,
                                    "path": [{"key": "backend"}],
                                },
                            },
                        },
                        {
                            # Not the model header: the attempt removed it before the backend.
                            "tag": ATTEMPT_TAG_MODEL,
                            "metadata": {
                                "kind": {"host": {}},
                                "metadata_key": {
                                    "key": METADATA_NAMESPACE,
                                    "path": [{"key": "model"}],
                                },
                            },
                        },
                    ],
                },
                # The attempts family carries the header labels too: the client's values,
                # as the attempt's answer names them, else as the attempt left them.
                "additional_request_headers_to_log": [
                    h.header for h in config.metrics.labels_from_headers
                ],
                "additional_response_headers_to_log": [CLIENT_LABELS_HEADER]
                if config.metrics.labels_from_headers
                else [],
            },
        }
    ]
    if options.access_log:
        logs.append(
            {
                "name": "envoy.access_loggers.stdout",
                "filter": only_several,
                "typed_config": {
                    "@type": _type("extensions.access_loggers.stream.v3.StdoutAccessLog"),
                    "log_format": {
                        "json_format": {
                            **_ATTEMPT_LOG_FORMAT,
                            "model": f"%UPSTREAM_METADATA({METADATA_NAMESPACE}:model)%",
                        }
                    },
                },
            }
        )
    return logs


def build_bootstrap(config: GatewayConfig, options: EnvoyOptions) -> dict[str, Any]:
    """The Envoy bootstrap as a dict (dump it as YAML or JSON)."""
    buffer_limit = config.max_request_bytes
    hcm: dict[str, Any] = {
        "@type": _type(
            "extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
        ),
        "stat_prefix": "aigateway",
        "codec_type": "AUTO",
        # HTTP/1.0, //v1/messages, /v1/./responses: odd but legal, so served.
        # See docs/reliability.md, "Hostile and odd requests".
        "http_protocol_options": {"accept_http_10": True, "default_host_for_http_10": "aigateway"},
        "normalize_path": True,
        "merge_slashes": True,
        "generate_request_id": True,
        "early_header_mutation_extensions": [_early_header_mutation(config)],
        "route_config": {
            "name": "aigateway",
            "virtual_hosts": [
                {"name": "aigateway", "domains": ["*"], "routes": _routes(config, options)}
            ],
        },
        "http_filters": [
            _skipped_on_codec_errors(_ext_proc_filter(config, options)),
            _router_filter(config, options),
        ],
        "local_reply_config": _local_reply_config(),
    }
    access_log: list[dict[str, Any]] = []
    if options.access_log:
        access_log.append(
            {
                "name": "envoy.access_loggers.stdout",
                "typed_config": {
                    "@type": _type("extensions.access_loggers.stream.v3.StdoutAccessLog"),
                    "log_format": {"json_format": _access_log_format(config)},
                },
            }
        )
    if options.unrecorded:
        access_log.append(_unrecorded_log(config))
    if access_log:
        hcm["access_log"] = access_log
    return {
        "admin": {"address": _socket(options.admin)},
        "static_resources": {
            "listeners": [
                {
                    "name": "aigateway",
                    "address": _socket(options.listen),
                    "per_connection_buffer_limit_bytes": buffer_limit,
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": hcm,
                                }
                            ]
                        }
                    ],
                }
            ],
            "clusters": [
                _extproc_cluster(options, buffer_limit),
                *([_large_body_cluster(options, buffer_limit)] if options.large_body else []),
                *(
                    [_unrecorded_cluster(options, list(options.unrecorded))]
                    if options.unrecorded
                    else []
                ),
                *(_backend_cluster(b, options, buffer_limit) for b in config.backends),
                *(
                    _model_cluster(config, i, options, buffer_limit)
                    for i, m in enumerate(config.models)
                    if m.several
                ),
            ],
        },
    }
