"""OpenAI Responses routes: ``POST /v1/responses`` (OpenAI) and ``POST
/openai/v1/responses`` (Azure OpenAI's v1 API, the deployment in the body's ``model``).

Answers a ``response`` object (``output``: a ``message`` with one ``output_text`` part, or
a ``function_call``; ``usage`` with ``input_tokens_details`` and
``output_tokens_details``), or with ``"stream": true`` SSE with ``event:`` lines as
OpenAI sends them, each with its ``sequence_number``: ``response.created``,
``response.in_progress``, ``response.output_item.added``, ``response.content_part.added``,
one ``response.output_text.delta`` per word (or ``response.function_call_arguments.delta``
per argument fragment), the ``.done`` events, ``response.output_item.done`` and
``response.completed``. Delta events end with an ``obfuscation`` string, as OpenAI's do,
unless ``stream_options.include_obfuscation`` is ``false``. The ``response`` object has
every field OpenAI's has by default (``background``, ``reasoning``, ``service_tier``
``auto`` while in progress then ``default``, ``text``, ``truncation``...), the request's
``max_output_tokens``, ``previous_response_id`` and ``metadata`` echoed; usage has
``input_tokens_details.cache_write_tokens`` (``x-mock-cache-write-tokens``, else 0). A
``max_output_tokens`` below the reply's length cuts it and ends
with ``response.incomplete`` (``incomplete_details.reason`` ``max_output_tokens``). The
``exception`` fault ends a stream with an ``error`` event. ``model`` and ``input`` are
required; ``store``, ``previous_response_id`` and the other stateful fields are accepted
and ignored.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from aiohttp import web

from .errors import OPENAI_ERRORS, MockError
from .knobs import Knobs
from .openai_routes import obfuscation
from .prompt_words import responses_prompt_words
from .routing import MockCall, dumps, provider_route, send_json
from .streaming import EventKind, StreamFaults, send_stream, sse_event
from .tools import ToolDefinition, argument_fragments, arguments_json, select_tool
from .words import limit_tokens, reply_pieces, reply_text

__all__ = ["add_responses_routes"]

_SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}
#: Request fields the ``response`` object repeats.
_ECHOED = ("max_output_tokens", "previous_response_id", "metadata")


def add_responses_routes(app: web.Application) -> None:
    """Register the OpenAI and Azure OpenAI Responses routes on ``app``."""
    app.router.add_post("/v1/responses", provider_route(OPENAI_ERRORS, _responses))
    app.router.add_post("/openai/v1/responses", provider_route(OPENAI_ERRORS, _responses))


async def _responses(call: MockCall) -> web.StreamResponse:
    payload = call.payload
    knobs = call.knobs
    model = payload.get("model")
    if not isinstance(model, str) or not model:
        raise MockError(400, "Missing required parameter: 'model'.", param="model")
    if not isinstance(payload.get("input"), str | list):
        raise MockError(400, "Missing required parameter: 'input'.", param="input")
    tool = select_tool(_tools(payload), header=knobs.tool_call, forced=_forced_tool(payload))
    if tool is None:
        tokens, cut = limit_tokens(knobs.output_tokens, payload.get("max_output_tokens"))
    else:
        tokens, cut = knobs.output_tokens, False
    seq = call.state.next_id()
    options = payload.get("stream_options")
    reply = _Reply(
        id=f"resp_mock{seq:020d}",
        item_id=(f"fc_mock{seq:020d}" if tool is not None else f"msg_mock{seq:020d}"),
        call_id=f"call_mock{seq:015d}",
        created=int(time.time()),
        model=model,
        tokens=tokens,
        incomplete=cut,
        tool=tool,
        usage=_usage(responses_prompt_words(payload), tokens, knobs),
        echoed={key: payload.get(key) for key in _ECHOED},
        obfuscated=not (isinstance(options, dict) and options.get("include_obfuscation") is False),
    )
    headers = {"x-request-id": f"req_mock{seq:020d}"}
    if payload.get("stream") is not True:
        return await send_json(
            call.request, knobs, dumps(reply.response(done=True)), headers=headers
        )
    faults = StreamFaults(
        bad_json=sse_event(
            b'{"type":"response.output_text.delta","delta":', "response.output_text.delta"
        ),
        error_event=_error_event,
        keepalive=b": keep-alive\n\n",
    )
    return await send_stream(call, reply.events(), faults, {**_SSE_HEADERS, **headers})


class _Reply:
    """One response, rendered whole or as events."""

    __slots__ = (
        "call_id",
        "created",
        "echoed",
        "id",
        "incomplete",
        "item_id",
        "model",
        "obfuscated",
        "tokens",
        "tool",
        "usage",
    )

    def __init__(
        self,
        *,
        id: str,
        item_id: str,
        call_id: str,
        created: int,
        model: str,
        tokens: int,
        incomplete: bool,
        tool: ToolDefinition | None,
        usage: dict[str, Any],
        echoed: dict[str, Any],
        obfuscated: bool,
    ) -> None:
        self.id, self.item_id, self.call_id = id, item_id, call_id
        self.created, self.model, self.tokens = created, model, tokens
        self.incomplete, self.tool, self.usage = incomplete, tool, usage
        self.echoed, self.obfuscated = echoed, obfuscated

    def item(self, done: bool) -> dict[str, Any]:
        status = ("incomplete" if self.incomplete else "completed") if done else "in_progress"
        if self.tool is not None:
            return {
                "id": self.item_id,
                "type": "function_call",
                "status": status,
                "arguments": arguments_json(self.tool.schema) if done else "",
                "call_id": self.call_id,
                "name": self.tool.name,
            }
        return {
            "id": self.item_id,
            "type": "message",
            "status": status,
            "role": "assistant",
            "content": [self.part(done)] if done else [],
        }

    def part(self, done: bool) -> dict[str, Any]:
        text = reply_text(self.tokens) if done else ""
        return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}

    def response(self, *, done: bool) -> dict[str, Any]:
        status = ("incomplete" if self.incomplete else "completed") if done else "in_progress"
        echoed = self.echoed
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created,
            "status": status,
            "background": False,
            "completed_at": self.created if done and not self.incomplete else None,
            "error": None,
            "incomplete_details": {"reason": "max_output_tokens"}
            if done and self.incomplete
            else None,
            "instructions": None,
            "max_output_tokens": echoed["max_output_tokens"],
            "max_tool_calls": None,
            "model": self.model,
            "output": [self.item(done=True)] if done else [],
            "parallel_tool_calls": True,
            "previous_response_id": echoed["previous_response_id"],
            "prompt_cache_key": None,
            "reasoning": {"effort": None, "summary": None},
            "safety_identifier": None,
            "service_tier": "default" if done else "auto",
            "store": True,
            "temperature": 1.0,
            "text": {"format": {"type": "text"}, "verbosity": "medium"},
            "tool_choice": "auto",
            "tools": [],
            "top_logprobs": 0,
            "top_p": 1.0,
            "truncation": "disabled",
            "usage": self.usage if done else None,
            "user": None,
            "metadata": echoed["metadata"] or {},
        }

    def events(self) -> Iterator[tuple[EventKind, bytes]]:
        counter = iter(range(1_000_000))

        deltas = 0

        def event(name: str, body: dict[str, Any]) -> bytes:
            return sse_event(dumps({"type": name, "sequence_number": next(counter), **body}), name)

        def delta(name: str, body: dict[str, Any]) -> bytes:
            nonlocal deltas
            deltas += 1
            if self.obfuscated:
                body["obfuscation"] = obfuscation(deltas)
            return event(name, body)

        where = {"item_id": self.item_id, "output_index": 0}
        yield EventKind.OPEN, event("response.created", {"response": self.response(done=False)})
        yield EventKind.OPEN, event("response.in_progress", {"response": self.response(done=False)})
        yield (
            EventKind.OPEN,
            event("response.output_item.added", {"output_index": 0, "item": self.item(done=False)}),
        )
        if self.tool is None:
            part = {**where, "content_index": 0}
            yield (
                EventKind.OPEN,
                event("response.content_part.added", {**part, "part": self.part(False)}),
            )
            for piece in reply_pieces(self.tokens):
                yield (
                    EventKind.TOKEN,
                    delta("response.output_text.delta", {**part, "delta": piece, "logprobs": []}),
                )
            text = reply_text(self.tokens)
            yield (
                EventKind.CLOSE,
                event("response.output_text.done", {**part, "text": text, "logprobs": []}),
            )
            yield (
                EventKind.CLOSE,
                event("response.content_part.done", {**part, "part": self.part(True)}),
            )
        else:
            arguments = arguments_json(self.tool.schema)
            for fragment in argument_fragments(arguments, self.tokens):
                yield (
                    EventKind.TOKEN,
                    delta("response.function_call_arguments.delta", {**where, "delta": fragment}),
                )
            yield (
                EventKind.CLOSE,
                event("response.function_call_arguments.done", {**where, "arguments": arguments}),
            )
        yield (
            EventKind.CLOSE,
            event("response.output_item.done", {"output_index": 0, "item": self.item(done=True)}),
        )
        final = "response.incomplete" if self.incomplete else "response.completed"
        yield EventKind.FINAL, event(final, {"response": self.response(done=True)})


def _error_event(error_type: str | None) -> bytes:
    error = {
        "type": "error",
        "code": error_type or "server_error",
        "message": "mock stream error (x-mock-fault: exception)",
        "param": None,
        "sequence_number": 999_999,
    }
    return sse_event(dumps(error), "error")


def _usage(prompt: int, completion: int, knobs: Knobs) -> dict[str, Any]:
    completion += knobs.reasoning_tokens
    cached = min(knobs.cached_tokens, prompt)
    return {
        "input_tokens": prompt,
        "input_tokens_details": {
            "cached_tokens": cached,
            "cache_write_tokens": min(knobs.cache_write_tokens, prompt - cached),
        },
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": knobs.reasoning_tokens},
        "total_tokens": prompt + completion,
    }


def _tools(payload: dict[str, Any]) -> list[ToolDefinition]:
    tools = payload.get("tools")
    if not isinstance(tools, list):
        return []
    return [
        ToolDefinition(tool["name"], tool.get("parameters"))
        for tool in tools
        if isinstance(tool, dict)
        and tool.get("type") == "function"
        and isinstance(tool.get("name"), str)
    ]


def _forced_tool(payload: dict[str, Any]) -> str | None:
    choice = payload.get("tool_choice")
    if choice == "required":
        tools = _tools(payload)
        return tools[0].name if tools else None
    if isinstance(choice, dict) and choice.get("type") == "function":
        name = choice.get("name")
        return name if isinstance(name, str) else None
    return None
