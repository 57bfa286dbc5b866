"""Cases from Envoy AI Gateway's translator tests that this project agrees with, as a
table: the chat request in, what Anthropic (and where it matters Bedrock or Gemini) gets.
Effort and structured outputs per Claude model are in test_claude_models.py."""

from __future__ import annotations

from typing import Any

import pytest

from aigateway.translators.backends.anthropic import messages_request
from aigateway.translators.backends.gemini import GeminiChatTranslator
from aigateway.translators.wire.jsoncodec import loads_or_none
from tests.translators.anthropic_wire import tool_use
from tests.translators.backends.shared import image_part, tool_call

PDF = "data:application/pdf;base64,JVBERi0xLjQK"
SIGNED = {"type": "thinking", "thinking": "let me see", "signature": "sig"}
CALL = tool_call("c1", "f", "{}")
MARK = {"type": "ephemeral"}


def anthropic(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    body = messages_request(
        {"model": "m", "messages": messages}, model="claude-3-5-sonnet", default_max_tokens=10
    )
    out: list[dict[str, Any]] = body["messages"]
    return out


def user(*parts: dict[str, Any]) -> dict[str, Any]:
    return {"role": "user", "content": list(parts)}


def image(url: str) -> dict[str, Any]:
    return image_part(url)


@pytest.mark.parametrize(
    ("message", "content"),
    [
        (
            user(image(PDF)),
            [
                {
                    "type": "document",
                    "source": {
                        "type": "base64",
                        "media_type": "application/pdf",
                        "data": "JVBERi0xLjQK",
                    },
                }
            ],
        ),
        (
            user(image("https://example.com/papers/a.PDF?download=1")),
            [
                {
                    "type": "document",
                    "source": {"type": "url", "url": "https://example.com/papers/a.PDF?download=1"},
                }
            ],
        ),
        (
            user(image("https://example.com/cat.png")),
            [{"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}}],
        ),
    ],
    ids=["pdf-data-url", "pdf-url", "image-url"],
)
def test_an_image_url_that_is_a_pdf_becomes_a_document(
    message: dict[str, Any], content: list[dict[str, Any]]
) -> None:
    assert anthropic([message]) == [{"role": "user", "content": content}]


@pytest.mark.parametrize(
    ("tool_message", "result"),
    [
        (
            {
                "role": "tool",
                "tool_call_id": "c1",
                "content": [{"type": "text", "text": "sunny", "cache_control": MARK}],
            },
            {
                "type": "tool_result",
                "tool_use_id": "c1",
                "content": [{"type": "text", "text": "sunny", "cache_control": MARK}],
            },
        ),
        (
            {"role": "tool", "tool_call_id": "c1", "content": "sunny", "cache_control": MARK},
            {"type": "tool_result", "tool_use_id": "c1", "content": "sunny", "cache_control": MARK},
        ),
    ],
    ids=["on-a-content-part", "on-the-message"],
)
def test_cache_control_on_a_tool_message_reaches_the_tool_result(
    tool_message: dict[str, Any], result: dict[str, Any]
) -> None:
    history = [
        user({"type": "text", "text": "weather?"}),
        {"role": "assistant", "content": None, "tool_calls": [CALL]},
        tool_message,
    ]
    assert anthropic(history)[-1] == {"role": "user", "content": [result]}


@pytest.mark.parametrize(
    ("parts", "blocks"),
    [
        (
            [{"type": "text", "text": "calling"}, SIGNED],
            [SIGNED, {"type": "text", "text": "calling"}],
        ),
        (
            [{"type": "redacted_thinking", "data": "opaque"}],
            [{"type": "redacted_thinking", "data": "opaque"}],
        ),
    ],
    ids=["thinking", "redacted"],
)
def test_assistant_thinking_content_parts_are_replayed_first(
    parts: list[dict[str, Any]], blocks: list[dict[str, Any]]
) -> None:
    history = [
        user({"type": "text", "text": "hi"}),
        {"role": "assistant", "content": parts, "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "c1", "content": "ok"},
    ]
    use = tool_use("c1", "f", {})
    assert anthropic(history)[1] == {"role": "assistant", "content": [*blocks, use]}


def test_assistant_thinking_parts_are_left_out_where_only_claude_could_read_them() -> None:
    history = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": [SIGNED, {"type": "text", "text": "hello"}]},
        {"role": "user", "content": "again"},
    ]
    upstream = GeminiChatTranslator("/v1beta/models/g").request(
        {"model": "g", "messages": history}, b""
    )
    body = loads_or_none(upstream.body)
    assert isinstance(body, dict)
    assert body["contents"][1] == {"role": "model", "parts": [{"text": "hello"}]}
