"""An unchanged ``openai`` client gets equivalent answers from every backend schema
(openai, azure-openai, aws-bedrock, anthropic, gcp-gemini, gcp-vertex-ai with Gemini and
with Claude) through real Envoy: content, finish reasons, tool calls and usage, streamed
and not; and the metrics count each backend."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any
from urllib.parse import unquote

import openai
import pytest

from tests.chat_tools import weather_tool
from tests.e2e.stack import (
    AWS_KEY_ID,
    BEDROCK_MODEL_ID,
    GEMINI_KEY,
    UPSTREAM_KEY,
    VERTEX_CLAUDE_MODEL,
    VERTEX_GEMINI_MODEL,
    VERTEX_PROJECT,
    VERTEX_REGION,
    Stack,
)
from tests.e2e.test_chat_openai import MESSAGES, PROMPT_WORDS
from tests.e2e.test_metrics import after_requests, delta, snapshot, tokens_by_type

MODELS = {
    "gpt-4o-mini": "mock-openai",
    "azure-gpt-4o": "mock-azure",
    "bedrock-claude": "mock-bedrock",
    "claude-sonnet": "mock-anthropic",
    "gemini-flash": "mock-gemini",
    "vertex-gemini": "mock-vertex",
    "vertex-claude": "mock-vertex",
}
VERTEX_PATH = f"/v1/projects/{VERTEX_PROJECT}/locations/{VERTEX_REGION}/publishers"
WEATHER_TOOL = weather_tool(
    {"city": {"type": "string"}, "days": {"type": "integer"}}, ["city", "days"]
)

pytestmark = pytest.mark.parametrize("model", list(MODELS))


def test_non_streamed(client: openai.OpenAI, model: str) -> None:
    reply = client.chat.completions.create(
        model=model, messages=MESSAGES, extra_headers={"x-mock-output-tokens": "6"}
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    assert choice.message.content is not None
    assert len(choice.message.content.split()) == 6
    assert reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (PROMPT_WORDS, 6)
    assert reply.usage.total_tokens == PROMPT_WORDS + 6


@pytest.mark.parametrize("include_usage", [False, True])
def test_streamed_equals_non_streamed(
    client: openai.OpenAI, model: str, include_usage: bool
) -> None:
    whole = client.chat.completions.create(model=model, messages=MESSAGES)
    options: Any = {"include_usage": True} if include_usage else openai.NOT_GIVEN
    chunks = list(
        client.chat.completions.create(
            model=model, messages=MESSAGES, stream=True, stream_options=options
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    finishes = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finishes == ["stop"]
    usage_chunks = [c for c in chunks if c.usage is not None]
    if include_usage:
        assert len(usage_chunks) == 1 and chunks[-1] is usage_chunks[0]
        usage = usage_chunks[0].usage
        assert usage is not None
        assert (usage.prompt_tokens, usage.completion_tokens) == (PROMPT_WORDS, 8)
    else:
        assert usage_chunks == []


def test_tool_call(client: openai.OpenAI, model: str) -> None:
    reply = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Weather in Paris for two days?"}],
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        extra_headers={"x-mock-tool-call": "get_weather"},
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls
    assert calls is not None and len(calls) == 1
    assert calls[0].type == "function"
    assert calls[0].function.name == "get_weather"
    assert json.loads(calls[0].function.arguments) == {"city": "mock", "days": 1}
    assert calls[0].id


def test_streamed_tool_call(client: openai.OpenAI, model: str) -> None:
    chunks = list(
        client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "Weather in Paris?"}],
            tools=[WEATHER_TOOL],  # type: ignore[list-item]
            stream=True,
            extra_headers={"x-mock-tool-call": "get_weather"},
        )
    )
    calls: dict[int, dict[str, str]] = defaultdict(lambda: {"id": "", "name": "", "arguments": ""})
    for chunk in chunks:
        for choice in chunk.choices:
            for call in choice.delta.tool_calls or []:
                entry = calls[call.index]
                entry["id"] += call.id or ""
                if call.function is not None:
                    entry["name"] += call.function.name or ""
                    entry["arguments"] += call.function.arguments or ""
    assert list(calls) == [0]
    assert calls[0]["name"] == "get_weather"
    assert calls[0]["id"]
    assert json.loads(calls[0]["arguments"]) == {"city": "mock", "days": 1}
    finishes = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finishes == ["tool_calls"]


def test_tool_result_round_trip(client: openai.OpenAI, model: str) -> None:
    """The history of a tool call and its result is accepted by every schema."""
    reply = client.chat.completions.create(
        model=model,
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {
                            "name": "get_weather",
                            "arguments": '{"city": "Paris", "days": 1}',
                        },
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny and warm"},
        ],
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
    )
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None and reply.usage.completion_tokens == 8


@pytest.mark.parametrize(
    ("status", "error"), [(429, openai.RateLimitError), (400, openai.BadRequestError)]
)
def test_upstream_errors_in_openai_shape(
    client: openai.OpenAI, model: str, status: int, error: type[openai.APIStatusError]
) -> None:
    with pytest.raises(error) as err:
        client.chat.completions.create(
            model=model, messages=MESSAGES, extra_headers={"x-mock-status": str(status)}
        )
    assert err.value.status_code == status
    assert isinstance(err.value.body, dict)
    assert isinstance(err.value.body.get("message"), str)


def test_upstream_sees_the_backend_wire_format_and_credentials(
    stack: Stack, client: openai.OpenAI, model: str
) -> None:
    stack.clear_mock_requests()
    client.chat.completions.create(
        model=model, messages=MESSAGES, extra_headers={"x-api-key": "mine"}
    )
    # (Vertex AI's first request also fetches an OAuth2 token from the mock's /token.)
    (seen,) = [r for r in stack.mock_requests() if r["method"] == "POST" and r["path"] != "/token"]
    headers = {k.lower(): v for k, v in seen["headers"].items()}
    body = json.loads(seen["body"])
    dump = json.dumps(seen)
    assert "client-own-key" not in dump and '"mine"' not in dump
    backend = MODELS[model]
    if backend == "mock-openai":
        assert seen["path"] == "/v1/chat/completions"
        assert headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    elif backend == "mock-azure":
        assert (
            seen["path"]
            == "/openai/deployments/gpt-4o-deployment/chat/completions?api-version=2024-10-21"
        )
        assert headers["api-key"] == UPSTREAM_KEY
        assert "authorization" not in headers
    elif backend == "mock-bedrock":
        assert seen["path"] == "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"
        assert unquote(seen["path"].split("/")[2]) == BEDROCK_MODEL_ID
        assert headers["authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={AWS_KEY_ID}/")
        assert body["messages"][0]["content"] == [{"text": MESSAGES[1]["content"]}]
        assert body["system"] == [{"text": MESSAGES[0]["content"]}]
    elif backend == "mock-gemini":
        assert seen["path"] == "/v1beta/models/gemini-2.0-flash:generateContent"
        assert headers["x-goog-api-key"] == GEMINI_KEY
        assert "authorization" not in headers
        assert body["systemInstruction"] == {"parts": [{"text": MESSAGES[0]["content"]}]}
        assert body["contents"] == [{"role": "user", "parts": [{"text": MESSAGES[1]["content"]}]}]
    elif model == "vertex-gemini":
        assert seen["path"] == (
            f"{VERTEX_PATH}/google/models/{VERTEX_GEMINI_MODEL}:generateContent"
        )
        assert headers["authorization"].startswith("Bearer ya29.mock-")
        assert "x-goog-api-key" not in headers
        assert body["contents"] == [{"role": "user", "parts": [{"text": MESSAGES[1]["content"]}]}]
    elif model == "vertex-claude":
        assert seen["path"] == f"{VERTEX_PATH}/anthropic/models/{VERTEX_CLAUDE_MODEL}:rawPredict"
        assert headers["authorization"].startswith("Bearer ya29.mock-")
        assert "x-api-key" not in headers and "anthropic-version" not in headers
        assert "model" not in body
        assert body["anthropic_version"] == "vertex-2023-10-16"
        assert body["system"] == [{"type": "text", "text": MESSAGES[0]["content"]}]
    else:
        assert seen["path"] == "/v1/messages"
        assert headers["x-api-key"] == UPSTREAM_KEY
        assert headers["anthropic-version"] == "2023-06-01"
        assert body["model"] == "claude-3-5-sonnet"
        assert body["max_tokens"] == 4096
        assert body["system"] == [{"type": "text", "text": MESSAGES[0]["content"]}]


def test_metrics_count_tokens_per_backend(stack: Stack, client: openai.OpenAI, model: str) -> None:
    backend = MODELS[model]
    before = snapshot(stack.metrics_text())
    client.chat.completions.create(
        model=model, messages=MESSAGES, extra_headers={"x-mock-output-tokens": "3"}
    )
    list(
        client.chat.completions.create(
            model=model, messages=MESSAGES, stream=True, extra_headers={"x-mock-output-tokens": "5"}
        )
    )
    after = after_requests(stack, before, (backend, model), 2)
    assert delta(before, after, "aigateway_requests_total", (backend, model)) == {
        (backend, model, "success"): 2
    }
    assert tokens_by_type(before, after, (backend, model)) == {
        "prompt": 2 * PROMPT_WORDS,
        "completion": 8,
        "total": 2 * PROMPT_WORDS + 8,
    }
    assert delta(
        before, after, "aigateway_first_token_latency_seconds_count", (backend, model)
    ) == {(backend, model): 1}
    assert delta(
        before, after, "aigateway_inter_token_latency_seconds_count", (backend, model)
    ) == {(backend, model): 1}


@pytest.mark.parametrize("stream", [False, True])
def test_gzip_from_the_upstream_is_decoded(client: openai.OpenAI, model: str, stream: bool) -> None:
    """The gateway asks for identity; an upstream that gzips anyway still works."""
    plain = client.chat.completions.create(model=model, messages=MESSAGES)
    if stream:
        chunks = list(
            client.chat.completions.create(
                model=model, messages=MESSAGES, stream=True, extra_headers={"x-mock-fault": "gzip"}
            )
        )
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    else:
        reply = client.chat.completions.create(
            model=model, messages=MESSAGES, extra_headers={"x-mock-fault": "gzip"}
        )
        text = reply.choices[0].message.content or ""
    assert text == plain.choices[0].message.content
