"""Bedrock Converse translator: request mapping, JSON and event-stream responses, errors.

Wire data is handwritten from the Converse / ConverseStream API reference. Event-stream
frames come from a small encoder here (independent of the mock backend's), so a bug in
either one shows.
"""

from __future__ import annotations

import json
import struct
import sys
import zlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openai.types.chat import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessageFunctionToolCall,
)

from aigateway.translators.backends.bedrock import (
    BedrockConverseTranslator,
    bedrock_error,
    bedrock_exception_status,
    converse_request,
)
from aigateway.translators.contract import TokenUsage, TranslationError
from tests.translators.backends.shared import (
    EPHEMERAL,
    HOUR,
    MARKED_SYSTEM,
    PDF_B64,
    PDF_URL,
    PNG_B64,
    PNG_URL,
    chunks_of,
    feed_split,
    image_part,
    openai_error,
    requested,
    sse_data,
    tool_call,
)

MODEL_ID = "anthropic.claude-3-5-sonnet-20240620-v1:0"

# --- helpers ---------------------------------------------------------------------------


def frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One event-stream frame: prelude, prelude CRC, string headers, payload, CRC."""
    header_bytes = b""
    for name, value in headers.items():
        raw = value.encode()
        header_bytes += bytes([len(name)]) + name.encode() + b"\x07"
        header_bytes += struct.pack(">H", len(raw)) + raw
    total = 12 + len(header_bytes) + len(payload) + 4
    prelude = struct.pack(">II", total, len(header_bytes))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + header_bytes + payload
    return message + struct.pack(">I", zlib.crc32(message))


def event(event_type: str, doc: dict[str, Any]) -> bytes:
    headers = {
        ":event-type": event_type,
        ":content-type": "application/json",
        ":message-type": "event",
    }
    return frame(headers, json.dumps(doc).encode())


def exception(exception_type: str, message: str) -> bytes:
    headers = {
        ":exception-type": exception_type,
        ":content-type": "application/json",
        ":message-type": "exception",
    }
    return frame(headers, json.dumps({"message": message}).encode())


def translator(**payload: Any) -> BedrockConverseTranslator:
    t = BedrockConverseTranslator(MODEL_ID, completion_id="chatcmpl-test", created=1700000000)
    return requested(t, "claude-sonnet", **payload)


def req(**payload: Any) -> dict[str, Any]:
    return converse_request(
        {"model": "m", "messages": [{"role": "user", "content": "x"}], **payload}
    )


# Typical ConverseStream answers: Bedrock pads events with a "p" field.
TEXT_STREAM = [
    event("messageStart", {"role": "assistant", "p": "abcdefgh"}),
    event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hello"}, "p": "ab"}),
    event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": ", world"}}),
    event("contentBlockStop", {"contentBlockIndex": 0, "p": "abcdefghijk"}),
    event("messageStop", {"stopReason": "end_turn", "p": "abcd"}),
    event(
        "metadata",
        {
            "usage": {"inputTokens": 12, "outputTokens": 3, "totalTokens": 15},
            "metrics": {"latencyMs": 321},
            "p": "abc",
        },
    ),
]

TOOL_STREAM = [
    event("messageStart", {"role": "assistant"}),
    event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Let me check."}}),
    event("contentBlockStop", {"contentBlockIndex": 0}),
    event(
        "contentBlockStart",
        {
            "contentBlockIndex": 1,
            "start": {"toolUse": {"toolUseId": "tooluse_abc", "name": "get_weather"}},
        },
    ),
    event(
        "contentBlockDelta",
        {"contentBlockIndex": 1, "delta": {"toolUse": {"input": '{"city": "Pa'}}},
    ),
    event("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": 'ris"}'}}}),
    event("contentBlockStop", {"contentBlockIndex": 1}),
    event(
        "contentBlockStart",
        {"contentBlockIndex": 2, "start": {"toolUse": {"toolUseId": "tooluse_def", "name": "now"}}},
    ),
    event("contentBlockDelta", {"contentBlockIndex": 2, "delta": {"toolUse": {"input": "{}"}}}),
    event("contentBlockStop", {"contentBlockIndex": 2}),
    event("messageStop", {"stopReason": "tool_use"}),
    event(
        "metadata",
        {
            "usage": {
                "inputTokens": 20,
                "outputTokens": 30,
                "totalTokens": 150,
                "cacheReadInputTokens": 100,
                "cacheWriteInputTokens": 0,
            },
            "metrics": {"latencyMs": 900},
        },
    ),
]


# --- request ---------------------------------------------------------------------------


def test_system_and_developer_messages_become_system_blocks() -> None:
    body = req(
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Use metric units."}]},
            {"role": "user", "content": "Hi"},
        ]
    )
    assert body == {
        "system": [{"text": "Be brief."}, {"text": "Use metric units."}],
        "messages": [{"role": "user", "content": [{"text": "Hi"}]}],
    }


def test_consecutive_same_role_messages_are_merged() -> None:
    body = req(
        messages=[
            {"role": "user", "content": "one"},
            {"role": "user", "content": [{"type": "text", "text": "two"}]},
            {"role": "assistant", "content": "three"},
            {"role": "assistant", "content": "four"},
            {"role": "user", "content": "five"},
        ]
    )
    assert body["messages"] == [
        {"role": "user", "content": [{"text": "one"}, {"text": "two"}]},
        {"role": "assistant", "content": [{"text": "three"}, {"text": "four"}]},
        {"role": "user", "content": [{"text": "five"}]},
    ]


@pytest.mark.parametrize(
    ("url", "fmt"),
    [
        (PNG_URL, "png"),
        (f"data:image/jpeg;base64,{PNG_B64}", "jpeg"),
        (f"data:image/jpg;base64,{PNG_B64}", "jpeg"),
        (f"data:image/gif;base64,{PNG_B64}", "gif"),
        (f"data:image/webp;base64,{PNG_B64}", "webp"),
    ],
)
def test_image_data_urls_become_image_blocks(url: str, fmt: str) -> None:
    content = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": url, "detail": "high"}},
    ]
    body = req(messages=[{"role": "user", "content": content}])
    assert body["messages"][0]["content"] == [
        {"text": "What is this?"},
        {"image": {"format": fmt, "source": {"bytes": PNG_B64}}},
    ]


@pytest.mark.parametrize(
    ("part", "message"),
    [
        (image_part("https://example.com/a.png"), "data: URLs"),
        (image_part("data:image/bmp;base64,AAAA"), "image/bmp"),
        (image_part("data:image/png,rawbytes"), "base64"),
        ({"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}, "input_audio"),
    ],
)
def test_unsupported_content_is_a_translation_error(part: dict[str, Any], message: str) -> None:
    with pytest.raises(TranslationError, match=message) as info:
        req(messages=[{"role": "user", "content": [part]}])
    assert info.value.param == "messages[0]"


def test_tool_calls_and_results_round_trip() -> None:
    body = req(
        messages=[
            {"role": "user", "content": "Weather in Paris and the time?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    tool_call("call_1", "get_weather", '{"city":"Paris"}'),
                    tool_call("call_2", "now", ""),
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 21}'},
            {
                "role": "tool",
                "tool_call_id": "call_2",
                "content": [{"type": "text", "text": "noon"}],
            },
            {"role": "user", "content": "Thanks!"},
        ],
        tools=[
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "Weather for a city",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                },
            },
            {"type": "function", "function": {"name": "now"}},
        ],
    )
    assert body["messages"] == [
        {"role": "user", "content": [{"text": "Weather in Paris and the time?"}]},
        {
            "role": "assistant",
            "content": [
                {
                    "toolUse": {
                        "toolUseId": "call_1",
                        "name": "get_weather",
                        "input": {"city": "Paris"},
                    }
                },
                {"toolUse": {"toolUseId": "call_2", "name": "now", "input": {}}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"toolResult": {"toolUseId": "call_1", "content": [{"text": '{"temp": 21}'}]}},
                {"toolResult": {"toolUseId": "call_2", "content": [{"text": "noon"}]}},
                {"text": "Thanks!"},
            ],
        },
    ]
    assert body["toolConfig"] == {
        "tools": [
            {
                "toolSpec": {
                    "name": "get_weather",
                    "description": "Weather for a city",
                    "inputSchema": {
                        "json": {"type": "object", "properties": {"city": {"type": "string"}}}
                    },
                }
            },
            {
                "toolSpec": {
                    "name": "now",
                    "inputSchema": {"json": {"type": "object", "properties": {}}},
                }
            },
        ]
    }


def test_inference_config() -> None:
    body = req(max_tokens=100, max_completion_tokens=200, temperature=0.2, top_p=0.9, stop="END")
    assert body["inferenceConfig"] == {
        "maxTokens": 200,
        "temperature": 0.2,
        "topP": 0.9,
        "stopSequences": ["END"],
    }
    assert req(max_tokens=50, stop=["a", "b"])["inferenceConfig"] == {
        "maxTokens": 50,
        "stopSequences": ["a", "b"],
    }
    assert "inferenceConfig" not in req(messages=[{"role": "user", "content": "x"}])


WEATHER_TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {}}}
WEATHER_SPEC = {"toolSpec": {"name": "get_weather", "inputSchema": {"json": {}}}}


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        (None, {"tools": [WEATHER_SPEC]}),
        ("auto", {"tools": [WEATHER_SPEC], "toolChoice": {"auto": {}}}),
        ("required", {"tools": [WEATHER_SPEC], "toolChoice": {"any": {}}}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            {"tools": [WEATHER_SPEC], "toolChoice": {"tool": {"name": "get_weather"}}},
        ),
        ("none", None),
    ],
)
def test_tool_choice(choice: Any, expected: dict[str, Any] | None) -> None:
    payload: dict[str, Any] = {
        "messages": [{"role": "user", "content": "x"}],
        "tools": [WEATHER_TOOL],
    }
    if choice is not None:
        payload["tool_choice"] = choice
    assert req(**payload).get("toolConfig") == expected


HISTORY = [
    {"role": "user", "content": "x"},
    {
        "role": "assistant",
        "tool_calls": [tool_call("c1", "get_weather", "{}")],
    },
    {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
]


def test_tool_history_keeps_a_tool_config_bedrock_requires() -> None:
    # Bedrock rejects toolUse/toolResult blocks without a toolConfig.
    none = req(messages=HISTORY, tools=[WEATHER_TOOL], tool_choice="none")
    assert none["toolConfig"] == {"tools": [WEATHER_SPEC]}
    bare = req(messages=HISTORY)
    assert bare["toolConfig"] == {
        "tools": [
            {
                "toolSpec": {
                    "name": "get_weather",
                    "inputSchema": {"json": {"type": "object", "properties": {}}},
                }
            }
        ]
    }


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        ({"n": 2}, "n"),
        ({"functions": [{"name": "f"}]}, "functions"),
        ({"tool_choice": "required"}, "tool_choice"),
        (
            {
                "tools": [WEATHER_TOOL],
                "tool_choice": {"type": "function", "function": {"name": "x"}},
            },
            "tool_choice",
        ),
        ({"tools": [{"type": "custom", "custom": {"name": "x"}}]}, "tools[0]"),
        ({"stop": 5}, "stop"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"temperature": "hot"}, "temperature"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0]"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0]"),
        (
            {
                "messages": [
                    {
                        "role": "assistant",
                        "tool_calls": [tool_call("c", "f", "{")],
                    }
                ]
            },
            "messages[0].tool_calls[0]",
        ),
    ],
)
def test_requests_bedrock_cannot_express(payload: dict[str, Any], param: str) -> None:
    full = {"messages": [{"role": "user", "content": "x"}], **payload}
    with pytest.raises(TranslationError) as info:
        req(**full)
    assert info.value.param == param


@pytest.mark.parametrize(
    ("model_id", "escaped"),
    [
        (MODEL_ID, "anthropic.claude-3-5-sonnet-20240620-v1%3A0"),
        ("us.amazon.nova-lite-v1:0", "us.amazon.nova-lite-v1%3A0"),
        (
            "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.meta.llama3",
            "arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.meta.llama3",
        ),
    ],
)
def test_path_escapes_the_model_id(model_id: str, escaped: str) -> None:
    payload = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    up = BedrockConverseTranslator(model_id).request(payload, b"")
    assert up.path == f"/model/{escaped}/converse"
    assert ("content-type", "application/json") in up.headers
    up = BedrockConverseTranslator(model_id).request({**payload, "stream": True}, b"")
    assert up.path == f"/model/{escaped}/converse-stream"
    assert ("accept", "application/vnd.amazon.eventstream") in up.headers
    assert up.body is not None
    assert b"stream" not in up.body  # the path says it; Converse has no such field
    assert b" " not in up.body  # compact JSON


# --- JSON responses ----------------------------------------------------------------


def converse_response(content: list[dict[str, Any]], stop: str, usage: dict[str, int]) -> bytes:
    return json.dumps(
        {
            "output": {"message": {"role": "assistant", "content": content}},
            "stopReason": stop,
            "usage": usage,
            "metrics": {"latencyMs": 1234},
        }
    ).encode()


def test_json_text_response() -> None:
    t = translator()
    assert t.response_headers(200, "application/json").streamed is False
    out = t.response_body(
        converse_response(
            [{"text": "Hello"}, {"text": " there"}],
            "end_turn",
            {"inputTokens": 10, "outputTokens": 2, "totalTokens": 12},
        ),
        True,
    )
    assert out.error is None
    assert out.usage == TokenUsage(10, 2, 12)
    assert out.body is not None
    completion = ChatCompletion.model_validate_json(out.body)
    assert completion.id == "chatcmpl-test"
    assert completion.model == "claude-sonnet"
    assert completion.created == 1700000000
    assert completion.choices[0].message.content == "Hello there"
    assert completion.choices[0].message.tool_calls is None
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens_details is None  # not reported: not made up
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (10, 2)


def test_json_tool_use_response_with_cache_usage() -> None:
    t = translator()
    t.response_headers(200, "application/json")
    out = t.response_body(
        converse_response(
            [
                {
                    "toolUse": {
                        "toolUseId": "tooluse_1",
                        "name": "get_weather",
                        "input": {"city": "Paris"},
                    }
                },
                {"toolUse": {"toolUseId": "tooluse_2", "name": "now", "input": {}}},
            ],
            "tool_use",
            {
                "inputTokens": 5,
                "outputTokens": 7,
                "totalTokens": 312,
                "cacheReadInputTokens": 200,
                "cacheWriteInputTokens": 100,
            },
        ),
        True,
    )
    assert out.body is not None
    completion = ChatCompletion.model_validate_json(out.body)
    message = completion.choices[0].message
    assert message.content is None
    assert message.tool_calls is not None
    calls = [c for c in message.tool_calls if isinstance(c, ChatCompletionMessageFunctionToolCall)]
    assert [(c.id, c.function.name, json.loads(c.function.arguments)) for c in calls] == [
        ("tooluse_1", "get_weather", {"city": "Paris"}),
        ("tooluse_2", "now", {}),
    ]
    assert completion.choices[0].finish_reason == "tool_calls"
    # inputTokens excludes cache reads and writes; prompt_tokens includes them.
    assert out.usage == TokenUsage(
        305, 7, 312, cached_input_tokens=200, cache_write_input_tokens=100
    )
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 305
    assert completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cached_tokens == 200


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("guardrail_intervened", "content_filter"),
        ("content_filtered", "content_filter"),
        ("model_context_window_exceeded", "length"),
        # Bedrock's other stop reasons (service model 2023-09-30): no OpenAI equivalent.
        ("malformed_model_output", "stop"),
        ("malformed_tool_use", "stop"),
        ("something_new", "stop"),
    ],
)
def test_finish_reasons(stop_reason: str, finish_reason: str) -> None:
    t = translator()
    usage = {"inputTokens": 1, "outputTokens": 1, "totalTokens": 2}
    out = t.response_body(converse_response([{"text": "x"}], stop_reason, usage), True)
    assert out.body is not None
    assert ChatCompletion.model_validate_json(out.body).choices[0].finish_reason == finish_reason


def test_json_body_split_over_calls_is_joined() -> None:
    t = translator()
    body = converse_response([{"text": "hi"}], "end_turn", {"inputTokens": 1, "outputTokens": 1})
    assert t.response_body(body[:10], False).body == b""
    out = t.response_body(body[10:], True)
    assert out.body is not None
    assert ChatCompletion.model_validate_json(out.body).choices[0].message.content == "hi"


@pytest.mark.parametrize("body", [b"not json", b"{}", b'{"output": {"message": {"content": 3}}}'])
def test_invalid_json_response_is_an_error(body: bytes) -> None:
    out = translator().response_body(body, True)
    assert out.error == "upstream_invalid_json"
    assert out.body is not None
    assert json.loads(out.body)["error"]["type"] == "server_error"


# --- event-stream responses --------------------------------------------------------


def streamed(*frames: bytes, include_usage: bool = True) -> tuple[BedrockConverseTranslator, bytes]:
    options = {"stream_options": {"include_usage": True}} if include_usage else {}
    t = translator(stream=True, **options)
    decision = t.response_headers(200, "application/vnd.amazon.eventstream")
    assert decision.streamed is True
    assert decision.content_type == "text/event-stream"
    return t, b"".join(frames)


def test_text_stream_with_usage() -> None:
    t, data = streamed(*TEXT_STREAM)
    out = t.response_body(data, True)
    assert out.error is None
    assert out.usage == TokenUsage(12, 3, 15)
    assert out.body is not None
    chunks = chunks_of(out.body)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello, world"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == 15
    assert {c.id for c in chunks} == {"chatcmpl-test"}
    assert {c.model for c in chunks} == {"claude-sonnet"}


def test_stream_with_bedrock_s_current_metadata() -> None:
    # As ConverseStream ends today (botocore's bedrock-runtime model): a citation delta,
    # messageStop with additionalModelResponseFields, then metadata with cache reads and
    # writes, the writes by TTL (cacheDetails), metrics, a trace and the service tier.
    t, data = streamed(
        event("messageStart", {"role": "assistant", "p": "ab"}),
        event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hi"}}),
        event(
            "contentBlockDelta",
            {"contentBlockIndex": 0, "delta": {"citation": {"title": "t", "location": {}}}},
        ),
        event("contentBlockStop", {"contentBlockIndex": 0}),
        event(
            "messageStop",
            {
                "stopReason": "model_context_window_exceeded",
                "additionalModelResponseFields": {"stop_sequence": None},
            },
        ),
        event(
            "metadata",
            {
                "usage": {
                    "inputTokens": 10,
                    "outputTokens": 2,
                    "totalTokens": 1512,
                    "cacheReadInputTokens": 1000,
                    "cacheWriteInputTokens": 500,
                    "cacheDetails": [
                        {"ttl": "1h", "inputTokens": 300},
                        {"ttl": "5m", "inputTokens": 200},
                    ],
                },
                "metrics": {"latencyMs": 812},
                "trace": {"promptRouter": {"invokedModelId": "m"}},
                "serviceTier": {"type": "default"},
                "p": "abcdef",
            },
        ),
    )
    out = t.response_body(data, True)
    assert out.error is None and out.complete
    assert out.usage == TokenUsage(
        1510, 2, 1512, cached_input_tokens=1000, cache_write_input_tokens=500
    )
    assert out.body is not None
    chunks = chunks_of(out.body)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hi"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"


def test_stream_without_include_usage_has_no_usage_chunk_but_reports_usage() -> None:
    t, data = streamed(*TEXT_STREAM, include_usage=False)
    out = t.response_body(data, True)
    assert out.body is not None
    chunks = chunks_of(out.body)
    assert all(c.choices for c in chunks)
    assert all(c.usage is None for c in chunks)
    assert out.usage == TokenUsage(12, 3, 15)


def test_tool_call_stream() -> None:
    t, data = streamed(*TOOL_STREAM)
    out = t.response_body(data, True)
    assert out.body is not None
    chunks = chunks_of(out.body)
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            for call in choice.delta.tool_calls or []:
                entry = calls.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
                assert call.function is not None
                if call.id:
                    assert call.type == "function"
                    assert call.function.arguments == ""
                    entry["id"] = call.id
                    entry["name"] = call.function.name or ""
                entry["arguments"] += call.function.arguments or ""
    assert calls == {
        0: {"id": "tooluse_abc", "name": "get_weather", "arguments": '{"city": "Paris"}'},
        1: {"id": "tooluse_def", "name": "now", "arguments": "{}"},
    }
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    assert out.usage == TokenUsage(
        120, 30, 150, cached_input_tokens=100, cache_write_input_tokens=0
    )
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens_details is not None
    assert chunks[-1].usage.prompt_tokens_details.cached_tokens == 100


def test_parallel_tool_calls_false_keeps_the_first_call_of_an_answer() -> None:
    """Converse has no switch for it: the gateway holds the answer to one call, streamed
    and not (Codex's default config sends it)."""
    assert "parallel_tool_calls" not in json.dumps(req(parallel_tool_calls=False))
    t = translator(parallel_tool_calls=False)
    t.response_headers(200, "application/json")
    uses = [
        {"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather", "input": {"city": "P"}}},
        {"toolUse": {"toolUseId": "tooluse_2", "name": "now", "input": {}}},
    ]
    usage = {"inputTokens": 5, "outputTokens": 7, "totalTokens": 12}
    out = t.response_body(converse_response(uses, "tool_use", usage), True)
    assert out.body is not None
    message = ChatCompletion.model_validate_json(out.body).choices[0].message
    assert [c.id for c in message.tool_calls or []] == ["tooluse_1"]
    t = translator(stream=True, parallel_tool_calls=False)
    t.response_headers(200, "application/vnd.amazon.eventstream")
    out = t.response_body(b"".join(TOOL_STREAM), True)
    assert out.complete and out.body is not None
    calls = [
        (call.index, call.id, call.function.arguments if call.function else None)
        for chunk in chunks_of(out.body)
        for choice in chunk.choices
        for call in choice.delta.tool_calls or []
    ]
    assert {index for index, _, _ in calls} == {0}
    assert "".join(a or "" for _, _, a in calls) == '{"city": "Paris"}'
    assert out.usage is not None and out.usage.output_tokens == 30


