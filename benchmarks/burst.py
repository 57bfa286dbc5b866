"""The large-body burst of issue 22 against a running stack: ``big`` concurrent chat
requests of ``big_mb`` MB each, then ``small`` small ones once the big ones are sent.
Returns every answer's status and latency, Envoy's processor-cluster stats and the
processor's RSS, so settings can be compared (benchmarks/NOTES.md, "Large bodies").

``--compare TREE`` starts the stacks itself instead, ``serve --workers 1`` of ``TREE``
(another checkout, e.g. ``git archive main``) and of this tree in turn, and reports
the small requests' p50/p95 unloaded and during each burst, side by side. The small
requests' model is on a mock backend of its own: the mock is one Python process, and
its parsing the large bodies would otherwise hold the small ones up as well::

    python -m benchmarks.burst --compare /tmp/main-tree --rounds 3 --runs 2
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

STATS = (
    "cluster.aigateway-extproc.http2.outbound_flood",
    "cluster.aigateway-extproc.upstream_rq_tx_reset",
    "cluster.aigateway-extproc.upstream_cx_total",
    "cluster.aigateway-extproc.upstream_cx_destroy_remote_with_active_rq",
)


@dataclass(slots=True)
class BurstResult:
    big: list[int] = field(default_factory=list)
    small: list[int] = field(default_factory=list)
    small_latency: list[float] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=dict)


def rss_mib(pid: int) -> float:
    """Resident memory of ``pid`` and its children, in MiB (from /proc)."""
    total = 0
    pids = [pid]
    while pids:
        p = pids.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            for task in Path(f"/proc/{p}/task").glob("*"):
                pids.extend(int(c) for c in (task / "children").read_text().split())
        except OSError:
            continue
    return total / 1024


def envoy_stats(admin_port: int) -> dict[str, int]:
    url = f"http://127.0.0.1:{admin_port}/stats?format=json&filter=aigateway-extproc"
    with urllib.request.urlopen(url, timeout=5) as resp:
        doc = json.loads(resp.read())
    values = {s["name"]: int(s.get("value", 0)) for s in doc["stats"] if "value" in s}
    return {name: values.get(name, 0) for name in STATS}


def chat_body(size: int, model: str = "gpt-4o-mini") -> bytes:
    head = b'{"model":"' + model.encode() + b'","messages":[{"role":"user","content":"'
    tail = b'"}]}'
    return head + b"x" * max(0, size - len(head) - len(tail)) + tail


async def burst(
    base_url: str,
    *,
    big: int = 16,
    big_mb: int = 30,
    small: int = 20,
    path: str = "/v1/chat/completions",
    small_model: str = "gpt-4o-mini",
) -> BurstResult:
    result = BurstResult()
    big_body = chat_body(big_mb * 1000 * 1000)
    small_body = chat_body(200, small_model)
    limits = httpx.Limits(max_connections=big + small, max_keepalive_connections=big + small)
    headers = {"content-type": "application/json"}
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=120) as client:

        async def one_big() -> None:
            r = await client.post(path, content=big_body, headers=headers)
            result.big.append(r.status_code)

        async def one_small() -> None:
            start = time.monotonic()
            r = await client.post(path, content=small_body, headers=headers)
            result.small_latency.append(time.monotonic() - start)
            result.small.append(r.status_code)

        bigs = [asyncio.ensure_future(one_big()) for _ in range(big)]
        # The shape: the small ones arrive while the big ones are uploading.
        await asyncio.sleep(0.3)
        smalls = [asyncio.ensure_future(one_small()) for _ in range(small)]
        await asyncio.gather(*bigs, *smalls)
    return result


def quantile(values: list[float], q: float) -> float:
    """The ``q`` quantile of ``values`` (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def compare(args: argparse.Namespace) -> None:
    """Alternates ``serve --workers 1`` of ``args.compare`` and of this tree, a fresh
    stack per round: the small requests' latency unloaded, then during each burst."""
    import tempfile

    from tests.e2e.stack import AIGATEWAY, Stack, free_port, free_ports, running, spawn

    class WorkersStack(Stack):
        def allocate_ports(self) -> None:
            super().allocate_ports()
            self.extproc_port, self.metrics_port = free_ports(3), free_ports(3)

    def two_mocks(small_port: int) -> Callable[[int], dict[str, Any]]:
        def config(mock_port: int) -> dict[str, Any]:
            return {
                "backends": [
                    {"name": name, "schema": "openai", "endpoint": f"http://127.0.0.1:{port}"}
                    for name, port in (("large", mock_port), ("small", small_port))
                ],
                "models": [
                    {"name": "gpt-4o-mini", "backend": "large"},
                    {"name": "small", "backend": "small"},
                ],
            }

        return config

    here = str(Path(__file__).resolve().parent.parent)
    sides = {"base": str(Path(args.compare).resolve()), "this": here}
    for round_ in range(args.rounds):
        for side, tree in sides.items():
            with (
                tempfile.TemporaryDirectory(prefix="burst-") as work,
                contextlib.ExitStack() as end,
            ):
                small_port = free_port()
                mock = spawn(
                    "small-mock",
                    [*AIGATEWAY, "mock-backend", "--listen", f"127.0.0.1:{small_port}"],
                    Path(work),
                )
                end.callback(mock.stop)
                stack = WorkersStack(
                    Path(work) / "stack",
                    config_factory=two_mocks(small_port),
                    serve_args=["--workers", "1"],
                    envoy_args=["--workers", "1", "--no-access-log"],
                )
                stack.env = {**stack.env, "PYTHONPATH": tree}
                with running(stack):
                    mock.wait_for_stderr("ready")
                    url, small = stack.base_url, args.small
                    asyncio.run(burst(url, big=0, small=small, small_model="small"))  # warm
                    idle = asyncio.run(
                        burst(url, big=0, small=small, small_model="small")
                    ).small_latency
                    line = (
                        f"round {round_} {side}: unloaded p50 {quantile(idle, 0.5) * 1000:.0f}"
                        f" p95 {quantile(idle, 0.95) * 1000:.0f} ms"
                    )
                    for _ in range(args.runs):
                        r = asyncio.run(
                            burst(
                                url,
                                big=args.big,
                                big_mb=args.big_mb,
                                small=small,
                                small_model="small",
                            )
                        )
                        lat = r.small_latency
                        line += (
                            f"; burst p50 {quantile(lat, 0.5):.2f} p95 {quantile(lat, 0.95):.2f} s"
                            f" (big {sorted(set(r.big))}, small {sorted(set(r.small))})"
                        )
                    print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base-url")
    parser.add_argument("--admin-port", type=int)
    parser.add_argument("--pid", type=int, help="the processor's pid")
    parser.add_argument("--big", type=int, default=16)
    parser.add_argument("--big-mb", type=int, default=30)
    parser.add_argument("--small", type=int, default=20)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--compare", metavar="TREE", help="start the stacks: TREE's, then ours")
    parser.add_argument("--rounds", type=int, default=3, help="with --compare")
    args = parser.parse_args()
    if args.compare:
        compare(args)
        return
    if args.base_url is None or args.admin_port is None or args.pid is None:
        parser.error("--base-url, --admin-port and --pid, or --compare")
    for run in range(args.runs):
        before = envoy_stats(args.admin_port)
        r = asyncio.run(burst(args.base_url, big=args.big, big_mb=args.big_mb, small=args.small))
        after = envoy_stats(args.admin_port)
        delta = {k.rpartition(".")[2]: after[k] - before[k] for k in STATS}
        lat = sorted(r.small_latency)
        print(
            f"run {run}: big {sorted(r.big)} small {sorted(r.small)}"
            f" small p50 {lat[len(lat) // 2]:.2f}s max {lat[-1]:.2f}s"
            f" rss {rss_mib(args.pid):.0f} MiB {delta}",
            flush=True,
        )


if __name__ == "__main__":
    main()
