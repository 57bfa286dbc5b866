"""The agent clients people run, on every backend schema, through real Envoy: the requests
that Codex CLI (with a gateway model, and with its default model: tools in an
``additional_tools`` item, a ``configuration_update`` item, custom and namespaced tool
calls replayed), the Vercel AI SDK, the OpenAI Agents SDK, pydantic-ai and LangChain sent
(``tests/e2e/data/*_requests.json``, recorded from the real clients, their texts replaced
by placeholders) are replayed with their headers. Each must succeed, and the gateway must
count exactly the tokens the backend reported; the one exception is a built-in tool a
backend cannot run (Codex's default ``web_search``), a 400 naming it
(docs/client-apis.md, "Field policy")."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from aigateway.mock_backend.prompt_words import (
    anthropic_prompt_words,
    bedrock_prompt_words,
    gemini_prompt_words,
    openai_prompt_words,
    responses_prompt_words,
)
from aigateway.mock_backend.reasoning import DEFAULT_THINKING_WORDS
from tests.e2e.stack import Stack, wait_until
from tests.e2e.test_metrics import delta, snapshot
from tests.e2e.test_schemas import MODELS

DATA = Path(__file__).parent / "data"
CLIENTS = ("codex", "ai_sdk", "openai_agents", "pydantic_ai", "langchain")
CAPTURED = [
    (client, request)
    for client in CLIENTS
    for request in json.loads((DATA / f"{client}_requests.json").read_text())["requests"]
]
OUTPUT_TOKENS = 4
#: Backends that run OpenAI's built-in tools (the Responses API passes through).
OPENAI_SCHEMAS = ("gpt-4o-mini", "azure-gpt-4o")


def prompt_words(path: str, body: dict[str, Any]) -> int:
    """What the mock backend reports as prompt tokens for the request it received."""
    path = path.split("?", 1)[0]
    if path.endswith("/responses"):
        return responses_prompt_words(body)
    if path.endswith("/chat/completions"):
        return openai_prompt_words(body["messages"])
    if "/converse" in path:
        return bedrock_prompt_words(body)
    if path.endswith("/messages") or "anthropic/models" in path:
        return anthropic_prompt_words(body)
    return gemini_prompt_words(body)


def thinks(body: dict[str, Any]) -> bool:
    """Claude thinks (the mock's DEFAULT_THINKING_WORDS more output tokens) when asked."""
    native = body.get("additionalModelRequestFields") or {}
    thinking = body.get("thinking") or native.get("thinking") or {}
    return bool(thinking.get("type") == "enabled")


def credentials(path: str) -> dict[str, str]:
    if path.startswith("/v1/messages"):
        return {"x-api-key": "client-own-key"}
    return {"authorization": "Bearer client-own-key"}


def finished(path: str, response: httpx.Response) -> bool:
    """The answer is whole: a stream's terminal event, or a JSON body."""
    if not response.headers["content-type"].startswith("text/event-stream"):
        return "usage" in response.json()
    text = response.text
    if path.startswith("/v1/messages"):
        return "event: message_stop" in text
    if path == "/v1/responses":
        return "event: response.completed" in text
    return text.rstrip().endswith("data: [DONE]")


def refused_tool(client: str, request: dict[str, Any], model: str) -> int | None:
    """The index of a built-in tool this backend cannot run, if the request has one."""
    if model in OPENAI_SCHEMAS or not request["path"].startswith("/v1/responses"):
        return None
    for i, tool in enumerate(request["body"].get("tools") or []):
        if tool.get("type") == "web_search":
            return i
    return None


@pytest.mark.parametrize("model", list(MODELS))
@pytest.mark.parametrize(
    ("client", "request_"), CAPTURED, ids=[f"{c}-{r['name']}" for c, r in CAPTURED]
)
def test_agent_clients_requests_work_on_every_backend_with_exact_metrics(
    stack: Stack, model: str, client: str, request_: dict[str, Any]
) -> None:
    backend = MODELS[model]
    stack.clear_mock_requests()
    before = snapshot(stack.metrics_text())
    headers = {
        **request_["headers"],
        **credentials(request_["path"]),
        "x-mock-output-tokens": str(OUTPUT_TOKENS),
    }
    body = {**request_["body"], "model": model}
    with httpx.Client(timeout=30) as http:
        response = http.post(stack.base_url + request_["path"], json=body, headers=headers)

    refused = refused_tool(client, request_, model)
    if refused is not None:
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["param"] == f"tools[{refused}].type"
        assert "'web_search'" in error["message"]
        assert not [r for r in stack.mock_requests() if r["path"] != "/token"]
        return
    assert response.status_code == 200, response.text
    assert finished(request_["path"], response), response.text[-500:]
    (upstream,) = [
        r for r in stack.mock_requests() if r["method"] == "POST" and r["path"] != "/token"
    ]
    assert "client-own-key" not in json.dumps(upstream)
    sent = json.loads(upstream["body"])
    prompt = prompt_words(upstream["path"], sent)
    output = OUTPUT_TOKENS + (DEFAULT_THINKING_WORDS if thinks(sent) else 0)
    after: dict[Any, float] = {}

    def recorded() -> bool:
        nonlocal after
        after = snapshot(stack.metrics_text())
        return bool(delta(before, after, "aigateway_requests_total", only=(backend, model)))

    wait_until("the request to be recorded", recorded)
    assert delta(before, after, "aigateway_requests_total", only=(backend, model)) == {
        (backend, model, "success"): 1
    }
    assert delta(before, after, "aigateway_model_tokens_total", only=(backend, model)) == {
        (backend, model, "prompt"): prompt,
        (backend, model, "completion"): output,
        (backend, model, "total"): prompt + output,
    }
