"""Paired benchmark: the working tree's processor against a baseline revision's, in one run.

``make bench BENCH_BASE=<rev>`` (or ``python -m benchmarks.paired --base REV``) installs
``REV`` (``git archive`` into a cache directory) into its own virtual environment, then
starts both processors side by side, each behind its own gateway Envoy (the same binary
and bootstrap, ``--concurrency 1``) in front of the same upstreams as
``benchmarks.macro``: a static Envoy answering a fixed ``chat.completion`` and
``aigateway mock-backend`` for streams. wrk measures the two alternately, every scenario
in every round (A B, then B A, so neither side always goes first), and the report gives
per scenario the landed/baseline ratio of requests/s (median over rounds of each round's
ratio), the difference in p50, processor CPU per request and per streamed chunk, and
every round's raw numbers. On a shared machine only such paired numbers compare: two
separate runs do not.

Scenarios: ``chat-c16`` (non-streamed chat completion, 16 connections: the throughput
ratio), ``chat-c1`` (the same at 1 connection: the p50 difference), ``stream`` (a
64-chunk chat completion stream) and ``messages-gemini`` (a Messages API stream to a
Gemini backend through the pivot). A baseline that cannot serve a scenario (no such
endpoint or backend schema) reports ``n/a`` for it.

    python -m benchmarks.paired --base bac2f13 [--rounds 4] [--duration 5]
        [--scenarios chat-c16,chat-c1,stream,messages-gemini] [--profile DIR]

Writes ``benchmarks/results/paired-<base>.{json,md}`` (see ``--out``).
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
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from aigateway.extproc.framework.addresses import Address
from aigateway.extproc.gateway.config import load_config
from aigateway.extproc.ops.envoy_bootstrap import EnvoyOptions, build_bootstrap
from benchmarks.macro import (
    BODIES,
    MESSAGES,
    RESULTS,
    STREAM_TOKENS,
    WRK_SCRIPT,
    _cpu_seconds,
    _envoy,
    _extproc_messages,
    _wait_envoy,
    gateway_config,
    static_upstream_bootstrap,
    tree_cpu_seconds,
)
from tests.e2e.stack import AIGATEWAY, Proc, free_port, free_ports, spawn

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("BENCH_BASE_CACHE", Path(tempfile.gettempdir()) / "aigateway-base"))

PIVOT_MODEL = "gemini-bench"
GEMINI_KEY = "gk-bench-upstream"
PIVOT_BACKEND = {
    "name": "gemini",
    "schema": "gcp-gemini",
    "auth": {"api_key": {"value": GEMINI_KEY}},
}


@dataclass(slots=True, frozen=True)
class Scenario:
    name: str
    path: str
    body: dict[str, Any]
    connections: int
    streamed: bool = False


SCENARIOS = {
    s.name: s
    for s in (
        Scenario("chat-c16", "/v1/chat/completions", BODIES["chat"], 16),
        Scenario("chat-c1", "/v1/chat/completions", BODIES["chat"], 1),
        Scenario("stream", "/v1/chat/completions", BODIES["stream"], 16, streamed=True),
        Scenario(
            "messages-gemini",
            "/v1/messages",
            {
                "model": PIVOT_MODEL,
                "max_tokens": 1024,
                "stream": True,
                "system": MESSAGES[0]["content"],
                "messages": [MESSAGES[1]],
            },
            16,
            streamed=True,
        ),
    )
}


@dataclass(slots=True)
class Round:
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_us_per_request: float | None
    cpu_us_per_chunk: float | None
    envoy_cpu_us_per_request: float | None
    extproc_messages_per_request: float | None


#: side -> scenario -> its rounds
Rounds = dict[str, dict[str, list[Round]]]


@dataclass(slots=True)
class Side:
    """One processor under test: how to start it, and the scenarios it cannot serve."""

    name: str
    serve: list[str]
    env: dict[str, str]
    unsupported: set[str] = field(default_factory=set)
    port: int = 0
    admin: int = 0
    processor: Proc | None = None
    envoy: Proc | None = None


# -- the baseline's own install ----------------------------------------------------------


def git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.strip()


def install_base(rev: str) -> tuple[str, Path]:
    """``rev``'s tree in its own virtualenv (cached per commit); (commit, its aigateway)."""
    commit = git("rev-parse", "--verify", f"{rev}^{{commit}}")
    home = CACHE / commit[:12]
    done = home / ".installed"
    if not done.exists():
        print(f"installing {rev} ({commit[:12]}) into {home} ...", file=sys.stderr)
        shutil.rmtree(home, ignore_errors=True)
        (home / "src").mkdir(parents=True)
        archive = subprocess.run(
            ["git", "archive", commit], cwd=ROOT, check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(home / "src")], input=archive, check=True)
        subprocess.run([sys.executable, "-m", "venv", str(home / "venv")], check=True)
        pip = [str(home / "venv" / "bin" / "python"), "-m", "pip", "install", "-q"]
        # The same extras as `make up` where the revision has them (pip warns otherwise).
        subprocess.run([*pip, f"{home / 'src'}[fast,aws,gcp]"], check=True)
        done.write_text(commit + "\n")
    return commit, home / "venv" / "bin" / "aigateway"


