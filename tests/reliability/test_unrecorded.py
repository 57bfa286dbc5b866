"""Requests Envoy answers itself are counted exactly once (docs/architecture.md, "Requests
no processor recorded"): a worker of ``serve --workers 1`` is killed with streams and
requests held at the upstream, more requests come while it is down and after its
restart, and the counts of the worker (before the kill and after the restart) and of the
parent add up to exactly what the clients sent, each request counted by one of them."""

from __future__ import annotations

import asyncio
import os
import signal
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.stack import Stack, child_serving, free_ports, http_get, running, wait_until

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "count me"}]}
PATH = "/v1/chat/completions"
HOLD = {"x-mock-ttft-ms": "600000"}  # held before the response starts
HOLD_STREAM = {"x-mock-output-tokens": "4", "x-mock-itl-ms": "600000"}  # after its first chunk
#: Its terminal event passed (recorded), the end of its body held at the upstream.
HOLD_END = {"x-mock-output-tokens": "4", "x-mock-hold-end": "kill-test"}
HELD, HELD_STREAMS, DONE_STREAMS, LEFT, MODELS, WHILE_DOWN, AFTER = 8, 8, 4, 4, 2, 16, 20

Series = tuple[str, str, str]  # backend, model, status


@dataclass
class SupervisedStack(Stack):
    """The e2e stack with ``serve --workers 1`` and ``envoy-config --workers 1``: one
    worker, and the parent that counts what Envoy answered without it."""

    def __post_init__(self) -> None:
        self.serve_args = [*self.serve_args, "--workers", "1"]
        self.envoy_args = [*self.envoy_args, "--workers", "1"]

    def allocate_ports(self) -> None:
        super().allocate_ports()
        # The worker's, the parent's, then the large-body worker's.
        self.extproc_port = free_ports(3)
        self.metrics_port = free_ports(3)

    def requests(self, index: int) -> Counter[Series]:
        """``aigateway_requests_total`` by series: the worker's (0) or the parent's (1)."""
        status, body = http_get(f"http://127.0.0.1:{self.metrics_port + index}/metrics", 2)
        assert status == 200
        out: Counter[Series] = Counter()
        for family in text_string_to_metric_families(body.decode()):
            for sample in family.samples:
                if sample.name == "aigateway_requests_total":
                    labels = sample.labels
                    key = (labels["backend"], labels["model"], labels["status"])
                    out[key] += int(sample.value)
        return out


def _serves(stack: SupervisedStack, index: int) -> bool:
    try:
        stack.requests(index)
    except OSError:
        return False
    return True


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[SupervisedStack]:
    with running(SupervisedStack(tmp_path / "stack")) as s:
        yield s


