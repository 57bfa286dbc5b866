"""End-to-end benchmark: Envoy alone against Envoy + ``aigateway serve``, side by side.

Every variant is measured in the same run on the same machine with the same load
generator (``wrk``, one thread) and the same upstreams:

- a *static upstream*: a second Envoy whose ``direct_response`` returns a fixed, valid
  ``chat.completion`` JSON with usage (far faster than the processor, so it is never the
  bottleneck) for non-streamed requests;
- ``aigateway mock-backend`` for streamed requests (``x-mock-output-tokens: 64``).

Variants: ``envoy`` (the gateway bootstrap without the ext_proc filter; wrk sets the
backend header the processor would), ``null`` (a grpc.aio servicer that answers every
message with a prebuilt CONTINUE: the floor of gRPC plus Envoy's ext_proc),
``bare`` (``benchmarks.bare_serve``: the same servicer and chat processor, not wrapped in
``InstrumentedProcessor``), ``instrumented`` (``aigateway serve`` as shipped),
``instrumented-both`` (``aigateway serve`` with ``metrics.schema: both``, a tenant header
label and prices: every family at once), ``instrumented-wN`` (``aigateway serve
--workers N``, Envoy's log of unrecorded requests to its parent) and, only when asked,
``envoy-counted`` (``envoy`` with that log); with ``--baseline DIR`` also
``bare@baseline`` and ``instrumented@baseline``, the processor from another checkout.
The gateway Envoy runs with ``--concurrency 1``.

Scenarios: non-streamed at 1 and 16 connections, streamed (one token per chunk, 1 ms
apart) at ``--stream-connections``. Processor CPU comes from ``/proc/<pid>/stat`` (utime
+ stime of the process and its children) over the measured window; ext_proc message
counts from Envoy's own stats; the machine's other load from ``/proc/stat``.

    python -m benchmarks.macro [--duration 10] [--warmup 2] [--repeat 1] [--workers 2]
        [--variants envoy,null,bare,instrumented] [--scenarios chat-c1,chat-c16,stream]

Writes ``benchmarks/results/latest.json`` and ``latest.md`` (see ``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from aigateway.extproc.framework.addresses import Address
from aigateway.extproc.gateway.config import load_config
from aigateway.extproc.ops.envoy_bootstrap import EnvoyOptions, build_bootstrap
from aigateway.extproc.ops.envoy_process import envoy_command, find_envoy
from tests.e2e.stack import (
    AIGATEWAY,
    Proc,
    children,
    free_port,
    free_ports,
    http_get,
    spawn,
    wait_until,
)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
WRK_SCRIPT = ROOT / "benchmarks" / "wrk" / "post.lua"

STATIC_MODEL = "gpt-4o-mini"
STREAM_MODEL = "gpt-4o-mini-stream"
STREAM_TOKENS = 64
API_KEY = "sk-bench-upstream"

#: What the static upstream answers: a real chat.completion, usage included.
STATIC_COMPLETION = {
    "id": "chatcmpl-bench0000000000000000000000",
    "object": "chat.completion",
    "created": 1700000000,
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Requests arrive fast,\nthe balancer spreads the load:\n"
                "no server stands alone.",
                "refusal": None,
            },
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {
        "prompt_tokens": 27,
        "completion_tokens": 19,
        "total_tokens": 46,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
    },
    "service_tier": "default",
    "system_fingerprint": "fp_bench0001",
}

#: Two backends on the static upstream, 1:1; and a 503 first, then the static upstream.
SEVERAL_MODEL = "bench-several"
RETRIED_MODEL = "bench-retried"
FAILED = {"error": {"message": "overloaded", "type": "server_error", "param": None, "code": None}}

MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Write a haiku about load balancers."},
]
# What the official openai client sends: no stream_options, so the processor asks for
# usage upstream and removes the extra usage chunk (the more demanding path).
BODIES = {
    "chat": {"model": STATIC_MODEL, "messages": MESSAGES, "temperature": 0.7},
    # Models with several backends (docs/architecture.md, "Routing over several backends").
    "several": {"model": SEVERAL_MODEL, "messages": MESSAGES, "temperature": 0.7},
    "retried": {"model": RETRIED_MODEL, "messages": MESSAGES, "temperature": 0.7},
    "stream": {"model": STREAM_MODEL, "messages": MESSAGES, "stream": True},
}


@dataclass(slots=True, frozen=True)
class Scenario:
    name: str
    body: str
    connections: int
    streamed: bool = False


@dataclass(slots=True)
class Measurement:
    variant: str
    scenario: str
    connections: int
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    errors: int
    processor_cpu_s: float = 0.0
    envoy_cpu_s: float = 0.0
    extproc_messages: int = 0
    # derived against the `envoy` variant of the same scenario
    added_p50_ms: float | None = None
    added_p99_ms: float | None = None
    ratio: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def processor_cpu_us_per_request(self) -> float | None:
        return self.processor_cpu_s * 1e6 / self.requests if self.processor_cpu_s else None

    @property
    def envoy_cpu_us_per_request(self) -> float:
        return self.envoy_cpu_s * 1e6 / self.requests if self.requests else 0.0

    def processor_cpu_us_per_chunk(self) -> float | None:
        """Processor CPU over the run / the streamed body chunks it answered (each
        request's other three messages are charged to its chunks: an upper bound)."""
        chunks = self.extproc_messages - 3 * self.requests
        if not self.processor_cpu_s or chunks <= 0:
            return None
        return self.processor_cpu_s * 1e6 / chunks

    def summary(self) -> str:
        cpu = self.processor_cpu_us_per_request or 0
        return (
            f"{self.scenario:9} {self.variant:21} {self.rps:9.1f} req/s"
            f"  p50 {self.p50_ms:6.2f} ms  p99 {self.p99_ms:6.2f} ms"
            f"  cpu/req {cpu:6.0f} us  errors {self.errors}"
            f"  other load {self.extra.get('other_load_cores', 0):.2f} cores"
        )

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["processor_cpu_us_per_request"] = _round(self.processor_cpu_us_per_request)
        out["envoy_cpu_us_per_request"] = _round(self.envoy_cpu_us_per_request)
        out["processor_cpu_us_per_chunk"] = _round(self.processor_cpu_us_per_chunk())
        if self.extproc_messages and self.requests:
            out["extproc_messages_per_request"] = round(self.extproc_messages / self.requests, 2)
        return out


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


# -- processes ---------------------------------------------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    """utime + stime of one process (all its threads), in seconds; 0 once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def tree_cpu_seconds(pid: int) -> float:
    """CPU of ``pid`` and all its live descendants (``--workers`` runs N children)."""
    total, stack = 0.0, [pid]
    while stack:
        p = stack.pop()
        total += _cpu_seconds(p)
        stack.extend(children(p))
    return total


def _envoy(name: str, bootstrap: dict[str, Any], workdir: Path, concurrency: int = 1) -> Proc:
    path = workdir / f"{name}.json"
    path.write_text(json.dumps(bootstrap))
    return spawn(name, envoy_command(str(path), concurrency=concurrency), workdir)


def _wait_envoy(proc: Proc, admin_port: int) -> None:
    def ready() -> bool:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.name} exited:\n{proc.output()}")
        try:
            return http_get(f"http://127.0.0.1:{admin_port}/ready", 1)[0] == 200
        except OSError:
            return False

    wait_until(f"{proc.name} to be ready", ready)


