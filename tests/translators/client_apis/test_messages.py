"""Anthropic Messages: the request read as a chat request, answers and events written from
chat answers (the pivot to OpenAI, Azure, Bedrock and Gemini), the passthrough to Anthropic
and to Claude on Vertex AI, token counting, and errors in Anthropic's shape. Shapes are
checked with the ``anthropic`` SDK's own models."""

from __future__ import annotations

import json
from typing import Any

import pydantic
import pytest
from anthropic.types import Message, MessageTokensCount, RawMessageStreamEvent
from hypothesis import given, settings
from hypothesis import strategies as st

from aigateway.translators.backends.anthropic import AnthropicMessagesTranslator, VertexRawPredict
from aigateway.translators.backends.bedrock import BedrockConverseTranslator
from aigateway.translators.backends.gemini import GeminiChatTranslator
from aigateway.translators.backends.openai import OpenAIChatTranslator
from aigateway.translators.client_apis.messages import (
    CountTokensTranslator,
    MessagesApi,
    MessagesPassthroughTranslator,
)
from aigateway.translators.client_apis.messages_request import (
    MessagesOptions,
    read_messages_request,
    reasoning_effort_for_budget,
)
from aigateway.translators.client_apis.messages_stream import MessagesEventStream
from aigateway.translators.client_apis.pivot import PivotTranslator
from aigateway.translators.contract import StreamEnding, TokenUsage, TranslationError
from tests.translators.anthropic_wire import tool_use

EVENTS: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(RawMessageStreamEvent)
CLAUDE = MessagesOptions(cache_marks=True, thinking=True)
OTHER = MessagesOptions()
WEATHER = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}
MARK = {"type": "ephemeral"}


def chat(options: MessagesOptions = OTHER, **payload: Any) -> dict[str, Any]:
    body = {"model": "m", "max_tokens": 100, "messages": [{"role": "user", "content": "x"}]}
    return read_messages_request({**body, **payload}, options).chat


def openai_pivot(**payload: Any) -> PivotTranslator:
    t = PivotTranslator(OpenAIChatTranslator("gpt-x"), MessagesApi(MessagesOptions()))
    body = {"model": "claude", "max_tokens": 100, "messages": [{"role": "user", "content": "Hi"}]}
    t.request({**body, **payload}, b"")
    return t


def chunks(*docs: dict[str, Any]) -> bytes:
    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-x"}
    body = b"".join(b"data: " + json.dumps({**base, **d}).encode() + b"\n\n" for d in docs)
    return body + b"data: [DONE]\n\n"


def delta(d: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": d, "finish_reason": finish}]}


ANSWER = (
    delta({"role": "assistant", "content": ""}),
    delta({"content": "Let me "}),
    delta({"content": "check."}),
    delta(
        {
            "tool_calls": [
                {
                    "index": 0,
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": ""},
                }
            ]
        }
    ),
    delta({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}),
    delta({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
    delta({}, "tool_calls"),
    {
        "choices": [],
        "usage": {
            "prompt_tokens": 12,
            "completion_tokens": 7,
            "total_tokens": 19,
            "prompt_tokens_details": {"cached_tokens": 2},
        },
    },
)


def events_of(body: bytes) -> list[dict[str, Any]]:
    """Each event's data, after checking its ``event:`` line and that the SDK parses it."""
    out = []
    for raw in body.decode().split("\n\n"):
        if not raw:
            continue
        name, data = raw.split("\n", 1)
        doc = json.loads(data.removeprefix("data: "))
        assert name == f"event: {doc['type']}"
        if doc["type"] != "error":
            EVENTS.validate_python(doc)
        out.append(doc)
    return out


# -- the request ----------------------------------------------------------------------


def test_system_text_images_documents_and_parameters() -> None:
    out = chat(
        system=[{"type": "text", "text": "Be brief", "cache_control": MARK}],
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Look"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"},
                    },
                    {"type": "image", "source": {"type": "url", "url": "https://x/a.png"}},
                    {
                        "type": "document",
                        "source": {
                            "type": "base64",
                            "media_type": "application/pdf",
                            "data": "JVBE",
                        },
                        "title": "a.pdf",
                    },
                    {
                        "type": "document",
                        "source": {"type": "text", "media_type": "text/plain", "data": "hi"},
                    },
                ],
            }
        ],
        stop_sequences=["END"],
        temperature=0.5,
        top_p=0.9,
        metadata={"user_id": "u-1"},
        stream=True,
    )
    assert out["messages"] == [
        {"role": "system", "content": [{"type": "text", "text": "Be brief"}]},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Look"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                {"type": "image_url", "image_url": {"url": "https://x/a.png"}},
                {
                    "type": "file",
                    "file": {"file_data": "data:application/pdf;base64,JVBE", "filename": "a.pdf"},
                },
                {"type": "file", "file": {"file_data": "data:text/plain;base64,aGk="}},
            ],
        },
    ]
    assert (out["max_completion_tokens"], out["stop"], out["user"]) == (100, ["END"], "u-1")
    assert (out["temperature"], out["top_p"]) == (0.5, 0.9)
    assert out["stream_options"] == {"include_usage": True}


