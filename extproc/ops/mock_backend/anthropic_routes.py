"""Anthropic route: ``POST /v1/messages``.

Answers a ``message`` object (``content`` blocks ``text`` or ``tool_use``,
``stop_reason``, ``usage``), or with ``"stream": true`` SSE with ``event:`` lines as
Anthropic sends them: ``message_start`` (``usage.output_tokens`` 1),
``content_block_start``, ``ping``, one ``content_block_delta`` per word
(``text_delta``) or tool-input fragment (``input_json_delta``), ``content_block_stop``,
``message_delta`` (``stop_reason``, ``usage.output_tokens``), ``message_stop``.
Errors are ``{"type": "error", "error": {"type", "message"}}``; in a stream they are an
``event: error``. ``model``, ``max_tokens`` and ``messages`` are required.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from aiohttp import web

from .errors import ANTHROPIC_ERRORS, MockError
from .prompt_words import anthropic_prompt_words
from .routing import MockCall, dumps, provider_route, send_json
from .streaming import EventKind, StreamFaults, send_stream, sse_event
from .tools import ToolDefinition, argument_fragments, arguments_json, mock_arguments, select_tool
from .words import limit_tokens, reply_pieces, reply_text

__all__ = ["add_anthropic_routes", "messages_reply"]

_SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}
_STREAM_ERROR_TYPE = "overloaded_error"


def add_anthropic_routes(app: web.Application) -> None:
    """Register the Anthropic route on ``app``."""
    app.router.add_post("/v1/messages", provider_route(ANTHROPIC_ERRORS, _messages))


async def _messages(call: MockCall) -> web.StreamResponse:
    model = call.payload.get("model")
    if not isinstance(model, str) or not model:
        raise MockError(400, "model: Field required")
    return await messages_reply(call, model)


async def messages_reply(call: MockCall, model: str) -> web.StreamResponse:
    """Answer a Messages request body for ``model`` (shared with Claude on Vertex AI)."""
    payload = call.payload
    knobs = call.knobs
    max_tokens = payload.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise MockError(400, "max_tokens: Field required (an integer >= 1)")
    messages = payload.get("messages")
    if not isinstance(messages, list) or not messages:
        raise MockError(400, "messages: Field required (a non-empty list)")
    tool = select_tool(_tools(payload), header=knobs.tool_call, forced=_forced_tool(payload))
    if tool is None:
        tokens, truncated = limit_tokens(knobs.output_tokens, max_tokens)
        stop_reason = "max_tokens" if truncated else "end_turn"
    else:
        tokens, stop_reason = knobs.output_tokens, "tool_use"
    seq = call.state.next_id()
    prompt = anthropic_prompt_words(payload)
    cached = min(knobs.cached_tokens, prompt)
    message_id = f"msg_mock{seq:020d}"
    tool_use_id = f"toolu_mock{seq:016d}"
    headers = {"request-id": f"req_mock{seq:020d}"}

    def usage(output_tokens: int) -> dict[str, int]:
        return {
            "input_tokens": prompt - cached,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": cached,
            "output_tokens": output_tokens,
        }

    def message(content: list[dict[str, Any]], stop: str | None, out: int) -> dict[str, Any]:
        return {
            "id": message_id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": usage(out),
        }

    if payload.get("stream") is not True:
        if tool is None:
            content: list[dict[str, Any]] = [{"type": "text", "text": reply_text(tokens)}]
        else:
            arguments = mock_arguments(tool.schema)
            block = {"type": "tool_use", "id": tool_use_id, "name": tool.name, "input": arguments}
            content = [block]
        body = dumps(message(content, stop_reason, tokens))
        return await send_json(call.request, knobs, body, headers=headers)

    def events() -> Iterator[tuple[EventKind, bytes]]:
        yield EventKind.OPEN, _event("message_start", {"message": message([], None, 1)})
        if tool is None:
            start: dict[str, Any] = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": piece} for piece in reply_pieces(tokens)]
        else:
            start = {"type": "tool_use", "id": tool_use_id, "name": tool.name, "input": {}}
            fragments = argument_fragments(arguments_json(tool.schema), tokens)
            deltas = [{"type": "input_json_delta", "partial_json": f} for f in fragments]
        yield EventKind.OPEN, _event("content_block_start", {"index": 0, "content_block": start})
        yield EventKind.OPEN, _event("ping", {})
        for delta in deltas:
            yield EventKind.TOKEN, _event("content_block_delta", {"index": 0, "delta": delta})
        yield EventKind.CLOSE, _event("content_block_stop", {"index": 0})
        stop = {"stop_reason": stop_reason, "stop_sequence": None}
        yield (
            EventKind.CLOSE,
            _event("message_delta", {"delta": stop, "usage": {"output_tokens": tokens}}),
        )
        yield EventKind.FINAL, _event("message_stop", {})

    faults = StreamFaults(
        bad_json=sse_event(b'{"type":"content_block_delta","index":0,', "content_block_delta"),
        error_event=_error_event,
    )
    return await send_stream(call, events(), faults, {**_SSE_HEADERS, **headers})


def _event(name: str, body: dict[str, Any]) -> bytes:
    return sse_event(dumps({"type": name, **body}), name)


def _error_event(error_type: str | None) -> bytes:
    kind = error_type or _STREAM_ERROR_TYPE
    message = "Overloaded" if kind == _STREAM_ERROR_TYPE else "mock stream error"
    error = {"type": kind, "message": message}
    return sse_event(dumps({"type": "error", "error": error}), "error")


def _tools(payload: dict[str, Any]) -> list[ToolDefinition]:
    tools = payload.get("tools")
    if not isinstance(tools, list):
        return []
    return [
        ToolDefinition(tool["name"], tool.get("input_schema"))
        for tool in tools
        if isinstance(tool, dict) and isinstance(tool.get("name"), str)
    ]


def _forced_tool(payload: dict[str, Any]) -> str | None:
    choice = payload.get("tool_choice")
    if not isinstance(choice, dict):
        return None
    if choice.get("type") == "tool" and isinstance(choice.get("name"), str):
        return str(choice["name"])
    if choice.get("type") == "any":
        tools = _tools(payload)
        return tools[0].name if tools else None
    return None