def static_upstream_bootstrap(port: int, admin_port: int) -> dict[str, Any]:
    """An Envoy answering every request with ``STATIC_COMPLETION``."""
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network."
        "http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "upstream",
        "codec_type": "AUTO",
        "route_config": {
            "virtual_hosts": [
                {
                    "name": "static",
                    "domains": ["*"],
                    "routes": [
                        {
                            # The failing backend of the retried scenario.
                            "match": {"prefix": "/fail/"},
                            "direct_response": {
                                "status": 503,
                                "body": {"inline_string": json.dumps(FAILED)},
                            },
                        },
                        {
                            "match": {"prefix": "/"},
                            "direct_response": {
                                "status": 200,
                                "body": {"inline_string": json.dumps(STATIC_COMPLETION)},
                            },
                            "response_headers_to_add": [
                                {
                                    "header": {"key": "content-type", "value": "application/json"},
                                    "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                                }
                            ],
                        },
                    ],
                }
            ]
        },
        "http_filters": [
            {
                "name": "envoy.filters.http.router",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                },
            }
        ],
    }
    return {
        "admin": {
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}
        },
        "static_resources": {
            "listeners": [
                {
                    "name": "static",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": hcm,
                                }
                            ]
                        }
                    ],
                }
            ]
        },
    }