def test_tool_use_and_results_become_tool_calls_and_tool_messages_in_order() -> None:
    out = chat(
        messages=[
            {"role": "user", "content": "Weather?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Checking"},
                    tool_use("toolu_1", "get_weather", {"city": "Paris"}),
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_2",
                        "is_error": True,
                        "content": [{"type": "text", "text": "boom"}],
                    },
                    {"type": "text", "text": "Thanks"},
                ],
            },
        ],
        tools=[WEATHER],
        tool_choice={"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
    )
    assert out["messages"][1:] == [
        {
            "role": "assistant",
            "content": [{"type": "text", "text": "Checking"}],
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "toolu_2", "content": [{"type": "text", "text": "boom"}]},
        {"role": "user", "content": [{"type": "text", "text": "Thanks"}]},
    ]
    assert out["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": WEATHER["input_schema"],
                "description": "Weather for a city",
            },
        }
    ]
    assert out["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert out["parallel_tool_calls"] is False
    assert chat(tool_choice={"type": "any"}, tools=[WEATHER])["tool_choice"] == "required"


def test_cache_marks_and_thinking_pass_on_to_claude_and_not_elsewhere() -> None:
    thinking = {"type": "thinking", "thinking": "hmm", "signature": "sig"}
    payload: dict[str, Any] = {
        "system": [{"type": "text", "text": "S", "cache_control": MARK}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "x", "cache_control": MARK}]},
            {"role": "assistant", "content": [thinking, {"type": "text", "text": "y"}]},
            {"role": "user", "content": "z"},
        ],
        "tools": [{**WEATHER, "cache_control": MARK}],
        "thinking": {"type": "enabled", "budget_tokens": 2048},
    }
    claude = chat(CLAUDE, **payload)
    assert claude["messages"][0]["content"][0]["cache_control"] == MARK
    assert claude["messages"][1]["content"][0]["cache_control"] == MARK
    assert claude["messages"][2]["thinking_blocks"] == [thinking]
    assert claude["tools"][0]["cache_control"] == MARK
    assert claude["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    other = chat(**payload)
    assert "cache_control" not in json.dumps(other)
    assert "thinking_blocks" not in other["messages"][2]
    assert "thinking" not in other and other["reasoning_effort"] == "low"
    assert "reasoning_effort" not in chat(thinking={"type": "disabled"})


@pytest.mark.parametrize(("budget", "effort"), [(1024, "low"), (4096, "medium"), (16384, "high")])
def test_thinking_budgets_map_to_the_nearest_reasoning_effort(budget: int, effort: str) -> None:
    assert reasoning_effort_for_budget(budget) == effort


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": None}, "max_tokens"),
        ({"top_k": 5}, "top_k"),
        ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools[0].type"),
        ({"tools": [{"type": "bash_20250124", "name": "bash"}]}, "tools[0].type"),
        ({"tool_choice": {"type": "sometimes"}}, "tool_choice"),
        ({"mcp_servers": [{"type": "url"}]}, "mcp_servers"),
        ({"container": "c"}, "container"),
        ({"service_tier": "priority"}, "service_tier"),
        ({"thinking": {"type": "sometimes"}}, "thinking"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0]"),
        ({"speed": "fast"}, "speed"),
        ({"output_config": {"effort": "extreme"}}, "output_config.effort"),
        ({"output_config": {"verbosity": "low"}}, "output_config.verbosity"),
        (
            {"context_management": {"edits": [{"type": "clear_tool_uses_20250919"}]}},
            "context_management.edits[0]",
        ),
        ({"messages": [{"role": ["user"], "content": "x"}]}, "messages[0]"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}],
                    }
                ]
            },
            "messages[0].content[0].source",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "search_result"}]}]},
            "messages[0].content[0].type",
        ),
        (
            {"messages": [{"role": "assistant", "content": [{"type": "server_tool_use"}]}]},
            "messages[0].content[0].type",
        ),
    ],
)
def test_what_the_pivot_cannot_express_is_a_400_naming_the_field(
    payload: dict[str, Any], param: str
) -> None:
    with pytest.raises(TranslationError) as caught:
        chat(**payload)
    assert caught.value.param == param


