"""The allowlist of client headers per route: the schema's needs, the trace context, the
configured names and prefixes; never credentials, cookies, hop-by-hop or the gateway's
own headers, whatever a prefix says."""

from __future__ import annotations

import pytest

from aigateway.extproc.framework.processor import Headers
from aigateway.extproc.gateway.config import ConfigError, parse_config
from aigateway.extproc.gateway.forwarded_headers import forwarded_headers
from aigateway.translators.matrix import BackendOptions


def options(schema: str, model: str = "m") -> BackendOptions:
    return BackendOptions(
        schema=schema,
        upstream_model=model,
        api_version="2024-10-21",
        anthropic_version="2023-06-01",
        default_max_tokens=4096,
        project="p",
        region="r",
    )


CLIENT = Headers(
    [
        (":authority", "gateway"),
        (":path", "/v1/chat/completions"),
        ("content-type", "application/json"),
        ("content-length", "10"),
        ("transfer-encoding", "chunked"),
        ("x-forwarded-proto", "https"),
        ("x-request-id", "r1"),
        ("x-envoy-attempt-count", "1"),
        ("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        ("anthropic-beta", "b"),
        ("anthropic-version", "2023-06-01"),
        ("x-api-key", "client"),
        ("x-ai-gateway-original-path", "/spoofed"),
        ("x-team", "a"),
        ("x-team", "b"),
        ("cookie", "c"),
        ("x-goog-user-project", "other"),
    ]
)


@pytest.mark.parametrize(
    ("schema", "model", "kept"),
    [
        ("openai", "m", set()),
        ("anthropic", "m", {"anthropic-beta", "anthropic-version"}),
        ("gcp-vertex-ai", "claude-3-5-sonnet-v2@20241022", {"anthropic-beta"}),
        ("gcp-vertex-ai", "gemini-2.0-flash", set()),
        ("aws-bedrock", "m", set()),
    ],
)
def test_each_schema_keeps_only_its_own_headers(schema: str, model: str, kept: set[str]) -> None:
    allowlist = forwarded_headers(options(schema, model), ())
    removed = allowlist.removals(CLIENT, frozenset({"x-api-key"}))
    anthropic = {"anthropic-beta", "anthropic-version"}
    assert set(removed) == {
        "x-ai-gateway-original-path",
        "x-team",
        "cookie",
        "x-goog-user-project",
        *(anthropic - kept),
    }
    assert len(removed) == len(set(removed))  # a repeated header is removed once


def test_a_prefix_never_forwards_credentials_or_the_gateway_s_headers() -> None:
    allowlist = forwarded_headers(options("openai"), ("x-*", "cookie-jar"))
    removed = allowlist.removals(CLIENT, frozenset())
    assert "x-team" not in removed and "x-goog-user-project" not in removed
    assert {"x-api-key", "x-ai-gateway-original-path", "cookie"} <= set(removed)


def test_what_is_learnt_per_name_holds_for_every_request() -> None:
    """The allowlist remembers each name's verdict (benchmarks/NOTES.md): what the gateway
    sets on one request is not remembered, and thousands of names change nothing."""
    allowlist = forwarded_headers(options("anthropic"), ("x-team",))
    assert "x-api-key" not in allowlist.removals(CLIENT, frozenset({"x-api-key"}))
    assert "x-api-key" in allowlist.removals(CLIENT, frozenset())
    many = Headers([(f"x-client-{i}", "v") for i in range(3000)] + list(CLIENT))
    removed = allowlist.removals(many, frozenset())
    assert set(removed) == {
        *(f"x-client-{i}" for i in range(3000)),
        "x-api-key",
        "x-ai-gateway-original-path",
        "cookie",
        "x-goog-user-project",
    }
    assert allowlist.removals(CLIENT, frozenset()) == allowlist.removals(CLIENT, frozenset())


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("cookie", "cookie is never forwarded to a backend"),
        ("Authorization", "authorization is never forwarded to a backend"),
        ("x-ai-gateway-*", "x-ai-gateway-* is never forwarded to a backend"),
        ("x-envoy-retry-on", "x-envoy-retry-on is Envoy's own"),
        ("*", "String should match pattern"),
        ("x-*-y", "String should match pattern"),
        ("bad header", "String should match pattern"),
    ],
)
def test_bad_forward_headers_are_refused_with_the_key_path(entry: str, message: str) -> None:
    doc = {
        "backends": [
            {"name": "a", "schema": "openai", "endpoint": "http://127.0.0.1:1"},
            {
                "name": "b",
                "schema": "openai",
                "endpoint": "http://127.0.0.1:2",
                "forward_headers": ["x-ok", entry],
            },
        ],
        "models": [{"name": "m", "backend": "b"}],
    }
    with pytest.raises(ConfigError) as err:
        parse_config(doc, "config.yaml")
    assert "config.yaml: backends[1].forward_headers" in str(err.value)
    assert message in str(err.value)