# -- the stack ---------------------------------------------------------------------------


@dataclass
class Paired:
    workdir: Path
    duration: float
    warmup: float
    procs: list[Proc] = field(default_factory=list)
    upstream_port: int = 0
    mock_port: int = 0

    def start_upstreams(self) -> None:
        self.upstream_port, admin = free_port(), free_port()
        upstream = _envoy(
            "upstream", static_upstream_bootstrap(self.upstream_port, admin), self.workdir
        )
        self.procs.append(upstream)
        self.mock_port = free_port()
        mock = spawn(
            "mock",
            [
                *AIGATEWAY,
                "mock-backend",
                "--listen",
                f"127.0.0.1:{self.mock_port}",
                "--log-level",
                "warning",
            ],
            self.workdir,
            {"PYTHONPATH": str(ROOT)},
        )
        self.procs.append(mock)
        _wait_envoy(upstream, admin)
        mock.wait_for_stderr("ready")

    def config(self, *, pivot: bool, forward: bool = True) -> dict[str, Any]:
        config = gateway_config(self.upstream_port, self.mock_port)
        if pivot:
            config["backends"].append(
                {**PIVOT_BACKEND, "endpoint": f"http://127.0.0.1:{self.mock_port}"}
            )
            config["models"].append({"name": PIVOT_MODEL, "backend": "gemini"})
        if forward:
            # The mock's knobs reach it only when forwarded; a revision from before
            # forward_headers cannot load it (docs/architecture.md, "Headers a backend receives").
            for backend in config["backends"]:
                backend["forward_headers"] = ["x-mock-*"]
        return config

    def start(self, side: Side, workers: int = 1) -> None:
        """The side's processor (with the pivot backend if its config accepts one) and its
        gateway Envoy, both left running until ``stop``."""
        # With --workers: the parent's and the large-body worker's ports after the workers'.
        extproc, metrics = free_ports(workers + 2), free_ports(workers + 2)
        for pivot, forward in ((True, True), (True, False), (False, True), (False, False)):
            path = self.workdir / f"config-{side.name}.yaml"
            path.write_text(yaml.safe_dump(self.config(pivot=pivot, forward=forward)))
            argv = [
                *side.serve,
                "serve",
                "--config",
                str(path),
                "--extproc-addr",
                f"127.0.0.1:{extproc}",
                "--metrics-addr",
                f"127.0.0.1:{metrics}",
            ]
            if workers > 1:
                argv += ["--workers", str(workers)]
            proc = spawn(side.name, argv, self.workdir, side.env)
            try:
                proc.wait_for_stderr("ready")
            except RuntimeError:
                if forward:
                    continue  # a revision from before forward_headers
                if not pivot:
                    raise
                print(f"{side.name}: no Gemini backend in this revision", file=sys.stderr)
                side.unsupported.add("messages-gemini")
                continue
            side.processor = proc
            self.procs.append(proc)
            break
        side.port, side.admin = free_port(), free_port()
        options = EnvoyOptions(
            listen=Address("127.0.0.1", side.port),
            extproc=[Address("127.0.0.1", extproc + i) for i in range(workers)],
            admin=Address("127.0.0.1", side.admin),
            access_log=False,
        )
        # One bootstrap generator (the working tree's) for both: the Envoy side is equal.
        bootstrap = build_bootstrap(load_config_dict(self.config(pivot=True)), options)
        side.envoy = _envoy(f"gateway-{side.name}", bootstrap, self.workdir)
        self.procs.append(side.envoy)
        _wait_envoy(side.envoy, side.admin)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()

    def headers(self, scenario: Scenario) -> list[str]:
        headers = []
        if scenario.streamed:
            # one token per chunk (without a delay the mock's writes coalesce)
            headers += [f"x-mock-output-tokens: {STREAM_TOKENS}", "x-mock-itl-ms: 1"]
        if scenario.path == "/v1/messages":
            headers.append("anthropic-version: 2023-06-01")
        return headers

    def wrk(self, side: Side, scenario: Scenario, seconds: float) -> dict[str, Any]:
        body = self.workdir / f"{scenario.name}.json"
        body.write_text(json.dumps(scenario.body))
        out = self.workdir / "wrk.json"
        out.unlink(missing_ok=True)
        argv = ["wrk", "-t1", f"-c{scenario.connections}", f"-d{max(1, round(seconds))}s"]
        argv += ["--timeout", "10s", "-s", str(WRK_SCRIPT)]
        for header in self.headers(scenario):
            argv += ["-H", header]
        argv.append(f"http://127.0.0.1:{side.port}{scenario.path}")
        env = {**os.environ, "BENCH_BODY_FILE": str(body), "BENCH_WRK_OUT": str(out)}
        run = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        if run.returncode != 0 or not out.exists():
            raise RuntimeError(f"wrk failed ({run.returncode}):\n{run.stdout}\n{run.stderr}")
        return dict(json.loads(out.read_text()))

    def probe(self, side: Side, scenario: Scenario) -> bool:
        """One request: does this side serve the scenario at all (a baseline may lack it)?"""
        headers = {"content-type": "application/json"}
        for header in self.headers(scenario):
            key, _, value = header.partition(": ")
            headers[key] = value
        request = urllib.request.Request(
            f"http://127.0.0.1:{side.port}{scenario.path}",
            data=json.dumps(scenario.body).encode(),
            headers=headers,
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                answer.read()
                return bool(answer.status == 200)
        except urllib.error.HTTPError:
            return False

    def measure(self, side: Side, scenario: Scenario) -> Round:
        assert side.processor is not None and side.envoy is not None
        if self.warmup > 0:
            self.wrk(side, scenario, self.warmup)
        pid, envoy_pid = side.processor.popen.pid, side.envoy.popen.pid
        cpu0, msgs0 = tree_cpu_seconds(pid), _extproc_messages(side.admin)
        envoy0 = _cpu_seconds(envoy_pid)
        started = time.perf_counter()
        result = self.wrk(side, scenario, self.duration)
        wall = time.perf_counter() - started
        cpu = tree_cpu_seconds(pid) - cpu0
        envoy_cpu = _cpu_seconds(envoy_pid) - envoy0
        msgs = _extproc_messages(side.admin) - msgs0
        seconds = result["duration_us"] / 1e6
        scale = min(1.0, seconds / wall) if wall > 0 else 1.0  # wrk's window is shorter
        cpu, envoy_cpu = cpu * scale, envoy_cpu * scale
        requests = result["requests"]
        chunks = msgs - 3 * requests  # headers, body, response headers; the rest are chunks
        return Round(
            requests=requests,
            rps=round(requests / seconds, 1),
            p50_ms=result["latency_us"]["p50"] / 1000,
            p99_ms=result["latency_us"]["p99"] / 1000,
            errors=sum(result["errors"].values()),
            cpu_us_per_request=round(cpu * 1e6 / requests, 1) if requests else None,
            cpu_us_per_chunk=(
                round(cpu * 1e6 / chunks, 1) if scenario.streamed and chunks > 0 else None
            ),
            envoy_cpu_us_per_request=round(envoy_cpu * 1e6 / requests, 1) if requests else None,
            extproc_messages_per_request=round(msgs / requests, 2) if requests else None,
        )


def load_config_dict(config: dict[str, Any]) -> Any:
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump(config, f)
    try:
        return load_config(f.name)
    finally:
        os.unlink(f.name)


@contextmanager
def profiling(side: Side, out: Path, seconds: float) -> Iterator[None]:
    """py-spy samples the side's processor while the body runs (collapsed stacks to out)."""
    assert side.processor is not None
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    argv = [py_spy, "record", "--format", "raw", "--rate", "250", "--nonblocking"]
    argv += ["--duration", str(max(1, round(seconds))), "--pid", str(side.processor.popen.pid)]
    argv += ["--output", str(out)]
    recorder = threading.Thread(
        target=subprocess.run, args=(argv,), kwargs={"capture_output": True, "check": False}
    )
    recorder.start()
    try:
        yield
    finally:
        recorder.join()


# -- the report --------------------------------------------------------------------------


def summarize(
    scenarios: list[Scenario], rounds: dict[str, dict[str, list[Round]]]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for s in scenarios:
        base, landed = rounds["base"].get(s.name), rounds["landed"].get(s.name)
        if not base or not landed:
            out[s.name] = {"ratio": "n/a", "p50_diff_ms": "n/a"}
            continue
        ratios = [b2.rps / b1.rps for b1, b2 in zip(base, landed, strict=True) if b1.rps]
        diffs = [b2.p50_ms - b1.p50_ms for b1, b2 in zip(base, landed, strict=True)]
        out[s.name] = {
            "ratio": round(statistics.median(ratios), 3),
            "ratio_rounds": [round(r, 3) for r in ratios],
            "p50_diff_ms": round(statistics.median(diffs), 3),
            # processor CPU per request, landed/base: moves less than throughput when
            # other work takes the machine's cores during a round
            "cpu_ratio": _median_ratio(base, landed, "cpu_us_per_request"),
            "cpu_us_per_request": _medians(base, landed, "cpu_us_per_request"),
            "cpu_us_per_chunk": _medians(base, landed, "cpu_us_per_chunk"),
            "envoy_cpu_us_per_request": _medians(base, landed, "envoy_cpu_us_per_request"),
        }
    return out


def _median_ratio(base: list[Round], landed: list[Round], name: str) -> float | None:
    ratios = [
        getattr(b2, name) / getattr(b1, name)
        for b1, b2 in zip(base, landed, strict=True)
        if getattr(b1, name) and getattr(b2, name)
    ]
    return round(statistics.median(ratios), 3) if ratios else None


def _medians(base: list[Round], landed: list[Round], name: str) -> list[float] | None:
    values = [[getattr(r, name) for r in side] for side in (base, landed)]
    if any(v is None for side in values for v in side):
        return None
    return [round(statistics.median(side), 1) for side in values]


def markdown(doc: dict[str, Any]) -> str:
    s = doc["settings"]
    lines = [
        f"# Paired benchmark: working tree ({doc['landed']}) against {doc['base']}",
        "",
        f"{s['rounds']} rounds, each scenario measured on both sides in turn (A B, B A, ...);"
        f" wrk 1 thread, {s['duration_s']:g} s per measurement after {s['warmup_s']:g} s of"
        f" warm-up; each processor behind its own Envoy `--concurrency 1`. Streams:"
        f" {STREAM_TOKENS} chunks, 1 ms apart. Load average before: {s['load_average']}.",
        "",
        "| scenario | landed/base req/s (median of rounds) | p50 landed - base (ms) "
        "| landed/base processor CPU per request "
        "| processor CPU us/req base -> landed | us/chunk base -> landed "
        "| Envoy CPU us/req base -> landed |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]

    def pair(value: list[float] | None) -> str:
        return "" if not value else f"{value[0]:.0f} -> {value[1]:.0f}"

    for name, r in doc["summary"].items():
        if r["ratio"] == "n/a":
            lines.append(f"| {name} | n/a | n/a | | | | |")
            continue
        lines.append(
            f"| {name} | **{r['ratio']:.3f}** | {r['p50_diff_ms']:+.3f} "
            f"| {r['cpu_ratio'] if r['cpu_ratio'] is not None else ''} "
            f"| {pair(r['cpu_us_per_request'])} | {pair(r['cpu_us_per_chunk'])} "
            f"| {pair(r['envoy_cpu_us_per_request'])} |"
        )
    lines += [
        "",
        "Every round (req/s, p50 ms, processor CPU us/request, us/chunk for streams,"
        " Envoy CPU us/request, ext_proc messages/request, errors):",
        "",
        "| scenario | round | base | landed | ratio |",
        "|---|---:|---|---|---:|",
    ]

    def cell(r: dict[str, Any]) -> str:
        chunk = f", {r['cpu_us_per_chunk']:.0f}" if r["cpu_us_per_chunk"] else ""
        cpu = r["cpu_us_per_request"] or 0
        return (
            f"{r['rps']:.0f}, {r['p50_ms']:.2f}, {cpu:.0f}{chunk}, "
            f"{r['envoy_cpu_us_per_request'] or 0:.0f}, {r['extproc_messages_per_request']}, "
            f"{r['errors']}"
        )

    for name in doc["summary"]:
        base, landed = doc["rounds"]["base"].get(name), doc["rounds"]["landed"].get(name)
        if not base or not landed:
            continue
        for i, (b, a) in enumerate(zip(base, landed, strict=True)):
            ratio = a["rps"] / b["rps"] if b["rps"] else 0
            lines.append(f"| {name} | {i + 1} | {cell(b)} | {cell(a)} | {ratio:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.paired", description=__doc__.split("\n")[0]
    )
    env = os.environ.get
    parser.add_argument("--base", default=env("BENCH_BASE"), required=not env("BENCH_BASE"))
    parser.add_argument("--rounds", type=int, default=int(env("BENCH_ROUNDS", "4")))
    parser.add_argument("--duration", type=float, default=float(env("BENCH_DURATION", "5")))
    parser.add_argument("--warmup", type=float, default=float(env("BENCH_WARMUP", "1")))
    parser.add_argument("--scenarios", default=env("BENCH_SCENARIOS", ",".join(SCENARIOS)))
    parser.add_argument(
        "--profile",
        metavar="DIR",
        help="py-spy both processors during every chat-c16 and stream measurement "
        "(collapsed stacks DIR/<side>-<scenario>-<round>.txt)",
    )
    parser.add_argument("--out", default=env("BENCH_OUT"), help="path without extension")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk not found: ./.ci/install-system-tools wrk", file=sys.stderr)
        return 2
    scenarios = [SCENARIOS[name] for name in args.scenarios.split(",") if name]
    commit, base_aigateway = install_base(args.base)
    landed = git("rev-parse", "--short=12", "HEAD") + (
        " with changes" if git("status", "--porcelain", "--untracked-files=no") else ""
    )
    sides = {
        "base": Side("base", [str(base_aigateway)], {}),
        "landed": Side("landed", AIGATEWAY, {"PYTHONPATH": str(ROOT)}),
    }
    rounds: Rounds = {"base": {}, "landed": {}}
    profile = Path(args.profile).resolve() if args.profile else None
    if profile:
        profile.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="aigateway-paired-") as tmp:
        bench = Paired(Path(tmp), args.duration, args.warmup)
        try:
            bench.start_upstreams()
            for side in sides.values():
                bench.start(side)
            for s in scenarios:
                for side in sides.values():
                    if s.name not in side.unsupported and not bench.probe(side, s):
                        print(f"{side.name}: {s.name} is not served: n/a", file=sys.stderr)
                        side.unsupported.add(s.name)
            for i in range(args.rounds):
                order = ["base", "landed"] if i % 2 == 0 else ["landed", "base"]
                for s in scenarios:
                    if any(s.name in side.unsupported for side in sides.values()):
                        continue
                    for name in order:
                        side = sides[name]
                        with ExitStack() as stack:
                            if profile and s.name in ("chat-c16", "stream"):
                                out = profile / f"{name}-{s.name}-{i + 1}.txt"
                                stack.enter_context(profiling(side, out, args.duration))
                            r = bench.measure(side, s)
                        rounds[name].setdefault(s.name, []).append(r)
                        print(
                            f"[{i + 1}/{args.rounds}] {s.name:16} {name:6} {r.rps:8.1f} req/s"
                            f"  p50 {r.p50_ms:6.2f} ms  cpu/req {r.cpu_us_per_request or 0:6.0f}"
                            f" us  errors {r.errors}",
                            file=sys.stderr,
                        )
        except Exception:
            for proc in bench.procs:
                print(f"==== {proc.name} ====\n{proc.output()[-3000:]}", file=sys.stderr)
            raise
        finally:
            bench.stop()
    doc = {
        "base": f"{args.base} ({commit[:12]})",
        "landed": landed,
        "settings": {
            "rounds": args.rounds,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "load_average": [round(x, 2) for x in os.getloadavg()],
        },
        "summary": summarize(scenarios, rounds),
        "rounds": {
            side: {name: [_asdict(r) for r in rs] for name, rs in by.items()}
            for side, by in rounds.items()
        },
    }
    out = Path(args.out) if args.out else RESULTS / f"paired-{args.base.replace('/', '_')}"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(doc, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(doc))
    print(markdown(doc))
    return 0


def _asdict(r: Round) -> dict[str, Any]:
    return {name: getattr(r, name) for name in Round.__slots__}


if __name__ == "__main__":
    sys.exit(main())
