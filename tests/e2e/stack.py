"""Starts the real thing for end-to-end tests: the mock backend, ``aigateway serve`` and
the ``envoy`` binary with the bootstrap from ``aigateway envoy-config``, each a real
process on free loopback ports. Readiness is waited for with deadlines, never sleeps."""

from __future__ import annotations

import functools
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import typing
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from aigateway.extproc.ops.demo import MOCK_KNOBS

AIGATEWAY = [sys.executable, "-m", "aigateway"]


# Ports are picked below the kernel's ephemeral range (outgoing connections take ports
# from there, and could take one between our check and the server's bind), at random so
# that two test runs rarely try the same one, and never twice in one run.
_PORT_RANGE = (20000, 32000)
_handed_out: set[int] = set()
_random = random.Random()


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        # As the servers bind: a port whose old connections wait in TIME_WAIT is free.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_ports(count: int) -> int:
    """The first of ``count`` consecutive free loopback ports, none handed out before."""
    for _ in range(1000):
        base = _random.randrange(_PORT_RANGE[0], _PORT_RANGE[1] - count)
        ports = range(base, base + count)
        if any(p in _handed_out for p in ports):
            continue
        if all(_bindable(p) for p in ports):
            _handed_out.update(ports)
            return base
    raise RuntimeError(f"no {count} consecutive free ports in {_PORT_RANGE}")


def free_port() -> int:
    return free_ports(1)


def wait_until(what: str, check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.02)
    raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")


def children(pid: int) -> list[int]:
    """The child processes of ``pid`` (from /proc)."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out.extend(int(p) for p in (task / "children").read_text().split())
        except OSError:
            pass
    return out


def child_serving(pid: int, extproc_addr: str) -> int:
    """The child process of ``pid`` started with ``--extproc-addr extproc_addr`` (one of
    ``serve --workers``' workers), from /proc."""
    for child in children(pid):
        argv = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        if extproc_addr.encode() in argv:
            return child
    raise LookupError(f"no child of {pid} serves {extproc_addr}")


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie awaiting its parent's wait() is not running)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path

    def output(self) -> str:
        return self.stdout.read_text(errors="replace") + self.stderr.read_text(errors="replace")

    def wait_for_stderr(self, text: str, timeout: float = 30.0) -> None:
        def seen() -> bool:
            if self.popen.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.popen.returncode}:\n{self.output()}"
                )
            return text in self.stderr.read_text(errors="replace")

        wait_until(f"{self.name} to print {text!r}", seen, timeout)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode


def spawn(name: str, argv: list[str], workdir: Path, env: dict[str, str] | None = None) -> Proc:
    out, err = workdir / f"{name}.stdout", workdir / f"{name}.stderr"
    popen = subprocess.Popen(
        argv,
        stdout=out.open("wb"),
        stderr=err.open("wb"),
        stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
        cwd=workdir,
    )
    return Proc(name, popen, out, err)


UPSTREAM_KEY = "sk-upstream-e2e-secret"
AWS_KEY_ID = "AKIDE2EEXAMPLE"
AWS_SECRET = "e2e/secret/key/EXAMPLEKEY"
BEDROCK_MODEL_ID = "anthropic.claude-3-5-sonnet-20240620-v1:0"
GEMINI_KEY = "gk-upstream-e2e-secret"
VERTEX_PROJECT = "e2e-project"
VERTEX_REGION = "us-central1"
VERTEX_GEMINI_MODEL = "gemini-2.0-flash-001"
VERTEX_CLAUDE_MODEL = "claude-3-5-sonnet-v2@20241022"
#: Service-account key files next to the config: one the mock trusts, one of the same
#: account signed with another key, and one whose token endpoint resets the connection
#: (a query knob, see mock_backend/gcp_tokens.py).
SA_FILE, SA_REFUSED_FILE, SA_DOWN_FILE = "sa.json", "sa-refused.json", "sa-down.json"