def test_a_backend_refusal_names_the_messages_field() -> None:
    t = PivotTranslator(GeminiChatTranslator("/v1beta/models/g"), MessagesApi(MessagesOptions()))
    body = {
        "model": "g",
        "max_tokens": 10,
        "system": "S",
        "messages": [
            {"role": "user", "content": "a"},
            {
                "role": "user",
                "content": [{"type": "image", "source": {"type": "url", "url": "https://x/a.png"}}],
            },
        ],
    }
    with pytest.raises(TranslationError) as caught:
        t.request(body, b"")
    assert caught.value.param is not None and caught.value.param.startswith("messages[1]")
    bedrock = PivotTranslator(
        BedrockConverseTranslator("meta.llama3"), MessagesApi(MessagesOptions(cache_marks=True))
    )
    with pytest.raises(TranslationError) as caught:
        bedrock.request(
            {
                **body,
                "messages": body["messages"][:1],
                "thinking": {"type": "enabled", "budget_tokens": 2000},
            },
            b"",
        )
    assert caught.value.param == "thinking"


def test_the_pivot_sends_the_chat_request() -> None:
    t = PivotTranslator(OpenAIChatTranslator(), MessagesApi(MessagesOptions()))
    up = t.request(
        {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}, b"raw"
    )
    assert up.body is not None and json.loads(up.body)["max_completion_tokens"] == 5


# -- answers through the pivot --------------------------------------------------------


def test_a_whole_answer_is_a_message_with_text_tool_use_and_usage() -> None:
    t = openai_pivot(tools=[WEATHER])
    assert t.response_headers(200, "application/json").content_type == "application/json"
    upstream = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-x",
        "choices": [
            {
                "index": 0,
                "finish_reason": "tool_calls",
                "message": {
                    "role": "assistant",
                    "content": "Let me check.",
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                        }
                    ],
                },
            }
        ],
        "usage": {
            "prompt_tokens": 12,
            "completion_tokens": 7,
            "total_tokens": 19,
            "prompt_tokens_details": {"cached_tokens": 2},
        },
    }
    out = t.response_body(json.dumps(upstream).encode(), True)
    assert out.complete and out.error is None
    assert out.usage == TokenUsage(12, 7, 19, cached_input_tokens=2)
    assert out.body is not None
    message = Message.model_validate_json(out.body)
    assert message.model == "claude"
    assert message.stop_reason == "tool_use"
    assert [b.type for b in message.content] == ["text", "tool_use"]
    use = message.content[1]
    assert use.type == "tool_use" and (use.id, use.name, use.input) == (
        "call_1",
        "get_weather",
        {"city": "Paris"},
    )
    # Anthropic's input_tokens leave out the cache reads OpenAI counts in the prompt.
    assert (
        message.usage.input_tokens,
        message.usage.cache_read_input_tokens,
        message.usage.output_tokens,
    ) == (10, 2, 7)


@pytest.mark.parametrize(
    ("finish", "stop"),
    [("stop", "end_turn"), ("length", "max_tokens"), ("content_filter", "refusal")],
)
def test_finish_reasons_become_stop_reasons(finish: str, stop: str) -> None:
    t = openai_pivot()
    t.response_headers(200, "application/json")
    upstream = {
        "choices": [
            {"index": 0, "finish_reason": finish, "message": {"role": "assistant", "content": "x"}}
        ]
    }
    out = t.response_body(json.dumps(upstream).encode(), True)
    assert out.body is not None and Message.model_validate_json(out.body).stop_reason == stop