@pytest.mark.parametrize(
    ("exception_type", "status", "error_type", "code"),
    [
        ("throttlingException", 429, "rate_limit_error", "rate_limit_exceeded"),
        ("modelStreamErrorException", 424, "server_error", "modelStreamErrorException"),
        ("validationException", 400, "invalid_request_error", "validationException"),
        ("internalServerException", 500, "server_error", "internalServerException"),
        ("serviceUnavailableException", 503, "server_error", "serviceUnavailableException"),
        ("someNewException", 500, "server_error", "someNewException"),
    ],
)
def test_exception_frames_end_the_stream_with_an_error_event(
    exception_type: str, status: int, error_type: str, code: str
) -> None:
    t, data = streamed(TEXT_STREAM[0], TEXT_STREAM[1], exception(exception_type, "Slow down"))
    out = t.response_body(data, False)
    assert out.error == "upstream_stream_error"
    assert out.body is not None
    events = sse_data(out.body)
    assert b"[DONE]" not in events
    ChatCompletionChunk.model_validate_json(events[1])  # what came before still went out
    assert json.loads(events[-1]) == {
        "error": {"message": "Slow down", "type": error_type, "param": None, "code": code}
    }
    assert bedrock_exception_status(exception_type) == status
    # Nothing more reaches the client, not even a truncation error.
    later = t.response_body(TEXT_STREAM[4], True)
    assert later.body == b""
    assert later.error == "upstream_stream_error"


