"""The large-body burst of issue 22 against a running stack: ``big`` concurrent chat
requests of ``big_mb`` MB each, then ``small`` small ones once the big ones are sent.
Returns every answer's status and latency, Envoy's processor-cluster stats and the
processor's RSS, so settings can be compared (benchmarks/NOTES.md, "Large bodies")."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

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
) -> BurstResult:
    result = BurstResult()
    big_body = chat_body(big_mb * 1000 * 1000)
    small_body = chat_body(200)
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


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--admin-port", type=int, required=True)
    parser.add_argument("--pid", type=int, required=True, help="the processor's pid")
    parser.add_argument("--big", type=int, default=16)
    parser.add_argument("--big-mb", type=int, default=30)
    parser.add_argument("--small", type=int, default=20)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
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