def test_the_stream_runs_from_message_start_to_message_stop() -> None:
    t = openai_pivot(tools=[WEATHER], stream=True)
    assert t.response_headers(200, "text/event-stream").content_type == "text/event-stream"
    out = t.response_body(chunks(*ANSWER), False)
    assert out.complete and out.error is None
    assert out.body is not None
    events = events_of(out.body)
    assert [e["type"] for e in events] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert [e.get("index") for e in events[1:9]] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert events[5]["content_block"] == tool_use("call_1", "get_weather", {})
    assert "".join(e["delta"]["partial_json"] for e in events[6:8]) == '{"city":"Paris"}'
    assert events[-2]["delta"]["stop_reason"] == "tool_use"
    assert events[-2]["usage"] == {
        "input_tokens": 10,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 2,
        "output_tokens": 7,
    }


def test_reasoning_streams_as_thinking_blocks_with_their_signature() -> None:
    # The chat chunks a chat translator writes for signed reasoning
    # (docs/client-apis.md, "Reasoning").
    t = PivotTranslator(OpenAIChatTranslator(), MessagesApi(CLAUDE))
    t.request(
        {
            "model": "c",
            "max_tokens": 100,
            "stream": True,
            "messages": [{"role": "user", "content": "x"}],
        },
        b"",
    )
    t.response_headers(200, "text/event-stream")
    # What a chat translator writes for a signed reasoning block, then the answer.
    body = chunks(
        delta({"role": "assistant", "content": ""}),
        delta({"reasoning_content": "Hmm, "}),
        delta({"reasoning_content": "ok."}),
        delta(
            {"thinking_blocks": [{"type": "thinking", "thinking": "Hmm, ok.", "signature": "SIG"}]}
        ),
        delta({"thinking_blocks": [{"type": "redacted_thinking", "data": "ENC"}]}),
        delta({"content": "Hi"}),
        delta({}, "stop"),
    )
    out = t.response_body(body, False)
    assert out.body is not None
    events = events_of(out.body)
    starts = [e["content_block"]["type"] for e in events if e["type"] == "content_block_start"]
    assert starts == ["thinking", "redacted_thinking", "text"]
    signature = [
        e["delta"]
        for e in events
        if e["type"] == "content_block_delta" and e["delta"]["type"] == "signature_delta"
    ]
    assert signature == [{"type": "signature_delta", "signature": "SIG"}]


def test_an_upstream_error_event_is_an_anthropic_error_event() -> None:
    t = openai_pivot(stream=True)
    t.response_headers(200, "text/event-stream")
    body = b"data: " + json.dumps(ANSWER[0]).encode() + b"\n\n"
    body += b'data: {"error":{"message":"slow down","type":"rate_limit_error","code":null}}\n\n'
    out = t.response_body(body, False)
    assert out.complete and out.error == "upstream_stream_error"
    assert out.body is not None
    error = {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}
    assert events_of(out.body)[-1] == error


def test_a_truncated_stream_ends_with_an_error_event() -> None:
    t = openai_pivot(stream=True)
    t.response_headers(200, "text/event-stream")
    out = t.response_body(b"data: " + json.dumps(ANSWER[1]).encode() + b"\n\n", True)
    assert out.complete and out.error == "upstream_truncated"
    assert out.body is not None and events_of(out.body)[-1]["type"] == "error"
    assert isinstance(t, StreamEnding)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=3000), max_size=12))
def test_any_split_of_the_upstream_stream_gives_the_same_events(cuts: list[int]) -> None:
    whole = chunks(*ANSWER)
    want = openai_pivot(tools=[WEATHER], stream=True)
    want.response_headers(200, "text/event-stream")
    expected = want.response_body(whole, True).body or b""
    t = openai_pivot(tools=[WEATHER], stream=True)
    t.response_headers(200, "text/event-stream")
    got, start = b"", 0
    for cut in sorted({c % len(whole) for c in cuts} | {len(whole)}):
        got += t.response_body(whole[start:cut], cut == len(whole)).body or b""
        start = cut
    # message_start carries the usage known when it is written; the rest must be equal.
    assert got.split(b"\n\n", 1)[1] == expected.split(b"\n\n", 1)[1]


def test_upstream_errors_become_anthropic_errors_with_the_same_status() -> None:
    t = openai_pivot()
    body = t.error_body(429, b'{"error":{"message":"slow down","type":"rate_limit_error"}}', {})
    assert json.loads(body or b"") == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "slow down"},
    }
    gemini = PivotTranslator(GeminiChatTranslator("/m"), MessagesApi(MessagesOptions()))
    body = gemini.error_body(
        400, b'{"error":{"code":400,"message":"bad arg","status":"INVALID_ARGUMENT"}}', {}
    )
    assert json.loads(body or b"")["error"] == {
        "type": "invalid_request_error",
        "message": "bad arg",
    }