def test_corrupt_frame_is_an_error() -> None:
    bad = bytearray(TEXT_STREAM[1])
    bad[-1] ^= 0xFF  # message CRC
    t, data = streamed(TEXT_STREAM[0], bytes(bad), *TEXT_STREAM[2:])
    out = t.response_body(data, True)
    assert out.error == "upstream_invalid_stream"
    assert out.body is not None
    events = sse_data(out.body)
    assert len(events) == 2  # the role chunk, then the error
    assert json.loads(events[-1])["error"]["code"] == "bad_upstream"


def test_corrupt_prelude_is_caught_before_the_frame_completes() -> None:
    bad = bytearray(TEXT_STREAM[1])
    bad[1] ^= 0x01  # total length: the prelude CRC no longer matches
    t, data = streamed(TEXT_STREAM[0], bytes(bad[:20]))
    out = t.response_body(data, False)
    assert out.error == "upstream_invalid_stream"


@pytest.mark.parametrize("cut", [0, 1, 2, 4, 5])
def test_truncated_stream_is_an_error(cut: int) -> None:
    frames = TEXT_STREAM[:cut]
    t, data = streamed(*frames)
    out = t.response_body(data + b"\x00\x00", True)  # a stray partial frame too
    assert out.error == "upstream_truncated"
    assert out.body is not None
    events = sse_data(out.body)
    assert b"[DONE]" not in events
    assert json.loads(events[-1])["error"]["code"] == "upstream_truncated"


