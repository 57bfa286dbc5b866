"""The OpenAI answer writer every non-OpenAI translator shares: ``chat.completion`` bodies,
``chat.completion.chunk`` events, and the ``ChunkStream`` state machine (tool indexes,
the usage chunk, ``[DONE]``, error events, nothing after the end)."""

from __future__ import annotations

import json
from typing import Any

from aigateway.translators.client_apis.chat.stream import (
    UPSTREAM_STREAM_ERROR,
    UPSTREAM_TRUNCATED,
    ChatChunkWriter,
    ChunkEncoder,
    ChunkStream,
    ToolCall,
    chat_completion_body,
)
from aigateway.translators.contract import TokenUsage
from aigateway.translators.wire.sse import SseDecoder

USAGE = TokenUsage(input_tokens=5, output_tokens=3, total_tokens=8, cached_input_tokens=2)


def events(body: bytes) -> list[Any]:
    """The client's view: each SSE event's data, parsed unless it is ``[DONE]``."""
    out: list[Any] = []
    for event in SseDecoder().feed(body):
        out.append("[DONE]" if event.data == b"[DONE]" else json.loads(event.data))
    return out


def stream(include_usage: bool = False) -> ChunkStream:
    encoder = ChunkEncoder("chatcmpl-1", 1700000000, "m\u00e9")
    return ChunkStream(ChatChunkWriter(encoder, include_usage=include_usage))


def test_every_chunk_carries_the_head_and_one_choice() -> None:
    s = stream()
    s.role()
    s.text("h\u00e9llo \ud800")  # a lone surrogate must not break encoding
    s.finish("stop")
    s.complete()
    chunks = events(s.output().body or b"")
    assert chunks[-1] == "[DONE]"
    for chunk in chunks[:-1]:
        assert chunk["id"] == "chatcmpl-1"
        assert chunk["object"] == "chat.completion.chunk"
        assert chunk["created"] == 1700000000
        assert chunk["model"] == "m\u00e9"
        assert len(chunk["choices"]) == 1
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[1]["choices"][0]["delta"] == {"content": "h\u00e9llo \ud800"}
    assert chunks[2]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "stop",
    }


def test_tool_calls_get_indexes_in_order_of_their_start() -> None:
    s = stream()
    s.tool_call_arguments(7, '{"early":')  # before its start: dropped, it has no id yet
    s.tool_call_start(3, "call_a", "get_weather")
    s.tool_call_start(1, "call_b", "get_time")
    s.tool_call_arguments(1, '{"tz":')
    s.tool_call_arguments(3, '{"city":"Paris"}')
    s.tool_call_arguments(1, '"UTC"}')
    s.tool_call_arguments(1, "")  # empty fragments are not sent
    deltas = [c["choices"][0]["delta"]["tool_calls"][0] for c in events(s.output().body or b"")]
    assert deltas == [
        {
            "index": 0,
            "id": "call_a",
            "type": "function",
            "function": {"name": "get_weather", "arguments": ""},
        },
        {
            "index": 1,
            "id": "call_b",
            "type": "function",
            "function": {"name": "get_time", "arguments": ""},
        },
        {"index": 1, "function": {"arguments": '{"tz":'}},
        {"index": 0, "function": {"arguments": '{"city":"Paris"}'}},
        {"index": 1, "function": {"arguments": '"UTC"}'}},
    ]


def test_the_usage_chunk_comes_only_when_asked_and_before_done() -> None:
    for include_usage, expected in ((True, 2), (False, 1)):
        s = stream(include_usage)
        s.usage = USAGE
        s.complete()
        chunks = events(s.output().body or b"")
        assert len(chunks) == expected
        if include_usage:
            assert chunks[0]["choices"] == []
            assert chunks[0]["usage"] == {
                "prompt_tokens": 5,
                "completion_tokens": 3,
                "total_tokens": 8,
                "prompt_tokens_details": {"cached_tokens": 2},
            }
        assert chunks[-1] == "[DONE]"


def test_nothing_is_emitted_after_the_end() -> None:
    s = stream()
    s.complete()
    s.output()
    s.text("late")
    s.role()
    s.tool_call_start(0, "c", "f")
    s.finish("stop")
    s.complete()
    s.fail("late", status=500)
    s.truncated()
    out = s.output()
    assert out.body == b""
    assert out.error is None  # a stream that completed stays complete


