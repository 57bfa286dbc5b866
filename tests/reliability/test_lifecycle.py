"""Lifecycle under load: SIGTERM with 50 streams in flight drains them all and exits 0;
a processor killed outright leaves clients with a clean 5xx (failure_mode_allow: false)
and, once restarted, requests succeed again within 2 s."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.stack import Stack, running, wait_until
from tests.e2e.test_lifecycle import NOT_SERVING, SERVING, HealthWatch
from tests.reliability.conftest import stream_text

STREAMS = 50
TOKENS = 30
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "count for me"}]}


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with running(Stack(tmp_path / "stack")) as s:
        yield s


def test_sigterm_with_50_streams_in_flight(stack: Stack) -> None:
    watch = HealthWatch(stack)
    wait_until("health SERVING", lambda: watch.statuses == [SERVING])
    serve = stack.procs["serve"]

    async def run() -> list[str]:
        limits = httpx.Limits(max_connections=STREAMS)
        async with httpx.AsyncClient(base_url=stack.base_url, limits=limits, timeout=60) as client:
            started = 0
            all_started = asyncio.Event()

            async def one() -> str:
                nonlocal started
                body = {**CHAT, "stream": True}
                headers = {"x-mock-output-tokens": str(TOKENS), "x-mock-itl-ms": "50"}
                async with client.stream(
                    "POST", "/v1/chat/completions", json=body, headers=headers
                ) as r:
                    assert r.status_code == 200
                    chunks = []
                    async for chunk in r.aiter_bytes():
                        if not chunks:
                            started += 1
                            if started == STREAMS:
                                all_started.set()
                        chunks.append(chunk)
                return stream_text(b"".join(chunks))

            tasks = [asyncio.ensure_future(one()) for _ in range(STREAMS)]
            await asyncio.wait_for(all_started.wait(), 30)
            serve.popen.send_signal(signal.SIGTERM)  # every stream is in flight
            return list(await asyncio.gather(*tasks))

    texts = asyncio.run(run())
    assert len(texts) == STREAMS
    assert all(len(t.split()) == TOKENS for t in texts)
    wait_until("health NOT_SERVING", lambda: NOT_SERVING in watch.statuses, timeout=10)
    watch.close()
    assert serve.popen.wait(30) == 0
    assert "Traceback" not in serve.output()


def test_killed_processor_fails_clean_and_recovers(stack: Stack) -> None:
    with httpx.Client(base_url=stack.base_url, timeout=10) as client:
        assert client.post("/v1/chat/completions", json=CHAT).status_code == 200
        serve = stack.procs["serve"]
        serve.popen.send_signal(signal.SIGKILL)
        serve.popen.wait(10)
        for _ in range(5):
            down = client.post("/v1/chat/completions", json=CHAT)
            assert 500 <= down.status_code < 600
            assert down.headers["content-type"] == "application/json"
            assert down.json()["error"]["type"] == "server_error"
        stack.start_processor()  # returns once it prints ready
        # The requirement: requests succeed again within 2 s of the restart.
        wait_until(
            "a request to succeed after the restart",
            lambda: client.post("/v1/chat/completions", json=CHAT).status_code == 200,
            timeout=2,
        )