def test_nothing_is_sent_after_done() -> None:
    t, data = streamed(*TEXT_STREAM)
    t.response_body(data, False)
    assert t.response_body(TEXT_STREAM[1], False).body == b""
    out = t.response_body(b"", True)
    assert out.body == b""
    assert out.error is None


def run_split(
    frames: list[bytes], cuts: list[int], include_usage: bool = True
) -> tuple[bytes, Any]:
    t, data = streamed(*frames, include_usage=include_usage)
    body, out = feed_split(t, data, cuts)
    return body, (out.usage, out.error)


STREAMS = {
    "text": TEXT_STREAM,
    "tools": TOOL_STREAM,
    "exception": [*TEXT_STREAM[:3], exception("throttlingException", "Too many")],
    "truncated": TEXT_STREAM[:4],
}


def test_byte_by_byte_feeding() -> None:
    frames = TOOL_STREAM
    total = len(b"".join(frames))
    assert run_split(frames, list(range(total))) == run_split(frames, [])


# --- error bodies ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error_type", "body", "expected"),
    [
        (
            429,
            "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/",
            b'{"message":"Too many requests, please wait before trying again."}',
            openai_error(
                "Too many requests, please wait before trying again.",
                "rate_limit_error",
                "rate_limit_exceeded",
            ),
        ),
        (
            400,
            "ValidationException",
            b'{"message":"The model returned the following errors: Input is too long"}',
            openai_error(
                "The model returned the following errors: Input is too long",
                "invalid_request_error",
                "ValidationException",
            ),
        ),
        (
            403,
            "AccessDeniedException",
            b'{"Message":"You don\'t have access to the model with the specified model ID."}',
            openai_error(
                "You don't have access to the model with the specified model ID.",
                "permission_error",
                "AccessDeniedException",
            ),
        ),
        (
            404,
            None,
            b'{"__type":"com.amazon.bedrock#ResourceNotFoundException",'
            b'"message":"Model not found"}',
            openai_error("Model not found", "invalid_request_error", "model_not_found"),
        ),
        (
            403,
            "UnrecognizedClientException",
            b'{"message":"The security token included in the request is invalid."}',
            openai_error(
                "The security token included in the request is invalid.",
                "authentication_error",
                "UnrecognizedClientException",
            ),
        ),
        (
            503,
            None,
            b"<html>Service Unavailable</html>",
            openai_error("<html>Service Unavailable</html>", "server_error", 503),
        ),
    ],
)
def test_error_body(
    status: int, error_type: str | None, body: bytes, expected: dict[str, Any]
) -> None:
    headers = {"content-type": "application/json"}
    if error_type is not None:
        headers["x-amzn-errortype"] = error_type
    out = BedrockConverseTranslator(MODEL_ID).error_body(status, body, headers)
    assert json.loads(out) == expected