def test_an_error_event_ends_the_stream_and_reports_the_error() -> None:
    s = stream()
    s.usage = USAGE
    s.text("partial")
    s.fail("overloaded", status=529, type="server_error", code="overloaded_error")
    s.text("after")
    out = s.output()
    chunks = events(out.body or b"")
    assert chunks[-1] == {
        "error": {
            "message": "overloaded",
            "type": "server_error",
            "param": None,
            "code": "overloaded_error",
        }
    }
    assert len(chunks) == 2
    assert (out.error, out.usage, s.finished) == (UPSTREAM_STREAM_ERROR, USAGE, True)


def test_a_truncated_stream_ends_with_a_502_error_event() -> None:
    s = stream()
    s.truncated()
    out = s.output()
    (event,) = events(out.body or b"")
    assert event["error"]["code"] == UPSTREAM_TRUNCATED
    assert event["error"]["type"] == "server_error"
    assert out.error == UPSTREAM_TRUNCATED


def test_output_hands_over_each_event_once() -> None:
    s = stream()
    s.text("a")
    first = s.output()
    assert s.output().body == b""
    s.text("b")
    assert events(first.body or b"")[0]["choices"][0]["delta"] == {"content": "a"}
    assert events(s.output().body or b"")[0]["choices"][0]["delta"] == {"content": "b"}


def test_a_whole_completion_body() -> None:
    body = json.loads(
        chat_completion_body(
            completion_id="chatcmpl-2",
            created=1,
            model="m",
            content=None,
            tool_calls=[ToolCall("call_1", "f", '{"x":1}')],
            finish_reason="tool_calls",
            usage=USAGE,
        )
    )
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {
        "role": "assistant",
        "content": None,
        "refusal": None,
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"x":1}'}}
        ],
    }
    assert body["choices"][0]["finish_reason"] == "tool_calls"
    assert body["usage"]["prompt_tokens_details"] == {"cached_tokens": 2}


def test_reasoning_blocks_are_assembled_per_content_block() -> None:
    s = stream(include_usage=True)
    s.reasoning(0, "a")
    s.reasoning(3, "x")  # another block, interleaved
    s.reasoning(0, "b")
    s.reasoning_signature(0, "si")
    s.reasoning_signature(0, "g")
    s.reasoning_end(0)
    s.reasoning_end(1)  # not a reasoning block: nothing
    s.redacted_reasoning("ENC")
    s.reasoning(5, "")  # an empty block still ends as a (signed) block
    s.reasoning_signature(5, "s5")
    s.reasoning_end(5)
    s.keepalive()
    s.service_tier = "flex"
    s.finish("stop")
    s.usage = USAGE
    s.complete()
    s.reasoning(3, "late")  # nothing after the end
    s.reasoning_end(3)
    body = s.output().body
    assert body is not None
    assert b"\n\n: ping\n\n" in body
    got = events(body)
    assert [e["choices"][0]["delta"] for e in got[:6]] == [
        {"reasoning_content": "a"},
        {"reasoning_content": "x"},
        {"reasoning_content": "b"},
        {"thinking_blocks": [{"type": "thinking", "thinking": "ab", "signature": "sig"}]},
        {"thinking_blocks": [{"type": "redacted_thinking", "data": "ENC"}]},
        {"thinking_blocks": [{"type": "thinking", "thinking": "", "signature": "s5"}]},
    ]
    finish, usage, done = got[6:]
    assert (finish["service_tier"], usage["service_tier"], done) == ("flex", "flex", "[DONE]")


def test_a_body_with_reasoning_cache_writes_and_service_tier() -> None:
    usage = TokenUsage(10, 2, 12, cached_input_tokens=3, cache_write_input_tokens=4)
    body = json.loads(
        chat_completion_body(
            completion_id="c",
            created=1,
            model="m",
            content="hi",
            tool_calls=[],
            finish_reason="stop",
            usage=usage,
            reasoning_content="hm",
            thinking_blocks=[{"type": "thinking", "thinking": "hm", "signature": "s"}],
            service_tier="priority",
        )
    )
    assert body["choices"][0]["message"]["reasoning_content"] == "hm"
    assert body["choices"][0]["message"]["thinking_blocks"][0]["signature"] == "s"
    assert body["usage"]["prompt_tokens_details"] == {"cached_tokens": 3, "cache_write_tokens": 4}
    assert body["service_tier"] == "priority"