def test_a_worker_killed_under_load_every_request_is_counted_exactly_once(
    stack: SupervisedStack,
) -> None:
    serve = stack.procs["serve"]
    worker = child_serving(serve.popen.pid, f"127.0.0.1:{stack.extproc_port}")
    statuses: list[int] = []

    async def run() -> None:
        async with httpx.AsyncClient(base_url=stack.base_url, timeout=60) as client:
            # Answered and recorded by the worker: a success, and clients leaving
            # mid-stream (recorded by the worker when its stream ends, never by the parent).
            assert (await client.post(PATH, json=CHAT)).status_code == 200
            for _ in range(LEFT):
                body = {**CHAT, "stream": True}
                async with client.stream("POST", PATH, json=body, headers=HOLD_STREAM) as r:
                    async for _chunk in r.aiter_bytes():
                        break
            # Recorded at their terminal event, held open until the worker dies: the
            # parent must not count them again.
            done = 0
            all_done = asyncio.Event()

            async def done_stream() -> None:
                nonlocal done
                body = {**CHAT, "stream": True}
                with pytest.raises(httpx.RemoteProtocolError):  # reset when the worker dies
                    async with client.stream("POST", PATH, json=body, headers=HOLD_END) as r:
                        async for line in r.aiter_lines():
                            if line == "data: [DONE]":
                                done += 1
                                if done == DONE_STREAMS:
                                    all_done.set()

            done_tasks = [asyncio.ensure_future(done_stream()) for _ in range(DONE_STREAMS)]
            await asyncio.wait_for(all_done.wait(), 30)
            recorded = 1 + LEFT + DONE_STREAMS
            await asyncio.to_thread(
                wait_until,
                "the worker to record what it answered",
                lambda: stack.requests(0).total() == recorded,
            )
            before = stack.requests(0)  # scraped: a kill loses only what came after
            stack.clear_mock_requests()

            # Held at the upstream: the worker has them, and has recorded none.
            started = 0
            all_started = asyncio.Event()

            async def held_stream() -> None:
                nonlocal started
                body = {**CHAT, "stream": True}
                with pytest.raises(httpx.RemoteProtocolError):  # reset when the worker dies
                    async with client.stream("POST", PATH, json=body, headers=HOLD_STREAM) as r:
                        assert r.status_code == 200
                        async for _chunk in r.aiter_bytes():
                            started += 1
                            if started == HELD_STREAMS:
                                all_started.set()

            async def held() -> None:
                reply = await client.post(PATH, json=CHAT, headers=HOLD)
                assert reply.status_code == 500
                assert reply.json()["error"]["type"] == "server_error"

            tasks = [asyncio.ensure_future(held_stream()) for _ in range(HELD_STREAMS)]
            tasks += [asyncio.ensure_future(held()) for _ in range(HELD)]
            await asyncio.wait_for(all_started.wait(), 30)
            await asyncio.to_thread(
                wait_until,
                "every held request at the upstream",
                lambda: len(stack.mock_requests()) == HELD + HELD_STREAMS,
            )
            assert stack.requests(0) == before

            os.kill(worker, signal.SIGKILL)
            await asyncio.gather(*tasks, *done_tasks)
            # While it is down Envoy answers itself; once restarted, the worker does. The
            # models list is never counted, even when Envoy answers it (logged first).
            models = [client.get("/v1/models") for _ in range(MODELS)]
            models_by_envoy = [r.status_code for r in await asyncio.gather(*models)].count(500)
            down = [client.post(PATH, json=CHAT) for _ in range(WHILE_DOWN)]
            statuses.extend(r.status_code for r in await asyncio.gather(*down))
            await asyncio.to_thread(
                wait_until, "the worker restarted", lambda: _serves(stack, 0), 60
            )
            after_restart = [client.post(PATH, json=CHAT) for _ in range(AFTER)]
            assert all(r.status_code == 200 for r in await asyncio.gather(*after_restart))

            answered_by_envoy = statuses.count(500)
            assert answered_by_envoy + statuses.count(200) == WHILE_DOWN
            assert answered_by_envoy >= 1 and models_by_envoy >= 1  # restarts take 0.5 s+
            held_total = HELD + HELD_STREAMS
            # Envoy sends its log every 0.1 s: wait until the parent has every entry
            # Envoy wrote, then check that nothing was lost or counted twice.
            await asyncio.to_thread(
                wait_until,
                "the parent to count every entry Envoy logged",
                lambda: (
                    stack.requests(1).total() == held_total + answered_by_envoy
                    and stack.envoy_stat("access_logs.grpc_access_log.logs_written")
                    == held_total + answered_by_envoy + models_by_envoy
                ),
            )
            assert stack.envoy_stat("access_logs.grpc_access_log.logs_dropped") == 0
            after = AFTER + statuses.count(200)
            await asyncio.to_thread(
                wait_until,
                "the restarted worker to record what it answered",
                lambda: stack.requests(0).total() >= after,
            )
            restarted = stack.requests(0)
            parent = stack.requests(1)  # read again, later: nothing more came
            assert parent == {
                ("mock-openai", "gpt-4o-mini", "error"): held_total,
                ("unknown", "unknown", "error"): answered_by_envoy,
            }
            assert restarted == {("mock-openai", "gpt-4o-mini", "success"): after}
            sent = recorded + held_total + WHILE_DOWN + AFTER
            assert before.total() + parent.total() + restarted.total() == sent

    asyncio.run(run())
    assert stack.procs["serve"].stop(signal.SIGTERM) == 0
