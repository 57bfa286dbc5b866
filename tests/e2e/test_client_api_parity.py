"""What the Responses and Messages APIs carry through the chat pivot to Claude, through
the real Envoy: signed reasoning that comes back and is replayed next turn (a Responses
reasoning item's ``encrypted_content``; Messages ``thinking`` blocks on Bedrock), and
prompt-cache marks where the backend takes them (and nowhere else)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest

from tests.e2e.stack import Stack

WEATHER: Any = {
    "type": "function",
    "name": "get_weather",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
    "strict": True,
}
ANTHROPIC_WEATHER: Any = {
    "name": "get_weather",
    "input_schema": WEATHER["parameters"],
    "cache_control": {"type": "ephemeral"},
}
KNOBS = {"x-mock-tool-call": "get_weather", "x-mock-reasoning-tokens": "3"}


@pytest.fixture
def claude(stack: Stack) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=stack.base_url, api_key="k", max_retries=0) as client:
        yield client


@pytest.mark.parametrize("model", ["claude-sonnet", "bedrock-claude", "vertex-claude"])
@pytest.mark.parametrize("stream", [False, True])
def test_responses_reasoning_comes_back_signed_and_is_replayed(
    client: openai.OpenAI, model: str, stream: bool
) -> None:
    question: Any = {"role": "user", "content": "Weather in Oslo?"}
    ask: Any = {"model": model, "tools": [WEATHER], "reasoning": {"effort": "low"}}
    if stream:
        events = list(
            client.responses.create(input=[question], stream=True, extra_headers=KNOBS, **ask)
        )
        reasoning = "".join(e.delta for e in events if e.type == "response.reasoning_text.delta")
        final = events[-1]
        assert final.type == "response.completed"
        output = final.response.output
    else:
        response = client.responses.create(input=[question], extra_headers=KNOBS, **ask)
        output = response.output
        reasoning = ""
        for item in output:
            if item.type == "reasoning" and item.content:
                reasoning = item.content[0].text
    assert [item.type for item in output] == ["reasoning", "function_call"]
    assert reasoning == "alpha beta gamma"
    thought, call = output
    assert thought.type == "reasoning" and thought.encrypted_content
    assert call.type == "function_call"
    result: Any = {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}
    replay = [question, *(item.model_dump(exclude_none=True) for item in output), result]
    again = client.responses.create(input=replay, **ask)
    assert again.status == "completed" and again.output_text
    # A tool turn replayed without its signed reasoning (the Agents SDK does not keep it)
    # would be refused by Claude with thinking on: the gateway leaves the effort out for
    # that request instead (docs/client-apis.md, "Field policy").
    bare = client.responses.create(input=[question, replay[2], result], **ask)
    assert bare.status == "completed" and bare.output_text
    assert not any(item.type == "reasoning" for item in bare.output)


@pytest.mark.parametrize("stream", [False, True])
def test_messages_thinking_on_bedrock_claude_is_signed_and_replayed(
    claude: anthropic.Anthropic, stream: bool
) -> None:
    question: Any = {"role": "user", "content": "Weather in Oslo?"}
    ask: Any = {
        "model": "bedrock-claude",
        "max_tokens": 2048,
        "tools": [ANTHROPIC_WEATHER],
        "thinking": {"type": "enabled", "budget_tokens": 1024},
    }
    if stream:
        with claude.messages.stream(messages=[question], extra_headers=KNOBS, **ask) as events:
            message = events.get_final_message()
    else:
        message = claude.messages.create(messages=[question], extra_headers=KNOBS, **ask)
    assert [block.type for block in message.content] == ["thinking", "tool_use"]
    thinking, use = message.content
    assert thinking.type == "thinking" and thinking.thinking == "alpha beta gamma"
    assert thinking.signature
    assert use.type == "tool_use"
    result: Any = {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny"}],
    }
    turn: Any = {"role": "assistant", "content": [b.model_dump() for b in message.content]}
    again = claude.messages.create(messages=[question, turn, result], **ask)
    assert again.stop_reason == "end_turn"
    turn["content"] = turn["content"][1:]
    with pytest.raises(anthropic.BadRequestError, match="thinking"):
        claude.messages.create(messages=[question, turn, result], **ask)


@pytest.mark.parametrize("model", ["bedrock-claude", "gpt-4o-mini"])
def test_cache_marks_reach_bedrock_and_are_dropped_where_the_backend_caches_alone(
    stack: Stack, claude: anthropic.Anthropic, model: str
) -> None:
    stack.clear_mock_requests()
    claude.messages.create(
        model=model,
        max_tokens=5000,
        system=[{"type": "text", "text": "Long rules", "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": "Hi"}],
        tools=[ANTHROPIC_WEATHER],
        thinking={"type": "enabled", "budget_tokens": 4096},
    )
    (seen,) = [r for r in stack.mock_requests() if r["method"] == "POST"]
    body = json.loads(seen["body"])
    if model == "bedrock-claude":
        assert body["system"] == [{"text": "Long rules"}, {"cachePoint": {"type": "default"}}]
        assert {"cachePoint": {"type": "default"}} in body["toolConfig"]["tools"]
        assert body["additionalModelRequestFields"]["thinking"]["budget_tokens"] == 4096
    else:
        assert "cache_control" not in seen["body"]
        assert body["reasoning_effort"] == "medium"
        assert "thinking" not in body
