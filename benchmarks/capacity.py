"""Capacity in the unit operators plan with: concurrent streams per processor core at a
given token rate, and memory per open stream.

Starts the same stack as ``benchmarks.paired`` (the working tree's ``aigateway serve``
behind its own Envoy, the static upstream and ``aigateway mock-backend``), then for each
``--streams N`` keeps N chat completion streams open at once with wrk (N connections,
each stream ``--tokens`` chunks ``1000 / --rate`` ms apart, the next one as soon as one
ends) and measures over the window:

- the processor's CPU (utime + stime of the process tree, all workers) in cores, and
  per streamed chunk (Envoy's count of ext_proc messages);
- streams per core = 1 s of CPU / (rate x CPU per chunk): what one core of processor
  sustains at that rate, every per-request cost included (charged to the chunks);
- the tokens per second that went through against N x rate (well below it, the
  machine, the mock or Envoy was saturated: the CPU per chunk still holds, the memory
  figure is for N streams open but slower);
- memory per open stream: the processor tree's resident set (VmRSS) sampled during the
  window, minus its resident set with no stream open, divided by N.

    python -m benchmarks.capacity [--streams 50,200] [--rate 50] [--tokens 250]
        [--duration 10] [--workers 1]

Writes ``benchmarks/results/capacity.{json,md}`` (see ``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.macro import BODIES, RESULTS, WRK_SCRIPT, _extproc_messages, tree_cpu_seconds
from benchmarks.paired import Paired, Side, git
from tests.e2e.stack import AIGATEWAY, children


def rss_bytes(pid: int) -> int:
    """VmRSS of ``pid`` and its live descendants (``--workers`` runs N children)."""
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
        stack.extend(children(p))
    return total


def run_streams(
    bench: Paired, side: Side, streams: int, rate: float, tokens: int, seconds: float
) -> dict[str, Any]:
    assert side.processor is not None
    pid = side.processor.popen.pid
    body = bench.workdir / "stream.json"
    body.write_text(json.dumps(BODIES["stream"]))
    out = bench.workdir / "wrk.json"
    out.unlink(missing_ok=True)
    itl_ms = round(1000 / rate)
    idle_rss = rss_bytes(pid)
    argv = ["wrk", "-t1", f"-c{streams}", f"-d{max(1, round(seconds))}s", "--timeout", "60s"]
    argv += ["-s", str(WRK_SCRIPT), "-H", f"x-mock-output-tokens: {tokens}"]
    argv += ["-H", f"x-mock-itl-ms: {itl_ms}"]
    argv.append(f"http://127.0.0.1:{side.port}/v1/chat/completions")
    env = {**os.environ, "BENCH_BODY_FILE": str(body), "BENCH_WRK_OUT": str(out)}
    samples: list[int] = []
    done = threading.Event()

    def sample() -> None:
        # The first stream ramp (one stream's length) is left out of the memory figure.
        done.wait(min(seconds / 2, tokens / rate))
        while not done.wait(0.25):
            samples.append(rss_bytes(pid))

    sampler = threading.Thread(target=sample)
    sampler.start()
    msgs0 = _extproc_messages(side.admin)
    cpu0, started = tree_cpu_seconds(pid), time.perf_counter()
    run = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    cpu = tree_cpu_seconds(pid) - cpu0
    # Each streamed chunk is one ext_proc message; each stream adds 3 more (headers,
    # body, response headers).
    chunks = max(1, _extproc_messages(side.admin) - msgs0 - 3 * streams)
    done.set()
    sampler.join()
    if run.returncode != 0 or not out.exists():
        raise RuntimeError(f"wrk failed ({run.returncode}):\n{run.stdout}\n{run.stderr}")
    result = json.loads(out.read_text())
    cores = cpu / wall
    us_per_chunk = cpu * 1e6 / chunks
    open_rss = statistics.median(samples) if samples else float(rss_bytes(pid))
    return {
        "streams": streams,
        "rate_tokens_per_s": rate,
        "tokens_per_stream": tokens,
        "seconds": round(wall, 2),
        "completed_streams": result["requests"],
        "errors": sum(result["errors"].values()),
        "processor_cores": round(cores, 3),
        "cpu_us_per_chunk": round(us_per_chunk, 1),
        # One core's worth of processor CPU over what a stream at `rate` costs a second.
        "streams_per_core": round(1e6 / (rate * us_per_chunk), 1),
        "tokens_per_s": round(chunks / wall, 1),
        "target_tokens_per_s": streams * rate,
        "idle_rss_mb": round(idle_rss / 2**20, 1),
        "open_rss_mb": round(open_rss / 2**20, 1),
        "kb_per_open_stream": round((open_rss - idle_rss) / 1024 / streams, 1),
    }


def markdown(doc: dict[str, Any]) -> str:
    lines = [
        f"# Capacity: {doc['landed']}, `aigateway serve --workers {doc['workers']}`",
        "",
        f"Machine: {doc['cores']} cores; load average before {doc['load_average']}. Streams"
        " of chat completion chunks from `aigateway mock-backend` through Envoy"
        " (`--concurrency 1`) and the processor; CPU and memory are the processor's.",
        "",
        "| open streams | tokens/s each | processor cores | CPU us/chunk | streams per core "
        "| streams completed | tokens/s through (target) | RSS idle -> open MB "
        "| KB per open stream | errors |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in doc["runs"]:
        lines.append(
            f"| {r['streams']} | {r['rate_tokens_per_s']:g} | {r['processor_cores']:.2f} "
            f"| {r['cpu_us_per_chunk']} | {r['streams_per_core']} | {r['completed_streams']} "
            f"| {r['tokens_per_s']:.0f} ({r['target_tokens_per_s']:g}) "
            f"| {r['idle_rss_mb']} -> {r['open_rss_mb']} | {r['kb_per_open_stream']} "
            f"| {r['errors']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.capacity", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--streams", default="50,200", help="comma-separated open streams")
    parser.add_argument("--rate", type=float, default=50, help="tokens per second per stream")
    parser.add_argument("--tokens", type=int, default=250, help="chunks per stream")
    parser.add_argument("--duration", type=float, default=15)
    parser.add_argument("--workers", type=int, default=1, help="aigateway serve --workers N")
    parser.add_argument("--out", default=str(RESULTS / "capacity"))
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk not found: ./.ci/install-system-tools wrk", file=sys.stderr)
        return 2
    serve = [*AIGATEWAY]
    side = Side("landed", serve, {"PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
    runs = []
    load = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="aigateway-capacity-") as tmp:
        bench = Paired(Path(tmp), args.duration, 0)
        try:
            bench.start_upstreams()
            bench.start(side, workers=args.workers)
            for n in (int(x) for x in args.streams.split(",")):
                r = run_streams(bench, side, n, args.rate, args.tokens, args.duration)
                print(json.dumps(r), file=sys.stderr)
                runs.append(r)
        except Exception:
            for proc in bench.procs:
                print(f"==== {proc.name} ====\n{proc.output()[-3000:]}", file=sys.stderr)
            raise
        finally:
            bench.stop()
    doc = {
        "landed": git("rev-parse", "--short=12", "HEAD"),
        "workers": args.workers,
        "cores": os.cpu_count(),
        "load_average": load,
        "runs": runs,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(doc, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(doc))
    print(markdown(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
