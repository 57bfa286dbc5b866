"""Only the headers each backend needs reach it (docs/architecture.md, "Headers a backend
receives"): a long list of hostile client headers, sent through the real Envoy to every
schema, and exactly what the mock backend received."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.stack import UPSTREAM_KEY, Stack, default_config, running, wait_until

#: The client headers every backend of this stack forwards, by name and by prefix.
FORWARD = ["x-custom-debug", "x-tenant-*"]

HOSTILE = {
    "authorization": "Bearer client-own-key",
    "x-api-key": "client-own-key",
    "api-key": "client-own-key",
    "x-goog-api-key": "client-own-key",
    "proxy-authorization": "Basic cHJveHk6c2VjcmV0",
    "cookie": "session=client-session",
    "x-goog-user-project": "someone-elses-billing-project",
    "x-goog-request-params": "location=elsewhere",
    "x-goog-api-client": "gl-python/3.11",
    "x-amz-security-token": "client-token",
    "x-amz-content-sha256": "UNSIGNED-PAYLOAD",
    "x-amz-date": "20200101T000000Z",
    "x-amz-target": "Bedrock.Other",
    "x-forwarded-host": "evil.example",
    "x-forwarded-for": "203.0.113.9",
    "x-forwarded-prefix": "/evil",
    "x-real-ip": "203.0.113.9",
    "forwarded": "for=203.0.113.9;host=evil.example",
    "x-original-url": "/admin",
    "x-http-method-override": "DELETE",
    "anthropic-version": "2023-06-01",
    "anthropic-beta": "some-beta-2025-01-01",
    "anthropic-dangerous-direct-browser-access": "true",
    "openai-organization": "org-client",
    "openai-project": "proj-client",
    "openai-beta": "assistants=v2",
    "x-ai-gateway-original-path": "/spoofed/by-client",
    "x-ai-gateway-model": "spoofed-model",
    "x-ai-gateway-backend": "mock-openai",
    "x-ai-gateway-anything": "spoofed",
    "x-mock-fault": "500",
    "user-agent": "hostile-client/1.0",
    "accept": "application/json",
    "referer": "https://evil.example/",
    "origin": "https://evil.example",
    "x-custom-debug": "1",
    "priority": "u=0",
    "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    "tracestate": "vendor=opaque",
    "x-request-id": "client-request-id-1",
    "x-tenant-id": "tenant-7",
}

#: What every backend receives whatever the schema: the body's type and length, the
#: trace context, the configured headers, the routing headers the gateway sets, and
#: what Envoy adds itself.
EVERY = {
    "host",
    "content-type",
    "content-length",
    "traceparent",
    "tracestate",
    "x-request-id",
    "x-custom-debug",
    "x-tenant-id",
    "accept-encoding",
    "x-ai-gateway-model",
    "x-ai-gateway-backend",
    "x-forwarded-proto",
    "x-envoy-expected-rq-timeout-ms",
    "x-envoy-original-host",
}
ANTHROPIC = ("anthropic-version", "anthropic-beta")
# (client API path, model, body, the schema's own headers the backend gets)
CASES = [
    ("/v1/chat/completions", "gpt-4o-mini", "chat", {"authorization"}),
    ("/v1/chat/completions", "azure-gpt-4o", "chat", {"api-key"}),
    ("/v1/chat/completions", "bedrock-claude", "chat", {"authorization", "x-amz-date", "accept"}),
    (
        "/v1/chat/completions",
        "claude-sonnet",
        "chat",
        {"x-api-key", "anthropic-version", "anthropic-beta"},
    ),
    ("/v1/chat/completions", "gemini-flash", "chat", {"x-goog-api-key"}),
    ("/v1/chat/completions", "vertex-gemini", "chat", {"authorization"}),
    ("/v1/chat/completions", "vertex-claude", "chat", {"authorization", "anthropic-beta"}),
    ("/v1/responses", "gpt-4o-mini", "responses", {"authorization"}),
    ("/v1/embeddings", "text-embedding-3-small", "embeddings", {"authorization"}),
    (
        "/v1/messages",
        "claude-sonnet",
        "messages",
        {"x-api-key", "anthropic-version", "anthropic-beta"},
    ),
    ("/v1/messages", "vertex-claude", "messages", {"authorization", "anthropic-beta"}),
    ("/v1/messages", "gpt-4o-mini", "messages", {"authorization"}),
]


def body(kind: str, model: str) -> dict[str, Any]:
    if kind == "responses":
        return {"model": model, "input": "hi"}
    if kind == "embeddings":
        return {"model": model, "input": "hi"}
    if kind == "messages":
        return {"model": model, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    return {"model": model, "messages": [{"role": "user", "content": "hi"}]}


#: A model with several backends: OpenAI first, which the mock fails with a 503 (the
#: knobs below, forwarded by these two backends only), then Anthropic, which answers.
SEVERAL = "openai-then-anthropic"
FAIL_OPENAI = {"x-mock-status": "503", "x-mock-status-path": "/v1/chat"}


def config(mock_port: int) -> dict[str, Any]:
    doc = default_config(mock_port)
    for backend in doc["backends"]:
        backend["forward_headers"] = FORWARD
    endpoint = f"http://127.0.0.1:{mock_port}"
    key = {"api_key": {"env": "E2E_UPSTREAM_KEY"}}
    knobs = [*FORWARD, "x-mock-status*"]
    doc["backends"] += [
        {"name": f"knobs-{schema}", "schema": schema, "endpoint": endpoint, "auth": key}
        | {"forward_headers": knobs}
        for schema in ("openai", "anthropic")
    ]
    doc["models"].append(
        {
            "name": SEVERAL,
            "backends": [
                {"backend": "knobs-openai", "backend_model": "gpt-4o"},
                {"backend": "knobs-anthropic", "backend_model": "claude-3-5-sonnet", "priority": 1},
            ],
            "retry": {"attempts": 2, "on": ["5xx"]},
        }
    )
    return doc


@pytest.fixture(scope="module")
def hstack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running(Stack(tmp_path_factory.mktemp("headers"), config_factory=config)) as s:
        yield s


def access_log_path(stack: Stack, request_id: str) -> str | None:
    for line in stack.procs["envoy"].stdout.read_text(errors="replace").splitlines():
        if line.startswith("{") and request_id in line:
            doc = json.loads(line)
            if doc.get("request_id") == request_id and "path" in doc:  # not an attempt's
                return str(doc["path"])
    return None


@pytest.mark.parametrize(("path", "model", "kind", "own"), CASES)
def test_a_backend_receives_only_what_it_needs(
    hstack: Stack, path: str, model: str, kind: str, own: set[str]
) -> None:
    hstack.clear_mock_requests()
    request_id = f"headers-{model}-{kind}"
    headers = {**HOSTILE, "x-request-id": request_id}
    response = httpx.post(
        hstack.base_url + path, json=body(kind, model), headers=headers, timeout=30
    )
    assert response.status_code == 200, response.text
    (seen,) = [r for r in hstack.mock_requests() if r["path"] != "/token"]
    received = seen["headers"]
    expected = EVERY | own
    if seen["path"] != path:  # rewritten: the client's path goes along for the access log
        expected.add("x-ai-gateway-original-path")
        assert received["x-ai-gateway-original-path"] == path
    assert set(received) == expected, sorted(set(received) ^ expected)
    # The forwarded ones arrive as sent; the gateway's own are the gateway's.
    for name in ("traceparent", "tracestate", "x-custom-debug", "x-tenant-id"):
        assert received[name] == HOSTILE[name]
    assert received["x-request-id"] == request_id
    assert received["x-ai-gateway-model"] == model
    if "anthropic-beta" in own:
        assert received["anthropic-beta"] == HOSTILE["anthropic-beta"]
    assert "client-own-key" not in json.dumps(received)
    wait_until("its access log line", lambda: access_log_path(hstack, request_id) is not None)
    assert access_log_path(hstack, request_id) == path


@pytest.mark.parametrize(
    ("path", "kind"), [("/v1/chat/completions", "chat"), ("/v1/messages", "messages")]
)
def test_every_attempt_of_a_model_with_several_backends_receives_only_what_it_needs(
    hstack: Stack, path: str, kind: str
) -> None:
    """Envoy hands every attempt the header map the attempts before it changed: the
    second backend still gets exactly its allowlist, none of the first's headers and
    none of the gateway's."""
    hstack.clear_mock_requests()
    request_id = f"headers-several-{kind}"
    headers = {**HOSTILE, **FAIL_OPENAI, "x-request-id": request_id}
    response = httpx.post(
        hstack.base_url + path, json=body(kind, SEVERAL), headers=headers, timeout=30
    )
    assert response.status_code == 200, response.text
    first, second = [r for r in hstack.mock_requests() if r["path"] != "/token"]
    assert (first["path"], second["path"]) == ("/v1/chat/completions", "/v1/messages")
    every = (EVERY - {"x-ai-gateway-model", "x-ai-gateway-backend"}) | set(FAIL_OPENAI)
    for seen, own in ((first, {"authorization"}), (second, {"x-api-key", *ANTHROPIC})):
        received = seen["headers"]
        expected = every | own
        assert set(received) == expected, (seen["path"], sorted(set(received) ^ expected))
        for name in ("traceparent", "tracestate", "x-custom-debug", "x-tenant-id", *FAIL_OPENAI):
            assert received[name] == headers[name]
        assert received["x-request-id"] == request_id
        assert "client-own-key" not in json.dumps(received)
    assert first["headers"]["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert second["headers"]["x-api-key"] == UPSTREAM_KEY
    assert second["headers"]["anthropic-beta"] == HOSTILE["anthropic-beta"]
    assert second["headers"]["anthropic-version"] == HOSTILE["anthropic-version"]
    wait_until("its access log line", lambda: access_log_path(hstack, request_id) is not None)
    assert access_log_path(hstack, request_id) == path


@pytest.mark.parametrize(
    "path", ["/v1/chat/completions", "/v1/models", "/v1/nowhere", "/v1/messages"]
)
def test_the_access_log_never_shows_the_client_s_original_path(hstack: Stack, path: str) -> None:
    request_id = f"spoof-{path}"
    method = "GET" if path == "/v1/models" else "POST"
    response = httpx.request(
        method,
        hstack.base_url + path,
        json={"model": "no-such-model", "messages": []},
        headers={"x-ai-gateway-original-path": "/spoofed/by-client", "x-request-id": request_id},
        timeout=30,
    )
    assert response.status_code in (200, 404), response.text
    wait_until("its access log line", lambda: access_log_path(hstack, request_id) is not None)
    assert access_log_path(hstack, request_id) == path
