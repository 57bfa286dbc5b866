"""Anthropic Messages route: JSON, SSE with ``event:`` lines, tools and errors."""

from __future__ import annotations

import json
from typing import Any

import pytest

from aigateway.mock_backend import MockBackendServer, reply_pieces, reply_text
from aigateway.mock_backend.reasoning import signature

from .helpers import parse_sse, raw_post

HEADERS = {"x-api-key": "sk-ant-test", "anthropic-version": "2023-06-01"}
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "when": {"type": ["string", "null"]}},
        "required": ["city"],
    },
}
REQUEST: dict[str, Any] = {
    "model": "claude-test",
    "max_tokens": 1024,
    "system": [{"type": "text", "text": "Be kind."}],
    "messages": [
        {"role": "user", "content": "Is it sunny in Paris today?"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_1",
                    "content": [{"type": "text", "text": "sunny, 25 C"}],
                },
                {"type": "text", "text": "thanks"},
            ],
        },
    ],
}
REQUEST_WORDS = 2 + 6 + 3 + 3 + 1


async def post(server: MockBackendServer, body: Any, **knobs: str) -> Any:
    return await raw_post(server.port, "/v1/messages", body, {**HEADERS, **knobs})


async def test_message_json(mock_server: MockBackendServer) -> None:
    response = await post(mock_server, REQUEST)
    assert response.status == 200
    assert response.headers["request-id"]
    message = json.loads(response.body)
    assert message["id"].startswith("msg_")
    assert message["type"] == "message"
    assert message["role"] == "assistant"
    assert message["model"] == "claude-test"
    assert message["content"] == [{"type": "text", "text": reply_text(8)}]
    assert message["stop_reason"] == "end_turn"
    assert message["stop_sequence"] is None
    assert message["usage"] == {
        "input_tokens": REQUEST_WORDS,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": 8,
    }


async def test_system_as_a_string_counts(mock_server: MockBackendServer) -> None:
    body = {**REQUEST, "system": "You are a careful assistant."}
    message = json.loads((await post(mock_server, body)).body)
    assert message["usage"]["input_tokens"] == REQUEST_WORDS - 2 + 5


async def test_stream_events_like_anthropic(mock_server: MockBackendServer) -> None:
    response = await post(mock_server, {**REQUEST, "stream": True}, **{"x-mock-output-tokens": "3"})
    assert response.status == 200
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert response.complete
    events = parse_sse(response.body.decode())
    assert [chunk.decode() for chunk in response.chunks] == [
        f"event: {event.event}\ndata: {event.data}\n\n" for event in events
    ]
    assert [event.event for event in events] == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    payloads = [event.json() for event in events]
    assert all(p["type"] == e.event for p, e in zip(payloads, events, strict=True))
    start = payloads[0]["message"]
    assert start["content"] == []
    assert start["stop_reason"] is None
    assert start["usage"]["input_tokens"] == REQUEST_WORDS
    assert start["usage"]["output_tokens"] == 1
    assert payloads[1] == {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "text", "text": ""},
    }
    deltas = [p["delta"] for p in payloads[3:6]]
    assert deltas == [{"type": "text_delta", "text": piece} for piece in reply_pieces(3)]
    assert payloads[6] == {"type": "content_block_stop", "index": 0}
    assert payloads[7] == {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        # cumulative, input counts included, as Anthropic's now are
        "usage": {
            "input_tokens": REQUEST_WORDS,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": 3,
        },
    }
    assert payloads[8] == {"type": "message_stop"}


async def test_max_tokens_stops_the_reply(mock_server: MockBackendServer) -> None:
    body = {**REQUEST, "max_tokens": 2}
    message = json.loads((await post(mock_server, body)).body)
    assert message["content"][0]["text"] == reply_text(2)
    assert message["stop_reason"] == "max_tokens"
    assert message["usage"]["output_tokens"] == 2


async def test_tool_use_json(mock_server: MockBackendServer) -> None:
    body = {**REQUEST, "tools": [WEATHER_TOOL]}
    response = await post(mock_server, body, **{"x-mock-tool-call": "get_weather"})
    message = json.loads(response.body)
    [block] = message["content"]
    assert block["type"] == "tool_use"
    assert block["id"].startswith("toolu_")
    assert block["name"] == "get_weather"
    assert block["input"] == {"city": "mock"}
    assert message["stop_reason"] == "tool_use"
    assert message["usage"]["output_tokens"] == 8


async def test_tool_use_stream(mock_server: MockBackendServer) -> None:
    body = {
        **REQUEST,
        "tools": [WEATHER_TOOL],
        "tool_choice": {"type": "tool", "name": "get_weather"},
        "stream": True,
    }
    response = await post(mock_server, body, **{"x-mock-output-tokens": "4"})
    payloads = [event.json() for event in parse_sse(response.body.decode())]
    block = payloads[1]["content_block"]
    assert block["type"] == "tool_use"
    assert block["name"] == "get_weather"
    assert block["input"] == {}
    deltas = [p["delta"] for p in payloads if p["type"] == "content_block_delta"]
    assert len(deltas) == 4
    assert {d["type"] for d in deltas} == {"input_json_delta"}
    assert json.loads("".join(d["partial_json"] for d in deltas)) == {"city": "mock"}
    assert payloads[-2]["delta"]["stop_reason"] == "tool_use"
    assert payloads[-2]["usage"]["output_tokens"] == 4