# -- passthrough (Anthropic, Claude on Vertex AI) -------------------------------------


def anthropic_sse(*events: dict[str, Any]) -> bytes:
    return b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events)


STREAM = (
    {
        "type": "message_start",
        "message": {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "c",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 4, "output_tokens": 1},
        },
    },
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
    {"type": "content_block_stop", "index": 0},
    {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": 3},
    },
    {"type": "message_stop"},
)


def test_passthrough_to_anthropic_keeps_the_client_s_version_and_swaps_the_model() -> None:
    t = MessagesPassthroughTranslator("claude-3-5", client_version="2023-06-01")
    same = t.request({"model": "claude-3-5", "max_tokens": 1, "messages": []}, b"raw")
    assert (same.body, same.path, same.headers) == (None, "/v1/messages", ())
    t = MessagesPassthroughTranslator("claude-3-5", version="2023-01-01")
    up = t.request({"model": "sonnet", "max_tokens": 1}, b"")
    assert json.loads(up.body or b"") == {"model": "claude-3-5", "max_tokens": 1}
    assert up.headers == (("anthropic-version", "2023-01-01"),)


def test_passthrough_to_vertex_names_the_model_in_the_path() -> None:
    t = MessagesPassthroughTranslator("claude-x@1", vertex=VertexRawPredict("/v1/projects/p/x"))
    up = t.request({"model": "c", "max_tokens": 1, "stream": True}, b"")
    assert up.path == "/v1/projects/p/x:streamRawPredict"
    assert json.loads(up.body or b"") == {
        "max_tokens": 1,
        "stream": True,
        "anthropic_version": "vertex-2023-10-16",
    }


def test_passthrough_streams_pass_unchanged_and_complete_at_message_stop() -> None:
    t = MessagesPassthroughTranslator("c")
    t.response_headers(200, "text/event-stream; charset=utf-8")
    out = t.response_body(anthropic_sse(*STREAM[:3]), False)
    assert out.body is None and not out.complete
    assert out.usage == TokenUsage(4, 1, 5, cached_input_tokens=None, cache_write_input_tokens=None)
    out = t.response_body(anthropic_sse(*STREAM[3:]), False)
    assert out.body is None and out.complete and out.error is None
    assert out.usage is not None and out.usage.output_tokens == 3
    assert t.response_body(b"0\r\n", True).body == b""


def test_passthrough_reports_no_usage_before_the_backend_does() -> None:
    t = MessagesPassthroughTranslator("c")
    t.response_headers(200, "text/event-stream")
    assert t.response_body(b"event: ping\n", False).usage is None


def test_passthrough_error_events_truncation_and_broken_events() -> None:
    t = MessagesPassthroughTranslator("c")
    t.response_headers(200, "text/event-stream")
    out = t.response_body(
        anthropic_sse(
            STREAM[0], {"type": "error", "error": {"type": "overloaded_error", "message": "o"}}
        ),
        False,
    )
    assert out.complete and out.error == "upstream_stream_error" and out.body is None
    t = MessagesPassthroughTranslator("c")
    t.response_headers(200, "text/event-stream")
    out = t.response_body(anthropic_sse(*STREAM[:3]), True)
    assert out.complete and out.error == "upstream_truncated"
    assert out.body is not None and events_of(out.body)[-1]["type"] == "error"
    t = MessagesPassthroughTranslator("c")
    t.response_headers(200, "text/event-stream")
    out = t.response_body(b"event: content_block_delta\ndata: {oops\n\n", False)
    assert out.complete and out.error == "upstream_invalid_json"
    assert t.end_stream("x", "y").startswith(b"event: error\n")


def test_passthrough_json_answers_pass_unchanged_with_their_usage() -> None:
    t = MessagesPassthroughTranslator("c")
    t.response_headers(200, "application/json")
    answer = {
        "id": "m",
        "content": [],
        "usage": {"input_tokens": 3, "cache_read_input_tokens": 2, "output_tokens": 4},
    }
    out = t.response_body(json.dumps(answer).encode(), True)
    assert out.body is None and out.complete
    assert out.usage == TokenUsage(5, 4, 9, cached_input_tokens=2)


