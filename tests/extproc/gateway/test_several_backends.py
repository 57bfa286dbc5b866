"""Models with several backends: the config keys, the rest a backend takes when its
answer says it is out of quota, attempt results, and the Envoy clusters and routes
generated for them (docs/architecture.md, "Routing over several backends")."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from aigateway.extproc.framework._protos.envoy.data.accesslog.v3 import accesslog_pb2
from aigateway.extproc.framework.addresses import Address
from aigateway.extproc.framework.processor import CONTINUE, Headers, ImmediateResponse
from aigateway.extproc.gateway.attempts import (
    ANSWERED_BY_HEADER,
    ATTEMPT_BACKEND_HEADER,
    CLIENT_HEADERS_NAMESPACE,
    CLIENT_LABELS_HEADER,
    CLIENT_NAMESPACE,
    AttemptLog,
    RestingBackends,
    attempt_result,
    leave_out,
    rest_seconds,
)
from aigateway.extproc.gateway.backends import RoutingTable
from aigateway.extproc.gateway.chat import ChatCompletionProcessor
from aigateway.extproc.gateway.config import (
    ConfigError,
    ResolvedSecrets,
    load_config,
    parse_config,
)
from aigateway.extproc.ops.cli.check_config import routing_lines
from aigateway.extproc.ops.envoy_bootstrap import EnvoyOptions, build_bootstrap

CONFIG = """
backends:
  - {name: openai, schema: openai, endpoint: "https://api.openai.com",
     outlier: {consecutive_failures: 5, ejection_seconds: 30}}
  - {name: azure, schema: azure-openai, endpoint: "https://x.openai.azure.com",
     api_version: "2024-10-21", outlier: {consecutive_failures: 3, ejection_seconds: 10}}
  - {name: local, schema: openai, endpoint: "http://127.0.0.1:8000"}
models:
  - name: gpt-4o
    backends:
      - {backend: openai, backend_model: gpt-4o, priority: 0, weight: 3}
      - {backend: azure, backend_model: gpt-4o-prod, priority: 0, weight: 1}
      - {backend: local, priority: 5}
    retry: {attempts: 3, per_try_timeout_seconds: 30, on: [connect-failure, 429]}
  - {name: one, backend: local}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_the_config_reads_backends_retry_and_outlier(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, CONFIG))
    model, one = config.models
    assert model.several and not one.several
    assert [(t.backend, t.priority, t.weight) for t in model.targets] == [
        ("openai", 0, 3),
        ("azure", 0, 1),
        ("local", 5, 1),
    ]
    # The bare YAML key `on` (a boolean to YAML 1.1) is read as `on`.
    assert model.retry_policy.on == ("connect-failure", "429")
    assert model.upstream_name_on(model.targets[2]) == "gpt-4o"
    assert one.targets[0].backend == "local"
    # Without retry:, one attempt per backend on every failure.
    default = parse_config(
        {
            "backends": [{"name": n, "schema": "openai", "endpoint": "http://h"} for n in "ab"],
            "models": [{"name": "m", "backends": [{"backend": "a"}, {"backend": "b"}]}],
        }
    ).models[0]
    assert (default.retry_policy.attempts, default.retry_policy.on) == (
        2,
        ("connect-failure", "reset", "5xx", "429"),
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ("- {backend: local, priority: 5}", "- {backend: nowhere}"),
            "models[0].backends[2].backend: no backend named 'nowhere'",
        ),
        (("- {backend: local, priority: 5}", "- {backend: openai}"), "'openai' is listed twice"),
        (("weight: 3", "weight: 0"), "models[0].backends[0].weight"),
        (("priority: 5", "priority: -1"), "models[0].backends[2].priority"),
        (("on: [connect-failure, 429]", "on: [timeouts]"), "models[0].retry.on[0]"),
        (("attempts: 3", "attempts: 0"), "models[0].retry.attempts"),
        (("ejection_seconds: 30", "ejection_seconds: 0"), "backends[0].outlier.ejection_seconds"),
        (("name: gpt-4o\n", "name: gpt-4o\n    backend: local\n"), "not both"),
        (("{name: one, backend: local}", "{name: one}"), "set either backend"),
        (
            ("{name: one, backend: local}", "{name: one, backend: local, retry: {attempts: 2}}"),
            "retry needs two or more backends",
        ),
    ],
)
def test_a_bad_routing_config_names_the_key_path(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    old, new = change
    assert old in CONFIG
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, CONFIG.replace(old, new, 1)))
    assert message in str(err.value)


