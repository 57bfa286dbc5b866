"""Anthropic routes: ``POST /v1/messages`` and ``POST /v1/messages/count_tokens``.

Answers a ``message`` object (``content`` blocks ``text`` or ``tool_use``,
``stop_reason``, ``usage``), or with ``"stream": true`` SSE with ``event:`` lines as
Anthropic sends them: ``message_start`` (``usage.output_tokens`` 1),
``content_block_start``, ``ping``, one ``content_block_delta`` per word
(``text_delta``) or tool-input fragment (``input_json_delta``), ``content_block_stop``,
``message_delta`` (``stop_reason``, and the cumulative ``usage``: input, cache and output
tokens), ``message_stop``.
Errors are ``{"type": "error", "error": {"type", "message"}}``; in a stream they are an
``event: error``. ``model``, ``max_tokens`` and ``messages`` are required.

With thinking enabled (see :mod:`.reasoning`) the answer starts with a ``thinking``
block (streamed as ``thinking_delta`` words, a ``ping``, then ``signature_delta``).
``cache_control`` on system blocks, content blocks and tools must be
``{"type": "ephemeral"}`` (``ttl`` 5m or 1h); ``x-mock-cache-write-tokens`` reports
cache writes as ``cache_creation_input_tokens``. ``service_tier`` must be ``auto`` or
``standard_only``; ``usage.service_tier`` is then ``standard``. Documents must be
base64 PDFs or plain text. ``count_tokens`` answers ``{"input_tokens": N}``, N the
prompt words of the body (``model`` and ``messages`` required).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from aiohttp import web

from .errors import ANTHROPIC_ERRORS, MockError
from .prompt_words import anthropic_prompt_words
from .reasoning import Thinking, check_cache_control, check_history, requested_thinking
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
    app.router.add_post(
        "/v1/messages/count_tokens", provider_route(ANTHROPIC_ERRORS, count_tokens_reply)
    )


async def _messages(call: MockCall) -> web.StreamResponse:
    model = call.payload.get("model")
    if not isinstance(model, str) or not model:
        raise MockError(400, "model: Field required")
    return await messages_reply(call, model)


async def count_tokens_reply(call: MockCall) -> web.StreamResponse:
    """Answer a count_tokens body (shared with Vertex AI's count-tokens endpoint)."""
    if not isinstance(call.payload.get("model"), str) or not call.payload["model"]:
        raise MockError(400, "model: Field required")
    if not isinstance(call.payload.get("messages"), list):
        raise MockError(400, "messages: Field required")
    body = dumps({"input_tokens": anthropic_prompt_words(call.payload)})
    return await send_json(call.request, call.knobs, body)


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
    thinking = requested_thinking(payload.get("thinking"), max_tokens, knobs)
    _check_request(payload, thinking is not None)
    tool = select_tool(_tools(payload), header=knobs.tool_call, forced=_forced_tool(payload))
    if tool is None:
        tokens, truncated = limit_tokens(knobs.output_tokens, max_tokens)
        stop_reason = "max_tokens" if truncated else "end_turn"
    else:
        tokens, stop_reason = knobs.output_tokens, "tool_use"
    seq = call.state.next_id()
    prompt = anthropic_prompt_words(payload)
    cached = min(knobs.cached_tokens, prompt)
    written = min(knobs.cache_write_tokens, prompt - cached)
    thought = len(thinking.pieces) if thinking is not None else 0
    message_id = f"msg_mock{seq:020d}"
    tool_use_id = f"toolu_mock{seq:016d}"
    headers = {"request-id": f"req_mock{seq:020d}"}

    def usage(output_tokens: int) -> dict[str, Any]:
        out: dict[str, Any] = {
            "input_tokens": prompt - cached - written,
            "cache_creation_input_tokens": written,
            "cache_read_input_tokens": cached,
            "output_tokens": output_tokens,
        }
        if "service_tier" in payload:
            out["service_tier"] = "standard"
        return out

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
        content: list[dict[str, Any]] = []
        if thinking is not None:
            content.append(
                {"type": "thinking", "thinking": thinking.text, "signature": thinking.signature}
            )
        if tool is None:
            content.append({"type": "text", "text": reply_text(tokens)})
        else:
            arguments = mock_arguments(tool.schema)
            block = {"type": "tool_use", "id": tool_use_id, "name": tool.name, "input": arguments}
            content.append(block)
        body = dumps(message(content, stop_reason, tokens + thought))
        return await send_json(call.request, knobs, body, headers=headers)

    def events() -> Iterator[tuple[EventKind, bytes]]:
        yield EventKind.OPEN, _event("message_start", {"message": message([], None, 1)})
        index = 0
        if thinking is not None:
            yield from _thinking_events(thinking)
            index = 1
        if tool is None:
            start: dict[str, Any] = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": piece} for piece in reply_pieces(tokens)]
        else:
            start = {"type": "tool_use", "id": tool_use_id, "name": tool.name, "input": {}}
            fragments = argument_fragments(arguments_json(tool.schema), tokens)
            deltas = [{"type": "input_json_delta", "partial_json": f} for f in fragments]
        start_event = {"index": index, "content_block": start}
        yield EventKind.OPEN, _event("content_block_start", start_event)
        yield EventKind.OPEN, _event("ping", {})
        for delta in deltas:
            yield EventKind.TOKEN, _event("content_block_delta", {"index": index, "delta": delta})
        yield EventKind.CLOSE, _event("content_block_stop", {"index": index})
        stop = {"stop_reason": stop_reason, "stop_sequence": None}
        # Cumulative, as Anthropic's message_delta now reports it (input counts included).
        end_usage = {k: v for k, v in usage(tokens + thought).items() if k != "service_tier"}
        yield EventKind.CLOSE, _event("message_delta", {"delta": stop, "usage": end_usage})
        yield EventKind.FINAL, _event("message_stop", {})

    faults = StreamFaults(
        bad_json=sse_event(b'{"type":"content_block_delta","index":0,', "content_block_delta"),
        error_event=_error_event,
        keepalive=_event("ping", {}),
    )
    return await send_stream(call, events(), faults, {**_SSE_HEADERS, **headers})


def _thinking_events(thinking: Thinking) -> Iterator[tuple[EventKind, bytes]]:
    """The thinking block at index 0, as Claude streams it (a ``ping`` inside)."""
    start = {"type": "thinking", "thinking": "", "signature": ""}
    yield EventKind.OPEN, _event("content_block_start", {"index": 0, "content_block": start})
    for i, piece in enumerate(thinking.pieces):
        delta = {"type": "thinking_delta", "thinking": piece}
        yield EventKind.OPEN, _event("content_block_delta", {"index": 0, "delta": delta})
        if i == 0:
            yield EventKind.OPEN, _event("ping", {})
    delta = {"type": "signature_delta", "signature": thinking.signature}
    yield EventKind.OPEN, _event("content_block_delta", {"index": 0, "delta": delta})
    yield EventKind.OPEN, _event("content_block_stop", {"index": 0})


def _check_request(payload: dict[str, Any], thinking_on: bool) -> None:
    """What Anthropic refuses and the gateway must get right: cache marks, documents,
    service tiers, replayed thinking."""
    tier = payload.get("service_tier")
    if tier is not None and tier not in ("auto", "standard_only"):
        raise MockError(400, "service_tier: Input should be 'auto' or 'standard_only'")
    system = payload.get("system")
    blocks: list[Any] = list(system) if isinstance(system, list) else []
    for message in payload["messages"]:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            blocks.extend(content)
            for block in content:
                inner = block.get("content") if isinstance(block, dict) else None
                if block.get("type") == "tool_result" and isinstance(inner, list):
                    blocks.extend(inner)
    tools = payload.get("tools")
    blocks.extend(tools if isinstance(tools, list) else ())
    for block in blocks:
        if not isinstance(block, dict):
            continue
        if "cache_control" in block:
            check_cache_control(block["cache_control"], "cache_control", "ephemeral")
        if block.get("type") == "document":
            source = block.get("source")
            if (
                not isinstance(source, dict)
                or source.get("type") not in ("base64", "text")
                or not isinstance(source.get("data"), str)
            ):
                raise MockError(400, "document.source: expected a base64 PDF or plain text")
    check_history(
        payload["messages"],
        thinking_on,
        is_thinking=lambda b: b.get("type") in ("thinking", "redacted_thinking"),
        is_tool_use=lambda b: b.get("type") == "tool_use",
        signed=lambda b: (
            (str(b.get("thinking")), str(b.get("signature")))
            if b.get("type") == "thinking"
            else None
        ),
    )


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
