"""Anthropic Messages translator: request mapping, JSON and SSE responses, errors.

Wire data is handwritten from Anthropic's Messages API and streaming reference.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openai.types.chat import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessageFunctionToolCall,
)

from aigateway.translators.backends.anthropic import AnthropicMessagesTranslator, messages_request
from aigateway.translators.contract import TokenUsage, TranslationError
from tests.translators.anthropic_wire import tool_use
from tests.translators.backends.shared import (
    EPHEMERAL,
    HOUR,
    MARKED_SYSTEM,
    PDF_B64,
    PDF_URL,
    PNG_B64,
    PNG_URL,
    UPSTREAM_CONNECT_ERROR,
    chunks_of,
    feed_split,
    image_part,
    openai_error,
    requested,
    sse_data,
    tool_call,
)

Event = tuple[str, dict[str, Any]]


def req(**payload: Any) -> dict[str, Any]:
    full = {"model": "claude", "messages": [{"role": "user", "content": "x"}], **payload}
    return messages_request(full, model="claude-3-5-sonnet-20241022", default_max_tokens=4096)


def translator(**payload: Any) -> AnthropicMessagesTranslator:
    t = AnthropicMessagesTranslator(
        "claude-3-5-sonnet-20241022", completion_id="chatcmpl-test", created=1700000000
    )
    return requested(t, "claude", **payload)


def sse(*events: Event) -> bytes:
    return b"".join(
        f"event: {name}\ndata: {json.dumps(doc, ensure_ascii=False)}\n\n".encode()
        for name, doc in events
    )


def block_start(index: int, block: dict[str, Any]) -> Event:
    return (
        "content_block_start",
        {"type": "content_block_start", "index": index, "content_block": block},
    )


def block_delta(index: int, delta: dict[str, Any]) -> Event:
    return ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})


def block_stop(index: int) -> Event:
    return ("content_block_stop", {"type": "content_block_stop", "index": index})


MESSAGE_START: Event = (
    "message_start",
    {
        "type": "message_start",
        "message": {
            "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": "claude-3-5-sonnet-20241022",
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": 25,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "output_tokens": 1,
            },
        },
    },
)

TEXT_STREAM: list[Event] = [
    MESSAGE_START,
    block_start(0, {"type": "text", "text": ""}),
    ("ping", {"type": "ping"}),
    block_delta(0, {"type": "text_delta", "text": "Hello"}),
    block_delta(0, {"type": "text_delta", "text": "!"}),
    block_stop(0),
    (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": 15},
        },
    ),
    ("message_stop", {"type": "message_stop"}),
]

TOOL_STREAM: list[Event] = [
    (
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": "msg_014p7gG3wDgGV9EUtLvnow3U",
                "type": "message",
                "role": "assistant",
                "model": "claude-3-haiku-20240307",
                "stop_sequence": None,
                "usage": {
                    "input_tokens": 472,
                    "output_tokens": 2,
                    "cache_read_input_tokens": 1000,
                    "cache_creation_input_tokens": 28,
                },
                "content": [],
                "stop_reason": None,
            },
        },
    ),
    block_start(0, {"type": "thinking", "thinking": ""}),
    block_delta(0, {"type": "thinking_delta", "thinking": "Hmm"}),
    block_delta(0, {"type": "signature_delta", "signature": "EqQ"}),
    block_stop(0),
    block_start(1, {"type": "text", "text": ""}),
    block_delta(1, {"type": "text_delta", "text": "Okay, let's check the weather"}),
    block_stop(1),
    block_start(
        2,
        tool_use("toolu_01T1x1fJ34qAmk2tNTrN7Up6", "get_weather", {}),
    ),
    block_delta(2, {"type": "input_json_delta", "partial_json": ""}),
    block_delta(2, {"type": "input_json_delta", "partial_json": '{"location": "San Fra'}),
    block_delta(2, {"type": "input_json_delta", "partial_json": 'ncisco, CA"}'}),
    block_stop(2),
    (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use", "stop_sequence": None},
            "usage": {"output_tokens": 89},
        },
    ),
    ("message_stop", {"type": "message_stop"}),
]

ERROR_EVENT: Event = (
    "error",
    {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
)


# --- request ---------------------------------------------------------------------------


def test_basic_request() -> None:
    body = req(
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": "Metric units."},
            {"role": "user", "content": "Hi"},
            {"role": "user", "content": [{"type": "text", "text": "there"}]},
            {"role": "assistant", "content": "Hello"},
        ],
        max_completion_tokens=300,
        temperature=0.5,
        top_p=0.8,
        stop=["\n\nHuman:"],
        user="user-123",
    )
    assert body == {
        "model": "claude-3-5-sonnet-20241022",
        "max_tokens": 300,
        "system": [
            {"type": "text", "text": "Be brief."},
            {"type": "text", "text": "Metric units."},
        ],
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": "there"}],
            },
            {"role": "assistant", "content": [{"type": "text", "text": "Hello"}]},
        ],
        "temperature": 0.5,
        "top_p": 0.8,
        "stop_sequences": ["\n\nHuman:"],
        "metadata": {"user_id": "user-123"},
    }


def test_max_tokens_default_and_stream_flag() -> None:
    assert req()["max_tokens"] == 4096
    assert req(max_tokens=7)["max_tokens"] == 7
    assert req(stream=True)["stream"] is True
    assert "stream" not in req(stream=False)


def test_images() -> None:
    body = req(
        messages=[
            {
                "role": "user",
                "content": [
                    image_part(PNG_URL),
                    image_part("https://example.com/cat.jpg"),
                    {"type": "text", "text": "Compare"},
                ],
            }
        ]
    )
    assert body["messages"][0]["content"] == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
        {"type": "text", "text": "Compare"},
    ]
    with pytest.raises(TranslationError, match="image/tiff"):
        req(
            messages=[
                {
                    "role": "user",
                    "content": [image_part("data:image/tiff;base64,AA==")],
                }
            ]
        )


def test_tool_calls_and_results() -> None:
    body = req(
        messages=[
            {"role": "user", "content": "Weather?"},
            {
                "role": "assistant",
                "content": "Checking.",
                "tool_calls": [tool_call("toolu_1", "get_weather", '{"city":"Paris"}')],
            },
            {"role": "tool", "tool_call_id": "toolu_1", "content": "21C"},
            {
                "role": "tool",
                "tool_call_id": "toolu_2",
                "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
            },
            {"role": "tool", "tool_call_id": "toolu_3", "content": ""},
        ],
        tools=[
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "Weather",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                },
            }
        ],
    )
    assert body["messages"][1:] == [
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking."},
                tool_use("toolu_1", "get_weather", {"city": "Paris"}),
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "21C"},
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_2",
                    "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
                },
                {"type": "tool_result", "tool_use_id": "toolu_3"},
            ],
        },
    ]
    assert body["tools"] == [
        {
            "name": "get_weather",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
            "description": "Weather",
        }
    ]
    assert "tool_choice" not in body


TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"tool_choice": "auto"}, {"type": "auto"}),
        ({"tool_choice": "required"}, {"type": "any"}),
        ({"tool_choice": "none"}, {"type": "none"}),
        (
            {"tool_choice": {"type": "function", "function": {"name": "f"}}},
            {"type": "tool", "name": "f"},
        ),
        ({"parallel_tool_calls": False}, {"type": "auto", "disable_parallel_tool_use": True}),
        (
            {"tool_choice": "required", "parallel_tool_calls": False},
            {"type": "any", "disable_parallel_tool_use": True},
        ),
        ({"tool_choice": "none", "parallel_tool_calls": False}, {"type": "none"}),
        ({"parallel_tool_calls": True}, None),
    ],
)
def test_tool_choice(extra: dict[str, Any], expected: dict[str, Any] | None) -> None:
    body = req(tools=[TOOL], **extra)
    assert body["tools"] == [{"name": "f", "input_schema": {"type": "object"}}]
    assert body.get("tool_choice") == expected


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        ({"n": 3}, "n"),
        ({"tool_choice": "required"}, "tool_choice"),
        (
            {"tools": [TOOL], "tool_choice": {"type": "function", "function": {"name": "g"}}},
            "tool_choice",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "file", "file": {}}]}]},
            "messages[0]",
        ),
        ({"messages": [{"role": "system", "content": [{"type": "image_url"}]}]}, "messages[0]"),
        ({"max_completion_tokens": -1}, "max_completion_tokens"),
    ],
)
def test_requests_anthropic_cannot_express(payload: dict[str, Any], param: str) -> None:
    with pytest.raises(TranslationError) as info:
        req(**payload)
    assert info.value.param == param


def test_upstream_request() -> None:
    t = AnthropicMessagesTranslator("claude-3-5-haiku-latest", version="2023-06-01")
    payload = {"model": "haiku", "messages": [{"role": "user", "content": "Hi"}]}
    up = t.request(payload, json.dumps(payload).encode())
    assert up.path == "/v1/messages"
    assert dict(up.headers) == {
        "content-type": "application/json",
        "anthropic-version": "2023-06-01",
    }
    assert up.body == (
        b'{"model":"claude-3-5-haiku-latest","max_tokens":4096,'
        b'"messages":[{"role":"user","content":[{"type":"text","text":"Hi"}]}]}'
    )


# --- JSON responses ----------------------------------------------------------------


def message(content: list[dict[str, Any]], stop: str, usage: dict[str, int]) -> bytes:
    return json.dumps(
        {
            "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF",
            "type": "message",
            "role": "assistant",
            "model": "claude-3-5-sonnet-20241022",
            "content": content,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": usage,
        }
    ).encode()


def test_json_text_response() -> None:
    t = AnthropicMessagesTranslator("claude-3-5-sonnet-20241022", created=1)
    t.request({"model": "claude", "messages": [{"role": "user", "content": "Hi"}]}, b"")
    assert t.response_headers(200, "application/json").streamed is False
    out = t.response_body(
        message(
            [{"type": "text", "text": "Hi! "}, {"type": "text", "text": "How can I help?"}],
            "end_turn",
            {"input_tokens": 2095, "output_tokens": 503},
        ),
        True,
    )
    assert out.body is not None
    completion = ChatCompletion.model_validate_json(out.body)
    assert completion.id == "chatcmpl-msg_013Zva2CMHLNnXjNJJKqJ2EF"
    assert completion.model == "claude"
    assert completion.choices[0].message.content == "Hi! How can I help?"
    assert completion.choices[0].finish_reason == "stop"
    assert out.usage == TokenUsage(2095, 503, 2598)


def test_json_tool_use_response_with_cache_usage() -> None:
    t = translator()
    out = t.response_body(
        message(
            [
                {"type": "thinking", "thinking": "...", "signature": "x"},
                tool_use("toolu_01", "get_weather", {"city": "Oslo"}),
            ],
            "tool_use",
            {
                "input_tokens": 10,
                "output_tokens": 20,
                "cache_read_input_tokens": 300,
                "cache_creation_input_tokens": 40,
            },
        ),
        True,
    )
    assert out.body is not None
    completion = ChatCompletion.model_validate_json(out.body)
    msg = completion.choices[0].message
    assert msg.content is None
    assert msg.tool_calls is not None
    calls = [c for c in msg.tool_calls if isinstance(c, ChatCompletionMessageFunctionToolCall)]
    assert [(c.id, c.function.name, json.loads(c.function.arguments)) for c in calls] == [
        ("toolu_01", "get_weather", {"city": "Oslo"})
    ]
    assert completion.choices[0].finish_reason == "tool_calls"
    # input_tokens excludes cache reads and writes: prompt_tokens = 10 + 300 + 40.
    assert out.usage == TokenUsage(
        350, 20, 370, cached_input_tokens=300, cache_write_input_tokens=40
    )
    assert completion.usage is not None
    assert completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cached_tokens == 300


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
    ],
)
def test_finish_reasons(stop_reason: str, finish_reason: str) -> None:
    out = translator().response_body(
        message(
            [{"type": "text", "text": "x"}], stop_reason, {"input_tokens": 1, "output_tokens": 1}
        ),
        True,
    )
    assert out.body is not None
    assert ChatCompletion.model_validate_json(out.body).choices[0].finish_reason == finish_reason


def test_invalid_json_response_is_an_error() -> None:
    out = translator().response_body(b"<html>", True)
    assert out.error == "upstream_invalid_json"
    assert out.body is not None
    assert json.loads(out.body)["error"]["code"] == "bad_upstream"


# --- SSE responses -----------------------------------------------------------------


def streamed(
    events: list[Event], include_usage: bool = True
) -> tuple[AnthropicMessagesTranslator, bytes]:
    options = {"stream_options": {"include_usage": True}} if include_usage else {}
    t = translator(stream=True, **options)
    decision = t.response_headers(200, "text/event-stream; charset=utf-8")
    assert decision.streamed is True
    return t, sse(*events)


def test_text_stream() -> None:
    t, data = streamed(TEXT_STREAM)
    out = t.response_body(data, True)
    assert out.error is None
    assert out.usage == TokenUsage(25, 15, 40, cached_input_tokens=0, cache_write_input_tokens=0)
    assert out.body is not None
    chunks = chunks_of(out.body)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello!"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (25, 15)
    assert {c.id for c in chunks} == {"chatcmpl-test"}


def test_stream_id_comes_from_the_message_id() -> None:
    t = AnthropicMessagesTranslator("claude-3-5-sonnet-20241022")
    t.request(
        {"model": "claude", "stream": True, "messages": [{"role": "user", "content": "x"}]}, b""
    )
    t.response_headers(200, "text/event-stream")
    data = sse(*TEXT_STREAM)
    assert t.response_body(data[:5], False).body == b""  # no event yet
    out = t.response_body(data[5:], True)
    assert out.body is not None
    assert {c.id for c in chunks_of(out.body)} == {"chatcmpl-msg_01XFDUDYJgAACzvnptvVoYEL"}


def test_stream_without_include_usage() -> None:
    t, data = streamed(TEXT_STREAM, include_usage=False)
    out = t.response_body(data, True)
    assert out.body is not None
    assert all(c.choices and c.usage is None for c in chunks_of(out.body))
    assert out.usage is not None
    assert out.usage.output_tokens == 15


def test_tool_stream_skips_thinking_and_assembles_calls() -> None:
    t, data = streamed(TOOL_STREAM)
    out = t.response_body(data, True)
    assert out.body is not None
    chunks = chunks_of(out.body)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Okay, let's check the weather"
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            for call in choice.delta.tool_calls or []:
                assert call.function is not None
                entry = calls.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
                if call.id:
                    entry["id"] = call.id
                    entry["name"] = call.function.name or ""
                entry["arguments"] += call.function.arguments or ""
    assert calls == {
        0: {
            "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
            "name": "get_weather",
            "arguments": '{"location": "San Francisco, CA"}',
        }
    }
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    assert out.usage == TokenUsage(
        1500, 89, 1589, cached_input_tokens=1000, cache_write_input_tokens=28
    )


def test_error_event_ends_the_stream() -> None:
    t, data = streamed([*TEXT_STREAM[:4], ERROR_EVENT])
    out = t.response_body(data, False)
    assert out.error == "upstream_stream_error"
    assert out.body is not None
    events = sse_data(out.body)
    assert json.loads(events[-1]) == {
        "error": {
            "message": "Overloaded",
            "type": "server_error",
            "param": None,
            "code": "overloaded_error",
        }
    }
    assert b"[DONE]" not in events
    ChatCompletionChunk.model_validate_json(events[-2])
    later = t.response_body(sse(*TEXT_STREAM[4:]), True)
    assert later.body == b""
    assert later.error == "upstream_stream_error"


@pytest.mark.parametrize("cut", [0, 1, 4, 7])
def test_truncated_stream_is_an_error(cut: int) -> None:
    t, data = streamed(TEXT_STREAM[:cut])
    out = t.response_body(data + b"event: content_block_delta\ndata: {", True)
    assert out.error == "upstream_truncated"
    assert out.body is not None
    events = sse_data(out.body)
    assert json.loads(events[-1])["error"]["code"] == "upstream_truncated"
    assert b"[DONE]" not in events


def test_undecodable_event_is_an_error() -> None:
    t, data = streamed([MESSAGE_START])
    out = t.response_body(data + b"event: content_block_delta\ndata: {nope\n\n", False)
    assert out.error == "upstream_invalid_stream"


def run_split(data: bytes, cuts: list[int], include_usage: bool) -> tuple[bytes, Any]:
    t = translator(stream=True, stream_options={"include_usage": include_usage})
    t.response_headers(200, "text/event-stream")
    body, out = feed_split(t, data, cuts)
    return body, (out.usage, out.error)


STREAMS = {
    "text": sse(*TEXT_STREAM),
    "text-crlf": sse(*TEXT_STREAM).replace(b"\n", b"\r\n"),
    "tools": sse(*TOOL_STREAM),
    "error": sse(*TEXT_STREAM[:5], ERROR_EVENT),
    "truncated": sse(*TEXT_STREAM[:6]),
    # Non-ASCII text: a split may fall inside a multi-byte character.
    "unicode": sse(
        MESSAGE_START,
        block_delta(0, {"type": "text_delta", "text": "héllo ✓ 日本"}),
        *TEXT_STREAM[6:],
    ),
}


def test_crlf_stream_matches_lf_stream() -> None:
    assert run_split(STREAMS["text-crlf"], [], True) == run_split(STREAMS["text"], [], True)


# --- error bodies ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (
            400,
            b'{"type":"error","error":{"type":"invalid_request_error",'
            b'"message":"max_tokens: Field required"},"request_id":"req_011CSHoEeqs5C35K2UUqR7Fy"}',
            openai_error(
                "max_tokens: Field required",
                "invalid_request_error",
                "invalid_request_error",
            ),
        ),
        (
            401,
            b'{"type":"error","error":{"type":"authentication_error",'
            b'"message":"invalid x-api-key"}}',
            openai_error("invalid x-api-key", "authentication_error", "authentication_error"),
        ),
        (
            404,
            b'{"type":"error","error":{"type":"not_found_error","message":"model: claude-9"}}',
            openai_error("model: claude-9", "invalid_request_error", "not_found_error"),
        ),
        (
            429,
            b'{"type":"error","error":{"type":"rate_limit_error",'
            b'"message":"Number of request tokens has exceeded your per-minute rate limit"}}',
            openai_error(
                "Number of request tokens has exceeded your per-minute rate limit",
                "rate_limit_error",
                "rate_limit_error",
            ),
        ),
        (
            529,
            b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}',
            openai_error("Overloaded", "server_error", "overloaded_error"),
        ),
        (
            429,
            b'[{"error":{"code":429,"message":"Quota exceeded for aiplatform",'
            b'"status":"RESOURCE_EXHAUSTED"}}]',
            openai_error("Quota exceeded for aiplatform", "rate_limit_error", "RESOURCE_EXHAUSTED"),
        ),
        (
            400,
            b'[{"type":"error","error":{"type":"invalid_request_error","message":"bad"}}]',
            openai_error("bad", "invalid_request_error", "invalid_request_error"),
        ),
        UPSTREAM_CONNECT_ERROR,
    ],
)
def test_error_body(status: int, body: bytes, expected: dict[str, Any]) -> None:
    out = translator().error_body(status, body, {"content-type": "application/json"})
    assert json.loads(out) == expected


# --- translation parity (issue 11) ---------------------------------------------------


def test_cache_control_marks_every_kind_of_block() -> None:
    body = req(
        messages=[
            *MARKED_SYSTEM,
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Read", "cache_control": EPHEMERAL},
                    image_part(PNG_URL, cache_control=EPHEMERAL),
                    {
                        "type": "file",
                        "file": {"file_data": PDF_URL},
                        "cache_control": HOUR,
                    },
                ],
            },
            {
                "role": "assistant",
                "tool_calls": [{**tool_call("toolu_1", "f", "{}"), "cache_control": EPHEMERAL}],
            },
            {"role": "tool", "tool_call_id": "toolu_1", "content": "ok", "cache_control": HOUR},
        ],
        tools=[
            {**TOOL, "cache_control": EPHEMERAL},
            {"type": "function", "function": {"name": "g", "cache_control": HOUR}},
        ],
    )
    assert body["system"] == [
        {"type": "text", "text": "Long rules.", "cache_control": EPHEMERAL},
        {"type": "text", "text": "More rules.", "cache_control": HOUR},
    ]
    user, assistant, result = body["messages"]
    assert [b.get("cache_control") for b in user["content"]] == [EPHEMERAL, EPHEMERAL, HOUR]
    assert assistant["content"][0]["cache_control"] == EPHEMERAL
    assert result["content"][0] == {
        "type": "tool_result",
        "tool_use_id": "toolu_1",
        "content": "ok",
        "cache_control": HOUR,
    }
    assert [t.get("cache_control") for t in body["tools"]] == [EPHEMERAL, HOUR]


@pytest.mark.parametrize(
    ("cache_control", "param"),
    [
        ({"type": "persistent"}, "messages[0].cache_control"),
        ({"type": "ephemeral", "ttl": "2h"}, "messages[0].cache_control"),
        ("yes", "messages[0].cache_control"),
    ],
)
def test_bad_cache_control_is_refused(cache_control: Any, param: str) -> None:
    with pytest.raises(TranslationError) as info:
        req(messages=[{"role": "user", "content": "x", "cache_control": cache_control}])
    assert info.value.param == param


def test_cache_writes_show_in_the_response_usage() -> None:
    out = translator().response_body(
        message(
            [{"type": "text", "text": "x"}],
            "end_turn",
            {"input_tokens": 3, "output_tokens": 1, "cache_creation_input_tokens": 500},
        ),
        True,
    )
    assert out.usage == TokenUsage(503, 1, 504, cache_write_input_tokens=500)
    assert out.body is not None
    usage = json.loads(out.body)["usage"]
    assert usage["prompt_tokens_details"] == {"cache_write_tokens": 500}
    t, data = streamed(TOOL_STREAM)
    streamed_out = t.response_body(data, True)
    assert streamed_out.body is not None
    last = chunks_of(streamed_out.body)[-1]
    assert last.usage is not None and last.usage.prompt_tokens_details is not None
    assert last.usage.prompt_tokens_details.cache_write_tokens == 28


@pytest.mark.parametrize(
    ("effort", "limit", "budget", "max_tokens"),
    [
        ("low", None, 1024, 1024 + 4096),
        ("minimal", None, 1024, 1024 + 4096),
        ("medium", 500, 4096, 4096 + 500),
        ("high", 20000, 16384, 16384 + 20000),
        ("xhigh", None, 24576, 24576 + 4096),
    ],
)
def test_reasoning_effort_becomes_a_thinking_budget_below_max_tokens(
    effort: str, limit: int | None, budget: int, max_tokens: int
) -> None:
    extra = {"max_completion_tokens": limit} if limit is not None else {}
    body = req(reasoning_effort=effort, **extra)
    assert body["thinking"] == {"type": "enabled", "budget_tokens": budget}
    assert body["max_tokens"] == max_tokens > budget


def test_client_thinking_passes_through() -> None:
    thinking = {"type": "enabled", "budget_tokens": 2000}
    assert req(thinking=thinking, max_tokens=3000)["thinking"] == thinking
    assert req(thinking=thinking)["max_tokens"] == 2000 + 4096
    assert req(thinking={"type": "disabled"})["thinking"] == {"type": "disabled"}
    body = req(reasoning_effort="none")
    assert "thinking" not in body and body["max_tokens"] == 4096


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        ({"reasoning_effort": "extreme"}, "reasoning_effort"),
        ({"reasoning_effort": 3}, "reasoning_effort"),
        ({"reasoning_effort": "low", "thinking": {"type": "disabled"}}, "reasoning_effort"),
        ({"thinking": {"type": "enabled"}}, "thinking.budget_tokens"),
        ({"thinking": "on"}, "thinking"),
        (
            {"thinking": {"type": "enabled", "budget_tokens": 2000}, "max_tokens": 2000},
            "max_tokens",
        ),
    ],
)
def test_bad_reasoning_requests(payload: dict[str, Any], param: str) -> None:
    with pytest.raises(TranslationError) as info:
        req(**payload)
    assert info.value.param == param


SIGNED = {"type": "thinking", "thinking": "Check the tool.", "signature": "sig-1"}
REDACTED = {"type": "redacted_thinking", "data": "EmwKAhgB"}


def test_thinking_blocks_are_replayed_first_with_their_signature() -> None:
    body = req(
        messages=[
            {"role": "user", "content": "Weather?"},
            {
                "role": "assistant",
                "content": "Checking.",
                "reasoning_content": "Check the tool.",
                "thinking_blocks": [SIGNED, REDACTED],
                "tool_calls": [tool_call("toolu_1", "f", "")],
            },
            {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"},
        ],
        tools=[TOOL],
        reasoning_effort="low",
    )
    assert body["messages"][1]["content"] == [
        SIGNED,
        REDACTED,
        {"type": "text", "text": "Checking."},
        tool_use("toolu_1", "f", {}),
    ]


@pytest.mark.parametrize(
    "blocks",
    [
        [{"type": "thinking", "thinking": "x"}],
        [{"type": "redacted_thinking"}],
        [{"type": "summary", "text": "x"}],
        "x",
    ],
)
def test_unsigned_thinking_blocks_are_refused(blocks: Any) -> None:
    with pytest.raises(TranslationError) as info:
        req(messages=[{"role": "assistant", "content": "a", "thinking_blocks": blocks}])
    assert info.value.param is not None
    assert info.value.param.startswith("messages[0].thinking_blocks")


def test_json_reasoning_becomes_reasoning_content_and_thinking_blocks() -> None:
    out = translator().response_body(
        message(
            [SIGNED, REDACTED, {"type": "text", "text": "Sunny."}],
            "end_turn",
            {"input_tokens": 1, "output_tokens": 9},
        ),
        True,
    )
    assert out.body is not None
    msg = ChatCompletion.model_validate_json(out.body).choices[0].message
    assert msg.content == "Sunny."
    assert msg.model_extra == {
        "reasoning_content": "Check the tool.",
        "thinking_blocks": [SIGNED, REDACTED],
    }


THINKING_STREAM: list[Event] = [
    MESSAGE_START,
    block_start(0, {"type": "thinking", "thinking": "", "signature": ""}),
    block_delta(0, {"type": "thinking_delta", "thinking": "Let me "}),
    ("ping", {"type": "ping"}),
    block_delta(0, {"type": "thinking_delta", "thinking": "think."}),
    block_delta(0, {"type": "signature_delta", "signature": "EqQBCg=="}),
    block_stop(0),
    block_start(1, {"type": "redacted_thinking", "data": "EmwK"}),
    block_stop(1),
    *TEXT_STREAM[1:],
]


def test_streamed_reasoning_and_its_signed_block() -> None:
    t, data = streamed(THINKING_STREAM)
    out = t.response_body(data, True)
    assert out.body is not None
    deltas = [c.choices[0].delta for c in chunks_of(out.body) if c.choices]
    extras = [d.model_extra for d in deltas if d.model_extra]
    assert extras == [
        {"reasoning_content": "Let me "},
        {"reasoning_content": "think."},
        {
            "thinking_blocks": [
                {"type": "thinking", "thinking": "Let me think.", "signature": "EqQBCg=="}
            ]
        },
        {"thinking_blocks": [{"type": "redacted_thinking", "data": "EmwK"}]},
    ]
    assert "".join(d.content or "" for d in deltas) == "Hello!"


def test_ping_passes_on_as_an_sse_comment() -> None:
    t, data = streamed(THINKING_STREAM)
    out = t.response_body(data, True)
    assert out.body is not None
    events = out.body.split(b"\n\n")
    # In order: after the first reasoning delta, before the second.
    assert events.count(b": ping") == 2
    first = events.index(b": ping")
    assert b"Let me " in events[first - 1] and b"think." in events[first + 1]


def test_refusals_in_history_are_sent_as_text() -> None:
    body = req(
        messages=[
            {"role": "user", "content": "Do it"},
            {"role": "assistant", "content": [{"type": "refusal", "refusal": "I can't."}]},
            {"role": "user", "content": "Why?"},
            {"role": "assistant", "content": None, "refusal": "No."},
            {"role": "user", "content": "Ok"},
        ]
    )
    assert [m["role"] for m in body["messages"]] == [
        "user",
        "assistant",
        "user",
        "assistant",
        "user",
    ]
    assert body["messages"][1]["content"] == [{"type": "text", "text": "I can't."}]
    assert body["messages"][3]["content"] == [{"type": "text", "text": "No."}]


def test_files_and_pdf_image_urls_become_documents() -> None:
    text_b64 = base64.b64encode(b"plain words").decode()
    body = req(
        messages=[
            {
                "role": "user",
                "content": [
                    {
                        "type": "file",
                        "file": {
                            "file_data": PDF_URL,
                            "filename": "report.pdf",
                        },
                    },
                    {"type": "file", "file": {"file_data": f"data:text/plain;base64,{text_b64}"}},
                    image_part(PDF_URL),
                ],
            }
        ]
    )
    pdf = {"type": "base64", "media_type": "application/pdf", "data": PDF_B64}
    assert body["messages"][0]["content"] == [
        {"type": "document", "source": pdf, "title": "report.pdf"},
        {
            "type": "document",
            "source": {"type": "text", "media_type": "text/plain", "data": "plain words"},
        },
        {"type": "document", "source": pdf},
    ]


@pytest.mark.parametrize(
    ("file", "match"),
    [
        ({"file_id": "file-abc"}, "file_id"),
        ({"file_data": "data:application/zip;base64,UEsD"}, "application/zip"),
        ({"file_data": "JVBERi0="}, "data: URL"),
        ({"file_data": "data:text/plain;base64,//8="}, "UTF-8"),
    ],
)
def test_files_anthropic_cannot_take(file: dict[str, Any], match: str) -> None:
    with pytest.raises(TranslationError, match=match) as info:
        req(messages=[{"role": "user", "content": [{"type": "file", "file": file}]}])
    assert info.value.param == "messages[0]"


@pytest.mark.parametrize(("tier", "sent"), [("auto", "auto"), ("default", "standard_only")])
def test_service_tier(tier: str, sent: str) -> None:
    assert req(service_tier=tier)["service_tier"] == sent


def test_unknown_service_tier_is_refused() -> None:
    with pytest.raises(TranslationError, match="flex") as info:
        req(service_tier="flex")
    assert info.value.param == "service_tier"


SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
    "additionalProperties": False,
}
JSON_SCHEMA = {
    "type": "json_schema",
    "json_schema": {"name": "place", "schema": SCHEMA, "strict": True},
}


def test_response_format_becomes_a_forced_answer_tool() -> None:
    body = req(response_format=JSON_SCHEMA)
    assert body["tools"] == [
        {
            "name": "json_tool_call",
            "input_schema": SCHEMA,
            "description": "Answer with a JSON object: place.",
            "strict": True,
        }
    ]
    assert body["tool_choice"] == {"type": "tool", "name": "json_tool_call"}
    body = req(response_format={"type": "json_object"})
    assert body["tools"][0]["input_schema"] == {"type": "object"}
    assert "tools" not in req(response_format={"type": "text"})


def test_response_format_with_client_tools() -> None:
    body = req(response_format=JSON_SCHEMA, tools=[TOOL])
    assert [t["name"] for t in body["tools"]] == ["f", "json_tool_call"]
    assert body["tool_choice"] == {"type": "any"}  # a tool call, or the answer
    forced = req(response_format=JSON_SCHEMA, tools=[TOOL], tool_choice="required")
    assert [t["name"] for t in forced["tools"]] == ["f"]  # the answer is a tool call
    none = req(response_format=JSON_SCHEMA, tools=[TOOL], tool_choice="none")
    assert none["tool_choice"] == {"type": "tool", "name": "json_tool_call"}


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        ({"response_format": {"type": "xml"}}, "response_format"),
        ({"response_format": {"type": "json_schema"}}, "response_format.json_schema"),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"schema": {"type": "array"}},
                }
            },
            "response_format.json_schema.schema",
        ),
        (
            {
                "response_format": JSON_SCHEMA,
                "thinking": {"type": "enabled", "budget_tokens": 2048},
                "max_tokens": 4096,
            },
            "response_format",
        ),
        (
            {
                "response_format": JSON_SCHEMA,
                "tools": [{"type": "function", "function": {"name": "json_tool_call"}}],
            },
            "tools",
        ),
    ],
)
def test_response_formats_refused(payload: dict[str, Any], param: str) -> None:
    with pytest.raises(TranslationError) as info:
        req(**payload)
    assert info.value.param == param


def test_json_answer_tool_input_is_the_message_content() -> None:
    t = translator(response_format=JSON_SCHEMA)
    out = t.response_body(
        message(
            [tool_use("toolu_9", "json_tool_call", {"city": "Oslo"})],
            "tool_use",
            {"input_tokens": 1, "output_tokens": 5},
        ),
        True,
    )
    assert out.body is not None
    choice = ChatCompletion.model_validate_json(out.body).choices[0]
    assert json.loads(choice.message.content or "") == {"city": "Oslo"}
    assert choice.message.tool_calls is None
    assert choice.finish_reason == "stop"


ANSWER_STREAM: list[Event] = [
    MESSAGE_START,
    block_start(
        0,
        tool_use("toolu_9", "json_tool_call", {}),
    ),
    block_delta(0, {"type": "input_json_delta", "partial_json": '{"city": "O'}),
    block_delta(0, {"type": "input_json_delta", "partial_json": 'slo"}'}),
    block_stop(0),
    (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use"},
            "usage": {"output_tokens": 5},
        },
    ),
    ("message_stop", {"type": "message_stop"}),
]


def test_streamed_json_answer_is_content() -> None:
    t = translator(stream=True, response_format=JSON_SCHEMA)
    t.response_headers(200, "text/event-stream")
    out = t.response_body(sse(*ANSWER_STREAM), True)
    assert out.body is not None
    chunks = [c for c in chunks_of(out.body) if c.choices]
    assert json.loads("".join(c.choices[0].delta.content or "" for c in chunks)) == {"city": "Oslo"}
    assert all(c.choices[0].delta.tool_calls is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_tool_strict_and_tool_results_of_many_parts() -> None:
    strict = {"type": "function", "function": {"name": "f", "parameters": SCHEMA, "strict": True}}
    assert req(tools=[strict])["tools"] == [{"name": "f", "input_schema": SCHEMA, "strict": True}]
    body = req(
        messages=[
            {"role": "user", "content": "x"},
            {
                "role": "assistant",
                "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "f"}}],
            },
            {
                "role": "tool",
                "tool_call_id": "t1",
                "content": [
                    {"type": "text", "text": "chart:", "cache_control": EPHEMERAL},
                    image_part(PNG_URL),
                    {
                        "type": "file",
                        "file": {"file_data": PDF_URL},
                    },
                ],
            },
        ]
    )
    assert body["messages"][2]["content"][0]["content"] == [
        {"type": "text", "text": "chart:", "cache_control": EPHEMERAL},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}},
        {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": PDF_B64},
        },
    ]
    with pytest.raises(TranslationError) as info:
        req(tools=[{"type": "function", "function": {"name": "f", "strict": "yes"}}])
    assert info.value.param == "tools[0]"


PARITY_STREAMS = {"thinking": sse(*THINKING_STREAM), "answer": sse(*ANSWER_STREAM)}


@settings(max_examples=100, deadline=None)
@given(
    name=st.sampled_from(sorted(PARITY_STREAMS)),
    cuts=st.lists(st.integers(min_value=0, max_value=3000), max_size=30),
)
def test_any_split_of_reasoning_and_answer_streams_gives_the_same_output(
    name: str, cuts: list[int]
) -> None:
    def run(points: list[int]) -> tuple[bytes, Any]:
        t = translator(stream=True, response_format=JSON_SCHEMA)
        t.response_headers(200, "text/event-stream")
        data = PARITY_STREAMS[name]
        edges = sorted({min(c, len(data)) for c in points})
        pieces = [data[a:b] for a, b in zip([0, *edges], [*edges, len(data)], strict=True)]
        outs = [t.response_body(p, i == len(pieces) - 1) for i, p in enumerate(pieces)]
        return b"".join(o.body or b"" for o in outs), (outs[-1].usage, outs[-1].error)

    assert run(cuts) == run([])


def test_the_answering_model_and_finish_reason_are_reported() -> None:
    t, data = streamed(TEXT_STREAM)
    out = t.response_body(data, True)
    assert (out.model, out.finish_reasons) == ("claude-3-5-sonnet-20241022", ("stop",))
    whole = translator().response_body(
        message([{"type": "text", "text": "x"}], "max_tokens", {"input_tokens": 1}), True
    )
    assert (whole.model, whole.finish_reasons) == ("claude-3-5-sonnet-20241022", ("length",))