def test_bedrock_error_table() -> None:
    assert bedrock_error("ModelTimeoutException").status == 408
    assert bedrock_error("modelTimeoutException").type == "timeout_error"
    assert bedrock_error(None, 502).type == "server_error"


def test_error_message_frames_end_the_stream() -> None:
    error_frame = frame(
        {":message-type": "error", ":error-code": "InternalFailure", ":error-message": "boom"},
        b"",
    )
    t, data = streamed(TEXT_STREAM[0], error_frame)
    out = t.response_body(data, False)
    assert out.error == "upstream_stream_error"
    assert out.body is not None
    assert json.loads(sse_data(out.body)[-1])["error"] == {
        "message": "boom",
        "type": "server_error",
        "param": None,
        "code": "InternalFailure",
    }


def test_streaming_without_botocore_fails_before_the_upstream_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "botocore.eventstream", None)
    t = BedrockConverseTranslator(MODEL_ID)
    payload = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "x"}]}
    with pytest.raises(RuntimeError, match=r"aigateway\[aws\]"):
        t.request(payload, b"")


def test_non_ascii_and_lone_surrogates_serialise() -> None:
    payload = json.loads('{"model":"m","messages":[{"role":"user","content":"h\\u00e9 \\ud800"}]}')
    up = BedrockConverseTranslator(MODEL_ID).request(payload, b"")
    assert up.body is not None
    assert json.loads(up.body)["messages"][0]["content"] == [{"text": "h\u00e9 \ud800"}]
    plain = BedrockConverseTranslator(MODEL_ID).request(
        {"model": "m", "messages": [{"role": "user", "content": "h\u00e9"}]}, b""
    )
    assert plain.body is not None
    assert "h\u00e9".encode() in plain.body  # UTF-8, not a \\u escape