# -- rest ---------------------------------------------------------------------------------

NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("status", "headers", "seconds"),
    [
        (200, {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1s"}, 1.0),
        (200, {"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "6m0s"}, 360.0),
        (
            200,
            {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1h2m3.5s"},
            3723.5,
        ),
        (200, {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "20ms"}, 0.02),
        # Some left: no rest, whatever the reset says.
        (200, {"x-ratelimit-remaining-requests": "12", "x-ratelimit-reset-requests": "1s"}, None),
        (
            200,
            {
                "anthropic-ratelimit-input-tokens-remaining": "0",
                "anthropic-ratelimit-input-tokens-reset": datetime.fromtimestamp(NOW + 42, UTC)
                .isoformat()
                .replace("+00:00", "Z"),
            },
            42.0,
        ),
        (429, {"retry-after": "7"}, 7.0),
        (
            429,
            {
                "retry-after": format_datetime(
                    datetime.fromtimestamp(NOW, UTC) + timedelta(minutes=2)
                )
            },
            120.0,
        ),
        (503, {"retry-after": "7"}, None),  # only a 429's retry-after is about quota
        (200, {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "soon"}, None),
        (200, {}, None),
    ],
)
def test_rest_seconds_reads_each_providers_headers(
    status: int, headers: dict[str, str], seconds: float | None
) -> None:
    got = rest_seconds(status, headers, NOW)
    assert got == pytest.approx(seconds) if seconds is not None else got is None


def test_resting_backends_and_what_a_request_leaves_out() -> None:
    resting = RestingBackends()
    resting.note("a", 429, {"retry-after": "60"})
    resting.note(
        "b", 200, {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "30s"}
    )
    resting.note("c", 200, {"x-ratelimit-remaining-requests": "5"})
    assert resting.resting(("a", "b", "c")) == ("a", "b")  # the longest rest first
    assert leave_out(("a", "b"), ("a", "b", "c")) == {"without-a": True, "without-b": True}
    assert leave_out((), ("a", "b")) is None
    assert leave_out(("a", "b"), ("a", "b")) is None  # all rest: all serve
    resting.note("c", 429, {"retry-after": "0"})
    assert resting.resting(("c",)) == ()


@pytest.mark.parametrize(
    ("status", "flag", "result"),
    [
        (200, None, "success"),
        (429, None, "rate_limited"),
        (404, None, "client_error"),
        (503, None, "server_error"),
        (0, "upstream_connection_failure", "connect_failure"),
        (0, "upstream_request_timeout", "timeout"),
        (0, "upstream_remote_reset", "reset"),
        (200, "upstream_remote_reset", "reset"),  # reset after the headers
        (0, None, "reset"),
    ],
)
def test_attempt_results_from_envoys_flags(status: int, flag: str | None, result: str) -> None:
    names = (
        "upstream_connection_failure",
        "upstream_request_timeout",
        "upstream_remote_reset",
        "upstream_connection_termination",
        "upstream_protocol_error",
        "local_reset",
    )
    flags = SimpleNamespace(**{name: name == flag for name in names})
    assert attempt_result(status, flags) == result


def test_an_attempts_header_labels_read_the_clients_values() -> None:
    """The attempt log has the client's values of the header labels' headers as the
    attempt's answer names them (the attempt removed those its backend does not
    receive); an attempt without an answer, its request headers as it left them."""
    entry = accesslog_pb2.HTTPAccessLogEntry()
    entry.common_properties.custom_tags.update({"backend": "azure", "model": "gpt-4o"})
    entry.response.response_code.value = 503
    entry.request.request_headers.update({"x-team": "set-by-the-attempt"})
    entry.response.response_headers.update(
        {CLIENT_LABELS_HEADER: json.dumps({"x-tenant-id": "acme", "x-user": "u1"})}
    )
    attempt = AttemptLog.attempt(entry)
    assert (attempt.backend, attempt.model, attempt.result) == ("azure", "gpt-4o", "server_error")
    assert sorted(attempt.headers) == [("x-tenant-id", "acme"), ("x-user", "u1")]
    # A malformed value names nothing; no answer: the headers as logged.
    for bad in ("{not json", "[1]", '{"x-tenant-id": 1}'):
        entry.response.response_headers[CLIENT_LABELS_HEADER] = bad
        assert AttemptLog.attempt(entry).headers == ()
    entry.response.ClearField("response_headers")
    entry.request.request_headers["x-tenant-id"] = "acme"
    assert sorted(AttemptLog.attempt(entry).headers) == [
        ("x-team", "set-by-the-attempt"),
        ("x-tenant-id", "acme"),
    ]


# -- Envoy --------------------------------------------------------------------------------


def bootstrap(tmp_path: Path, text: str = CONFIG) -> dict[str, Any]:
    options = EnvoyOptions(
        listen=Address.parse("127.0.0.1:10000"),
        extproc=[Address.parse("127.0.0.1:1063")],
        admin=Address.parse("127.0.0.1:9901"),
        ca_bundle="/ca.pem",
    )
    return build_bootstrap(load_config(write(tmp_path, text)), options)


def test_a_model_with_several_backends_gets_its_cluster_and_route(tmp_path: Path) -> None:
    doc = bootstrap(tmp_path)
    clusters = {c["name"]: c for c in doc["static_resources"]["clusters"]}
    cluster = clusters["model.0"]
    localities = cluster["load_assignment"]["endpoints"]
    # Priorities 0 and 5 become Envoy's 0 and 1; weights are endpoint weights.
    assert [loc["priority"] for loc in localities] == [0, 1]
    first = localities[0]["lb_endpoints"]
    assert [e["load_balancing_weight"] for e in first] == [3, 1]
    assert first[0]["metadata"]["filter_metadata"]["aigateway"] == {
        "backend": "openai",
        "model": "gpt-4o",
    }
    assert first[0]["metadata"]["filter_metadata"]["envoy.lb"] == {
        "without-azure": True,
        "without-local": True,
    }
    assert first[0]["endpoint"]["hostname"] == "api.openai.com"
    # TLS only for the https backends, each with its own SNI.
    assert {
        m["name"]: m["transport_socket"]["typed_config"]["sni"]
        for m in cluster["transport_socket_matches"]
    } == {
        "openai": "api.openai.com",
        "azure": "x.openai.azure.com",
    }
    # The strictest outlier settings of the model's backends.
    assert cluster["outlier_detection"]["consecutive_5xx"] == 3
    assert cluster["outlier_detection"]["base_ejection_time"] == "30s"
    filters = cluster["typed_extension_protocol_options"][
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    ]["http_filters"]
    assert [f["name"] for f in filters] == [
        "envoy.filters.http.header_mutation",
        "envoy.filters.http.ext_proc",
        "envoy.filters.http.upstream_codec",
    ]
    mode = filters[1]["typed_config"]["processing_mode"]
    assert (mode["request_body_mode"], mode["response_body_mode"]) == ("BUFFERED", "NONE")
    # Every attempt gets the client's request as the listener's processor published it.
    assert filters[1]["typed_config"]["metadata_options"] == {
        "forwarding_namespaces": {"untyped": [CLIENT_NAMESPACE, CLIENT_HEADERS_NAMESPACE]}
    }
    assert len(cluster["lb_subset_config"]["subset_selectors"]) == 6  # 3 + 3 pairs
    # Single-backend models keep their backend route; this model gets a route of its own.
    hcm = doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    routes = {r["name"]: r for r in hcm["route_config"]["virtual_hosts"][0]["routes"]}
    retry = routes["model.0"]["route"]["retry_policy"]
    assert retry["retry_on"] == "connect-failure,retriable-status-codes"
    assert retry["retriable_status_codes"] == [429]
    assert (retry["num_retries"], retry["per_try_timeout"]) == (2, "30s")
    assert retry["retry_priority"]["typed_config"]["update_frequency"] == 2
    router = hcm["http_filters"][-1]["typed_config"]
    assert [log["name"] for log in router["upstream_log"]] == [
        "envoy.access_loggers.http_grpc",
        "envoy.access_loggers.stdout",
    ]
    listener = hcm["http_filters"][0]["typed_config"]["extension_config"]["typed_config"]
    receiving = listener["metadata_options"]["receiving_namespaces"]["untyped"]
    assert {CLIENT_NAMESPACE, CLIENT_HEADERS_NAMESPACE} <= set(receiving)
    # The client's path: the attempts removed the gateway's path header.
    access_log = hcm["access_log"][0]["typed_config"]["log_format"]["json_format"]
    assert access_log["path"].startswith("%CEL(")


def test_one_backend_per_model_costs_nothing_new(tmp_path: Path) -> None:
    doc = bootstrap(
        tmp_path,
        """
backends: [{name: local, schema: openai, endpoint: "http://127.0.0.1:8000"}]
models: [{name: one, backend: local}]
""",
    )
    hcm = doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    assert "upstream_log" not in hcm["http_filters"][-1]["typed_config"]
    assert [c["name"] for c in doc["static_resources"]["clusters"]] == [
        "aigateway-extproc",
        "local",
    ]
    ext_proc = hcm["http_filters"][0]["typed_config"]["extension_config"]["typed_config"]
    assert ext_proc["metadata_options"]["receiving_namespaces"]["untyped"] == ["aigateway"]
    access_log = hcm["access_log"][0]["typed_config"]["log_format"]["json_format"]
    assert access_log["path"] == "%REQ(X-AI-GATEWAY-ORIGINAL-PATH?:PATH)%"


def test_check_config_explains_the_routing(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, CONFIG))
    assert routing_lines(config, config.models[0]) == [
        "gpt-4o -> spread over 3 backends:",
        "  priority 0 (first):",
        "    openai (openai, https://api.openai.com) as gpt-4o: 75% of its requests (weight 3)",
        "    azure (azure-openai, https://x.openai.azure.com) as gpt-4o-prod: 25% of its"
        " requests (weight 1)",
        "  priority 5 (only once every backend above failed or is left out):",
        "    local (openai, http://127.0.0.1:8000) as gpt-4o",
        "  a backend is left out for 30s after 3 failed attempts in a row",
        "  up to 3 attempt(s), each on a backend not tried yet, retried on connect-failure,"
        " 429, 30s for each to start answering; never once the answer has started",
        "  a backend that says its quota is used up (rate-limit headers, 429 retry-after)"
        " rests until its reset while another can serve",
    ]
    assert routing_lines(config, config.models[1]) == [
        "one -> local (openai, http://127.0.0.1:8000)"
    ]


@pytest.mark.parametrize(
    "metadata",
    [{}, {CLIENT_NAMESPACE: {}}, {CLIENT_NAMESPACE: {"path": 1.0}}, {CLIENT_HEADERS_NAMESPACE: {}}],
)
async def test_an_attempt_without_the_clients_request_is_a_misconfigured_gateway(
    tmp_path: Path, metadata: dict[str, Any]
) -> None:
    # An Envoy config that does not forward the metadata: a clear 500, never a crash.
    config = load_config(write(tmp_path, CONFIG))
    table = RoutingTable(config, ResolvedSecrets(config, tmp_path))
    attempt = ChatCompletionProcessor(table, attempt=True)
    headers = Headers([(":method", "POST"), (":path", "/v1/messages")], metadata=metadata)
    with pytest.raises(ImmediateResponse) as refused:
        await attempt.on_request_headers(headers)
    assert refused.value.status == 500
    assert "gateway_misconfigured" in refused.value.details


TWO_SCHEMAS = """
backends:
  - {name: oai, schema: openai, endpoint: "http://127.0.0.1:8000",
     auth: {api_key: {value: sk-oai}}, forward_headers: [x-tenant-id]}
  - {name: claude, schema: anthropic, endpoint: "http://127.0.0.1:8001",
     auth: {api_key: {value: sk-ant}}}
models:
  - name: m
    backends: [{backend: oai, backend_model: gpt-4o},
               {backend: claude, backend_model: claude-x, priority: 1}]
metrics: {labels_from_headers: [{header: x-team, label: team, values: [red]}]}
"""
BODY = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode()
CLIENT = {
    "content-type": "application/json",
    "x-tenant-id": "t1",
    "anthropic-beta": "b1",
    "x-team": "red",
}


def two_schemas(tmp_path: Path) -> RoutingTable:
    config = load_config(write(tmp_path, TWO_SCHEMAS))
    return RoutingTable(config, ResolvedSecrets(config, tmp_path))


async def test_the_listener_publishes_what_every_attempt_starts_from(tmp_path: Path) -> None:
    """The client's path and the headers any backend of the model receives (and the
    header labels'), never a credential or a header no backend takes."""
    listener = ChatCompletionProcessor(two_schemas(tmp_path))
    sent = [
        (":method", "POST"),
        (":path", "/v1/chat/completions"),
        ("x-request-id", "r1"),
        *CLIENT.items(),
        ("cookie", "session=1"),
        ("user-agent", "client/1"),
        ("x-api-key", "client-own"),
    ]
    await listener.on_request_headers(Headers(sent))
    result = await listener.on_request_body(BODY, True)
    assert result.dynamic_metadata is not None
    assert result.dynamic_metadata[CLIENT_NAMESPACE] == {"path": "/v1/chat/completions"}
    assert result.dynamic_metadata[CLIENT_HEADERS_NAMESPACE] == CLIENT
    assert not any(name.startswith("x-ai-gateway-original") for name, _ in result.set_headers)


async def test_the_listener_refuses_headers_too_large_to_publish(tmp_path: Path) -> None:
    listener = ChatCompletionProcessor(two_schemas(tmp_path))
    big = [(":method", "POST"), (":path", "/v1/chat/completions"), ("x-tenant-id", "t" * 40000)]
    await listener.on_request_headers(Headers(big))
    with pytest.raises(ImmediateResponse) as refused:
        await listener.on_request_body(BODY, True)
    assert refused.value.status == 431


async def test_a_later_attempt_drops_the_earlier_ones_changes(tmp_path: Path) -> None:
    """The header map as the first attempt (to the OpenAI backend) left it: the second
    (Anthropic) gets its own credentials, the client's beta header back, and none of
    the first's headers, the gateway's or a client header it does not take."""
    attempt = ChatCompletionProcessor(two_schemas(tmp_path), attempt=True)
    left = [
        (":method", "POST"),
        (":path", "/v1/chat/completions"),
        (":authority", "127.0.0.1:8001"),
        ("content-type", "application/json"),
        ("content-length", "999"),
        ("authorization", "Bearer sk-oai"),
        ("x-tenant-id", "t1"),
        ("accept-encoding", "identity"),
        ("x-ai-gateway-model", "m"),
        (ATTEMPT_BACKEND_HEADER, "claude"),
        ("x-request-id", "r1"),
        ("x-envoy-expected-rq-timeout-ms", "1000"),
    ]
    metadata = {
        CLIENT_NAMESPACE: {"path": "/v1/chat/completions"},
        CLIENT_HEADERS_NAMESPACE: CLIENT,
    }
    assert await attempt.on_request_headers(Headers(left, metadata=metadata)) is CONTINUE
    result = await attempt.on_request_body(BODY, True)
    set_headers = dict(result.set_headers)
    assert set_headers[":path"] == "/v1/messages"
    assert set_headers["x-api-key"] == "sk-ant"
    assert set_headers["anthropic-beta"] == "b1"
    assert "x-tenant-id" not in set_headers and "x-team" not in set_headers
    assert sorted(result.remove_headers) == [
        "authorization",
        "x-ai-gateway-attempt-backend",
        "x-ai-gateway-model",
        "x-tenant-id",
    ]
    answer = await attempt.on_response_headers(Headers([(":status", "503")]))
    assert dict(answer.set_headers) == {
        ANSWERED_BY_HEADER: "claude",
        CLIENT_LABELS_HEADER: '{"x-team":"red"}',
    }
