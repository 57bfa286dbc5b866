"""Translation parity through the real Envoy, for the two schemas that do not speak
OpenAI (Anthropic Messages, Bedrock Converse on a Claude model): prompt caching and cache
writes, reasoning with signed thinking blocks replayed next turn, refusals, documents,
service tiers, ``response_format``, keep-alives and tools, with the official ``openai``
client (``extra_body`` for the fields it does not declare)."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest

from tests.e2e.stack import Stack

MODELS = {"bedrock-claude": "mock-bedrock", "claude-sonnet": "mock-anthropic"}
PDF = "data:application/pdf;base64,JVBERi0xLjQK"
WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
        "strict": True,
    },
    "cache_control": {"type": "ephemeral"},
}
CITY: Any = {
    "type": "json_schema",
    "json_schema": {
        "name": "city",
        "schema": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "people": {"type": "integer"}},
            "required": ["name", "people"],
        },
    },
}

pytestmark = pytest.mark.parametrize("model", list(MODELS))


def upstream_body(stack: Stack) -> dict[str, Any]:
    """The body of the last request the mock received."""
    (seen,) = [r for r in stack.mock_requests() if r["method"] == "POST"][-1:]
    return dict(json.loads(seen["body"]))


def test_cache_marks_reach_the_backend_and_cache_writes_come_back(
    stack: Stack, client: openai.OpenAI, model: str
) -> None:
    messages: Any = [
        {
            "role": "system",
            "content": [
                {"type": "text", "text": "Long rules here", "cache_control": {"type": "ephemeral"}}
            ],
        },
        {"role": "user", "content": "Weather please"},
    ]
    knobs = {"x-mock-cache-write-tokens": "2", "x-mock-cached-tokens": "1"}
    stack.clear_mock_requests()
    reply = client.chat.completions.create(
        model=model, messages=messages, tools=[WEATHER_TOOL], extra_headers=knobs
    )
    assert reply.usage is not None and reply.usage.prompt_tokens_details is not None
    details = reply.usage.prompt_tokens_details
    assert (details.cached_tokens, details.cache_write_tokens) == (1, 2)
    assert reply.usage.prompt_tokens == 5  # writes and reads are part of the prompt
    body = upstream_body(stack)
    if MODELS[model] == "mock-bedrock":
        assert body["system"] == [{"text": "Long rules here"}, {"cachePoint": {"type": "default"}}]
        assert body["toolConfig"]["tools"][1] == {"cachePoint": {"type": "default"}}
        assert body["toolConfig"]["tools"][0]["toolSpec"]["strict"] is True
    else:
        assert body["system"][0]["cache_control"] == {"type": "ephemeral"}
        assert body["tools"][0]["cache_control"] == {"type": "ephemeral"}
        assert body["tools"][0]["strict"] is True
    chunks = list(
        client.chat.completions.create(
            model=model,
            messages=messages,
            stream=True,
            stream_options={"include_usage": True},
            extra_headers=knobs,
        )
    )
    usage = chunks[-1].usage
    assert usage is not None and usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cache_write_tokens == 2


@pytest.mark.parametrize("stream", [False, True])
def test_reasoning_comes_back_signed_and_is_replayed_next_turn(
    client: openai.OpenAI, model: str, stream: bool
) -> None:
    question: Any = {"role": "user", "content": "Weather in Oslo?"}
    knobs = {"x-mock-tool-call": "get_weather", "x-mock-reasoning-tokens": "3"}
    ask: Any = {"model": model, "tools": [WEATHER_TOOL], "reasoning_effort": "low"}
    if stream:
        reasoning, blocks, calls = "", [], {}
        for chunk in client.chat.completions.create(
            messages=[question], stream=True, extra_headers=knobs, **ask
        ):
            for choice in chunk.choices:
                extra = choice.delta.model_extra or {}
                reasoning += extra.get("reasoning_content", "")
                blocks += extra.get("thinking_blocks", [])
                for call in choice.delta.tool_calls or []:
                    entry = calls.setdefault(call.index, {"id": "", "arguments": ""})
                    entry["id"] += call.id or ""
                    entry["arguments"] += (call.function and call.function.arguments) or ""
        call_id, arguments = calls[0]["id"], calls[0]["arguments"]
    else:
        reply = client.chat.completions.create(messages=[question], extra_headers=knobs, **ask)
        message = reply.choices[0].message
        extra = message.model_extra or {}
        reasoning, blocks = extra["reasoning_content"], extra["thinking_blocks"]
        assert message.tool_calls is not None
        call_id, arguments = message.tool_calls[0].id, message.tool_calls[0].function.arguments  # type: ignore[union-attr]
    assert reasoning == "alpha beta gamma"
    assert [(b["type"], b["thinking"]) for b in blocks] == [("thinking", reasoning)]
    assert blocks[0]["signature"]
    call = {
        "id": call_id,
        "type": "function",
        "function": {"name": "get_weather", "arguments": arguments},
    }
    result: Any = {"role": "tool", "tool_call_id": call_id, "content": "sunny"}
    turn: Any = {
        "role": "assistant",
        "content": None,
        "tool_calls": [call],
        "thinking_blocks": blocks,
    }
    again = client.chat.completions.create(messages=[question, turn, result], **ask)
    assert again.choices[0].finish_reason == "stop"
    # Claude refuses a tool-use turn replayed without its signed thinking while thinking
    # is on; a client that does not keep it gets an answer without thinking instead
    # (docs/client-apis.md, "Field policy").
    del turn["thinking_blocks"]
    bare = client.chat.completions.create(messages=[question, turn, result], **ask)
    assert bare.choices[0].finish_reason == "stop"
    assert not getattr(bare.choices[0].message, "thinking_blocks", None)


def test_refusals_documents_and_whole_tool_results_reach_the_backend(
    stack: Stack, client: openai.OpenAI, model: str
) -> None:
    messages: Any = [
        {"role": "user", "content": "Do the thing"},
        {"role": "assistant", "content": [{"type": "refusal", "refusal": "I will not."}]},
        {
            "role": "user",
            "content": [
                {"type": "file", "file": {"file_data": PDF, "filename": "q3_report.pdf"}},
                {"type": "image_url", "image_url": {"url": PDF}},
                {"type": "text", "text": "Summarise these"},
            ],
        },
    ]
    stack.clear_mock_requests()
    reply = client.chat.completions.create(model=model, messages=messages)
    assert reply.usage is not None
    assert reply.usage.prompt_tokens == 3 + 3 + 2  # the refusal is part of the conversation
    body = upstream_body(stack)
    assert body["messages"][1]["role"] == "assistant"
    if MODELS[model] == "mock-bedrock":
        assert body["messages"][1]["content"] == [{"text": "I will not."}]
        names = [b["document"]["name"] for b in body["messages"][2]["content"] if "document" in b]
        assert names == ["q3 report", "document"]
    else:
        assert body["messages"][1]["content"] == [{"type": "text", "text": "I will not."}]
        kinds = [b["type"] for b in body["messages"][2]["content"]]
        assert kinds == ["document", "document", "text"]


def test_service_tier(client: openai.OpenAI, model: str) -> None:
    if MODELS[model] == "mock-anthropic":
        reply = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "Hi"}], service_tier="default"
        )
        assert reply.choices[0].finish_reason == "stop"
        with pytest.raises(openai.BadRequestError) as refused:
            client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": "Hi"}], service_tier="flex"
            )
        assert (
            isinstance(refused.value.body, dict) and refused.value.body["param"] == "service_tier"
        )
        return
    reply = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Hi"}], service_tier="flex"
    )
    assert reply.service_tier == "flex"
    chunks = list(
        client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "Hi"}],
            service_tier="priority",
            stream=True,
        )
    )
    assert [c.service_tier for c in chunks if c.choices and c.choices[0].finish_reason] == [
        "priority"
    ]
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "Hi"}], service_tier="scale"
        )
    assert isinstance(refused.value.body, dict) and refused.value.body["param"] == "service_tier"


@pytest.mark.parametrize("stream", [False, True])
def test_response_format_answers_json_content(
    client: openai.OpenAI, model: str, stream: bool
) -> None:
    ask: Any = {"model": model, "messages": [{"role": "user", "content": "Biggest city?"}]}
    if stream:
        chunks = list(client.chat.completions.create(response_format=CITY, stream=True, **ask))
        content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        finish = [
            c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
        ]
        assert all(c.choices[0].delta.tool_calls is None for c in chunks if c.choices)
    else:
        reply = client.chat.completions.create(response_format=CITY, **ask)
        content = reply.choices[0].message.content or ""
        finish = [reply.choices[0].finish_reason]
        assert reply.choices[0].message.tool_calls is None
    assert json.loads(content) == {"name": "mock", "people": 1}
    assert finish == ["stop"]
    plain = client.chat.completions.create(response_format={"type": "json_object"}, **ask)
    assert json.loads(plain.choices[0].message.content or "") == {}


def test_keep_alive_pings_pass_on_as_sse_comments(client: openai.OpenAI, model: str) -> None:
    with client.chat.completions.with_streaming_response.create(
        model=model, messages=[{"role": "user", "content": "Hi"}], stream=True
    ) as response:
        lines = list(response.iter_lines())
    if MODELS[model] == "mock-anthropic":
        assert lines.count(": ping") == 1  # the mock pings once, after the block start
        assert lines.index(": ping") < lines.index("data: [DONE]")
    else:
        assert ": ping" not in lines  # Converse has no keep-alive event
