"""Writing Anthropic Messages answers from a chat answer: the whole ``message`` object
(:func:`message_body`) and the streamed events (:class:`MessagesEventStream`), from
``message_start`` to ``message_stop`` (docs/client-apis.md, "Anthropic Messages API").
"""

from __future__ import annotations

import uuid
from typing import Any

from aigateway.translators.client_apis.chat.events import ChatAnswer
from aigateway.translators.client_apis.chat.stream import KEEPALIVE, BufferedSink
from aigateway.translators.contract import TokenUsage
from aigateway.translators.wire.errors import anthropic_error, anthropic_error_type_for_status
from aigateway.translators.wire.jsoncodec import as_int, dumps, loads_or_none
from aigateway.translators.wire.sse import encode_sse_event

_STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
}
_ANTHROPIC_TYPES = frozenset(
    {
        "invalid_request_error",
        "authentication_error",
        "billing_error",
        "permission_error",
        "not_found_error",
        "request_too_large",
        "rate_limit_error",
        "api_error",
        "timeout_error",
        "overloaded_error",
    }
)


def new_message_id() -> str:
    return "msg_" + uuid.uuid4().hex


def stop_reason(finish_reason: str) -> str:
    return _STOP_REASONS.get(finish_reason, "end_turn")


def usage_object(usage: TokenUsage | None) -> dict[str, int]:
    """Messages ``usage``: Anthropic's ``input_tokens`` leaves out cache reads and writes,
    which OpenAI's prompt tokens include."""
    if usage is None:
        usage = TokenUsage()
    read = usage.cached_input_tokens or 0
    written = usage.cache_write_input_tokens or 0
    return {
        "input_tokens": max(usage.input_tokens - read - written, 0),
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": read,
        "output_tokens": usage.output_tokens,
    }


def _tool_input(arguments: str) -> dict[str, Any]:
    parsed = loads_or_none(arguments)
    return parsed if isinstance(parsed, dict) else {}


def message_body(
    *, message_id: str, model: str, answer: ChatAnswer, usage: TokenUsage | None
) -> bytes:
    """The whole ``message`` of a non-streamed request."""
    content: list[dict[str, Any]] = list(answer.thinking_blocks)
    text = (answer.text or "") + (answer.refusal or "")
    if text:
        content.append({"type": "text", "text": text})
    for call in answer.tool_calls:
        content.append(
            {
                "type": "tool_use",
                "id": call.id,
                "name": call.name,
                "input": _tool_input(call.arguments),
            }
        )
    doc = {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason(answer.finish_reason),
        "stop_sequence": None,
        "usage": usage_object(usage),
    }
    return dumps(doc)


def error_type(error: dict[str, Any]) -> str:
    """An Anthropic error type for an OpenAI error object (the chat translators keep an
    Anthropic upstream's own type as the ``code``)."""
    code = error.get("code")
    if isinstance(code, str) and code in _ANTHROPIC_TYPES:
        return code
    status = as_int(code)
    if status is not None and 400 <= status <= 599:
        return anthropic_error_type_for_status(status)
    if error.get("type") == "rate_limit_error":
        return "rate_limit_error"
    if error.get("type") == "invalid_request_error":
        return "invalid_request_error"
    return "api_error"


def error_event(message: str, error_type: str) -> bytes:
    doc = anthropic_error(message, status=500, type=error_type)
    return encode_sse_event(dumps(doc), "error")


def _event(name: str, body: dict[str, Any]) -> bytes:
    return encode_sse_event(dumps({"type": name, **body}), name)


