"""Claude Code against every backend schema, through real Envoy: the requests the real
``claude`` CLI sent (``tests/e2e/data/claude_code_requests.json``, recorded from
claude-cli 2.1.332 with its long texts replaced by placeholders) are replayed with its
headers, and must stream back a whole Messages answer, with each backend getting its own
credential and Anthropic's headers only where they mean something."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.stack import UPSTREAM_KEY, Stack
from tests.e2e.test_schemas import MODELS

CAPTURED: list[dict[str, Any]] = json.loads(
    (Path(__file__).parent / "data" / "claude_code_requests.json").read_text()
)["requests"]
ANTHROPIC_BACKENDS = ("claude-sonnet", "vertex-claude")


def events(body: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in body.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in lines:
            out.append((lines["event"], json.loads(lines["data"])))
    return out


@pytest.mark.parametrize("model", list(MODELS))
@pytest.mark.parametrize("captured", CAPTURED, ids=[c["name"] for c in CAPTURED])
def test_claude_code_s_requests_work_on_every_backend(
    stack: Stack, model: str, captured: dict[str, Any]
) -> None:
    stack.clear_mock_requests()
    headers = {
        **captured["headers"],
        "x-api-key": "client-own-key",
        "x-mock-output-tokens": "4",
    }
    body = {**captured["body"], "model": model}
    with httpx.Client(timeout=30) as http:
        response = http.post(stack.base_url + captured["path"], json=body, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    seen = events(response.text)
    kinds = [kind for kind, _ in seen]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop", kinds
    text = "".join(
        doc["delta"]["text"]
        for kind, doc in seen
        if kind == "content_block_delta" and doc["delta"]["type"] == "text_delta"
    )
    assert len(text.split()) == 4
    (upstream,) = [
        r for r in stack.mock_requests() if r["method"] == "POST" and r["path"] != "/token"
    ]
    sent = {k.lower(): v for k, v in upstream["headers"].items()}
    assert "client-own-key" not in json.dumps(upstream)
    anthropic_headers = {k for k in sent if k.startswith("anthropic-")}
    if model in ANTHROPIC_BACKENDS:
        assert sent["anthropic-beta"] == captured["headers"]["anthropic-beta"]
        if model == "claude-sonnet":
            assert sent["x-api-key"] == UPSTREAM_KEY
            assert sent["anthropic-version"] == captured["headers"]["anthropic-version"]
    else:
        assert anthropic_headers == set()
