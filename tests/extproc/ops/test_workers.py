"""``aigateway serve --workers N`` end to end through a real Envoy: streams spread over
the workers, each worker's ``/metrics`` counts its own requests and the sum over workers
is exact, SIGTERM drains and leaves no process behind, a killed worker is restarted while
the others serve every request."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from aigateway.extproc.framework.addresses import Address
from aigateway.extproc.ops.workers import counter_address, large_body_address, worker_addresses
from tests.e2e.stack import (
    AIGATEWAY,
    Stack,
    alive,
    child_serving,
    children,
    free_ports,
    http_get,
    running,
    spawn,
    wait_until,
)

WORKERS = 2
MESSAGES = [{"role": "user", "content": "Say something about gateways"}]


@dataclass
class WorkersStack(Stack):
    """The e2e stack with ``serve --workers N`` and ``envoy-config --workers N``."""

    def __post_init__(self) -> None:
        self.serve_args = [*self.serve_args, "--workers", str(WORKERS)]
        self.envoy_args = [*self.envoy_args, "--workers", str(WORKERS), "--no-access-log"]

    def allocate_ports(self) -> None:
        super().allocate_ports()
        # The workers' ports, their parent's (it counts what no worker recorded), then the
        # large-body worker's.
        self.extproc_port = free_ports(WORKERS + 2)
        self.metrics_port = free_ports(WORKERS + 2)

    def worker_metrics(self, index: int) -> str:
        status, body = http_get(f"http://127.0.0.1:{self.metrics_port + index}/metrics")
        assert status == 200
        return body.decode()

    def requests_counted(self, index: int) -> float:
        """``aigateway_requests_total`` summed over its series, for one worker."""
        total = 0.0
        for family in text_string_to_metric_families(self.worker_metrics(index)):
            for sample in family.samples:
                if sample.name == "aigateway_requests_total":
                    total += sample.value
        return total


def one_backend(mock_port: int) -> dict[str, Any]:
    return {
        "backends": [
            {"name": "mock", "schema": "openai", "endpoint": f"http://127.0.0.1:{mock_port}"}
        ],
        "models": [{"name": "gpt-4o-mini", "backend": "mock"}],
    }


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[WorkersStack]:
    with running(WorkersStack(tmp_path / "stack", config_factory=one_backend)) as s:
        yield s


def test_streams_spread_over_workers_and_metrics_sum_exactly(stack: WorkersStack) -> None:
    client = openai.OpenAI(base_url=f"{stack.base_url}/v1", api_key="unused", max_retries=0)
    sent = 40
    for i in range(sent):
        if i % 4 == 0:
            chunks = list(
                client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
            )
            assert chunks
        else:
            assert client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES).choices

    # Each request is counted by its worker when its response completes, which may be
    # a moment after the client has its answer: wait (with a deadline) for the total.
    wait_until(
        f"{sent} requests counted over the workers",
        lambda: sum(stack.requests_counted(i) for i in range(WORKERS)) >= sent,
    )
    counts = [stack.requests_counted(i) for i in range(WORKERS)]
    assert sum(counts) == sent
    assert all(count > 0 for count in counts), counts  # Envoy used every worker
    for i in range(WORKERS):
        assert 'status="success"' in stack.worker_metrics(i)
    # The ready line names every worker, the large-body worker after the parent's port.
    large = stack.extproc_port + WORKERS + 1
    assert f"large-body worker: ext_proc on 127.0.0.1:{large}" in stack.procs["serve"].output()


def test_sigterm_drains_every_worker_and_exits_zero(stack: WorkersStack) -> None:
    serve = stack.procs["serve"]
    workers = children(serve.popen.pid)
    assert len(workers) == WORKERS + 1  # and the large-body worker
    assert stack.procs["serve"].stop(signal.SIGTERM) == 0
    wait_until("every worker to be gone", lambda: not any(alive(pid) for pid in workers), 10)
    assert "exited with code" not in serve.output()


def test_a_killed_worker_is_restarted_and_the_group_keeps_serving(stack: WorkersStack) -> None:
    serve = stack.procs["serve"]
    client = openai.OpenAI(base_url=f"{stack.base_url}/v1", api_key="unused", max_retries=0)
    workers = [
        child_serving(serve.popen.pid, f"127.0.0.1:{stack.extproc_port + i}") for i in (0, 1)
    ]
    os.kill(workers[1], signal.SIGKILL)
    serve.wait_for_stderr("exited with code -9; restarting it")
    # The other worker serves every request meanwhile (Envoy retries a refused stream on
    # it), and the group is whole again after the backoff.
    served = 0

    def restarted() -> bool:
        nonlocal served
        assert client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES).choices
        served += 1
        return served >= 10 and len(children(serve.popen.pid)) == WORKERS + 1 and _serves(stack, 1)

    wait_until("worker 1 restarted and serving its metrics", restarted)
    assert serve.popen.poll() is None
    assert workers[0] in children(serve.popen.pid)  # the survivor was left alone
    # Every request was answered by a worker (a refused stream is retried on the other):
    # none went to the parent, which counts only what no worker recorded.
    assert stack.envoy_stat("access_logs.grpc_access_log.logs_written") == 0
    wait_until("the parent's metrics", lambda: _serves(stack, WORKERS))
    assert "aigateway_requests_total{" not in stack.worker_metrics(WORKERS)
    assert stack.procs["serve"].stop(signal.SIGTERM) == 0


def test_workers_are_recycled_after_max_requests_and_no_request_fails(tmp_path: Path) -> None:
    recycled = WorkersStack(
        tmp_path / "stack", config_factory=one_backend, serve_args=["--max-requests", "5"]
    )
    with running(recycled) as stack:
        serve = stack.procs["serve"]
        client = openai.OpenAI(base_url=f"{stack.base_url}/v1", api_key="unused", max_retries=0)
        sent = 0

        def both_recycled() -> bool:
            nonlocal sent
            reply = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
            assert reply.choices  # every request answered, through every recycling
            sent += 1
            output = serve.output()
            return "recycling worker 0" in output and "recycling worker 1" in output

        wait_until("both workers recycled", both_recycled, timeout=90)
        assert "exited with code" not in serve.output()  # drained, not crashed
        assert serve.popen.poll() is None


def _serves(stack: WorkersStack, index: int) -> bool:
    try:
        return http_get(f"http://127.0.0.1:{stack.metrics_port + index}/metrics", 1)[0] == 200
    except OSError:
        return False


def test_a_worker_that_dies_before_the_group_is_ready_ends_it_with_an_error(
    tmp_path: Path,
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "backends": [{"name": "b", "schema": "openai", "endpoint": "http://127.0.0.1:1"}],
                "models": [{"name": "m", "backend": "b"}],
            }
        )
    )
    base, metrics = free_ports(WORKERS + 2), free_ports(WORKERS + 2)
    import socket

    with socket.socket() as taken:  # worker 1's port is taken: it cannot start
        taken.bind(("127.0.0.1", base + 1))
        taken.listen()
        serve = spawn(
            "serve",
            [
                *AIGATEWAY,
                "serve",
                "--config",
                str(config),
                "--workers",
                str(WORKERS),
                "--extproc-addr",
                f"127.0.0.1:{base}",
                "--metrics-addr",
                f"127.0.0.1:{metrics}",
            ],
            tmp_path,
        )
        try:
            assert serve.popen.wait(30) == 1
            assert "stopping the other workers" in serve.output()
        finally:
            serve.stop()


def test_worker_addresses_are_consecutive() -> None:
    assert worker_addresses(Address("127.0.0.1", 1063), 3) == [
        Address("127.0.0.1", 1063),
        Address("127.0.0.1", 1064),
        Address("127.0.0.1", 1065),
    ]
    assert worker_addresses(Address(unix_path="/run/ext.sock"), 2) == [
        Address(unix_path="/run/ext.sock.0"),
        Address(unix_path="/run/ext.sock.1"),
    ]
    assert worker_addresses(Address("", 0), 2) == [Address("", 0)] * 2
    assert worker_addresses(Address("", 9190), 1) == [Address("", 9190)]
    with pytest.raises(ValueError, match="65535"):
        worker_addresses(Address("", 65535), 2)


def test_the_parent_counts_on_the_address_after_its_workers() -> None:
    assert counter_address(Address("127.0.0.1", 1063), 3) == Address("127.0.0.1", 1066)
    assert counter_address(Address("127.0.0.1", 1063), 1) == Address("127.0.0.1", 1064)
    assert counter_address(Address(unix_path="/run/ext.sock"), 2) == Address(
        unix_path="/run/ext.sock.2"
    )
    assert counter_address(Address("", 0), 2) == Address("", 0)
    with pytest.raises(ValueError, match="65535"):
        counter_address(Address("", 65534), 2)


def test_the_large_body_worker_listens_after_the_parent() -> None:
    assert large_body_address(Address("127.0.0.1", 1063), 3) == Address("127.0.0.1", 1067)
    assert large_body_address(Address("127.0.0.1", 1063), 1) == Address("127.0.0.1", 1065)
    assert large_body_address(Address(unix_path="/run/ext.sock"), 2) == Address(
        unix_path="/run/ext.sock.3"
    )
    assert large_body_address(Address("", 0), 2) == Address("", 0)
    with pytest.raises(ValueError, match="65535"):
        large_body_address(Address("", 65533), 2)


def test_envoy_config_lists_one_endpoint_per_worker(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "backends": [{"name": "b", "schema": "openai", "endpoint": "http://127.0.0.1:1"}],
                "models": [{"name": "m", "backend": "b"}],
            }
        )
    )
    out = subprocess.run(
        [
            *AIGATEWAY,
            "envoy-config",
            "--config",
            str(config),
            "--workers",
            "3",
            "--extproc-addr",
            "127.0.0.1:2000",
        ],
        capture_output=True,
        check=True,
        text=True,
    ).stdout
    clusters = yaml.safe_load(out)["static_resources"]["clusters"]
    extproc = next(c for c in clusters if c["name"] == "aigateway-extproc")
    endpoints = extproc["load_assignment"]["endpoints"][0]["lb_endpoints"]
    ports = [e["endpoint"]["address"]["socket_address"]["port_value"] for e in endpoints]
    assert ports == [2000, 2001, 2002]
    # The parent takes Envoy's log of the requests no worker recorded.
    counter = next(c for c in clusters if c["name"] == "aigateway-unrecorded")
    (endpoint,) = counter["load_assignment"]["endpoints"][0]["lb_endpoints"]
    assert endpoint["endpoint"]["address"]["socket_address"]["port_value"] == 2003
    # Large bodies go to the large-body worker, the other workers standing in for it.
    large = next(c for c in clusters if c["name"] == "aigateway-extproc-large")
    tiers = [
        (
            tier.get("priority", 0),
            [
                e["endpoint"]["address"]["socket_address"]["port_value"]
                for e in tier["lb_endpoints"]
            ],
        )
        for tier in large["load_assignment"]["endpoints"]
    ]
    assert tiers == [(0, [2004]), (1, [2000, 2001, 2002])]