def gateway_config(
    upstream_port: int, mock_port: int, several: bool = False, forward: bool = False
) -> dict[str, Any]:
    """The gateway's config; with ``several``, the models with several backends too (a
    baseline from before they existed cannot load those); with ``forward``, the mock's
    knobs are forwarded to the backends, which a baseline from before ``forward_headers``
    cannot load either (docs/architecture.md, "Headers a backend receives")."""
    key = {"api_key": {"value": API_KEY}}
    config: dict[str, Any] = {
        "backends": [
            {
                "name": "static",
                "schema": "openai",
                "endpoint": f"http://127.0.0.1:{upstream_port}",
                "auth": key,
            },
            {
                "name": "mock",
                "schema": "openai",
                "endpoint": f"http://127.0.0.1:{mock_port}",
                "auth": key,
            },
        ],
        "models": [
            {"name": STATIC_MODEL, "backend": "static"},
            {"name": STREAM_MODEL, "backend": "mock"},
        ],
    }
    if forward:
        for backend in config["backends"]:
            backend["forward_headers"] = ["x-mock-*"]
    if several:
        config["backends"] += [
            {
                "name": "static-b",
                "schema": "openai",
                "endpoint": f"http://127.0.0.1:{upstream_port}",
                "auth": key,
            },
            {
                "name": "failing",
                "schema": "openai",
                "endpoint": f"http://127.0.0.1:{upstream_port}/fail",
                "auth": key,
            },
        ]
        config["models"] += [
            {"name": SEVERAL_MODEL, "backends": [{"backend": "static"}, {"backend": "static-b"}]},
            {
                "name": RETRIED_MODEL,
                "backends": [{"backend": "failing"}, {"backend": "static", "priority": 1}],
            },
        ]
    return config


def gateway_config_both(upstream_port: int, mock_port: int) -> dict[str, Any]:
    """The same gateway with every telemetry option on: both sets of families, a header
    label (wrk sends a listed value) and a price for each model."""
    config = gateway_config(upstream_port, mock_port, forward=True)
    for model in config["models"]:
        model["price"] = {"input": 0.15, "output": 0.6, "cached_input": 0.075}
    config["metrics"] = {
        "schema": "both",
        "labels_from_headers": [
            {"header": "x-tenant-id", "label": "tenant", "values": ["acme", "globex"]}
        ],
    }
    return config