# --- translation parity (issue 11) ---------------------------------------------------

POINT = {"cachePoint": {"type": "default"}}
HOUR_POINT = {"cachePoint": {"type": "default", "ttl": "1h"}}


def claude(**payload: Any) -> dict[str, Any]:
    full = {"model": "m", "messages": [{"role": "user", "content": "x"}], **payload}
    return converse_request(full, model_id=MODEL_ID)


def test_cache_points_follow_the_marked_blocks() -> None:
    body = req(
        messages=[
            *MARKED_SYSTEM,
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Read", "cache_control": EPHEMERAL},
                    image_part(PNG_URL, cache_control=HOUR),
                ],
            },
            {
                "role": "assistant",
                "tool_calls": [
                    {**tool_call("c1", "get_weather", "{}"), "cache_control": EPHEMERAL}
                ],
            },
            {
                "role": "tool",
                "tool_call_id": "c1",
                "content": [{"type": "text", "text": "sunny", "cache_control": EPHEMERAL}],
            },
        ],
        tools=[{**WEATHER_TOOL, "cache_control": EPHEMERAL}],
    )
    assert body["system"] == [{"text": "Long rules."}, POINT, {"text": "More rules."}, HOUR_POINT]
    user, assistant, result = body["messages"]
    assert user["content"] == [
        {"text": "Read"},
        POINT,
        {"image": {"format": "png", "source": {"bytes": PNG_B64}}},
        HOUR_POINT,
    ]
    assert assistant["content"] == [
        {"toolUse": {"toolUseId": "c1", "name": "get_weather", "input": {}}},
        POINT,
    ]
    # A tool result cannot hold a cache point: it follows the result.
    assert result["content"] == [
        {"toolResult": {"toolUseId": "c1", "content": [{"text": "sunny"}]}},
        POINT,
    ]
    assert body["toolConfig"]["tools"] == [WEATHER_SPEC, POINT]


def test_cache_writes_show_in_the_response_usage() -> None:
    out = translator().response_body(
        converse_response(
            [{"text": "x"}],
            "end_turn",
            {"inputTokens": 3, "outputTokens": 1, "totalTokens": 504, "cacheWriteInputTokens": 500},
        ),
        True,
    )
    assert out.usage == TokenUsage(503, 1, 504, cache_write_input_tokens=500)
    assert out.body is not None
    usage = ChatCompletion.model_validate_json(out.body).usage
    assert usage is not None and usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cache_write_tokens == 500
    assert usage.prompt_tokens_details.cached_tokens is None


@pytest.mark.parametrize(
    ("effort", "limit", "budget", "max_tokens"),
    [("low", None, 1024, 1024 + 4096), ("medium", 300, 4096, 4396), ("high", None, 16384, 20480)],
)
def test_reasoning_effort_on_claude(
    effort: str, limit: int | None, budget: int, max_tokens: int
) -> None:
    extra = {"max_tokens": limit} if limit is not None else {}
    body = claude(reasoning_effort=effort, **extra)
    assert body["additionalModelRequestFields"] == {
        "thinking": {"type": "enabled", "budget_tokens": budget}
    }
    assert body["inferenceConfig"]["maxTokens"] == max_tokens > budget


def test_reasoning_effort_on_other_models_is_refused_but_thinking_passes() -> None:
    with pytest.raises(TranslationError) as info:
        req(reasoning_effort="low")  # no model id: not Claude
    assert info.value.param == "reasoning_effort"
    thinking = {"type": "enabled", "budget_tokens": 2048}
    body = req(thinking=thinking, max_tokens=4000)
    assert body["additionalModelRequestFields"] == {"thinking": thinking}
    assert body["inferenceConfig"]["maxTokens"] == 4000
    assert "additionalModelRequestFields" not in claude(reasoning_effort="none")


def test_reasoning_blocks_are_replayed_with_their_signature() -> None:
    body = claude(
        messages=[
            {"role": "user", "content": "x"},
            {
                "role": "assistant",
                "thinking_blocks": [
                    {"type": "thinking", "thinking": "Use the tool.", "signature": "sig-1"},
                    {"type": "redacted_thinking", "data": "EmwK"},
                ],
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "get_weather"}}
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        ],
        tools=[WEATHER_TOOL],
        reasoning_effort="low",
    )
    assert body["messages"][1]["content"] == [
        {"reasoningContent": {"reasoningText": {"text": "Use the tool.", "signature": "sig-1"}}},
        {"reasoningContent": {"redactedContent": "EmwK"}},
        {"toolUse": {"toolUseId": "c1", "name": "get_weather", "input": {}}},
    ]


