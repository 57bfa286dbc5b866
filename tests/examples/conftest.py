"""Shared by the tests of ``examples/``: where the examples are, and a stack that serves
an example with ``aigateway serve --wrap/--routes examples/x.py:NAME`` behind the real
Envoy, as the examples say to.

Loaded that way (or run as scripts) the examples import their siblings
(``tenant_budget``) from ``examples/``; tests that import them in-process need the same
directory on the path.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import openai
import pytest

from tests.e2e.stack import AIGATEWAY, Proc, Stack, running, spawn, wait_until
from tests.e2e.test_metrics import Key, delta, snapshot

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"

if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))


def example_module(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` as the script would see its siblings."""
    return importlib.import_module(name)


@dataclass
class ExampleStack(Stack):
    """``tests.e2e.stack.Stack`` (mock backend + real Envoy from ``aigateway envoy-config``)
    with ``aigateway serve`` told to load an example (``serve_args``: ``--wrap`` or
    ``--routes`` lines)."""

    serve_args: list[str] = field(default_factory=list)

    def start_processor(self) -> Proc:
        proc = spawn(
            "serve",
            [
                *AIGATEWAY,
                "serve",
                "--config",
                str(self.config_path),
                "--extproc-addr",
                f"127.0.0.1:{self.extproc_port}",
                "--metrics-addr",
                f"127.0.0.1:{self.metrics_port}",
                *self.serve_args,
            ],
            self.workdir,
            self.env,
        )
        self.procs["serve"] = proc
        proc.wait_for_stderr("ready")
        return proc


def openai_client(stack: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.base_url}/v1", api_key="client-own-key", max_retries=0)


def running_example(
    tmp_path_factory: pytest.TempPathFactory, name: str, serve_args: list[str]
) -> Iterator[Stack]:
    """An :class:`ExampleStack` serving with ``serve_args``, for a module's ``stack`` fixture."""
    with running(ExampleStack(tmp_path_factory.mktemp(name), serve_args=serve_args)) as s:
        yield s


@pytest.fixture
def client(stack: Stack) -> openai.OpenAI:
    """A client of the module's ``stack`` fixture."""
    return openai_client(stack)


@pytest.fixture
def examples_dir() -> Path:
    return EXAMPLES


def requests_counted(
    stack: Stack, before: dict[Key, float], count: int
) -> dict[tuple[str, ...], float]:
    """Wait until ``aigateway_requests_total`` has grown by ``count`` since ``before``
    (requests are counted when their response completes, which may be just after the
    client got its answer), then return the growth by (backend, model, status)."""
    grown: dict[tuple[str, ...], float] = {}

    def counted() -> bool:
        nonlocal grown
        grown = delta(before, snapshot(stack.metrics_text()), "aigateway_requests_total")
        return sum(grown.values()) >= count

    wait_until(f"{count} more request(s) in aigateway_requests_total", counted, timeout=10)
    return grown
