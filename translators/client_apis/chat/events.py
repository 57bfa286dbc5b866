"""A streamed answer as typed events: what the backend translators produce and what each
client API's writer (chat chunks, Responses events, Messages events) consumes, with
nothing encoded to bytes and parsed back in between (docs/architecture.md, "Layers").

:class:`AnswerSink` has one method per kind of event; the dataclasses are the same
events as values, for a sink that holds them (:class:`EventBuffer`) or a reader that
parses them (``answers.ChunkReader``). Each sends itself to a sink with one call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from aigateway.translators.contract import TokenUsage


@dataclass(slots=True, frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, as OpenAI clients expect


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


class AnswerSink(Protocol):
    """A client API's stream writer: told a streamed answer's events in order, it collects
    its own API's bytes until :meth:`output`."""

    #: The usage the backend has reported so far (set before each batch of events).
    usage: TokenUsage | None

    @property
    def finished(self) -> bool:
        """The client has its terminal event (the answer's end, or an error event)."""
        ...

    def output(self) -> bytes:
        """The bytes written since the last call."""
        ...

    def start(self) -> None:
        """The answer has begun (the assistant's role)."""
        ...

    def text(self, text: str) -> None:
        """Answer text (refusals included); never empty."""
        ...

    def reasoning(self, text: str) -> None:
        """Reasoning text, as it arrives; never empty."""
        ...

    def thinking_block(self, block: dict[str, Any]) -> None:
        """A reasoning block is over: the whole block (``{"type": "thinking", "thinking",
        "signature"}`` or ``{"type": "redacted_thinking", "data"}``), to be sent back."""
        ...

    def tool_call(self, index: int, call_id: str, name: str) -> None:
        """Tool call ``index`` (counted from 0 in the answer) starts."""
        ...

    def tool_arguments(self, index: int, fragment: str) -> None:
        """More of tool call ``index``'s JSON arguments; never empty."""
        ...

    def finish(self, reason: str, service_tier: str | None = None) -> None:
        """The chat finish reason (``stop``, ``length``, ``tool_calls``,
        ``content_filter``) and the service tier, if the backend said."""
        ...

    def final_usage(self, usage: TokenUsage, service_tier: str | None) -> None:
        """The usage, once the backend reported all of it (before :meth:`done`)."""
        ...

    def keepalive(self) -> None:
        """Traffic with no content."""
        ...

    def done(self) -> None:
        """The end of the answer."""
        ...

    def error(self, error: dict[str, Any]) -> None:
        """An error (an OpenAI ``error`` object) ended the answer."""
        ...


@dataclass(slots=True)
class Start:
    def send(self, sink: AnswerSink) -> None:
        sink.start()


@dataclass(slots=True)
class TextDelta:
    text: str

    def send(self, sink: AnswerSink) -> None:
        sink.text(self.text)


@dataclass(slots=True)
class ReasoningDelta:
    text: str

    def send(self, sink: AnswerSink) -> None:
        sink.reasoning(self.text)


@dataclass(slots=True)
class ThinkingBlock:
    block: dict[str, Any]

    def send(self, sink: AnswerSink) -> None:
        sink.thinking_block(self.block)


@dataclass(slots=True)
class ToolCallStart:
    index: int
    call_id: str
    name: str

    def send(self, sink: AnswerSink) -> None:
        sink.tool_call(self.index, self.call_id, self.name)


@dataclass(slots=True)
class ToolArgumentsDelta:
    index: int
    fragment: str

    def send(self, sink: AnswerSink) -> None:
        sink.tool_arguments(self.index, self.fragment)


@dataclass(slots=True)
class Finish:
    reason: str
    service_tier: str | None = None

    def send(self, sink: AnswerSink) -> None:
        sink.finish(self.reason, self.service_tier)


@dataclass(slots=True)
class Usage:
    usage: TokenUsage
    service_tier: str | None = None

    def send(self, sink: AnswerSink) -> None:
        sink.final_usage(self.usage, self.service_tier)


@dataclass(slots=True)
class Keepalive:
    def send(self, sink: AnswerSink) -> None:
        sink.keepalive()


@dataclass(slots=True)
class Done:
    def send(self, sink: AnswerSink) -> None:
        sink.done()


@dataclass(slots=True)
class Error:
    """An error ended the answer: OpenAI's ``error`` object."""

    error: dict[str, Any]

    def send(self, sink: AnswerSink) -> None:
        sink.error(self.error)


AnswerEvent = (
    Start
    | TextDelta
    | ReasoningDelta
    | ThinkingBlock
    | ToolCallStart
    | ToolArgumentsDelta
    | Finish
    | Usage
    | Keepalive
    | Done
    | Error
)

#: The events without fields, made once.
START = Start()
KEEPALIVE = Keepalive()
DONE = Done()


def deliver(events: list[AnswerEvent], sink: AnswerSink) -> None:
    """Send ``events`` to ``sink`` in order."""
    for event in events:
        event.send(sink)


class EventBuffer:
    """A sink that holds a chunk's events as typed events and hands them to ``writer`` at
    :meth:`output`, after the usage the whole chunk reported: the writer sees the same
    usage wherever a backend reports it among a chunk's events."""

    __slots__ = ("_events", "_writer", "usage")

    def __init__(self, writer: AnswerSink) -> None:
        self._writer = writer
        self._events: list[AnswerEvent] = []
        self.usage: TokenUsage | None = None

    @property
    def finished(self) -> bool:
        return self._writer.finished

    def output(self) -> bytes:
        writer = self._writer
        writer.usage = self.usage
        events = self._events
        if events:
            deliver(events, writer)
            events.clear()
        return writer.output()

    def start(self) -> None:
        self._events.append(START)

    def text(self, text: str) -> None:
        self._events.append(TextDelta(text))

    def reasoning(self, text: str) -> None:
        self._events.append(ReasoningDelta(text))

    def thinking_block(self, block: dict[str, Any]) -> None:
        self._events.append(ThinkingBlock(block))

    def tool_call(self, index: int, call_id: str, name: str) -> None:
        self._events.append(ToolCallStart(index, call_id, name))

    def tool_arguments(self, index: int, fragment: str) -> None:
        self._events.append(ToolArgumentsDelta(index, fragment))

    def finish(self, reason: str, service_tier: str | None = None) -> None:
        self._events.append(Finish(reason, service_tier))

    def final_usage(self, usage: TokenUsage, service_tier: str | None) -> None:
        self._events.append(Usage(usage, service_tier))

    def keepalive(self) -> None:
        self._events.append(KEEPALIVE)

    def done(self) -> None:
        self._events.append(DONE)

    def error(self, error: dict[str, Any]) -> None:
        self._events.append(Error(error))
