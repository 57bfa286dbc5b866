"""A stack of its own for the reliability suite: the fault-injecting wrapper from
examples/ inside the metrics wrapper, debug logging (to prove secrets stay out of it),
and a backend with a one-second timeout."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.stack import Stack, default_config, running

ROOT = Path(__file__).resolve().parents[2]
FAULT_WRAPPER = f"{ROOT / 'examples' / 'fault_injection.py'}:FaultInjector"


def reliability_config(mock_port: int) -> dict[str, Any]:
    config = default_config(mock_port)
    config["backends"].append(
        {
            "name": "mock-slow",
            "schema": "openai",
            "endpoint": f"http://127.0.0.1:{mock_port}",
            "timeout_seconds": 1,
        }
    )
    config["models"].append({"name": "slow-model", "backend": "mock-slow"})
    return config


@pytest.fixture(scope="session")
def rstack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = Stack(
        tmp_path_factory.mktemp("reliability"),
        config_factory=reliability_config,
        serve_args=["--wrap", FAULT_WRAPPER, "--log-level", "debug"],
    )
    with running(stack) as s:
        yield s


def stream_text(raw: bytes) -> str:
    """The text of a whole chat completions stream (its content deltas, joined)."""
    text = ""
    for line in raw.split(b"\n"):
        if line.startswith(b"data: {"):
            doc = json.loads(line[6:])
            if doc.get("choices"):
                text += doc["choices"][0]["delta"].get("content") or ""
    return text