def test_json_reasoning_and_service_tier() -> None:
    doc = json.loads(
        converse_response(
            [
                {"reasoningContent": {"reasoningText": {"text": "Hmm.", "signature": "sig-2"}}},
                {"reasoningContent": {"redactedContent": "EmwK"}},
                {"text": "Sunny."},
            ],
            "end_turn",
            {"inputTokens": 1, "outputTokens": 2, "totalTokens": 3},
        )
    )
    doc["serviceTier"] = {"type": "priority"}
    out = translator().response_body(json.dumps(doc).encode(), True)
    assert out.body is not None
    completion = ChatCompletion.model_validate_json(out.body)
    assert completion.service_tier == "priority"
    message = completion.choices[0].message
    assert message.content == "Sunny."
    assert message.model_extra == {
        "reasoning_content": "Hmm.",
        "thinking_blocks": [
            {"type": "thinking", "thinking": "Hmm.", "signature": "sig-2"},
            {"type": "redacted_thinking", "data": "EmwK"},
        ],
    }


REASONING_STREAM = [
    event("messageStart", {"role": "assistant"}),
    event(
        "contentBlockDelta",
        {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "Let me "}}},
    ),
    event(
        "contentBlockDelta",
        {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "see."}}},
    ),
    event(
        "contentBlockDelta",
        {"contentBlockIndex": 0, "delta": {"reasoningContent": {"signature": "EqQBCg=="}}},
    ),
    event("contentBlockStop", {"contentBlockIndex": 0}),
    event(
        "contentBlockDelta",
        {"contentBlockIndex": 1, "delta": {"reasoningContent": {"redactedContent": "EmwK"}}},
    ),
    event("contentBlockStop", {"contentBlockIndex": 1}),
    event("contentBlockDelta", {"contentBlockIndex": 2, "delta": {"text": "Sunny."}}),
    event("contentBlockStop", {"contentBlockIndex": 2}),
    event("messageStop", {"stopReason": "end_turn"}),
    event(
        "metadata",
        {
            "usage": {"inputTokens": 5, "outputTokens": 9, "totalTokens": 14},
            "metrics": {"latencyMs": 10},
            "serviceTier": {"type": "flex"},
        },
    ),
]


def test_streamed_reasoning_signed_blocks_and_service_tier() -> None:
    t, data = streamed(*REASONING_STREAM)
    out = t.response_body(data, True)
    assert out.body is not None
    chunks = chunks_of(out.body)
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert [d.model_extra for d in deltas if d.model_extra] == [
        {"reasoning_content": "Let me "},
        {"reasoning_content": "see."},
        {
            "thinking_blocks": [
                {"type": "thinking", "thinking": "Let me see.", "signature": "EqQBCg=="}
            ]
        },
        {"thinking_blocks": [{"type": "redacted_thinking", "data": "EmwK"}]},
    ]
    assert "".join(d.content or "" for d in deltas) == "Sunny."
    finish, usage = chunks[-2], chunks[-1]
    assert finish.choices[0].finish_reason == "stop"
    assert (finish.service_tier, usage.service_tier) == ("flex", "flex")


@pytest.mark.parametrize("tier", ["priority", "default", "flex", "reserved"])
def test_service_tiers_bedrock_accepts(tier: str) -> None:
    assert req(service_tier=tier)["serviceTier"] == {"type": tier}


def test_service_tier_auto_is_the_default_and_others_are_refused() -> None:
    assert "serviceTier" not in req(service_tier="auto")
    with pytest.raises(TranslationError, match="scale") as info:
        req(service_tier="scale")
    assert info.value.param == "service_tier"


def test_refusals_in_history_are_sent_as_text() -> None:
    body = req(
        messages=[
            {"role": "user", "content": "Do it"},
            {"role": "assistant", "content": [{"type": "refusal", "refusal": "I can't."}]},
            {"role": "user", "content": "Why?"},
        ]
    )
    assert body["messages"] == [
        {"role": "user", "content": [{"text": "Do it"}]},
        {"role": "assistant", "content": [{"text": "I can't."}]},
        {"role": "user", "content": [{"text": "Why?"}]},
    ]


def test_files_become_documents_with_valid_unique_names() -> None:
    def file(media: str, name: str | None = None) -> dict[str, Any]:
        spec = {"file_data": f"data:{media};base64,{PDF_B64}"}
        if name is not None:
            spec["filename"] = name
        return {"type": "file", "file": spec}

    body = req(
        messages=[
            {
                "role": "user",
                "content": [
                    file("application/pdf", "Q3 report (final)_v2.pdf"),
                    file("text/csv", "Q3 report (final)_v2.csv"),
                    file("text/markdown"),
                    image_part(PDF_URL),
                    {"type": "text", "text": "Summarise"},
                ],
            }
        ]
    )
    docs = [b["document"] for b in body["messages"][0]["content"] if "document" in b]
    assert [(d["format"], d["name"]) for d in docs] == [
        ("pdf", "Q3 report (final) v2"),
        ("csv", "Q3 report (final) v2 (2)"),
        ("md", "document"),
        ("pdf", "document (2)"),
    ]
    assert {d["source"]["bytes"] for d in docs} == {PDF_B64}
    with pytest.raises(TranslationError, match="image/svg"):
        req(messages=[{"role": "user", "content": [file("image/svg+xml")]}])


SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
JSON_SCHEMA = {"type": "json_schema", "json_schema": {"name": "place", "schema": SCHEMA}}
ANSWER_SPEC = {
    "toolSpec": {
        "name": "json_tool_call",
        "inputSchema": {"json": SCHEMA},
        "description": "Answer with a JSON object: place.",
    }
}


def test_response_format_becomes_a_forced_answer_tool() -> None:
    assert req(response_format=JSON_SCHEMA)["toolConfig"] == {
        "tools": [ANSWER_SPEC],
        "toolChoice": {"tool": {"name": "json_tool_call"}},
    }
    assert req(response_format=JSON_SCHEMA, tools=[WEATHER_TOOL])["toolConfig"] == {
        "tools": [WEATHER_SPEC, ANSWER_SPEC],
        "toolChoice": {"any": {}},
    }
    # reasoning_effort is a wish Claude cannot meet with a forced tool: thinking left out
    wish = claude(response_format=JSON_SCHEMA, reasoning_effort="high")
    assert "additionalModelRequestFields" not in wish
    with pytest.raises(TranslationError) as info:
        claude(
            response_format=JSON_SCHEMA,
            thinking={"type": "enabled", "budget_tokens": 2048},
            max_tokens=4096,
        )
    assert info.value.param == "response_format"


def test_json_answer_is_content_streamed_and_not() -> None:
    t = translator(response_format=JSON_SCHEMA)
    use = {"toolUse": {"toolUseId": "t9", "name": "json_tool_call", "input": {"city": "Oslo"}}}
    out = t.response_body(converse_response([use], "tool_use", {"inputTokens": 1}), True)
    assert out.body is not None
    choice = ChatCompletion.model_validate_json(out.body).choices[0]
    assert json.loads(choice.message.content or "") == {"city": "Oslo"}
    assert (choice.message.tool_calls, choice.finish_reason) == (None, "stop")
    t = translator(stream=True, response_format=JSON_SCHEMA)
    t.response_headers(200, "application/vnd.amazon.eventstream")
    streamed_out = t.response_body(b"".join(ANSWER_STREAM), True)
    assert streamed_out.body is not None
    chunks = [c for c in chunks_of(streamed_out.body) if c.choices]
    assert json.loads("".join(c.choices[0].delta.content or "" for c in chunks)) == {"city": "Oslo"}
    assert all(c.choices[0].delta.tool_calls is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


ANSWER_STREAM = [
    event("messageStart", {"role": "assistant"}),
    event(
        "contentBlockStart",
        {
            "contentBlockIndex": 0,
            "start": {"toolUse": {"toolUseId": "t9", "name": "json_tool_call"}},
        },
    ),
    event(
        "contentBlockDelta", {"contentBlockIndex": 0, "delta": {"toolUse": {"input": '{"city":'}}}
    ),
    event(
        "contentBlockDelta", {"contentBlockIndex": 0, "delta": {"toolUse": {"input": '"Oslo"}'}}}
    ),
    event("contentBlockStop", {"contentBlockIndex": 0}),
    event("messageStop", {"stopReason": "tool_use"}),
    event("metadata", {"usage": {"inputTokens": 1, "outputTokens": 4, "totalTokens": 5}}),
]


def test_tool_strict_and_tool_results_of_many_parts() -> None:
    strict = {"type": "function", "function": {"name": "f", "parameters": SCHEMA, "strict": True}}
    assert req(tools=[strict])["toolConfig"]["tools"] == [
        {"toolSpec": {"name": "f", "inputSchema": {"json": SCHEMA}, "strict": True}}
    ]
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
                    {"type": "text", "text": "chart:"},
                    image_part(PNG_URL),
                    {
                        "type": "file",
                        "file": {
                            "file_data": PDF_URL,
                            "filename": "a.pdf",
                        },
                    },
                ],
            },
        ]
    )
    assert body["messages"][2]["content"][0]["toolResult"]["content"] == [
        {"text": "chart:"},
        {"image": {"format": "png", "source": {"bytes": PNG_B64}}},
        {"document": {"format": "pdf", "name": "a", "source": {"bytes": PDF_B64}}},
    ]


PARITY_STREAMS = {"reasoning": REASONING_STREAM, "answer": ANSWER_STREAM}


@settings(max_examples=100, deadline=None)
@given(
    name=st.sampled_from(sorted(PARITY_STREAMS)),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=30),
    include_usage=st.booleans(),
)
def test_any_split_of_reasoning_and_answer_streams_gives_the_same_output(
    name: str, cuts: list[int], include_usage: bool
) -> None:
    def run(points: list[int]) -> tuple[bytes, Any]:
        options = {"stream_options": {"include_usage": include_usage}}
        t = translator(stream=True, response_format=JSON_SCHEMA, **options)
        t.response_headers(200, "application/vnd.amazon.eventstream")
        data = b"".join(PARITY_STREAMS[name])
        edges = sorted({min(c, len(data)) for c in points})
        pieces = [data[a:b] for a, b in zip([0, *edges], [*edges, len(data)], strict=True)]
        outs = [t.response_body(p, i == len(pieces) - 1) for i, p in enumerate(pieces)]
        return b"".join(o.body or b"" for o in outs), (outs[-1].usage, outs[-1].error)

    assert run(cuts) == run([])


def test_claude_s_output_config_passes_to_claude_and_is_refused_elsewhere() -> None:
    payload = {
        "model": "m",
        "messages": [{"role": "user", "content": "x"}],
        "output_config": {"effort": "low"},
    }
    body = converse_request(payload, model_id=MODEL_ID)
    assert body["additionalModelRequestFields"] == {"output_config": {"effort": "low"}}
    with pytest.raises(TranslationError) as caught:
        converse_request(payload, model_id="meta.llama3-70b-instruct-v1:0")
    assert caught.value.param == "output_config"
