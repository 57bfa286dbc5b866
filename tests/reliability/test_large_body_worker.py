"""Small requests keep their latency while large bodies are in flight
(docs/reliability.md, "Large bodies"): under ``serve --workers 1`` Envoy takes every
request whose body may be large to the large-body worker, so large bodies held there (the
worker stopped) leave the other worker answering every small request; the large ones
finish once it runs again, and every request is counted once over the workers. While the
large-body worker is down the other worker takes the large bodies, and the requests it
held when it died are counted by the parent."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from aigateway.extproc.framework.server import LARGE_BODY_BYTES
from aigateway.extproc.ops.workers import LARGE_BODY_NICENESS
from benchmarks.burst import chat_body
from tests.e2e.stack import Stack, child_serving, free_ports, http_get, running, wait_until

PATH = "/v1/chat/completions"
SMALL = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "small"}]}
JSON = {"content-type": "application/json"}
LARGE = "cluster.aigateway-extproc-large"
WORKER, PARENT, LARGE_BODY_WORKER = 0, 1, 2  # by metrics port offset


def config(mock_port: int) -> dict[str, Any]:
    endpoint = f"http://127.0.0.1:{mock_port}"
    return {
        "backends": [
            {"name": "mock-a", "schema": "openai", "endpoint": endpoint},
            {"name": "mock-b", "schema": "openai", "endpoint": endpoint},
        ],
        "models": [
            {"name": "gpt-4o-mini", "backend": "mock-a"},
            {"name": "spread", "backends": [{"backend": "mock-a"}, {"backend": "mock-b"}]},
        ],
    }


@dataclass
class LargeBodyStack(Stack):
    """``serve --workers 1`` and ``envoy-config --workers 1``: a worker, the parent that
    counts what no worker recorded, and the large-body worker."""

    def __post_init__(self) -> None:
        self.serve_args = [*self.serve_args, "--workers", "1"]
        self.envoy_args = [*self.envoy_args, "--workers", "1", "--no-access-log"]

    def allocate_ports(self) -> None:
        super().allocate_ports()
        self.extproc_port = free_ports(3)
        self.metrics_port = free_ports(3)

    def pid(self, index: int) -> int:
        serve = self.procs["serve"].popen.pid
        return child_serving(serve, f"127.0.0.1:{self.extproc_port + index}")

    def counted(self, index: int) -> int:
        """``aigateway_requests_total`` over its series, from one process's /metrics."""
        status, body = http_get(f"http://127.0.0.1:{self.metrics_port + index}/metrics", 2)
        assert status == 200
        return sum(
            int(sample.value)
            for family in text_string_to_metric_families(body.decode())
            for sample in family.samples
            if sample.name == "aigateway_requests_total"
        )

    def counted_by_all(self) -> int:
        return sum(self.counted(i) for i in (WORKER, PARENT, LARGE_BODY_WORKER))


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[LargeBodyStack]:
    with running(LargeBodyStack(tmp_path / "stack", config_factory=config)) as s:
        yield s


def large_body(model: str = "gpt-4o-mini") -> bytes:
    return chat_body(LARGE_BODY_BYTES + 1000, model)


async def gated(body: bytes, gate: asyncio.Event) -> AsyncIterator[bytes]:
    """``body``'s first bytes at once, the rest once ``gate`` is set."""
    yield body[:100]
    await gate.wait()
    yield body[100:]


async def held_at_large_body_worker(
    client: httpx.AsyncClient,
    stack: LargeBodyStack,
    body: bytes,
    headers: dict[str, str],
    count: int,
    gate: asyncio.Event,
) -> list[asyncio.Future[httpx.Response]]:
    """``count`` posts of ``body``, returned once their streams are open at the
    large-body worker; the rest of each body is sent when ``gate`` is set."""
    posts = [
        asyncio.ensure_future(client.post(PATH, content=gated(body, gate), headers=headers))
        for _ in range(count)
    ]
    await asyncio.to_thread(
        wait_until,
        "the streams at the large-body worker",
        lambda: stack.envoy_stat(f"{LARGE}.upstream_rq_active") == count,
    )
    return posts


