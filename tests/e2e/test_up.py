"""``aigateway up``: the whole gateway on one command, and nothing left behind."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.e2e.stack import (
    AIGATEWAY,
    Proc,
    alive,
    children,
    free_port,
    http_get,
    spawn,
    wait_until,
)


def envoy_children(pid: int) -> list[int]:
    """The Envoy processes ``pid`` started (its children only: an ``up`` running in
    another terminal is not ours to look at)."""
    pids = []
    for child in children(pid):
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmdline and cmdline[0].endswith(b"envoy"):
            pids.append(child)
    return pids


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class Up:
    def __init__(
        self,
        workdir: Path,
        *extra: str,
        env: dict[str, str] | None = None,
        ports: dict[str, int] | None = None,
    ) -> None:
        names = ("listen", "extproc", "metrics", "admin", "mock")
        self.ports = {name: free_port() for name in names} | (ports or {})
        argv = [
            *AIGATEWAY,
            "up",
            "--listen",
            f"127.0.0.1:{self.ports['listen']}",
            "--extproc-addr",
            f"127.0.0.1:{self.ports['extproc']}",
            "--metrics-addr",
            f"127.0.0.1:{self.ports['metrics']}",
            "--admin-addr",
            f"127.0.0.1:{self.ports['admin']}",
            "--mock-addr",
            f"127.0.0.1:{self.ports['mock']}",
            *extra,
        ]
        self.proc: Proc = spawn("up", argv, workdir, env)

    def envoys(self) -> list[int]:
        return envoy_children(self.proc.popen.pid)


@pytest.fixture
def up(workdir: Path) -> Iterator[Up]:
    u = Up(workdir)
    yield u
    u.proc.stop(signal.SIGKILL)


def test_up_serves_every_demo_model_and_stops_cleanly(up: Up) -> None:
    up.proc.wait_for_stderr("ready", timeout=60)
    banner = up.proc.stdout.read_text()
    base = f"http://127.0.0.1:{up.ports['listen']}"
    assert f"{base}/v1" in banner
    assert f"http://127.0.0.1:{up.ports['metrics']}/metrics" in banner
    assert up.envoys(), "envoy runs as a child of up"

    # The banner's snippets paste into a shell as printed.
    snippets = banner.split("Try it:\n", 1)[1].split("\nEnvoy's access log follows", 1)[0]
    assert f"curl -s -w '\\n' {base}/v1/chat/completions" in snippets
    pasted = subprocess.run(
        ["bash", "-euo", "pipefail"], input=snippets, capture_output=True, text=True, timeout=60
    )
    assert pasted.returncode == 0, pasted.stderr
    reply, streamed, fallback = pasted.stdout.splitlines()[-3:]
    assert json.loads(reply)["object"] == "chat.completion"
    assert len(streamed.split()) == 8  # the mock's reply, streamed by the openai client
    # The fallback snippet: OpenAI's 503, then Anthropic's answer, as chat completions.
    assert json.loads(fallback)["object"] == "chat.completion"
    seen = (
        b'aigateway_backend_attempts_total{backend="mock-openai",model="gpt-4o",'
        b'result="server_error"} 1.0',
        b'aigateway_requests_total{backend="mock-anthropic",model="gpt-4o",status="success"} 1.0',
    )

    def attempted() -> bool:
        status, body = http_get(f"http://127.0.0.1:{up.ports['metrics']}/metrics")
        return status == 200 and all(line in body for line in seen)

    wait_until("the fallback's failed attempt to be counted", attempted)

    client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0)
    models = [m.id for m in client.models.list()]
    chat_models = [m for m in models if "embedding" not in m]
    assert {
        "gpt-4o-mini",
        "azure-gpt-4o",
        "bedrock-claude",
        "claude-sonnet",
        "gemini-flash",
        "vertex-gemini",  # on a throwaway service-account key the demo's mock trusts
        "vertex-claude",
    } <= set(chat_models)
    for model in chat_models:
        reply = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "Hello there"}]
        )
        assert reply.choices[0].message.content
    text = "".join(
        c.choices[0].delta.content or ""
        for c in client.chat.completions.create(
            model="claude-sonnet", stream=True, messages=[{"role": "user", "content": "Hi"}]
        )
        if c.choices
    )
    assert len(text.split()) == 8

    series = b'{backend="mock-anthropic",model="claude-sonnet",status="success"}'

    def counted() -> bool:
        status, body = http_get(f"http://127.0.0.1:{up.ports['metrics']}/metrics")
        return status == 200 and b"aigateway_requests_total" + series + b" 2.0" in body

    # Recorded when each response completed, before the clients returned.
    wait_until("both claude-sonnet requests to be counted", counted)

    envoys = up.envoys()
    up.proc.popen.send_signal(signal.SIGINT)
    assert up.proc.popen.wait(30) == 0
    wait_until("envoy to be gone", lambda: not any(alive(p) for p in envoys), timeout=10)
    for port in up.ports.values():
        assert not accepts(port), f"port {port} still accepts after up exited"
    assert "Traceback" not in up.proc.output()


def test_killed_up_takes_envoy_with_it(up: Up) -> None:
    up.proc.wait_for_stderr("ready", timeout=60)
    pids = up.envoys()
    assert pids
    up.proc.popen.send_signal(signal.SIGKILL)
    up.proc.popen.wait(10)
    wait_until("envoy to follow its parent", lambda: not any(alive(p) for p in pids), timeout=10)


def test_taken_port_is_one_clear_line(workdir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        up = Up(workdir, "--listen", f"127.0.0.1:{port}")
        code = up.proc.popen.wait(30)
    err = up.proc.stderr.read_text().strip()
    assert code == 1
    assert "Traceback" not in err
    assert err.splitlines()[-1].startswith(f"aigateway: --listen 127.0.0.1:{port}: ")
    assert "in use" in err


def test_missing_envoy_is_one_clear_line(workdir: Path) -> None:
    up = Up(workdir, env={"ENVOY_BIN": str(workdir / "no-envoy-here")})
    code = up.proc.popen.wait(30)
    err = up.proc.stderr.read_text().strip()
    assert code == 1
    assert "Traceback" not in err
    assert err.splitlines()[-1].startswith("aigateway: ENVOY_BIN=")
    assert not up.envoys()


def test_bad_config_is_one_clear_line(workdir: Path) -> None:
    config = workdir / "bad.yaml"
    config.write_text("backends: []\nmodels: []\n")
    up = Up(workdir, "--config", str(config))
    code = up.proc.popen.wait(30)
    err = up.proc.stderr.read_text().strip()
    assert code == 2
    assert "Traceback" not in err
    assert err.startswith("aigateway: invalid config: ")
    assert "backends" in err


def test_up_with_a_config_that_uses_the_mock(workdir: Path) -> None:
    """A config whose backend points at --mock-addr gets the embedded mock too."""
    mock_port = free_port()
    config = workdir / "gateway.yaml"
    config.write_text(
        "backends:\n"
        f"  - {{name: local, schema: openai, endpoint: 'http://127.0.0.1:{mock_port}'}}\n"
        "models:\n"
        "  - {name: my-model, backend: local}\n"
    )
    up = Up(workdir, "--config", str(config), ports={"mock": mock_port})
    try:
        up.proc.wait_for_stderr("ready", timeout=60)
        client = openai.OpenAI(
            base_url=f"http://127.0.0.1:{up.ports['listen']}/v1", api_key="x", max_retries=0
        )
        reply = client.chat.completions.create(
            model="my-model", messages=[{"role": "user", "content": "hi"}]
        )
        assert reply.choices[0].message.content
        up.proc.popen.send_signal(signal.SIGTERM)
        assert up.proc.popen.wait(30) == 0
    finally:
        up.proc.stop(signal.SIGKILL)