@functools.cache
def _service_account_keys() -> tuple[dict[str, Any], dict[str, Any]]:
    """Two throwaway keys, made once per test process (RSA key generation is slow)."""
    from aigateway.mock_backend import new_service_account_key

    trusted, _ = new_service_account_key("http://unset/token")
    stranger, _ = new_service_account_key("http://unset/token")
    return json.loads(trusted), json.loads(stranger)


def write_service_account_keys(workdir: Path, mock_url: str) -> None:
    """The three key files (see SA_FILE), their grants going to the mock at ``mock_url``."""
    trusted, stranger = _service_account_keys()
    token_uri = f"{mock_url}/token"
    for name, key, uri in (
        (SA_FILE, trusted, token_uri),
        (SA_REFUSED_FILE, stranger, token_uri),
        (SA_DOWN_FILE, trusted, token_uri + "?fault=reset"),
    ):
        (workdir / name).write_text(json.dumps({**key, "token_uri": uri}))


def default_config(mock_port: int) -> dict[str, Any]:
    """One backend per schema, all on the mock; Bedrock signs with SigV4 and the mock
    checks the signature."""
    endpoint = f"http://127.0.0.1:{mock_port}"
    key = {"api_key": {"env": "E2E_UPSTREAM_KEY"}}
    return {
        "backends": [
            {"name": "mock-openai", "schema": "openai", "endpoint": endpoint, "auth": key},
            {
                "name": "mock-azure",
                "schema": "azure-openai",
                "endpoint": endpoint,
                "api_version": "2024-10-21",
                "auth": key,
            },
            {
                "name": "mock-bedrock",
                "schema": "aws-bedrock",
                "endpoint": endpoint,
                "auth": {
                    "aws": {
                        "region": "us-east-1",
                        "access_key_id": {"value": AWS_KEY_ID},
                        "secret_access_key": {"env": "E2E_AWS_SECRET"},
                    }
                },
            },
            {"name": "mock-anthropic", "schema": "anthropic", "endpoint": endpoint, "auth": key},
            {
                "name": "mock-gemini",
                "schema": "gcp-gemini",
                "endpoint": endpoint,
                "auth": {"api_key": {"env": "E2E_GEMINI_KEY"}},
            },
            *(
                {
                    "name": name,
                    "schema": "gcp-vertex-ai",
                    "endpoint": endpoint,
                    "project": VERTEX_PROJECT,
                    "region": VERTEX_REGION,
                    "auth": {"gcp": {"service_account_file": sa_file}},
                }
                for name, sa_file in (
                    ("mock-vertex", SA_FILE),
                    ("mock-vertex-refused", SA_REFUSED_FILE),
                    ("mock-vertex-down", SA_DOWN_FILE),
                )
            ),
        ],
        "models": [
            {"name": "gpt-4o-mini", "backend": "mock-openai"},
            {"name": "phi4", "backend": "mock-openai", "backend_model": "phi4:latest"},
            {"name": "azure-gpt-4o", "backend": "mock-azure", "backend_model": "gpt-4o-deployment"},
            {
                "name": "bedrock-claude",
                "backend": "mock-bedrock",
                "backend_model": BEDROCK_MODEL_ID,
            },
            {
                "name": "claude-sonnet",
                "backend": "mock-anthropic",
                "backend_model": "claude-3-5-sonnet",
            },
            {"name": "text-embedding-3-small", "backend": "mock-openai"},
            {"name": "azure-embedding", "backend": "mock-azure", "backend_model": "embed-deploy"},
            {"name": "gemini-flash", "backend": "mock-gemini", "backend_model": "gemini-2.0-flash"},
            {
                "name": "gemini-embedding",
                "backend": "mock-gemini",
                "backend_model": "text-embedding-004",
            },
            {
                "name": "vertex-gemini",
                "backend": "mock-vertex",
                "backend_model": VERTEX_GEMINI_MODEL,
            },
            {
                "name": "vertex-claude",
                "backend": "mock-vertex",
                "backend_model": VERTEX_CLAUDE_MODEL,
            },
            {
                "name": "vertex-refused",
                "backend": "mock-vertex-refused",
                "backend_model": VERTEX_GEMINI_MODEL,
            },
            {
                "name": "vertex-down",
                "backend": "mock-vertex-down",
                "backend_model": VERTEX_GEMINI_MODEL,
            },
        ],
    }