@dataclass
class Bench:
    workdir: Path
    duration: float
    warmup: float
    stream_connections: int
    stream_itl_ms: int = 1
    unix_socket: bool = False
    baseline: Path | None = None
    #: The config has the models with several backends (their scenarios run).
    several: bool = False
    procs: list[Proc] = field(default_factory=list)
    upstream_port: int = 0
    mock_port: int = 0

    @property
    def config_path(self) -> Path:
        return self.workdir / "config.yaml"

    @property
    def config_both_path(self) -> Path:
        return self.workdir / "config-both.yaml"

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
        )
        self.procs.append(mock)
        self.config_path.write_text(
            yaml.safe_dump(
                gateway_config(self.upstream_port, self.mock_port, self.several, forward=True)
            )
        )
        self.config_both_path.write_text(
            yaml.safe_dump(gateway_config_both(self.upstream_port, self.mock_port))
        )
        _wait_envoy(upstream, admin)
        mock.wait_for_stderr("ready")

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()

    @contextmanager
    def gateway(
        self, variant: str, workers: int = 1
    ) -> Iterator[tuple[int, int, Proc | None, Proc]]:
        """Starts the processor (unless ``envoy``) and the gateway Envoy; yields
        (listen port, admin port, processor, envoy)."""
        kind = variant.partition("@")[0]
        # As `envoy-config --workers N` writes it: the log of requests no worker recorded
        # to the parent (port + N); `envoy-counted` is `envoy` with that log alone.
        counted = kind == "envoy-counted" or (kind.startswith("instrumented") and workers > 1)
        extproc = free_ports(workers + 2)  # and the large-body worker's (port + N + 1)
        addrs = [Address("127.0.0.1", extproc + i) for i in range(workers)]
        if self.unix_socket:
            addrs = [Address(unix_path=str(self.workdir / f"{variant}.sock"))]
        metrics = free_ports(workers + 2)
        processor: Proc | None = None
        env = {"PYTHONPATH": str(ROOT)}
        serve_module = AIGATEWAY
        if variant.endswith("@baseline"):
            # The processor's code from another checkout (its packages shadow ours).
            assert self.baseline is not None
            env = {"PYTHONPATH": f"{self.baseline}{os.pathsep}{ROOT}"}
            if not (self.baseline / "aigateway").is_dir():
                # A checkout from before the one import root: its own top-level packages
                # and its own benchmarks.bare_serve.
                env = {"PYTHONPATH": str(self.baseline)}
                serve_module = [sys.executable, "-m", "extproc"]
        if kind in ("bare", "null"):
            argv = [
                sys.executable,
                "-m",
                "benchmarks.bare_serve",
                "--config",
                str(self.config_path),
                "--extproc-addr",
                str(addrs[0]),
            ]
            argv += os.environ.get("BENCH_BARE_ARGS", "").split()  # experiments
            if kind == "null":
                argv.append("--null")
            processor = spawn(variant, argv, self.workdir, env)
        elif kind.startswith("instrumented"):
            config = self.config_both_path if kind == "instrumented-both" else self.config_path
            argv = [
                *serve_module,
                "serve",
                "--config",
                str(config),
                "--extproc-addr",
                str(addrs[0]),
                "--metrics-addr",
                f"127.0.0.1:{metrics}",
            ]
            if workers > 1:
                argv += ["--workers", str(workers)]
            processor = spawn(variant, argv, self.workdir, env)
        listen, admin = free_port(), free_port()
        options = EnvoyOptions(
            listen=Address("127.0.0.1", listen),
            extproc=addrs,
            admin=Address("127.0.0.1", admin),
            access_log=False,
            unrecorded=(Address("127.0.0.1", extproc + workers),) if counted else (),
        )
        bootstrap = build_bootstrap(load_config(str(self.config_path)), options)
        hcm = bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        if processor is None:
            filters = hcm["typed_config"]["http_filters"]
            filters[:] = [f for f in filters if f["name"] != "envoy.filters.http.ext_proc"]
        if processor is None or kind == "null":
            # wrk sets the backend header itself: Envoy must not remove it as a client's.
            hcm["typed_config"].pop("early_header_mutation_extensions", None)
        envoy = _envoy(f"gateway-{variant}", bootstrap, self.workdir)
        try:
            if processor is not None:
                processor.wait_for_stderr("ready")
            _wait_envoy(envoy, admin)
            yield listen, admin, processor, envoy
        finally:
            envoy.stop()
            if processor is not None:
                code = processor.stop()
                if code != 0:
                    print(f"warning: {processor.name} exited {code}", file=sys.stderr)

    def headers(self, scenario: Scenario, *, envoy_alone: bool) -> list[str]:
        headers = ["x-tenant-id: acme"]  # a header label's value for instrumented-both
        if envoy_alone:  # what the processor would set for Envoy to route on
            headers.append("x-ai-gateway-backend: " + ("mock" if scenario.streamed else "static"))
        if scenario.streamed:
            headers.append(f"x-mock-output-tokens: {STREAM_TOKENS}")
            if self.stream_itl_ms:
                headers.append(f"x-mock-itl-ms: {self.stream_itl_ms}")
        return headers

    def wrk(
        self, port: int, scenario: Scenario, headers: list[str], seconds: float
    ) -> dict[str, Any]:
        body = self.workdir / f"{scenario.body}.json"
        body.write_text(json.dumps(BODIES[scenario.body]))
        out = self.workdir / "wrk.json"
        out.unlink(missing_ok=True)
        argv = [
            "wrk",
            "-t1",
            f"-c{scenario.connections}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "10s",
            "-s",
            str(WRK_SCRIPT),
        ]
        for header in headers:
            argv += ["-H", header]
        argv.append(f"http://127.0.0.1:{port}/v1/chat/completions")
        env = {**os.environ, "BENCH_BODY_FILE": str(body), "BENCH_WRK_OUT": str(out)}
        run = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        if run.returncode != 0 or not out.exists():
            raise RuntimeError(f"wrk failed ({run.returncode}):\n{run.stdout}\n{run.stderr}")
        return dict(json.loads(out.read_text()))

    def measure(
        self,
        variant: str,
        scenario: Scenario,
        port: int,
        admin: int,
        processor: Proc | None,
        envoy: Proc,
    ) -> Measurement:
        headers = self.headers(scenario, envoy_alone=variant in ("envoy", "envoy-counted", "null"))
        if self.warmup > 0:
            self.wrk(port, scenario, headers, self.warmup)
        pid = processor.popen.pid if processor is not None else None
        upstreams = [p.popen.pid for p in self.procs]  # static Envoy and mock backend
        cpu0 = tree_cpu_seconds(pid) if pid else 0.0
        envoy0 = _cpu_seconds(envoy.popen.pid)
        ours0 = sum(_cpu_seconds(p) for p in upstreams) + _children_cpu_seconds()
        busy0, steal0 = _machine_cpu_seconds()
        msgs0 = _extproc_messages(admin)
        started = time.perf_counter()
        result = self.wrk(port, scenario, headers, self.duration)
        wall = time.perf_counter() - started
        busy, steal = (a - b for a, b in zip(_machine_cpu_seconds(), (busy0, steal0), strict=True))
        cpu = (tree_cpu_seconds(pid) - cpu0) if pid else 0.0
        envoy_cpu = _cpu_seconds(envoy.popen.pid) - envoy0
        ours = sum(_cpu_seconds(p) for p in upstreams) + _children_cpu_seconds() - ours0
        msgs = _extproc_messages(admin) - msgs0
        seconds = result["duration_us"] / 1e6
        lat = result["latency_us"]
        errors = sum(result["errors"].values())
        # wrk's window is slightly shorter than the process's: scale CPU to it.
        scale = min(1.0, seconds / wall) if wall > 0 else 1.0
        return Measurement(
            variant=variant,
            scenario=scenario.name,
            connections=scenario.connections,
            requests=result["requests"],
            seconds=round(seconds, 3),
            rps=round(result["requests"] / seconds, 1),
            p50_ms=lat["p50"] / 1000,
            p90_ms=lat["p90"] / 1000,
            p99_ms=lat["p99"] / 1000,
            errors=errors,
            processor_cpu_s=round(cpu * scale, 3),
            envoy_cpu_s=round(envoy_cpu * scale, 3),
            extproc_messages=msgs,
            extra={
                # CPU the machine spent outside this benchmark (other users' work) and
                # lost to the hypervisor, in cores: high values mean a noisy run.
                "other_load_cores": round(
                    max(0.0, busy - steal - cpu - envoy_cpu - ours) / wall, 2
                ),
                "steal_cores": round(steal / wall, 2),
            },
        )


