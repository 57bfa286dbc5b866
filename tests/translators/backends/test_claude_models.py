"""What a Claude model takes natively (effort, structured outputs), read from its id on
every backend that serves Claude, and what the Anthropic and Bedrock translators send."""

from __future__ import annotations

from typing import Any

import pytest

from aigateway.translators.backends.anthropic import messages_request
from aigateway.translators.backends.bedrock import converse_request
from aigateway.translators.backends.claude_models import ClaudeModel, claude_model
from tests.translators.backends.shared import tool_call

SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}}
FORMAT = {"type": "json_schema", "json_schema": {"name": "a", "schema": SCHEMA}}
USER = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("claude-sonnet-4-5-20250929", ClaudeModel("sonnet", (4, 5))),
        ("claude-sonnet-4-20250514", ClaudeModel("sonnet", (4, 0))),
        ("claude-opus-4-1", ClaudeModel("opus", (4, 1))),
        ("claude-sonnet-4-6@20260101", ClaudeModel("sonnet", (4, 6))),
        ("us.anthropic.claude-haiku-4-5-20251001-v1:0", ClaudeModel("haiku", (4, 5))),
        ("claude-3-7-sonnet-20250219", ClaudeModel("sonnet", (3, 7))),
        ("claude-3-5-sonnet-v2@20241022", ClaudeModel("sonnet", (3, 5))),
        ("gpt-4o", None),
    ],
)
def test_the_family_and_version_come_from_the_id(model: str, expected: ClaudeModel) -> None:
    assert claude_model(model) == expected


@pytest.mark.parametrize(
    ("model", "structured", "effort"),
    [
        ("claude-opus-4-5", True, True),
        ("claude-opus-4-1", True, False),
        ("claude-sonnet-4-6", True, True),
        ("claude-sonnet-4-5", True, False),
        ("claude-haiku-4-5", True, False),
        ("claude-sonnet-4", False, False),
        ("claude-3-5-sonnet", False, False),
    ],
)
def test_what_each_model_takes(model: str, structured: bool, effort: bool) -> None:
    claude = claude_model(model)
    assert claude is not None
    assert (claude.structured_outputs, claude.effort) == (structured, effort)


def anthropic(model: str, **payload: Any) -> dict[str, Any]:
    return messages_request(
        {"model": "m", "messages": USER, **payload}, model=model, default_max_tokens=100
    )


def test_reasoning_effort_is_claude_s_effort_where_the_model_takes_it() -> None:
    body = anthropic("claude-opus-4-5", reasoning_effort="minimal")
    assert body["output_config"] == {"effort": "low"}
    assert "thinking" not in body and body["max_tokens"] == 100
    assert anthropic("claude-sonnet-4-6", reasoning_effort="xhigh")["output_config"] == {
        "effort": "high"
    }


def test_reasoning_effort_is_a_thinking_budget_on_other_models() -> None:
    body = anthropic("claude-sonnet-4-5", reasoning_effort="medium")
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 4096}
    assert "output_config" not in body


def test_json_schema_is_native_structured_output_where_the_model_has_it() -> None:
    body = anthropic("claude-sonnet-4-5", response_format=FORMAT, reasoning_effort="low")
    assert body["output_config"] == {"format": {"type": "json_schema", "schema": SCHEMA}}
    assert "tools" not in body  # no answer tool: the text is the answer
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 1024}


def test_json_schema_is_the_answer_tool_elsewhere_and_effort_thinking_then_left_out() -> None:
    body = anthropic("claude-3-5-sonnet", response_format=FORMAT, reasoning_effort="low")
    assert [t["name"] for t in body["tools"]] == ["json_tool_call"]
    assert "thinking" not in body and "output_config" not in body


def test_a_tool_turn_replayed_without_its_thinking_leaves_effort_thinking_out() -> None:
    call = tool_call("c", "f", "{}")
    history = [
        *USER,
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c", "content": "ok"},
    ]
    body = messages_request(
        {"model": "m", "messages": history, "reasoning_effort": "low"},
        model="claude-sonnet-4-5",
        default_max_tokens=100,
    )
    assert "thinking" not in body


def test_bedrock_claude_gets_the_same_output_config() -> None:
    body = converse_request(
        {"model": "m", "messages": USER, "response_format": FORMAT, "reasoning_effort": "high"},
        model_id="us.anthropic.claude-opus-4-5-20251101-v1:0",
    )
    assert body["additionalModelRequestFields"]["output_config"] == {
        "effort": "high",
        "format": {"type": "json_schema", "schema": SCHEMA},
    }
    assert "toolConfig" not in body
