"""Reading chat completion answers: the whole ``chat.completion`` body
(:func:`read_completion`) and the ``chat.completion.chunk`` events of an OpenAI stream
(:class:`ChunkReader`, for the backends that speak chat themselves), as the Responses and
Messages writers take them (docs/client-apis.md, "Client APIs").
"""

from __future__ import annotations

from typing import Any

from aigateway.translators.client_apis.chat.events import (
    DONE,
    START,
    AnswerEvent,
    AnswerSink,
    ChatAnswer,
    Error,
    Finish,
    ReasoningDelta,
    TextDelta,
    ThinkingBlock,
    ToolArgumentsDelta,
    ToolCall,
    ToolCallStart,
    deliver,
)
from aigateway.translators.wire.jsoncodec import as_int, loads_or_none
from aigateway.translators.wire.sse import SseDecoder


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


class ChunkReader:
    """Reads an OpenAI chat answer stream (the OpenAI and Azure backends' own bytes) as
    typed answer events for ``sink``, whole SSE events only."""

    __slots__ = ("_decoder", "_sink")

    def __init__(self, sink: AnswerSink) -> None:
        self._sink = sink
        self._decoder = SseDecoder()

    def feed(self, chunk: bytes) -> None:
        events: list[AnswerEvent] = []
        for event in self._decoder.feed(chunk):
            if event.data == b"[DONE]":
                events.append(DONE)
                continue
            doc = loads_or_none(event.data)
            if not isinstance(doc, dict):
                # The chat translators only pass JSON on; anything else is a broken answer.
                events.append(Error({"message": "The upstream sent an event that is not JSON."}))
                continue
            error = doc.get("error")
            if isinstance(error, dict):
                events.append(Error(error))
                continue
            choices = doc.get("choices")
            if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
                continue  # the usage chunk: usage comes from the chat translator itself
            _choice(choices[0], events)
        deliver(events, self._sink)


def _choice(choice: dict[str, Any], events: list[AnswerEvent]) -> None:
    delta = choice.get("delta")
    if isinstance(delta, dict):
        if "role" in delta:
            events.append(START)
        reasoning = delta.get("reasoning_content")
        if isinstance(reasoning, str) and reasoning:
            events.append(ReasoningDelta(reasoning))
        blocks = delta.get("thinking_blocks")
        for block in blocks if isinstance(blocks, list) else ():
            if isinstance(block, dict):
                events.append(ThinkingBlock(block))
        for key in ("content", "refusal"):
            text = delta.get(key)
            if isinstance(text, str) and text:
                events.append(TextDelta(text))
        calls = delta.get("tool_calls")
        for call in calls if isinstance(calls, list) else ():
            if not isinstance(call, dict):
                continue
            index = as_int(call.get("index")) or 0
            fn = call.get("function")
            fn = fn if isinstance(fn, dict) else {}
            call_id, name = call.get("id"), fn.get("name")
            if isinstance(call_id, str) and isinstance(name, str):
                events.append(ToolCallStart(index, call_id, name))
            arguments = fn.get("arguments")
            if isinstance(arguments, str) and arguments:
                events.append(ToolArgumentsDelta(index, arguments))
    reason = choice.get("finish_reason")
    if isinstance(reason, str):
        events.append(Finish(reason))
