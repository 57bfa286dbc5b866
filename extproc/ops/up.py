"""``aigateway up``: the whole gateway in one command.

Starts the embedded mock backend (when the config points at it), Envoy with a generated
bootstrap, and the instrumented processor with its metrics endpoint; prints where to
send requests; on Ctrl-C or SIGTERM stops everything and leaves no process behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import shlex
import socket
import sys
import tempfile
import urllib.request
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from aigateway.extproc.framework.addresses import Address
from aigateway.extproc.gateway.app import Gateway, ServeOptions, StartupError, install_stop_signals
from aigateway.extproc.gateway.config import (
    GatewayConfig,
    ResolvedSecrets,
    load_config,
    load_secrets,
    parse_config,
)
from aigateway.extproc.ops.demo import FALLBACK_MODEL, demo_config
from aigateway.extproc.ops.envoy_bootstrap import EnvoyOptions, build_bootstrap
from aigateway.extproc.ops.envoy_process import (
    EnvoyNotFound,
    die_with_parent,
    envoy_command,
    stop_process,
)
from aigateway.extproc.ops.logs import bind_explained

if TYPE_CHECKING:
    from aigateway.mock_backend import GcpServiceAccount

ENVOY_START_TIMEOUT = 30.0


@dataclass(slots=True, frozen=True)
class UpOptions:
    """What ``aigateway up`` runs: ``config`` is a config file (``None``: the built-in
    demo on the mock backend at ``mock``)."""

    config: str | None
    listen: Address
    extproc: Address
    metrics: Address
    admin: Address
    mock: Address
    drain_timeout: float = 10.0


def _port_free(address: Address, flag: str) -> None:
    if address.is_unix or address.port == 0:
        return
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address.bind_host, address.port))
        except OSError as exc:
            raise StartupError(
                f"{flag} {address}: {exc.strerror or exc} (is another gateway running?)"
            ) from None


def _mock_address(config: GatewayConfig, mock: Address) -> bool:
    """True when some backend points at the embedded mock's address."""
    for backend in config.backends:
        if backend.port == mock.port and backend.host in (mock.url_host(), "localhost", mock.host):
            return True
    return False


@asynccontextmanager
async def _mock_backend(
    address: Address, accounts: Sequence[GcpServiceAccount]
) -> AsyncIterator[None]:
    from aigateway.mock_backend import create_app, run_mock_backend

    app = create_app(gcp_service_accounts=accounts)
    try:
        async with run_mock_backend(address.bind_host, address.port, app=app):
            yield
    except OSError as exc:
        raise StartupError(f"--mock-addr {address}: {exc.strerror or exc}") from None


def _demo_vertex_key(mock_url: str, workdir: Path) -> tuple[str | None, list[GcpServiceAccount]]:
    """A throwaway service-account key in ``workdir`` whose tokens the demo's mock issues,
    so Vertex AI runs offline and keyless; none without the gcp extra."""
    if importlib.util.find_spec("google.auth") is None:
        return None, []
    try:
        from aigateway.mock_backend import new_service_account_key

        text, account = new_service_account_key(
            f"{mock_url}/token",
            client_email="aigateway-demo@aigateway-demo.iam.gserviceaccount.com",
        )
    except ImportError:  # cryptography missing
        return None, []
    path = workdir / "demo-vertex-key.json"
    path.write_text(text)
    path.chmod(0o600)
    return str(path), [account]


def _tail(log: Path, lines: int = 5) -> str:
    return " | ".join(log.read_text(errors="replace").strip().splitlines()[-lines:])


def _admin_ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:  # noqa: S310 - our own admin port
            return bool(resp.status == 200)
    except OSError:
        return False


async def _wait_envoy(proc: asyncio.subprocess.Process, admin: Address, log: Path) -> None:
    url = f"http://{admin.url_host()}:{admin.port}/ready"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + ENVOY_START_TIMEOUT
    while loop.time() < deadline:
        if proc.returncode is not None:
            raise StartupError(f"envoy exited at start: {_tail(log) or proc.returncode}")
        if await asyncio.to_thread(_admin_ready, url):
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), 0.05)
    raise StartupError(f"envoy did not become ready within {ENVOY_START_TIMEOUT:g}s (log: {log})")


