"""Reading chat completion answers back, as the chat translators write them: the whole
``chat.completion`` body (:func:`read_completion`) and the ``chat.completion.chunk``
events of a stream (:class:`ChunkReader`). The Responses and Messages adapters put every
backend's answer through these: the chat translators are their pivot (docs/client-apis.md, "Client
APIs").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from aigateway.translators.client_apis.chat.stream import ToolCall
from aigateway.translators.wire.jsoncodec import as_int, loads_or_none
from aigateway.translators.wire.sse import SseDecoder


@dataclass(slots=True)
class ChatAnswer:
    """The first choice of a ``chat.completion``, in plain values."""

    text: str | None = None
    refusal: str | None = None
    reasoning: str | None = None
    #: Signed reasoning blocks (``{"type": "thinking", "thinking", "signature"}`` or
    #: ``{"type": "redacted_thinking", "data"}``), to be sent back next turn.
    thinking_blocks: list[dict[str, Any]] = field(default_factory=list)
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str = "stop"


def read_completion(body: bytes) -> ChatAnswer | None:
    """The answer in a ``chat.completion`` body; ``None`` when it is not one."""
    doc = loads_or_none(body)
    choices = doc.get("choices") if isinstance(doc, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return None
    choice = choices[0]
    message = choice.get("message")
    if not isinstance(message, dict):
        return None
    answer = ChatAnswer()
    answer.text = _str(message.get("content"))
    answer.refusal = _str(message.get("refusal"))
    answer.reasoning = _str(message.get("reasoning_content"))
    blocks = message.get("thinking_blocks")
    if isinstance(blocks, list):
        answer.thinking_blocks = [b for b in blocks if isinstance(b, dict)]
    calls = message.get("tool_calls")
    for call in calls if isinstance(calls, list) else ():
        fn = call.get("function") if isinstance(call, dict) else None
        if isinstance(fn, dict):
            arguments = fn.get("arguments")
            answer.tool_calls.append(
                ToolCall(
                    str(call.get("id") or ""),
                    str(fn.get("name") or ""),
                    arguments if isinstance(arguments, str) else "{}",
                )
            )
    reason = choice.get("finish_reason")
    if isinstance(reason, str):
        answer.finish_reason = reason
    return answer


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


class AnswerEvents(Protocol):
    """What a streamed chat answer says, in order; a client API's stream writer."""

    def start(self) -> None:
        """The answer has begun (its first chunk, with the assistant's role)."""
        ...

    def text(self, text: str) -> None:
        """Answer text (refusals included)."""
        ...

    def reasoning(self, text: str) -> None:
        """Reasoning text, as it arrives."""
        ...

    def thinking_block(self, block: dict[str, Any]) -> None:
        """A reasoning block is over: the whole block, with its signature."""
        ...

    def tool_call(self, index: int, call_id: str, name: str) -> None:
        """Tool call ``index`` (the chat answer's) starts."""
        ...

    def tool_arguments(self, index: int, fragment: str) -> None:
        """More of tool call ``index``'s JSON arguments."""
        ...

    def finish(self, reason: str) -> None:
        """The chat finish reason (``stop``, ``length``, ``tool_calls``, ``content_filter``)."""
        ...

    def done(self) -> None:
        """The end of the answer (``data: [DONE]``)."""
        ...

    def error(self, error: dict[str, Any]) -> None:
        """An error event (an OpenAI ``error`` object) ended the answer."""
        ...


class ChunkReader:
    """Feeds a chat answer stream's events, whole ones only, to ``events``."""

    __slots__ = ("_decoder", "_events")

    def __init__(self, events: AnswerEvents) -> None:
        self._events = events
        self._decoder = SseDecoder()

    def feed(self, chunk: bytes) -> None:
        events = self._events
        for event in self._decoder.feed(chunk):
            if event.data == b"[DONE]":
                events.done()
                continue
            doc = loads_or_none(event.data)
            if not isinstance(doc, dict):
                # The chat translators only pass JSON on; anything else is a broken answer.
                events.error({"message": "The upstream sent an event that is not JSON."})
                continue
            error = doc.get("error")
            if isinstance(error, dict):
                events.error(error)
                continue
            choices = doc.get("choices")
            if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
                continue  # the usage chunk: usage comes from the chat translator itself
            _choice(choices[0], events)


def _choice(choice: dict[str, Any], events: AnswerEvents) -> None:
    delta = choice.get("delta")
    if isinstance(delta, dict):
        if "role" in delta:
            events.start()
        reasoning = delta.get("reasoning_content")
        if isinstance(reasoning, str) and reasoning:
            events.reasoning(reasoning)
        blocks = delta.get("thinking_blocks")
        for block in blocks if isinstance(blocks, list) else ():
            if isinstance(block, dict):
                events.thinking_block(block)
        for key in ("content", "refusal"):
            text = delta.get(key)
            if isinstance(text, str) and text:
                events.text(text)
        calls = delta.get("tool_calls")
        for call in calls if isinstance(calls, list) else ():
            if not isinstance(call, dict):
                continue
            index = as_int(call.get("index")) or 0
            fn = call.get("function")
            fn = fn if isinstance(fn, dict) else {}
            call_id, name = call.get("id"), fn.get("name")
            if isinstance(call_id, str) and isinstance(name, str):
                events.tool_call(index, call_id, name)
            arguments = fn.get("arguments")
            if isinstance(arguments, str) and arguments:
                events.tool_arguments(index, arguments)
    reason = choice.get("finish_reason")
    if isinstance(reason, str):
        events.finish(reason)