def with_mock_knobs(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with every backend forwarding the mock's ``x-mock-*`` knobs."""
    for backend in config["backends"]:
        backend.setdefault("forward_headers", [MOCK_KNOBS])
    return config


@dataclass
class Stack:
    workdir: Path
    config: dict[str, Any] | None = None
    config_factory: Callable[[int], dict[str, Any]] = default_config
    env: dict[str, str] = field(
        default_factory=lambda: {
            "E2E_UPSTREAM_KEY": UPSTREAM_KEY,
            "E2E_AWS_SECRET": AWS_SECRET,
            "E2E_GEMINI_KEY": GEMINI_KEY,
        }
    )
    serve_args: list[str] = field(default_factory=list)
    envoy_args: list[str] = field(default_factory=list)
    mock_args: list[str] = field(default_factory=list)
    #: The host `serve` binds (0.0.0.0 to test non-loopback rules).
    extproc_host: str = "127.0.0.1"
    procs: dict[str, Proc] = field(default_factory=dict)
    mock_port: int = 0
    extproc_port: int = 0
    metrics_port: int = 0
    listen_port: int = 0
    admin_port: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.listen_port}"

    @property
    def mock_url(self) -> str:
        return f"http://127.0.0.1:{self.mock_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    @property
    def config_path(self) -> Path:
        return self.workdir / "config.yaml"

    def allocate_ports(self) -> None:
        """Free loopback ports for every part (override for other layouts)."""
        self.mock_port, self.extproc_port, self.metrics_port = free_port(), free_port(), free_port()
        self.listen_port, self.admin_port = free_port(), free_port()

    def start(self) -> Stack:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.allocate_ports()
        write_service_account_keys(self.workdir, self.mock_url)
        mock = spawn(
            "mock",
            [
                *AIGATEWAY,
                "mock-backend",
                "--listen",
                f"127.0.0.1:{self.mock_port}",
                "--aws-region",
                "us-east-1",
                "--gemini-api-key-env",
                "E2E_GEMINI_KEY",
                "--gcp-service-account",
                str(self.workdir / SA_FILE),
                *self.mock_args,
            ],
            self.workdir,
            {
                "AWS_ACCESS_KEY_ID": AWS_KEY_ID,
                "AWS_SECRET_ACCESS_KEY": AWS_SECRET,
                "E2E_GEMINI_KEY": GEMINI_KEY,
            },
        )
        self.procs["mock"] = mock
        config = with_mock_knobs(
            self.config if self.config is not None else self.config_factory(self.mock_port)
        )
        self.config_path.write_text(yaml.safe_dump(config))
        self.start_processor()
        bootstrap = subprocess.run(
            [
                *AIGATEWAY,
                "envoy-config",
                "--config",
                str(self.config_path),
                "--listen",
                f"127.0.0.1:{self.listen_port}",
                "--extproc-addr",
                f"{self.extproc_host}:{self.extproc_port}",
                "--admin-addr",
                f"127.0.0.1:{self.admin_port}",
                *self.envoy_args,
            ],
            capture_output=True,
            check=True,
            env={**os.environ, **self.env},
        ).stdout
        (self.workdir / "envoy.yaml").write_bytes(bootstrap)
        from aigateway.extproc.ops.envoy_process import envoy_command

        self.procs["envoy"] = spawn(
            "envoy",
            envoy_command(str(self.workdir / "envoy.yaml"), concurrency=1, log_level="warn"),
            self.workdir,
        )
        mock.wait_for_stderr("ready")
        self.wait_envoy_ready()
        return self

    def start_processor(self) -> Proc:
        proc = spawn(
            "serve",
            [
                *AIGATEWAY,
                "serve",
                "--config",
                str(self.config_path),
                "--extproc-addr",
                f"{self.extproc_host}:{self.extproc_port}",
                "--metrics-addr",
                f"127.0.0.1:{self.metrics_port}",
                "--drain-timeout",
                "20",
                *self.serve_args,
            ],
            self.workdir,
            self.env,
        )
        self.procs["serve"] = proc
        proc.wait_for_stderr("ready")
        return proc

    def wait_envoy_ready(self) -> None:
        envoy = self.procs["envoy"]

        def ready() -> bool:
            if envoy.popen.poll() is not None:
                raise RuntimeError(f"envoy exited with {envoy.popen.returncode}:\n{envoy.output()}")
            try:
                status, _body = http_get(f"http://127.0.0.1:{self.admin_port}/ready", 1)
            except OSError:
                return False
            return status == 200 and _accepts(self.listen_port)

        wait_until("envoy to be ready", ready)

    def stop(self) -> None:
        for name in ("envoy", "serve", "mock"):
            if name in self.procs:
                self.procs[name].stop()

    def logs(self) -> str:
        return "\n".join(f"==== {n} ====\n{p.output()[-5000:]}" for n, p in self.procs.items())

    # -- what tests look at --------------------------------------------------------------

    def mock_requests(self) -> list[dict[str, Any]]:
        status, body = http_get(f"{self.mock_url}/_mock/requests")
        assert status == 200, body
        return list(json.loads(body))

    def clear_mock_requests(self) -> None:
        req = urllib.request.Request(f"{self.mock_url}/_mock/requests", method="DELETE")
        urllib.request.urlopen(req, timeout=5).close()

    def metrics_text(self) -> str:
        status, body = http_get(self.metrics_url)
        assert status == 200
        return body.decode()

    def envoy_stat(self, name: str) -> int:
        """One of Envoy's counters, by its full name (0 until Envoy has it)."""
        status, body = http_get(f"http://127.0.0.1:{self.admin_port}/stats?filter=^{name}$")
        assert status == 200
        return sum(int(line.partition(": ")[2]) for line in body.decode().splitlines() if line)


