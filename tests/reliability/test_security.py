"""Security: backend credentials never reach logs (even at debug), metrics, error
bodies or response headers; clients cannot grow the metric series; the processor
refuses plaintext beyond loopback unless told, and serves TLS (and mutual TLS)."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
import trustme
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.e2e.stack import (
    AIGATEWAY,
    AWS_SECRET,
    GEMINI_KEY,
    UPSTREAM_KEY,
    Stack,
    free_port,
    spawn,
    wait_until,
)

CHAT = {"messages": [{"role": "user", "content": "hello there"}]}
SECRETS = (UPSTREAM_KEY, AWS_SECRET, GEMINI_KEY)


def leaks(text: str | bytes) -> list[str]:
    data = text.encode() if isinstance(text, str) else text
    return [s for s in SECRETS if s.encode() in data]


@pytest.mark.parametrize(
    ("model", "echo"),
    [
        ("gpt-4o-mini", "authorization"),
        ("azure-gpt-4o", "api-key"),
        ("claude-sonnet", "x-api-key"),
        ("bedrock-claude", "authorization"),
        ("gemini-flash", "x-goog-api-key"),
    ],
)
@pytest.mark.parametrize("status", [401, 403, 500])
def test_credentials_echoed_by_an_upstream_are_redacted(
    rstack: Stack, model: str, echo: str, status: int
) -> None:
    headers = {"x-mock-status": str(status), "x-mock-error-echo": echo}
    response = httpx.post(
        f"{rstack.base_url}/v1/chat/completions", json={"model": model, **CHAT}, headers=headers
    )
    assert response.status_code == status
    assert "you sent" in response.json()["error"]["message"]  # the echo did happen
    assert leaks(response.content) == []
    assert leaks(repr(response.headers.raw)) == []


@pytest.mark.parametrize("model", ["vertex-gemini", "vertex-claude"])
@pytest.mark.parametrize("stream", [False, True])
def test_vertex_access_tokens_echoed_by_an_upstream_are_redacted(
    rstack: Stack, model: str, stream: bool
) -> None:
    headers = {"x-mock-status": "401", "x-mock-error-echo": "authorization"}
    rstack.clear_mock_requests()
    response = httpx.post(
        f"{rstack.base_url}/v1/chat/completions",
        json={"model": model, "stream": stream, **CHAT},
        headers=headers,
    )
    (sent,) = [r for r in rstack.mock_requests() if "/publishers/" in r["path"]]
    token = sent["headers"]["authorization"].removeprefix("Bearer ")
    assert token.startswith("ya29.mock-")
    assert response.status_code == 401
    assert "you sent authorization: Bearer [redacted]" in response.json()["error"]["message"]
    assert token.encode() not in response.content
    assert token not in rstack.procs["serve"].output() + rstack.procs["envoy"].output()


def test_credentials_never_reach_logs_metrics_or_headers(rstack: Stack) -> None:
    # Traffic of every kind, including failures in every phase, with debug logging on.
    with httpx.Client(base_url=rstack.base_url, timeout=30) as client:
        for model in (
            "gpt-4o-mini",
            "azure-gpt-4o",
            "claude-sonnet",
            "bedrock-claude",
            "gemini-flash",
            "vertex-gemini",
            "vertex-claude",
        ):
            for extra in ({}, {"x-fault-phase": "response_headers"}, {"x-mock-status": "429"}):
                r = client.post(
                    "/v1/chat/completions", json={"model": model, **CHAT}, headers=extra
                )
                assert leaks(r.content) == [] and leaks(repr(r.headers.raw)) == []
                stream = {"model": model, "stream": True, **CHAT}
                with client.stream("POST", "/v1/chat/completions", json=stream, headers=extra) as s:
                    body = b"".join(s.iter_raw())
                assert leaks(body) == [] and leaks(repr(s.headers.raw)) == []
    assert leaks(rstack.metrics_text()) == []
    for name in ("serve", "envoy"):
        output = rstack.procs[name].output()
        assert leaks(output) == [], f"{name} logged a credential"
    assert "DEBUG" in rstack.procs["serve"].output()  # debug logging really was on


def series_count(text: str) -> int:
    return sum(1 for line in text.splitlines() if line and not line.startswith("#"))


def test_ten_thousand_unknown_models_add_no_series(rstack: Stack) -> None:
    async def flood(n: int) -> None:
        limits = httpx.Limits(max_connections=16)
        async with httpx.AsyncClient(base_url=rstack.base_url, limits=limits, timeout=30) as client:
            sem = asyncio.Semaphore(16)

            async def one(i: int) -> None:
                async with sem:
                    headers = {"x-ai-gateway-model": f"spoofed-{i}"} if i % 2 else {}
                    r = await client.post(
                        "/v1/chat/completions",
                        json={"model": f"unknown-{i}", **CHAT},
                        headers=headers,
                    )
                    assert r.status_code == 404

            await asyncio.gather(*(one(i) for i in range(n)))

    asyncio.run(flood(2))  # the (unknown, unknown, error) series exist from here on
    before = series_count(rstack.metrics_text())
    asyncio.run(flood(10_000))
    wait_until(
        "the flood to be recorded",
        lambda: (
            "spoofed" not in (text := rstack.metrics_text()) and _unknown_errors(text) >= 10_002
        ),
        timeout=60,
    )
    text = rstack.metrics_text()
    assert series_count(text) == before
    assert "unknown-1" not in text and "spoofed" not in text


def _unknown_errors(text: str) -> float:
    for line in text.splitlines():
        if line.startswith(
            'aigateway_requests_total{backend="unknown",model="unknown",status="error"}'
        ):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


# -- transport security of the ext_proc port ---------------------------------------------


def test_plaintext_on_a_non_loopback_address_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        "backends: [{name: b, schema: openai, endpoint: 'http://127.0.0.1:1'}]\n"
        "models: [{name: m, backend: b}]\n"
    )
    port = free_port()
    argv = [
        *AIGATEWAY,
        "serve",
        "--config",
        str(config),
        "--extproc-addr",
        f"0.0.0.0:{port}",
        "--metrics-addr",
        f"127.0.0.1:{free_port()}",
    ]
    refused = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1
    assert "Traceback" not in refused.stderr
    assert refused.stderr.startswith(
        "aigateway: refusing to serve ext_proc in plaintext on non-loopback"
    )
    allowed = spawn("serve", [*argv, "--allow-remote-plaintext"], tmp_path)
    try:
        allowed.wait_for_stderr("ready")
    finally:
        assert allowed.stop() == 0


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    ca = trustme.CA()
    folder = tmp_path_factory.mktemp("certs")
    server = ca.issue_cert("localhost", "127.0.0.1")
    client = ca.issue_cert("envoy.client")
    paths = {
        "ca": folder / "ca.pem",
        "cert": folder / "server.pem",
        "key": folder / "server.key",
        "client_cert": folder / "client.pem",
        "client_key": folder / "client.key",
    }
    ca.cert_pem.write_to_path(str(paths["ca"]))
    server.cert_chain_pems[0].write_to_path(str(paths["cert"]))
    server.private_key_pem.write_to_path(str(paths["key"]))
    client.cert_chain_pems[0].write_to_path(str(paths["client_cert"]))
    client.private_key_pem.write_to_path(str(paths["client_key"]))
    return paths


def tls_stack(tmp_path: Path, certs: dict[str, Path], *, mutual: bool, client_cert: bool) -> Stack:
    serve_args = ["--tls-cert", str(certs["cert"]), "--tls-key", str(certs["key"])]
    if mutual:
        serve_args += ["--tls-client-ca", str(certs["ca"])]
    envoy_args = ["--extproc-tls-ca", str(certs["ca"]), "--extproc-tls-sni", "localhost"]
    if client_cert:
        envoy_args += [
            "--extproc-tls-cert",
            str(certs["client_cert"]),
            "--extproc-tls-key",
            str(certs["client_key"]),
        ]
    return Stack(
        tmp_path / "stack", serve_args=serve_args, envoy_args=envoy_args, extproc_host="0.0.0.0"
    )


@pytest.fixture
def stop_after() -> Iterator[list[Stack]]:
    stacks: list[Stack] = []
    yield stacks
    for s in stacks:
        s.stop()


@pytest.mark.parametrize("mutual", [False, True])
def test_tls_on_a_non_loopback_address(
    tmp_path: Path, certs: dict[str, Path], mutual: bool, stop_after: list[Stack]
) -> None:
    stack = tls_stack(tmp_path, certs, mutual=mutual, client_cert=True)
    stop_after.append(stack)
    stack.start()
    ok = httpx.post(f"{stack.base_url}/v1/chat/completions", json={"model": "gpt-4o-mini", **CHAT})
    assert ok.status_code == 200
    # A plaintext client gets nowhere on the TLS port.
    with (
        grpc.insecure_channel(f"127.0.0.1:{stack.extproc_port}") as channel,
        pytest.raises(grpc.RpcError),
    ):
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=3)


def test_mutual_tls_refuses_an_envoy_without_a_client_certificate(
    tmp_path: Path, certs: dict[str, Path], stop_after: list[Stack]
) -> None:
    stack = tls_stack(tmp_path, certs, mutual=True, client_cert=False)
    stop_after.append(stack)
    stack.start()
    refused = httpx.post(
        f"{stack.base_url}/v1/chat/completions", json={"model": "gpt-4o-mini", **CHAT}
    )
    assert refused.status_code >= 500
    assert refused.headers["content-type"] == "application/json"
    assert stack.mock_requests() == []  # nothing reached the backend unprocessed