async def test_tool_choice_any_uses_the_first_tool(mock_server: MockBackendServer) -> None:
    other = {"name": "noop", "input_schema": {"type": "object"}}
    body = {**REQUEST, "tools": [other, WEATHER_TOOL], "tool_choice": {"type": "any"}}
    message = json.loads((await post(mock_server, body)).body)
    assert message["content"][0]["name"] == "noop"
    assert message["content"][0]["input"] == {}


async def test_cached_tokens_knob(mock_server: MockBackendServer) -> None:
    response = await post(mock_server, REQUEST, **{"x-mock-cached-tokens": "5"})
    usage = json.loads(response.body)["usage"]
    assert usage["input_tokens"] == REQUEST_WORDS - 5
    assert usage["cache_read_input_tokens"] == 5


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (529, "overloaded_error"),
    ],
)
async def test_status_knob_answers_anthropic_errors(
    mock_server: MockBackendServer, status: int, kind: str
) -> None:
    response = await post(
        mock_server, {**REQUEST, "stream": True}, **{"x-mock-status": str(status)}
    )
    assert response.status == status
    assert response.headers["content-type"] == "application/json"
    body = json.loads(response.body)
    assert body["type"] == "error"
    assert body["error"]["type"] == kind
    assert "x-mock-status" in body["error"]["message"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{oops", "JSON"),
        ({"model": "c", "messages": [{"role": "user", "content": "x"}]}, "max_tokens"),
        ({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": "c", "max_tokens": 5}, "messages"),
    ],
)
async def test_bad_requests_get_anthropic_error_bodies(
    mock_server: MockBackendServer, body: Any, message: str
) -> None:
    response = await post(mock_server, body)
    assert response.status == 400
    error = json.loads(response.body)
    assert error["type"] == "error"
    assert error["error"]["type"] == "invalid_request_error"
    assert message in error["error"]["message"]


THINKING = {"type": "enabled", "budget_tokens": 1024}


async def test_thinking_answers_a_signed_thinking_block(mock_server: MockBackendServer) -> None:
    body = {**REQUEST, "max_tokens": 2048, "thinking": THINKING, "service_tier": "auto"}
    body["messages"] = [{"role": "user", "content": "Hi"}]
    knobs = {"x-mock-output-tokens": "2", "x-mock-reasoning-tokens": "3"}
    message = json.loads((await post(mock_server, body, **knobs)).body)
    assert message["content"] == [
        {"type": "thinking", "thinking": reply_text(3), "signature": signature(reply_text(3))},
        {"type": "text", "text": reply_text(2)},
    ]
    assert message["usage"]["output_tokens"] == 5
    assert message["usage"]["service_tier"] == "standard"
    events = parse_sse((await post(mock_server, {**body, "stream": True}, **knobs)).body.decode())
    names = [e.event for e in events]
    assert names[:4] == ["message_start", "content_block_start", "content_block_delta", "ping"]
    deltas = [e.json()["delta"] for e in events if e.event == "content_block_delta"]
    assert [d.get("thinking") for d in deltas[:3]] == list(reply_pieces(3))
    assert deltas[3] == {"type": "signature_delta", "signature": signature(reply_text(3))}
    assert events[-2].json()["usage"]["output_tokens"] == 5


async def test_replayed_thinking_is_checked(mock_server: MockBackendServer) -> None:
    use = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}
    result = {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}
    signed = {"type": "thinking", "thinking": "hm", "signature": signature("hm")}

    def history(assistant: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            **REQUEST,
            "max_tokens": 2048,
            "thinking": THINKING,
            "messages": [
                {"role": "user", "content": "Weather?"},
                {"role": "assistant", "content": assistant},
                {"role": "user", "content": [result]},
            ],
        }

    assert (await post(mock_server, history([signed, use]))).status == 200
    missing = await post(mock_server, history([use]))
    assert missing.status == 400 and b"thinking block" in missing.body
    forged = await post(mock_server, history([{**signed, "signature": "x"}, use]))
    assert forged.status == 400 and b"signature" in forged.body


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"max_tokens": 1024, "thinking": THINKING}, "greater than"),
        ({"service_tier": "priority"}, "service_tier"),
        (
            {"system": [{"type": "text", "text": "x", "cache_control": {"type": "x"}}]},
            "cache_control",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "document", "source": {"type": "url"}}]}
                ]
            },
            "document",
        ),
    ],
)
async def test_what_anthropic_refuses(
    mock_server: MockBackendServer, change: dict[str, Any], message: str
) -> None:
    response = await post(mock_server, {**REQUEST, **change})
    assert response.status == 400
    assert message in json.loads(response.body)["error"]["message"]


async def test_cache_write_tokens_knob(mock_server: MockBackendServer) -> None:
    knobs = {"x-mock-cached-tokens": "2", "x-mock-cache-write-tokens": "3"}
    usage = json.loads((await post(mock_server, REQUEST, **knobs)).body)["usage"]
    assert usage["input_tokens"] == REQUEST_WORDS - 5
    assert (usage["cache_read_input_tokens"], usage["cache_creation_input_tokens"]) == (2, 3)
