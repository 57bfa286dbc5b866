"""Profile the processor under the benchmark's load with py-spy (``pip install py-spy``).

Starts the same stack as ``benchmarks.macro`` for one variant, runs wrk for one scenario
while ``py-spy record`` samples the processor, then prints the functions with the most
samples (self and total) and leaves the collapsed stacks (open them in speedscope or
flamegraph.pl) next to ``--out``.

    python -m benchmarks.profile --variant instrumented --scenario chat-c16 --duration 10
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from pathlib import Path

from benchmarks.macro import SCENARIOS, Bench, Scenario


def summarize(collapsed: Path, top: int) -> str:
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        samples += count
        frames = stack.split(";")
        own[frames[-1]] += count
        for frame in set(frames):
            total[frame] += count
    out = [f"{samples} samples", "", "self%  function"]
    out += [f"{100 * n / samples:5.1f}  {f}" for f, n in own.most_common(top)]
    out += ["", "total% function"]
    out += [f"{100 * n / samples:5.1f}  {f}" for f, n in total.most_common(top)]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile")
    parser.add_argument("--variant", default="instrumented", choices=("bare", "instrumented"))
    parser.add_argument("--scenario", default="chat-c16", choices=sorted(SCENARIOS))
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--native", action="store_true", help="include C frames (py-spy --native)")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--out", default="benchmarks/results/profile.collapsed.tmp")
    args = parser.parse_args(argv)
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    scenario: Scenario = SCENARIOS[args.scenario]
    out = Path(args.out).resolve()
    with tempfile.TemporaryDirectory(prefix="aigateway-profile-") as tmp:
        bench = Bench(Path(tmp), args.duration, 1.0, scenario.connections)
        try:
            bench.start_upstreams()
            with bench.gateway(args.variant) as (port, _admin, processor, _envoy):
                assert processor is not None
                headers = bench.headers(scenario, envoy_alone=False)
                bench.wrk(port, scenario, headers, 1.0)  # warm-up
                spy = [
                    py_spy,
                    "record",
                    "--format",
                    "raw",
                    "--rate",
                    str(args.rate),
                    "--duration",
                    str(int(args.duration)),
                    "--pid",
                    str(processor.popen.pid),
                    "--output",
                    str(out),
                ]
                # Native stacks need the process paused per sample; Python-only does not.
                spy.append("--native" if args.native else "--nonblocking")
                spied: list[subprocess.CompletedProcess[str]] = []
                recorder = threading.Thread(
                    target=lambda: spied.append(
                        subprocess.run(spy, capture_output=True, text=True, check=False)
                    )
                )
                recorder.start()
                result = bench.wrk(port, scenario, headers, args.duration)
                recorder.join()
                if not out.exists():
                    print(f"py-spy failed: {spied[0].stderr if spied else ''}", file=sys.stderr)
                    return 1
        finally:
            bench.stop()
    print(f"{result['requests'] / (result['duration_us'] / 1e6):.0f} req/s under the profiler")
    print(summarize(out, args.top))
    print(f"\ncollapsed stacks: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
