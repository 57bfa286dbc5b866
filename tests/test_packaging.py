"""The wheel works in a fresh virtual environment whatever extras are installed and in
whichever order (docs/getting-started.md, "Installing"): no dependency ships another
package's modules, so ``serve`` exports a span over OTLP whether ``[otlp]`` went in first,
last or alone."""

from __future__ import annotations

import shutil
import subprocess
import sys
import venv
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from tests.e2e.stack import Proc, Stack, running, spawn, wait_until
from tests.instrumentation.collector import Collector, collecting

ROOT = Path(__file__).resolve().parents[1]
#: Every extra but otlp, and the install orders: otlp alone, first, last.
OTHERS = "aws,gcp,envoy,fast"
NOT_SOURCE = (".*", "build", "dist", "site", "*.egg-info", "__pycache__")
PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
PIP_WHEEL = [*PIP, "wheel", "-q", "--no-deps", "--no-build-isolation"]
ORDERS = {"otlp-alone": ["otlp"], "otlp-first": ["otlp", OTHERS], "otlp-last": [OTHERS, "otlp"]}


def span_names(collector: Collector) -> list[str]:
    """The names of every span ``collector`` has been sent."""
    return [
        span.name
        for request in collector.requests
        for resource in request.resource_spans
        for scope in resource.scope_spans
        for span in scope.spans
    ]


@pytest.fixture(scope="module")
def collector() -> Iterator[tuple[Collector, int]]:
    with collecting(
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server,
        trace_service_pb2.ExportTraceServiceResponse(),
    ) as served:
        yield served


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # Built from a copy: setuptools leaves build/ behind, and would reuse a stale one.
    source = tmp_path_factory.mktemp("source") / "aigateway"
    shutil.copytree(ROOT, source, symlinks=True, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    subprocess.run([*PIP_WHEEL, "-w", str(out), str(source)], check=True)
    (built,) = out.glob("aigateway-*.whl")
    return built


def test_the_wheel_holds_only_its_own_modules(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        tops = {name.split("/")[0] for name in archive.namelist()}
    assert tops == {"aigateway", wheel.name.split("-py3")[0] + ".dist-info"}, tops


def one_backend(mock_port: int) -> dict[str, Any]:
    endpoint = f"http://127.0.0.1:{mock_port}"
    return {
        "backends": [{"name": "mock", "schema": "openai", "endpoint": endpoint}],
        "models": [{"name": "gpt-4o-mini", "backend": "mock"}],
    }


@dataclass
class InstalledStack(Stack):
    """The stack with ``serve`` from a fresh virtual environment's ``aigateway``."""

    bin: Path = Path()

    def start_processor(self) -> Proc:
        proc = spawn(
            "serve",
            [
                str(self.bin / "aigateway"),
                "serve",
                "--config",
                str(self.config_path),
                "--extproc-addr",
                f"127.0.0.1:{self.extproc_port}",
                "--metrics-addr",
                f"127.0.0.1:{self.metrics_port}",
            ],
            self.workdir,
            self.env,
        )
        self.procs["serve"] = proc
        proc.wait_for_stderr("ready")
        return proc


@pytest.mark.timeout(600)
@pytest.mark.parametrize("order", list(ORDERS))
def test_serve_exports_spans_over_otlp_whatever_the_install_order(
    wheel: Path, collector: tuple[Collector, int], tmp_path: Path, order: str
) -> None:
    # No pip of its own: ours installs into it (--python), and --no-compile skips
    # byte-compiling botocore's thousands of modules, which dominated the test's time.
    venv.create(tmp_path / "venv", with_pip=False)
    bin_dir = tmp_path / "venv" / "bin"
    pip = [*PIP, "--python", str(bin_dir / "python")]
    for extras in ORDERS[order]:
        subprocess.run([*pip, "install", "-q", "--no-compile", f"{wheel}[{extras}]"], check=True)
    subprocess.run([*pip, "check"], check=True)
    servicer, port = collector
    env = {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    stack = InstalledStack(tmp_path / "stack", config_factory=one_backend, env=env, bin=bin_dir)
    (tmp_path / "stack").mkdir()
    with running(stack):
        servicer.requests.clear()
        response = httpx.post(
            stack.base_url + "/v1/chat/completions",
            json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        wait_until("a span at the collector", lambda: "chat gpt-4o-mini" in span_names(servicer))