def test_passthrough_errors_keep_anthropic_s_shape_and_wrap_others() -> None:
    t = MessagesPassthroughTranslator("c")
    own = b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}'
    assert t.error_body(529, own, {}) is None
    google = b'{"error":{"code":403,"message":"denied","status":"PERMISSION_DENIED"}}'
    assert json.loads(t.error_body(403, google, {}) or b"") == {
        "type": "error",
        "error": {"type": "permission_error", "message": "denied"},
    }
    assert json.loads(t.error_body(502, b"<html>", {}) or b"")["error"]["type"] == "api_error"


def test_count_tokens_passes_through_and_reports_no_usage() -> None:
    t = CountTokensTranslator("claude-3-5", client_version="2023-06-01")
    up = t.request({"model": "sonnet", "messages": []}, b"")
    assert up.path == "/v1/messages/count_tokens" and up.headers == ()
    assert json.loads(up.body or b"")["model"] == "claude-3-5"
    assert not t.response_headers(200, "application/json").streamed
    out = t.response_body(b'{"input_tokens":12}', True)
    assert (out.body, out.usage, out.complete) == (None, None, True)
    MessageTokensCount.model_validate_json(b'{"input_tokens":12}')


def test_the_claude_chat_translator_is_no_pivot_for_messages() -> None:
    # Anthropic itself gets the passthrough; the chat translator stays for chat clients.
    assert (
        AnthropicMessagesTranslator("c")
        .request({"model": "c", "messages": [{"role": "user", "content": "x"}]}, b"")
        .path
        == "/v1/messages"
    )


def test_message_start_goes_out_with_the_first_chunk_before_any_content() -> None:
    t = openai_pivot(stream=True)
    t.response_headers(200, "text/event-stream")
    first = t.response_body(b"data: " + json.dumps(ANSWER[0]).encode() + b"\n\n", False)
    assert first.body is not None
    assert [e["type"] for e in events_of(first.body)] == ["message_start"]


def test_what_claude_code_sends_maps_for_every_backend() -> None:
    """Claude Code's own request fields (captured from claude-cli 2.1): system messages
    inside ``messages``, adaptive thinking with an effort, context editing that clears
    thinking, a request-wide cache mark."""
    payload: dict[str, Any] = {
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "<reminder>"}]},
            {"role": "system", "content": [{"type": "text", "text": "# Environment"}]},
            {"role": "user", "content": "Say hello"},
        ],
        "thinking": {"type": "adaptive", "display": "omitted"},
        "output_config": {"effort": "high"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "cache_control": MARK,
        "speed": "standard",
    }
    other = chat(**payload)
    assert [m["role"] for m in other["messages"]] == ["user", "system", "user"]
    assert other["messages"][1]["content"] == [{"type": "text", "text": "# Environment"}]
    assert other["reasoning_effort"] == "high"
    assert "cache_control" not in json.dumps(other)
    claude = chat(CLAUDE, **payload)
    assert claude["thinking"] == {"type": "adaptive", "display": "omitted"}
    assert claude["output_config"] == {"effort": "high"}  # Claude's own, for Converse
    assert claude["messages"][-1]["cache_control"] == MARK
    bedrock = PivotTranslator(BedrockConverseTranslator("anthropic.claude-x"), MessagesApi(CLAUDE))
    body = {"model": "c", "max_tokens": 100, **payload}
    sent = json.loads(bedrock.request(body, b"").body or b"")
    assert sent["additionalModelRequestFields"] == {
        "thinking": {"type": "adaptive", "display": "omitted"},
        "output_config": {"effort": "high"},
    }
    llama = PivotTranslator(
        BedrockConverseTranslator("meta.llama3"), MessagesApi(MessagesOptions(cache_marks=True))
    )
    with pytest.raises(TranslationError) as caught:  # effort means reasoning: Claude only there
        llama.request(body, b"")
    assert caught.value.param == "output_config.effort"


def test_output_config_format_is_a_structured_answer() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    out = chat(output_config={"format": {"type": "json_schema", "schema": schema}})
    assert out["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "output", "strict": True, "schema": schema},
    }


def test_a_keep_alive_is_a_comment_before_the_message_and_a_ping_after() -> None:
    stream = MessagesEventStream("msg_1", "m")
    stream.keepalive()
    assert stream.output() == b": ping\n\n"
    stream.start()
    stream.keepalive()
    assert stream.output().endswith(b'event: ping\ndata: {"type":"ping"}\n\n')