S = typing.TypeVar("S", bound=Stack)


@contextmanager
def running(stack: S) -> Iterator[S]:
    """Starts ``stack`` for the block and always stops it; a failed start prints the
    processes' output so the test log says why."""
    try:
        stack.start()
    except Exception:
        print(stack.logs())
        stack.stop()
        raise
    try:
        yield stack
    finally:
        stack.stop()


@dataclass
class RedisServer:
    """A ``redis-server`` of the test's own on a free port (no persistence); ``stop``
    and ``start`` again on the same port simulate an outage."""

    workdir: Path
    port: int = 0
    proc: Proc | None = None
    #: More ``redis-server`` arguments (``--requirepass``, ``--user``, TLS files).
    options: tuple[str, ...] = ()
    #: Serve TLS only (``--tls-port``; ``options`` names the certificate files).
    tls: bool = False

    @property
    def url(self) -> str:
        return f"{'rediss' if self.tls else 'redis'}://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port()
        self.proc = spawn(
            "redis",
            [
                "redis-server",
                *(("--port", "0", "--tls-port") if self.tls else ("--port",)),
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
                *self.options,
            ],
            self.workdir,
        )
        proc = self.proc

        def accepting() -> bool:
            if proc.popen.poll() is not None:
                raise RuntimeError(f"redis-server exited:\n{proc.output()}")
            return _accepts(self.port)

        wait_until("redis-server to accept connections", accepting)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc = None
