"""Writing OpenAI Responses answers from a chat answer: the whole ``response`` object
(:func:`response_body`) and the streamed events (:class:`ResponsesEventStream`), each
with its ``sequence_number``, ending with ``response.completed``, ``response.incomplete``
or ``response.failed`` (docs/client-apis.md, "OpenAI Responses API").
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aigateway.translators.client_apis.chat.events import ChatAnswer
from aigateway.translators.client_apis.chat.stream import KEEPALIVE, BufferedSink
from aigateway.translators.client_apis.responses_request import (
    ToolOrigin,
    custom_input,
    encode_reasoning,
)
from aigateway.translators.contract import TokenUsage
from aigateway.translators.wire.jsoncodec import dumps
from aigateway.translators.wire.sse import encode_sse_event

#: The terminal events of a Responses stream: the client has its whole answer.
TERMINAL_EVENTS = frozenset(
    {"response.completed", "response.incomplete", "response.failed", "error"}
)


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


@dataclass(slots=True, frozen=True)
class ResponseHead:
    """What every response object of one request carries: its id, creation time, the
    request fields it repeats (``echo``) and the tools whose calls are not plain
    ``function_call`` items (``tools``, by chat function name)."""

    id: str
    created_at: int
    echo: dict[str, Any]
    tools: dict[str, ToolOrigin] = field(default_factory=dict)

    @classmethod
    def new(cls, echo: dict[str, Any], tools: dict[str, ToolOrigin] | None = None) -> ResponseHead:
        return cls(new_id("resp"), int(time.time()), echo, tools or {})


def usage_object(usage: TokenUsage) -> dict[str, Any]:
    """Responses ``usage``: input includes cache reads and writes, output reasoning."""
    return {
        "input_tokens": usage.input_tokens,
        "input_tokens_details": {
            "cached_tokens": usage.cached_input_tokens or 0,
            "cache_write_tokens": usage.cache_write_input_tokens or 0,
        },
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens or 0},
        "total_tokens": usage.total_tokens,
    }


def response_object(
    head: ResponseHead,
    *,
    status: str,
    output: list[dict[str, Any]],
    usage: TokenUsage | None,
    incomplete: str | None = None,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "id": head.id,
        "object": "response",
        "created_at": head.created_at,
        "status": status,
        "error": error,
        "incomplete_details": None if incomplete is None else {"reason": incomplete},
        **head.echo,
        "output": output,
        "previous_response_id": None,
        "usage": None if usage is None else usage_object(usage),
    }


def finish_status(finish_reason: str) -> tuple[str, str | None]:
    """The response ``status`` and ``incomplete_details.reason`` for a chat finish reason."""
    if finish_reason == "length":
        return "incomplete", "max_output_tokens"
    if finish_reason == "content_filter":
        return "incomplete", "content_filter"
    return "completed", None


def _message_item(item_id: str, text: str, status: str) -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": [_text_part(text)],
    }


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _call_item(
    item_id: str, call_id: str, name: str, arguments: str, status: str, origin: ToolOrigin | None
) -> dict[str, Any]:
    """A ``function_call`` item; a ``custom_tool_call`` for a custom tool, and the
    namespace of a tool that has one (Codex finds its tools by namespace and name)."""
    if origin is None:
        return {
            "id": item_id,
            "type": "function_call",
            "status": status,
            "call_id": call_id,
            "name": name,
            "arguments": arguments,
        }
    item: dict[str, Any] = {"id": item_id, "status": status, "call_id": call_id}
    if origin.custom:
        item |= {"type": "custom_tool_call", "name": origin.name, "input": custom_input(arguments)}
    else:
        item |= {"type": "function_call", "name": origin.name, "arguments": arguments}
    if origin.namespace is not None:
        item["namespace"] = origin.namespace
    return item


def _reasoning_item(
    item_id: str, text: str, blocks: list[dict[str, Any]], status: str
) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": item_id,
        "type": "reasoning",
        "status": status,
        "summary": [],
        "content": [{"type": "reasoning_text", "text": text}] if text else [],
    }
    if blocks:
        item["encrypted_content"] = encode_reasoning(blocks)
    return item


def response_body(head: ResponseHead, answer: ChatAnswer, usage: TokenUsage | None) -> bytes:
    """The whole ``response`` object of a non-streamed request."""
    status, incomplete = finish_status(answer.finish_reason)
    item_status = "completed" if status == "completed" else "incomplete"
    output: list[dict[str, Any]] = []
    if answer.reasoning or answer.thinking_blocks:
        item = _reasoning_item(
            new_id("rs"), answer.reasoning or "", answer.thinking_blocks, item_status
        )
        output.append(item)
    text = (answer.text or "") + (answer.refusal or "")
    if text or not answer.tool_calls:
        output.append(_message_item(new_id("msg"), text, item_status))
    for call in answer.tool_calls:
        origin = head.tools.get(call.name)
        prefix = "ctc" if origin is not None and origin.custom else "fc"
        output.append(
            _call_item(new_id(prefix), call.id, call.name, call.arguments, item_status, origin)
        )
    doc = response_object(head, status=status, output=output, usage=usage, incomplete=incomplete)
    return dumps(doc)


@dataclass(slots=True)
class _Item:
    """An output item being streamed."""

    kind: str  # message, function_call, custom_tool_call, reasoning
    id: str
    index: int
    texts: list[str] = field(default_factory=list)  # text, arguments or reasoning
    call_id: str = ""
    name: str = ""
    origin: ToolOrigin | None = None
    blocks: list[dict[str, Any]] = field(default_factory=list)  # signed reasoning
    delta_head: bytes = b""  # the constant start of this item's delta events


def error_code(error: dict[str, Any]) -> str:
    """A ``response.error.code`` for an OpenAI error object."""
    if error.get("type") == "rate_limit_error" or error.get("code") in (429, "429"):
        return "rate_limit_exceeded"
    return "server_error"


class ResponsesEventStream(BufferedSink):
    """One streamed answer being written as Responses events (a sink of answer events).

    ``response.created`` and ``response.in_progress`` open it; each output item (a
    reasoning item, the message, each function call) is added, streamed and done in
    turn; ``response.completed`` (or ``incomplete``/``failed``) ends it with usage.
    """

    __slots__ = ("_calls", "_finish", "_head", "_open", "_output", "_seq")

    def __init__(self, head: ResponseHead) -> None:
        super().__init__()
        self._head = head
        self._seq = 0
        self._output: list[dict[str, Any]] = []  # finished items, by output index
        self._open: _Item | None = None
        self._calls: dict[int, _Item] = {}  # chat tool call index -> its item
        self._finish = "stop"

    @property
    def sequence_number(self) -> int:
        """The next event's sequence number."""
        return self._seq

    # -- events --------------------------------------------------------------------

    def _event(self, kind: str, fields: dict[str, Any]) -> None:
        doc = {"type": kind, **fields, "sequence_number": self._seq}
        self._seq += 1
        self._out.append(encode_sse_event(dumps(doc), kind))

    def _delta(self, item: _Item, text: str) -> None:
        # Per-token events: their constant start is rendered once per item.
        self._out.append(
            item.delta_head
            + dumps(text)
            + b',"sequence_number":'
            + str(self._seq).encode()
            + b"}\n\n"
        )
        self._seq += 1

    def _begin(self) -> None:
        if self._seq == 0:
            response = response_object(self._head, status="in_progress", output=[], usage=None)
            self._event("response.created", {"response": response})
            self._event("response.in_progress", {"response": response})

    def _start(self, kind: str, prefix: str) -> _Item:
        self._begin()
        self._close()
        item = _Item(kind, new_id(prefix), len(self._output))
        self._output.append({})  # its place, filled when it is done
        self._open = item
        return item

    def _close(self) -> None:
        item = self._open
        if item is None:
            return
        self._open = None
        where = {"item_id": item.id, "output_index": item.index}
        text = "".join(item.texts)
        if item.kind == "message":
            self._event(
                "response.output_text.done",
                {**where, "content_index": 0, "text": text, "logprobs": []},
            )
            self._event(
                "response.content_part.done",
                {**where, "content_index": 0, "part": _text_part(text)},
            )
            done = _message_item(item.id, text, "completed")
        elif item.kind == "function_call":
            self._event("response.function_call_arguments.done", {**where, "arguments": text})
            done = _call_item(item.id, item.call_id, item.name, text, "completed", item.origin)
        elif item.kind == "custom_tool_call":
            # The input is inside the arguments' JSON: it goes out whole, once complete.
            done = _call_item(item.id, item.call_id, item.name, text, "completed", item.origin)
            if done["input"]:
                self._event(
                    "response.custom_tool_call_input.delta", {**where, "delta": done["input"]}
                )
            self._event("response.custom_tool_call_input.done", {**where, "input": done["input"]})
        else:
            if text:
                self._event(
                    "response.reasoning_text.done", {**where, "content_index": 0, "text": text}
                )
                self._event(
                    "response.content_part.done",
                    {**where, "content_index": 0, "part": {"type": "reasoning_text", "text": text}},
                )
            done = _reasoning_item(item.id, text, item.blocks, "completed")
        self._output[item.index] = done
        self._event("response.output_item.done", {"output_index": item.index, "item": done})

    def start(self) -> None:
        if not self._done:
            self._begin()

    def text(self, text: str) -> None:
        if self._done:
            return
        item = self._open
        if item is None or item.kind != "message":
            item = self._start("message", "msg")
            self._event(
                "response.output_item.added",
                {
                    "output_index": item.index,
                    "item": _message_item(item.id, "", "in_progress") | {"content": []},
                },
            )
            self._event(
                "response.content_part.added",
                {
                    "item_id": item.id,
                    "output_index": item.index,
                    "content_index": 0,
                    "part": _text_part(""),
                },
            )
            item.delta_head = _delta_head("response.output_text.delta", item, content_index=True)
        item.texts.append(text)
        self._delta(item, text)

    def reasoning(self, text: str) -> None:
        if self._done:
            return
        item = self._open
        if item is None or item.kind != "reasoning" or item.blocks:
            item = self._start_reasoning()
        if not item.texts:
            self._event(
                "response.content_part.added",
                {
                    "item_id": item.id,
                    "output_index": item.index,
                    "content_index": 0,
                    "part": {"type": "reasoning_text", "text": ""},
                },
            )
            item.delta_head = _delta_head("response.reasoning_text.delta", item, content_index=True)
        item.texts.append(text)
        self._delta(item, text)

    def _start_reasoning(self) -> _Item:
        item = self._start("reasoning", "rs")
        added = {
            "id": item.id,
            "type": "reasoning",
            "status": "in_progress",
            "summary": [],
            "content": [],
        }
        self._event("response.output_item.added", {"output_index": item.index, "item": added})
        return item

    def thinking_block(self, block: dict[str, Any]) -> None:
        if self._done:
            return
        item = self._open
        if item is None or item.kind != "reasoning" or item.blocks:
            item = self._start_reasoning()  # a redacted block: no text came before it
        item.blocks.append(block)

    def tool_call(self, index: int, call_id: str, name: str) -> None:
        if self._done:
            return
        origin = self._head.tools.get(name)
        custom = origin is not None and origin.custom
        item = (
            self._start("custom_tool_call", "ctc") if custom else self._start("function_call", "fc")
        )
        item.call_id, item.name, item.origin = call_id, name, origin
        self._calls[index] = item
        self._event(
            "response.output_item.added",
            {
                "output_index": item.index,
                "item": _call_item(item.id, call_id, name, "", "in_progress", origin),
            },
        )
        if not custom:
            item.delta_head = _delta_head("response.function_call_arguments.delta", item)

    def tool_arguments(self, index: int, fragment: str) -> None:
        item = self._calls.get(index)
        if item is None or self._done:
            return
        item.texts.append(fragment)
        if item is self._open and item.kind == "function_call":
            self._delta(item, fragment)

    def keepalive(self) -> None:
        """An SSE comment: the connection stays busy while the backend thinks."""
        if not self._done:
            self._out.append(KEEPALIVE)

    def final_usage(self, usage: TokenUsage, service_tier: str | None) -> None:
        pass  # ``usage`` already holds it

    def finish(self, reason: str, service_tier: str | None = None) -> None:
        self._finish = reason

    def done(self) -> None:
        if self._done:
            return
        self._begin()
        self._close()
        status, incomplete = finish_status(self._finish)
        response = response_object(
            self._head,
            status=status,
            output=self._output,
            usage=self.usage,
            incomplete=incomplete,
        )
        kind = "response.completed" if status == "completed" else "response.incomplete"
        self._event(kind, {"response": response})
        self._done = True

    def error(self, error: dict[str, Any]) -> None:
        if self._done:
            return
        self._begin()
        self._open = None  # unfinished items are left out of the failed response
        message = error.get("message")
        failure = {
            "code": error_code(error),
            "message": message if isinstance(message, str) else "upstream stream error",
        }
        response = response_object(
            self._head,
            status="failed",
            output=[item for item in self._output if item],
            usage=self.usage,
            error=failure,
        )
        self._event("response.failed", {"response": response})
        self._done = True


def _delta_head(kind: str, item: _Item, *, content_index: bool = False) -> bytes:
    head = (
        b"event: "
        + kind.encode()
        + b'\ndata: {"type":"'
        + kind.encode()
        + b'","item_id":'
        + dumps(item.id)
        + b',"output_index":'
        + str(item.index).encode()
    )
    if content_index:
        head += b',"content_index":0'
    if kind == "response.output_text.delta":
        head += b',"logprobs":[]'
    return head + b',"delta":'


def error_event(message: str, *, code: str, sequence_number: int) -> bytes:
    """A Responses ``error`` event, for a stream the gateway itself must end."""
    doc = {
        "type": "error",
        "code": code,
        "message": message,
        "param": None,
        "sequence_number": sequence_number,
    }
    return encode_sse_event(dumps(doc), "error")