def _machine_cpu_seconds() -> tuple[float, float]:
    """(busy, steal) CPU seconds of the whole machine so far, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / CLK_TCK, steal / CLK_TCK


def _children_cpu_seconds() -> float:
    """CPU of this process's reaped children (the wrk runs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _extproc_messages(admin: int) -> int:
    """ext_proc messages Envoy sent to the processor so far (its own counter)."""
    status, body = http_get(f"http://127.0.0.1:{admin}/stats?filter=ext_proc.stream_msgs_sent")
    if status != 200:
        return 0
    total = 0
    for line in body.decode().splitlines():
        name, _, value = line.partition(":")
        if name.strip().endswith("stream_msgs_sent"):
            total += int(value.strip() or 0)
    return total


# -- the run -----------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    envoy_version = subprocess.run(
        [find_envoy(), "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    from importlib.metadata import version

    from google.protobuf.internal import api_implementation

    try:
        uvloop_version = version("uvloop")
    except Exception:
        uvloop_version = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "envoy": envoy_version.split("version:")[-1].strip(),
        "grpcio": version("grpcio"),
        "protobuf": f"{version('protobuf')} ({api_implementation.Type()})",
        "uvloop": uvloop_version,
        "wrk": (wrk_version.stdout + wrk_version.stderr).splitlines()[0].strip(),
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
    }