class MessagesEventStream(BufferedSink):
    """One streamed answer being written as Messages events (a sink of answer events).

    ``message_start`` first; each content block (thinking, text, each tool use) is
    started, streamed and stopped in turn, numbered from 0; ``message_delta`` with the
    stop reason and usage, then ``message_stop``, end it. An error ends it with an
    ``error`` event.
    """

    __slots__ = (
        "_calls",
        "_delta_head",
        "_id",
        "_index",
        "_model",
        "_open",
        "_started",
        "_stop_reason",
    )

    def __init__(self, message_id: str, model: str) -> None:
        super().__init__()
        self._id = message_id
        self._model = model
        self._started = False
        self._index = -1  # the last block started
        self._open: str | None = None  # the type of the open block
        self._delta_head = b""
        self._calls: dict[int, int] = {}  # chat tool call index -> block index
        self._stop_reason = "end_turn"

    def _begin(self) -> None:
        if self._started:
            return
        self._started = True
        message: dict[str, Any] = {
            "id": self._id,
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage_object(self.usage),
        }
        self._out.append(_event("message_start", {"message": message}))

    def _start(self, block: dict[str, Any], delta_type: str, key: str) -> None:
        self._begin()
        self._close()
        self._index += 1
        self._open = block["type"]
        self._out.append(
            _event("content_block_start", {"index": self._index, "content_block": block})
        )
        # Per-token events: their constant start is rendered once per block.
        self._delta_head = (
            b'event: content_block_delta\ndata: {"type":"content_block_delta","index":'
            + str(self._index).encode()
            + b',"delta":{"type":"'
            + delta_type.encode()
            + b'","'
            + key.encode()
            + b'":'
        )

    def _delta(self, text: str) -> None:
        self._out.append(self._delta_head + dumps(text) + b"}}\n\n")

    def _close(self) -> None:
        if self._open is not None:
            self._out.append(_event("content_block_stop", {"index": self._index}))
            self._open = None

    def start(self) -> None:
        if not self._done:
            self._begin()

    def text(self, text: str) -> None:
        if self._done:
            return
        if self._open != "text":
            self._start({"type": "text", "text": ""}, "text_delta", "text")
        self._delta(text)

    def reasoning(self, text: str) -> None:
        if self._done:
            return
        if self._open != "thinking":
            block = {"type": "thinking", "thinking": "", "signature": ""}
            self._start(block, "thinking_delta", "thinking")
        self._delta(text)

    def thinking_block(self, block: dict[str, Any]) -> None:
        if self._done:
            return
        if block.get("type") == "redacted_thinking":
            self._start({"type": "redacted_thinking", "data": block.get("data", "")}, "", "")
            self._close()
            return
        if self._open != "thinking":  # the whole block at once, no deltas before it
            self._start(
                {"type": "thinking", "thinking": "", "signature": ""}, "thinking_delta", "thinking"
            )
            text = block.get("thinking")
            if isinstance(text, str) and text:
                self._delta(text)
        signature = block.get("signature")
        if isinstance(signature, str) and signature:
            delta = {"type": "signature_delta", "signature": signature}
            self._out.append(_event("content_block_delta", {"index": self._index, "delta": delta}))
        self._close()

    def tool_call(self, index: int, call_id: str, name: str) -> None:
        if self._done:
            return
        block = {"type": "tool_use", "id": call_id, "name": name, "input": {}}
        self._start(block, "input_json_delta", "partial_json")
        self._calls[index] = self._index

    def tool_arguments(self, index: int, fragment: str) -> None:
        if self._done or self._open != "tool_use" or self._calls.get(index) != self._index:
            return
        self._delta(fragment)

    def keepalive(self) -> None:
        """Anthropic's own ``ping`` once the message has started, a comment before."""
        if not self._done:
            self._out.append(_event("ping", {}) if self._started else KEEPALIVE)

    def final_usage(self, usage: TokenUsage, service_tier: str | None) -> None:
        pass  # ``usage`` already holds it

    def finish(self, reason: str, service_tier: str | None = None) -> None:
        self._stop_reason = stop_reason(reason)

    def done(self) -> None:
        if self._done:
            return
        self._begin()
        self._close()
        delta = {"stop_reason": self._stop_reason, "stop_sequence": None}
        self._out.append(
            _event("message_delta", {"delta": delta, "usage": usage_object(self.usage)})
        )
        self._out.append(_event("message_stop", {}))
        self._done = True

    def error(self, error: dict[str, Any]) -> None:
        if self._done:
            return
        message = error.get("message")
        text = message if isinstance(message, str) and message else "upstream stream error"
        self._out.append(error_event(text, error_type(error)))
        self._done = True