def test_small_requests_are_answered_while_large_bodies_are_held(stack: LargeBodyStack) -> None:
    held, small = 4, 20
    large_pid = stack.pid(LARGE_BODY_WORKER)
    # Lower CPU priority: on busy cores the small requests' processes come first.
    niceness = os.getpriority(os.PRIO_PROCESS, stack.pid(WORKER)) + LARGE_BODY_NICENESS
    assert os.getpriority(os.PRIO_PROCESS, large_pid) == min(niceness, 19)

    async def run() -> None:
        async with httpx.AsyncClient(base_url=stack.base_url, timeout=60) as client:
            gate = asyncio.Event()
            body = large_body()
            sized = {**JSON, "content-length": str(len(body))}
            # Their streams open at the large-body worker with their headers; stopped, it
            # then holds their bodies.
            larges = await held_at_large_body_worker(client, stack, body, sized, held, gate)
            os.kill(large_pid, signal.SIGSTOP)
            try:
                gate.set()
                smalls = await asyncio.gather(
                    *(client.post(PATH, json=SMALL) for _ in range(small))
                )
                assert [r.status_code for r in smalls] == [200] * small
                assert not any(task.done() for task in larges)
                assert stack.envoy_stat(f"{LARGE}.upstream_rq_active") == held
            finally:
                os.kill(large_pid, signal.SIGCONT)
            assert [r.status_code for r in await asyncio.gather(*larges)] == [200] * held

    asyncio.run(run())
    wait_until("every request counted", lambda: stack.counted_by_all() >= held + small)
    assert stack.counted(LARGE_BODY_WORKER) == held
    assert stack.counted(WORKER) == small
    assert stack.counted(PARENT) == 0


def test_a_large_body_to_a_model_with_several_backends_stays_on_the_large_body_worker(
    stack: LargeBodyStack,
) -> None:
    with httpx.Client(base_url=stack.base_url, timeout=60) as client:
        # The client's own routing headers are removed before any route is matched.
        spoofed = {**JSON, "x-ai-gateway-backend": "mock-a", "x-ai-gateway-model": "spread"}
        reply = client.post(PATH, content=large_body("spread"), headers=spoofed)
        assert reply.status_code == 200
        # The listener's stream and the attempt's, both at the large-body worker.
        assert stack.envoy_stat(f"{LARGE}.upstream_rq_total") == 2
        before = stack.envoy_stat("cluster.aigateway-extproc.upstream_rq_total")
        assert client.get("/v1/models").status_code == 200
        small = client.post(PATH, json={**SMALL, "model": "spread"})
        assert small.status_code == 200
    assert stack.envoy_stat(f"{LARGE}.upstream_rq_total") == 2
    # The models list, and the small request's stream and its attempt's.
    assert stack.envoy_stat("cluster.aigateway-extproc.upstream_rq_total") >= before + 3
    wait_until("both counted", lambda: stack.counted_by_all() >= 2)
    assert (stack.counted(LARGE_BODY_WORKER), stack.counted(WORKER)) == (1, 1)


def test_while_the_large_body_worker_is_down_the_worker_takes_large_bodies(
    stack: LargeBodyStack,
) -> None:
    held, meanwhile = 2, 3
    large_pid = stack.pid(LARGE_BODY_WORKER)

    async def run() -> None:
        async with httpx.AsyncClient(base_url=stack.base_url, timeout=60) as client:
            gate = asyncio.Event()
            # No content-length: of unknown size, so taken to the large-body worker.
            body = chat_body(200)
            unsized = await held_at_large_body_worker(client, stack, body, JSON, held, gate)
            os.kill(large_pid, signal.SIGSTOP)
            gate.set()
            # Envoy's health check finds it unresponsive: large bodies go to the worker.
            await asyncio.to_thread(
                wait_until,
                "the large-body worker marked unhealthy",
                lambda: stack.envoy_stat(f"{LARGE}.membership_healthy") == 1,
            )
            larges = await asyncio.gather(
                *(client.post(PATH, content=large_body(), headers=JSON) for _ in range(meanwhile))
            )
            assert [r.status_code for r in larges] == [200] * meanwhile
            # Killed, it fails what it held; its parent counts those, and restarts it.
            os.kill(large_pid, signal.SIGKILL)
            for reply in await asyncio.gather(*unsized):
                assert reply.status_code == 500
                assert reply.json()["error"]["type"] == "server_error"

    asyncio.run(run())
    sent = held + meanwhile
    wait_until("every request counted", lambda: stack.counted(PARENT) >= held, 10)
    assert stack.counted(PARENT) == held
    assert stack.counted(WORKER) == meanwhile
    wait_until("the large-body worker restarted", lambda: _serves(stack, LARGE_BODY_WORKER), 30)
    assert stack.counted_by_all() == sent


def _serves(stack: LargeBodyStack, index: int) -> bool:
    try:
        stack.counted(index)
    except OSError:
        return False
    return True