def median_runs(results: list[Measurement]) -> list[Measurement]:
    """One measurement per (variant, scenario): the run with the median throughput (its
    other numbers come from the same run), the throughput of every run kept beside it."""
    runs: dict[tuple[str, str], list[Measurement]] = {}
    for m in results:
        runs.setdefault((m.variant, m.scenario), []).append(m)
    out = []
    for group in runs.values():
        ranked = sorted(group, key=lambda m: m.rps)
        chosen = ranked[(len(ranked) - 1) // 2]
        if len(group) > 1:
            chosen.extra["rps_runs"] = [m.rps for m in group]
            cpu = [m.processor_cpu_us_per_request for m in group]
            if all(c is not None for c in cpu):
                chosen.extra["processor_cpu_us_per_request_runs"] = [round(c or 0) for c in cpu]
        out.append(chosen)
    return out


def derive(results: list[Measurement]) -> None:
    base = {m.scenario: m for m in results if m.variant == "envoy"}
    for m in results:
        ref = base.get(m.scenario)
        if ref is None or m is ref:
            continue
        m.added_p50_ms = round(m.p50_ms - ref.p50_ms, 3)
        m.added_p99_ms = round(m.p99_ms - ref.p99_ms, 3)
        m.ratio = round(m.rps / ref.rps, 3) if ref.rps else None
    bare = {
        (m.scenario, m.variant.partition("@")[2]): m
        for m in results
        if m.variant.startswith("bare")
    }
    for m in results:
        ref = bare.get((m.scenario, m.variant.partition("@")[2]))
        if m.variant.startswith("instrumented") and ref is not None and ref.rps:
            m.extra["vs_bare"] = round(m.rps / ref.rps, 3)


def targets(results: list[Measurement]) -> list[dict[str, Any]]:
    """The issue-6 targets, for the instrumented single-process variant."""
    by = {(m.variant, m.scenario): m for m in results}
    out: list[dict[str, Any]] = []

    def add(name: str, value: float | None, goal: str, ok: bool | None) -> None:
        out.append({"target": name, "value": value, "goal": goal, "met": ok})

    m = by.get(("instrumented", "chat-c16"))
    add(
        "throughput at 16 connections / Envoy alone",
        m and m.ratio,
        ">= 0.25",
        None if m is None or m.ratio is None else m.ratio >= 0.25,
    )
    m = by.get(("instrumented", "chat-c1"))
    add(
        "latency added at 1 connection, p50 (ms)",
        m and m.added_p50_ms,
        "<= 1.0",
        None if m is None or m.added_p50_ms is None else m.added_p50_ms <= 1.0,
    )
    m, b = by.get(("instrumented", "chat-c16")), by.get(("bare", "chat-c16"))
    cost = round(1 - m.rps / b.rps, 3) if m and b and b.rps else None
    add(
        "instrumentation cost in throughput at 16 connections",
        cost,
        "<= 0.05",
        None if cost is None else cost <= 0.05,
    )
    m = by.get(("instrumented-both", "chat-c16"))
    cost = round(1 - m.rps / b.rps, 3) if m and b and b.rps else None
    add(
        "instrumentation cost with schema both, a header label and prices, 16 connections",
        cost,
        "<= 0.05",
        None if cost is None else cost <= 0.05,
    )
    m = by.get(("instrumented", "stream"))
    chunk = m.processor_cpu_us_per_chunk() if m else None
    add(
        "processor CPU per streamed chunk (us)",
        _round(chunk),
        "<= 30",
        None if chunk is None else chunk <= 30,
    )
    return out


def markdown(doc: dict[str, Any]) -> str:
    mach = doc["machine"]
    lines = [
        "# aigateway benchmark",
        "",
        f"Machine: {mach['cpu']}, {mach['cores']} cores, Linux {mach['kernel']}, "
        f"Python {mach['python']}, Envoy {mach['envoy']}, grpcio {mach['grpcio']}, "
        f"protobuf {mach['protobuf']}, uvloop {mach['uvloop']}, {mach['wrk']}. "
        f"Load average before the run: {mach['load_average_before']}.",
        "",
        f"Gateway Envoy `--concurrency 1`; wrk 1 thread; {doc['settings']['duration_s']:g} s "
        f"per measurement after {doc['settings']['warmup_s']:g} s of warm-up. Streamed: "
        f"{STREAM_TOKENS} tokens from `aigateway mock-backend`, "
        f"{doc['settings']['stream_itl_ms']} ms apart, "
        f"{doc['settings']['stream_connections']} connections. "
        f"Median of {doc['settings']['repeat']} interleaved round(s); "
        f"ext_proc over {doc['settings']['extproc_transport']}.",
        "",
        "Variants: `envoy` = Envoy alone; `null` = a grpc.aio servicer answering every "
        "message with a prebuilt CONTINUE (the floor: gRPC + Envoy's ext_proc, no "
        "processing); `bare` = the router and chat processor, not instrumented; "
        "`instrumented` = `aigateway serve`; `instrumented-both` = the same with "
        "`metrics.schema: both`, a tenant header label and prices; "
        "`-wN` = `--workers N`. us/chunk = processor "
        "CPU / streamed body messages (per-request work included). Other load = cores "
        "busy outside the benchmark during the measurement (other users, steal): the run's "
        "noise.",
        "",
        "| scenario | variant | req/s | ratio vs Envoy | p50 ms | p99 ms | added p50 ms "
        "| processor CPU us/req | us/chunk | Envoy CPU us/req | errors | other load |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in doc["results"]:

        def f(value: Any, fmt: str = "{:.2f}") -> str:
            return "" if value is None else fmt.format(value)

        lines.append(
            f"| {r['scenario']} | {r['variant']} | {r['rps']:.0f} | {f(r['ratio'])} "
            f"| {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {f(r['added_p50_ms'])} "
            f"| {f(r['processor_cpu_us_per_request'], '{:.0f}')} "
            f"| {f(r['processor_cpu_us_per_chunk'], '{:.1f}')} "
            f"| {r['envoy_cpu_us_per_request']:.0f} | {r['errors']} "
            f"| {f(r['extra'].get('other_load_cores'))} |"
        )
    lines += ["", "| target (instrumented, 1 process) | value | goal | met |", "|---|---:|---|---|"]
    for t in doc["targets"]:
        met = {True: "yes", False: "no", None: "n/a"}[t["met"]]
        lines.append(f"| {t['target']} | {t['value']} | {t['goal']} | {met} |")
    return "\n".join(lines) + "\n"


SCENARIOS = {
    "chat-c1": Scenario("chat-c1", "chat", 1),
    "chat-c16": Scenario("chat-c16", "chat", 16),
    "stream": Scenario("stream", "stream", 8, streamed=True),
}
#: Models with several backends: only when asked for (--scenarios), never by default.
SEVERAL_SCENARIOS = {
    "several-c16": Scenario("several-c16", "several", 16),
    "retried-c16": Scenario("retried-c16", "retried", 16),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.macro", description=__doc__.split("\n")[0]
    )
    env = os.environ.get
    parser.add_argument("--duration", type=float, default=float(env("BENCH_DURATION", "10")))
    parser.add_argument("--warmup", type=float, default=float(env("BENCH_WARMUP", "2")))
    parser.add_argument(
        "--workers",
        type=int,
        default=int(env("BENCH_WORKERS", "2")),
        help="also measure `aigateway serve --workers N` (0 or 1: skip)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=int(env("BENCH_REPEAT", "1")),
        help="rounds over all variants (interleaved); each number is the median round's",
    )
    parser.add_argument(
        "--baseline",
        metavar="DIR",
        help="also run bare and instrumented from another checkout of the project (e.g."
        " `git archive REV | tar -x -C DIR`), interleaved with the current code",
    )
    parser.add_argument("--stream-connections", type=int, default=16)
    parser.add_argument(
        "--stream-itl-ms",
        type=int,
        default=1,
        help="the mock's delay between tokens, so each is its own chunk",
    )
    parser.add_argument(
        "--unix-socket",
        action="store_true",
        help="Envoy reaches the processor over a unix socket, not TCP",
    )
    parser.add_argument(
        "--variants",
        default=env("BENCH_VARIANTS", ""),
        help="comma-separated subset of envoy,null,bare,instrumented,instrumented-both,"
        "instrumented-wN",
    )
    parser.add_argument(
        "--scenarios",
        default=env("BENCH_SCENARIOS", ""),
        help=f"comma-separated subset of {','.join({**SCENARIOS, **SEVERAL_SCENARIOS})}",
    )
    parser.add_argument(
        "--out",
        default=env("BENCH_OUT", str(RESULTS / "latest")),
        help="output path without extension (.json and .md are written)",
    )
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk not found: ./.ci/install-system-tools wrk (make bench does it)", file=sys.stderr)
        return 2

    variants: list[tuple[str, int]] = [
        ("envoy", 1),
        ("null", 1),
        ("bare", 1),
        ("instrumented", 1),
        ("instrumented-both", 1),
    ]
    if args.workers > 1:
        variants.append((f"instrumented-w{args.workers}", args.workers))
    if args.baseline:
        variants += [("bare@baseline", 1), ("instrumented@baseline", 1)]
    if args.variants:
        wanted = set(args.variants.split(","))
        variants = [v for v in variants if v[0] in wanted]
        if "envoy-counted" in wanted:  # only when asked: the unrecorded log's cost
            variants.insert(1, ("envoy-counted", 1))
    scenarios = list(SCENARIOS.values())
    if args.scenarios:
        scenarios = [{**SCENARIOS, **SEVERAL_SCENARIOS}[s] for s in args.scenarios.split(",")]
    scenarios = [
        Scenario(s.name, s.body, args.stream_connections, True) if s.streamed else s
        for s in scenarios
    ]

    doc: dict[str, Any] = {
        "machine": machine(),
        "settings": {
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "repeat": args.repeat,
            "baseline": args.baseline,
            "stream_connections": args.stream_connections,
            "stream_itl_ms": args.stream_itl_ms,
            "extproc_transport": "unix socket" if args.unix_socket else "tcp loopback",
            "stream_tokens": STREAM_TOKENS,
            "envoy_concurrency": 1,
        },
    }
    results: list[Measurement] = []
    with tempfile.TemporaryDirectory(prefix="aigateway-bench-") as tmp:
        bench = Bench(
            Path(tmp),
            args.duration,
            args.warmup,
            args.stream_connections,
            args.stream_itl_ms,
            args.unix_socket,
            Path(args.baseline).resolve() if args.baseline else None,
            several=any(s.name in SEVERAL_SCENARIOS for s in scenarios),
        )
        try:
            bench.start_upstreams()
            for round_ in range(args.repeat):
                for variant, workers in variants:
                    with bench.gateway(variant, workers) as (port, admin, processor, envoy):
                        for scenario in scenarios:
                            m = bench.measure(variant, scenario, port, admin, processor, envoy)
                            results.append(m)
                            print(f"[{round_ + 1}/{args.repeat}] {m.summary()}", file=sys.stderr)
        except Exception:
            for proc in bench.procs:
                print(f"==== {proc.name} ====\n{proc.output()[-3000:]}", file=sys.stderr)
            raise
        finally:
            bench.stop()
    results = median_runs(results)
    derive(results)
    doc["results"] = [m.to_dict() for m in results]
    doc["targets"] = targets(results)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(doc, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(doc))
    print(markdown(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