def _banner(config: GatewayConfig, listen: Address, metrics: Address | None, admin: Address) -> str:
    base = f"http://{listen.url_host()}:{listen.port}"
    model = config.models[0].name
    lines = [
        "aigateway is up",
        f"  OpenAI-compatible API  {base}/v1 (chat completions, Responses)",
        f"  Anthropic Messages API {base} (ANTHROPIC_BASE_URL for the anthropic SDK, Claude Code)",
    ]
    if metrics is not None:
        lines.append(f"  Prometheus metrics     http://{metrics.url_host()}:{metrics.port}/metrics")
    lines.append(f"  Envoy admin            http://{admin.url_host()}:{admin.port}")
    lines.append("  Models:")
    for m in config.models:
        routes = ", then ".join(
            f"{t.backend} ({config.backend(t.backend).schema_})"
            for t in sorted(m.targets, key=lambda t: t.priority)
        )
        lines.append(f"    {m.name:<24} -> {routes}")
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "Hello there"}]})
    # Both snippets paste into a shell as printed: nothing indented inside the heredoc.
    python = shlex.quote(sys.executable)
    lines += [
        "",
        "Try it:",
        "",
        f"curl -s -w '\\n' {base}/v1/chat/completions -H 'content-type: application/json' \\",
        f"  -d '{body}'",
        "",
    ]
    if importlib.util.find_spec("openai") is None:
        lines.append(
            f"# the Python snippet needs the openai package: {python} -m pip install openai"
        )
    lines += [
        f"{python} - <<'EOF'",
        "from openai import OpenAI",
        f'client = OpenAI(base_url="{base}/v1", api_key="unused")',
        f'for chunk in client.chat.completions.create(model="{model}", stream=True,',
        '        messages=[{"role": "user", "content": "Hello there"}]):',
        '    print(chunk.choices[0].delta.content or "", end="", flush=True)',
        "print()",
        "EOF",
    ]
    if any(m.name == FALLBACK_MODEL and m.several for m in config.models):
        fallback = json.dumps(
            {"model": FALLBACK_MODEL, "messages": [{"role": "user", "content": "Hello there"}]}
        )
        lines += [
            "",
            f"# See a fallback: OpenAI answers 503 (the mock's knobs), so {FALLBACK_MODEL}'s",
            "# answer comes from Anthropic; Envoy's log below shows both attempts.",
            f"curl -s -w '\\n' {base}/v1/chat/completions -H 'content-type: application/json' \\",
            "  -H 'x-mock-status: 503' -H 'x-mock-status-path: /v1/chat' \\",
            f"  -d '{fallback}'",
        ]
    lines += [
        "",
        "Envoy's access log follows (one JSON line per request, and one per attempt for a",
        "model with several backends). Press Ctrl-C to stop.",
    ]
    return "\n".join(lines)


async def run_up(options: UpOptions) -> None:
    """Run until SIGINT/SIGTERM or until Envoy exits. Raises :class:`StartupError` (or
    ``ConfigError``) with a one-line message when something cannot start."""
    listen, extproc, metrics = options.listen, options.extproc, options.metrics
    admin, mock = options.admin, options.mock

    async with AsyncExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="aigateway-up-")))
        accounts: list[GcpServiceAccount] = []
        if options.config:
            config = load_config(options.config)
            secrets = load_secrets(config, options.config)
            with_mock = _mock_address(config, mock)
        else:
            mock_url = f"http://{mock.url_host()}:{mock.port}"
            key_file, accounts = _demo_vertex_key(mock_url, workdir)
            config = parse_config(demo_config(mock_url, key_file), "<built-in demo config>")
            secrets = ResolvedSecrets(config, workdir)
            with_mock = True

        for address, flag in (
            (listen, "--listen"),
            (admin, "--admin-addr"),
            (extproc, "--extproc-addr"),
            (metrics, "--metrics-addr"),
        ):
            _port_free(address, flag)
        if with_mock:
            _port_free(mock, "--mock-addr")

        stop = asyncio.Event()
        install_stop_signals(stop)
        if with_mock:
            await stack.enter_async_context(_mock_backend(mock, accounts))

        bootstrap = build_bootstrap(
            config, EnvoyOptions(listen=listen, extproc=[extproc], admin=admin)
        )
        (workdir / "envoy.yaml").write_text(yaml.safe_dump(bootstrap, sort_keys=False))
        try:
            command = envoy_command(str(workdir / "envoy.yaml"), concurrency=2)
        except EnvoyNotFound as exc:
            raise StartupError(str(exc)) from None
        envoy_log = workdir / "envoy.log"
        log_file = stack.enter_context(envoy_log.open("wb"))
        envoy = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=None,  # the access log goes to our stdout
            stderr=log_file,
            preexec_fn=die_with_parent,  # no threads have started yet
            start_new_session=True,  # Ctrl-C reaches us; we stop Envoy in order
        )
        stack.push_async_callback(stop_process, envoy)

        gateway = Gateway(
            config,
            secrets,
            ServeOptions(
                extproc=extproc,
                metrics=metrics,
                drain_timeout=options.drain_timeout,
                binder=bind_explained,
            ),
        )
        await gateway.start()
        stack.push_async_callback(gateway.stop)
        await _wait_envoy(envoy, admin, envoy_log)

        print(_banner(config, listen, metrics, admin), flush=True)
        print(
            f"aigateway ready: listening on http://{listen.url_host()}:{listen.port}",
            file=sys.stderr,
            flush=True,
        )

        envoy_exit = asyncio.ensure_future(envoy.wait())
        stopped = asyncio.ensure_future(stop.wait())
        await asyncio.wait({envoy_exit, stopped}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if envoy_exit.done() and not stop.is_set():
            raise StartupError(f"envoy exited unexpectedly: {_tail(envoy_log) or envoy.returncode}")
        envoy_exit.cancel()
        print("aigateway: stopping", file=sys.stderr, flush=True)
