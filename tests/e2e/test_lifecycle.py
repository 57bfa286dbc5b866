"""``aigateway serve`` shuts down gracefully: on SIGTERM its health turns NOT_SERVING,
streams in flight finish, and it exits 0; while it is down, clients get a clean 5xx."""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import openai
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.e2e.stack import Stack, running, wait_until
from tests.e2e.test_chat_openai import MESSAGES, post

STREAMS = 5
TOKENS = 20


@pytest.fixture
def own_stack(tmp_path: Path) -> Iterator[Stack]:
    with running(Stack(tmp_path / "stack")) as s:
        yield s


SERVICE = "envoy.service.ext_proc.v3.ExternalProcessor"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class HealthWatch:
    """A gRPC health Watch opened now; it sees status changes during shutdown (new
    RPCs are refused once the server drains, a watch already open is not)."""

    def __init__(self, stack: Stack) -> None:
        self.channel = grpc.insecure_channel(f"127.0.0.1:{stack.extproc_port}")
        stub = health_pb2_grpc.HealthStub(self.channel)
        self.statuses: list[int] = []
        self._call = stub.Watch(health_pb2.HealthCheckRequest(service=SERVICE), timeout=60)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for update in self._call:
                self.statuses.append(int(update.status))
        except grpc.RpcError:
            pass

    def close(self) -> None:
        self._call.cancel()
        self.channel.close()


def test_sigterm_drains_streams_in_flight_then_exits_zero(own_stack: Stack) -> None:
    stack = own_stack
    watch = HealthWatch(stack)
    wait_until("the health watch to report SERVING", lambda: watch.statuses == [SERVING])
    client = openai.OpenAI(base_url=f"{stack.base_url}/v1", api_key="k", max_retries=0)
    results: list[str] = []
    errors: list[BaseException] = []
    first_chunk = threading.Barrier(STREAMS + 1, timeout=30)

    def stream() -> None:
        try:
            text = ""
            chunks = client.chat.completions.create(
                model="gpt-4o-mini",
                messages=MESSAGES,
                stream=True,
                extra_headers={"x-mock-output-tokens": str(TOKENS), "x-mock-itl-ms": "60"},
            )
            for i, chunk in enumerate(chunks):
                if i == 1:
                    first_chunk.wait()
                text += chunk.choices[0].delta.content or "" if chunk.choices else ""
            results.append(text)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=stream) for _ in range(STREAMS)]
    for t in threads:
        t.start()
    first_chunk.wait()  # every stream is in flight
    serve = stack.procs["serve"]
    serve.popen.send_signal(signal.SIGTERM)
    wait_until("health to turn NOT_SERVING", lambda: NOT_SERVING in watch.statuses, timeout=10)
    watch.close()
    for t in threads:
        t.join(60)
    assert errors == []
    assert len(results) == STREAMS
    assert all(len(text.split()) == TOKENS for text in results)
    assert serve.popen.wait(30) == 0
    assert "Traceback" not in serve.output()

    # The processor is gone: Envoy (failure_mode_allow: false) answers a clean JSON 5xx.
    status, headers, body = post(
        stack,
        "/v1/chat/completions",
        json.dumps({"model": "gpt-4o-mini", "messages": MESSAGES}).encode(),
    )
    assert 500 <= status < 600
    assert headers["content-type"] == "application/json"
    assert json.loads(body)["error"]["type"] == "server_error"

    # And after a restart, requests succeed again.
    stack.start_processor()
    wait_until(
        "requests to succeed after the restart",
        lambda: (
            post(
                stack,
                "/v1/chat/completions",
                json.dumps({"model": "gpt-4o-mini", "messages": MESSAGES}).encode(),
            )[0]
            == 200
        ),
        timeout=10,
    )
