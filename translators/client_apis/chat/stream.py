"""Writing OpenAI chat completion answers: the whole ``chat.completion`` body, and the
``chat.completion.chunk`` SSE events of a stream (:class:`ChunkStream`, which owns tool
indexes and end states). Translators for backends that do not speak OpenAI build what
the client gets with these.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from aigateway.translators.client_apis.chat.events import AnswerSink, ChatAnswer, ToolCall
from aigateway.translators.contract import ResponseBodyOutput, TokenUsage
from aigateway.translators.wire.errors import openai_error, openai_error_body, openai_error_json
from aigateway.translators.wire.jsoncodec import dumps
from aigateway.translators.wire.sse import SSE_DONE

FinishReason = Literal["stop", "length", "tool_calls", "content_filter"]


def answer_tool_finish(reason: FinishReason, answer_tool: bool, called_tools: bool) -> FinishReason:
    """``stop`` when the only tool called was the answer tool (``response_format`` sent
    as a tool, ``answer_tool``), else ``reason``."""
    if reason == "tool_calls" and answer_tool and not called_tools:
        return "stop"
    return reason


def new_completion_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex


def now() -> int:
    return int(time.time())


def usage_dict(usage: TokenUsage) -> dict[str, Any]:
    out: dict[str, Any] = {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
    }
    details: dict[str, int] = {}
    if usage.cached_input_tokens is not None:
        details["cached_tokens"] = usage.cached_input_tokens
    if usage.cache_write_input_tokens is not None:
        # The field the openai SDK declares (OpenRouter sends it too).
        details["cache_write_tokens"] = usage.cache_write_input_tokens
    if details:
        out["prompt_tokens_details"] = details
    if usage.reasoning_tokens is not None:
        out["completion_tokens_details"] = {"reasoning_tokens": usage.reasoning_tokens}
    return out


def chat_completion_body(
    *,
    completion_id: str,
    created: int,
    model: str,
    content: str | None,
    tool_calls: list[ToolCall],
    finish_reason: FinishReason,
    usage: TokenUsage | None,
    reasoning_content: str | None = None,
    thinking_blocks: list[dict[str, str]] | None = None,
    service_tier: str | None = None,
) -> bytes:
    """A whole ``chat.completion`` response body.

    ``reasoning_content`` and ``thinking_blocks`` (with their signatures, for the client
    to send back) carry a model's reasoning, as OpenAI-compatible servers return it.
    """
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
    if reasoning_content is not None:
        message["reasoning_content"] = reasoning_content
    if thinking_blocks:
        message["thinking_blocks"] = thinking_blocks
    if tool_calls:
        message["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in tool_calls
        ]
    body: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}
        ],
    }
    if usage is not None:
        body["usage"] = usage_dict(usage)
    if service_tier is not None:
        body["service_tier"] = service_tier
    return dumps(body)


@dataclass(slots=True)
class AnswerParts:
    """The pieces of a whole (non-streamed) answer as a backend's content blocks give
    them, in order, made into one ``chat.completion`` body by :meth:`body`."""

    texts: list[str] = field(default_factory=list)
    calls: list[ToolCall] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    thinking_blocks: list[dict[str, str]] = field(default_factory=list)

    def thinking(self, text: str, signature: str) -> None:
        """A signed reasoning block: its text, and the block to send back next turn."""
        self.reasoning.append(text)
        self.thinking_blocks.append({"type": "thinking", "thinking": text, "signature": signature})

    def redacted_thinking(self, data: str) -> None:
        self.thinking_blocks.append({"type": "redacted_thinking", "data": data})

    def answer(self, finish_reason: FinishReason) -> ChatAnswer:
        """The answer as values: what :meth:`body` writes, for another client API."""
        return ChatAnswer(
            text="".join(self.texts) if self.texts or not self.calls else None,
            reasoning="".join(self.reasoning) if self.thinking_blocks else None,
            thinking_blocks=list(self.thinking_blocks),
            tool_calls=list(self.calls),
            finish_reason=finish_reason,
        )

    def body(
        self,
        *,
        completion_id: str,
        created: int,
        model: str,
        finish_reason: FinishReason,
        usage: TokenUsage | None,
        service_tier: str | None = None,
    ) -> bytes:
        """The ``chat.completion`` body: no content when the answer is only tool calls,
        reasoning only when the backend gave reasoning blocks."""
        return chat_completion_body(
            completion_id=completion_id,
            created=created,
            model=model,
            content="".join(self.texts) if self.texts or not self.calls else None,
            tool_calls=self.calls,
            finish_reason=finish_reason,
            usage=usage,
            reasoning_content="".join(self.reasoning) if self.thinking_blocks else None,
            thinking_blocks=self.thinking_blocks,
            service_tier=service_tier,
        )


# ResponseBodyOutput.error values: a bounded set, so logs and metrics can use them as is
# (the client's error event carries the details). The OpenAI translator uses the same.
UPSTREAM_TRUNCATED = "upstream_truncated"
UPSTREAM_STREAM_ERROR = "upstream_stream_error"
UPSTREAM_INVALID_STREAM = "upstream_invalid_stream"
UPSTREAM_INVALID_JSON = "upstream_invalid_json"


def invalid_json_body(detail: str) -> bytes:
    return openai_error_body(
        f"The upstream sent a response that could not be translated: {detail}",
        status=502,
        code="bad_upstream",
    )


def invalid_answer(detail: str) -> ResponseBodyOutput:
    """The whole output for an upstream answer that cannot be translated: a 502 error
    body saying why (``detail``), and the request failed as invalid JSON."""
    return ResponseBodyOutput(
        body=invalid_json_body(detail), error=UPSTREAM_INVALID_JSON, complete=True
    )


def error_event(
    message: str, *, status: int, type: str | None = None, code: str | int | None = None
) -> bytes:
    """An OpenAI-style error as one SSE event (what OpenAI sends when a stream fails)."""
    return b"data: " + openai_error_body(message, status=status, type=type, code=code) + b"\n\n"


class ChunkEncoder:
    """Renders ``chat.completion.chunk`` SSE events for one response.

    The constant head (id, object, created, model) is serialised once; each event only
    serialises its delta, which keeps per-token work small.
    """

    __slots__ = ("_head",)

    def __init__(self, completion_id: str, created: int, model: str) -> None:
        self._head = (
            b'data: {"id":'
            + dumps(completion_id)
            + b',"object":"chat.completion.chunk","created":'
            + str(created).encode()
            + b',"model":'
            + dumps(model)
            + b","
        )

    def _choice(self, delta: bytes, finish_reason: bytes = b"null", tail: bytes = b"") -> bytes:
        return (
            self._head
            + b'"choices":[{"index":0,"delta":'
            + delta
            + b',"logprobs":null,"finish_reason":'
            + finish_reason
            + b"}]"
            + tail
            + b"}\n\n"
        )

    def role(self) -> bytes:
        return self._choice(b'{"role":"assistant","content":""}')

    def content(self, text: str) -> bytes:
        return self._choice(b'{"content":' + dumps(text) + b"}")

    def reasoning(self, text: str) -> bytes:
        return self._choice(b'{"reasoning_content":' + dumps(text) + b"}")

    def thinking_block(self, block: dict[str, Any]) -> bytes:
        return self._choice(b'{"thinking_blocks":[' + dumps(block) + b"]}")

    def tool_call_start(self, index: int, call_id: str, name: str) -> bytes:
        call = {
            "index": index,
            "id": call_id,
            "type": "function",
            "function": {"name": name, "arguments": ""},
        }
        return self._choice(b'{"tool_calls":[' + dumps(call) + b"]}")

    def tool_call_arguments(self, index: int, fragment: str) -> bytes:
        return self._choice(
            b'{"tool_calls":[{"index":'
            + str(index).encode()
            + b',"function":{"arguments":'
            + dumps(fragment)
            + b"}}]}"
        )

    def finish(self, reason: str, service_tier: str | None = None) -> bytes:
        return self._choice(b"{}", b'"' + reason.encode() + b'"', _tier(service_tier))

    def usage(self, usage: TokenUsage, service_tier: str | None = None) -> bytes:
        """The usage-only chunk (``choices: []``) of ``stream_options.include_usage``."""
        return (
            self._head
            + b'"choices":[],"usage":'
            + dumps(usage_dict(usage))
            + _tier(service_tier)
            + b"}\n\n"
        )


def _tier(service_tier: str | None) -> bytes:
    return b"" if service_tier is None else b',"service_tier":' + dumps(service_tier)


# An SSE comment: clients and proxies see traffic, parsers ignore it (sse.py).
KEEPALIVE = b": ping\n\n"


@dataclass(slots=True)
class _ThinkingBlock:
    texts: list[str] = field(default_factory=list)
    signature: str = ""


class BufferedSink:
    """What every client API's ``AnswerSink`` keeps alike: the bytes written since the
    last :meth:`output`, whether its terminal event is written, and the usage so far."""

    __slots__ = ("_done", "_out", "usage")

    def __init__(self) -> None:
        self._out: list[bytes] = []
        self._done = False
        self.usage: TokenUsage | None = None

    @property
    def finished(self) -> bool:
        return self._done

    def output(self) -> bytes:
        out = self._out
        body = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        return body


class ChatChunkWriter(BufferedSink):
    """The chat client API's sink of answer events: ``chat.completion.chunk`` SSE events,
    ``[DONE]`` at the end, the usage chunk when the client asked for it."""

    __slots__ = ("_encoder", "_include_usage")

    def __init__(self, encoder: ChunkEncoder, *, include_usage: bool) -> None:
        super().__init__()
        self._encoder = encoder
        self._include_usage = include_usage

    def start(self) -> None:
        self._out.append(self._encoder.role())

    def text(self, text: str) -> None:
        self._out.append(self._encoder.content(text))

    def reasoning(self, text: str) -> None:
        self._out.append(self._encoder.reasoning(text))

    def thinking_block(self, block: dict[str, Any]) -> None:
        self._out.append(self._encoder.thinking_block(block))

    def tool_call(self, index: int, call_id: str, name: str) -> None:
        self._out.append(self._encoder.tool_call_start(index, call_id, name))

    def tool_arguments(self, index: int, fragment: str) -> None:
        self._out.append(self._encoder.tool_call_arguments(index, fragment))

    def finish(self, reason: str, service_tier: str | None = None) -> None:
        self._out.append(self._encoder.finish(reason, service_tier))

    def final_usage(self, usage: TokenUsage, service_tier: str | None) -> None:
        if self._include_usage:
            self._out.append(self._encoder.usage(usage, service_tier))

    def keepalive(self) -> None:
        self._out.append(KEEPALIVE)

    def done(self) -> None:
        self._out.append(SSE_DONE)
        self._done = True

    def error(self, error: dict[str, Any]) -> None:
        self._out.append(b"data: " + openai_error_json(error) + b"\n\n")
        self._done = True


class ChunkStream:
    """One streamed answer being rebuilt from another schema's events, told to a sink of
    answer events (:mod:`.events`): chat chunks (:class:`ChatChunkWriter`), or another
    client API's writer through the pivot.

    Translators call one method per upstream event; the sink collects what it writes
    until ``output()`` hands it over as one body. After the end or an error
    (``finished``), nothing more is emitted.
    """

    __slots__ = (
        "_sink",
        "_thinking",
        "_tool_index",
        "error",
        "finish_reasons",
        "finished",
        "model",
        "service_tier",
        "usage",
    )

    def __init__(self, sink: AnswerSink) -> None:
        self._sink = sink
        self._tool_index: dict[int, int] = {}  # upstream content block index -> tool call index
        self._thinking: dict[int, _ThinkingBlock] = {}  # reasoning blocks still being read
        self.usage: TokenUsage | None = None
        self.service_tier: str | None = None  # set before finish() to report it
        self.error: str | None = None
        self.finished = False
        self.model: str | None = None  # the model the backend says answered, once known
        self.finish_reasons: tuple[str, ...] = ()

    def role(self) -> None:
        if not self.finished:
            self._sink.start()

    def text(self, text: str) -> None:
        if text and not self.finished:
            self._sink.text(text)

    def reasoning(self, block_index: int, text: str) -> None:
        """Reasoning text: a reasoning delta now, and part of its block."""
        if self.finished:
            return
        block = self._thinking.get(block_index)
        if block is None:
            block = self._thinking[block_index] = _ThinkingBlock()
        if text:
            block.texts.append(text)
            self._sink.reasoning(text)

    def reasoning_signature(self, block_index: int, signature: str) -> None:
        block = self._thinking.get(block_index)
        if block is None:
            block = self._thinking[block_index] = _ThinkingBlock()
        block.signature += signature

    def reasoning_end(self, block_index: int) -> None:
        """The end of a content block: a reasoning block goes out whole with its
        signature, for the client to send back next turn."""
        block = self._thinking.pop(block_index, None)
        if block is not None and not self.finished:
            whole = {"type": "thinking", "thinking": "".join(block.texts)}
            whole["signature"] = block.signature
            self._sink.thinking_block(whole)

    def redacted_reasoning(self, data: str) -> None:
        """An encrypted reasoning block, passed on whole to be sent back."""
        if not self.finished:
            self._sink.thinking_block({"type": "redacted_thinking", "data": data})

    def keepalive(self) -> None:
        if not self.finished:
            self._sink.keepalive()

    def tool_call_start(self, block_index: int, call_id: str, name: str) -> None:
        if self.finished:
            return
        index = len(self._tool_index)
        self._tool_index[block_index] = index
        self._sink.tool_call(index, call_id, name)

    def tool_call_arguments(self, block_index: int, fragment: str) -> None:
        index = self._tool_index.get(block_index)
        # No arguments without their call's start (which carries its id and name).
        if index is not None and fragment and not self.finished:
            self._sink.tool_arguments(index, fragment)

    def finish(self, reason: FinishReason) -> None:
        if not self.finished:
            self._sink.finish(reason, self.service_tier)
            self.finish_reasons = (reason,)

    def complete(self) -> None:
        """The final usage (when reported), then the end."""
        if self.finished:
            return
        if self.usage is not None:
            self._sink.final_usage(self.usage, self.service_tier)
        self._sink.done()
        self.finished = True

    def fail(
        self,
        message: str,
        *,
        status: int,
        type: str | None = None,
        code: str | int | None = None,
        error: str = UPSTREAM_STREAM_ERROR,
    ) -> None:
        """An error event, and the end of the stream."""
        if self.finished:
            return
        self._sink.error(openai_error(message, status=status, type=type, code=code)["error"])
        self.error = error
        self.finished = True

    def truncated(self) -> None:
        """The upstream ended before its terminal event: an error event says so."""
        self.fail(
            "The upstream ended the stream before it was complete.",
            status=502,
            code=UPSTREAM_TRUNCATED,
            error=UPSTREAM_TRUNCATED,
        )

    def output(self) -> ResponseBodyOutput:
        """What the events since the last call add up to, for the client."""
        sink = self._sink
        sink.usage = self.usage
        return ResponseBodyOutput(
            body=sink.output(),
            usage=self.usage,
            error=self.error,
            complete=self.finished,
            model=self.model,
            finish_reasons=self.finish_reasons,
        )


class AnswerEventSource:
    """A backend translator whose streamed answer is typed answer events: written as chat
    chunks, unless the pivot sends them to another client API's writer
    (:meth:`send_answer_to`) before the answer starts."""

    __slots__ = ("_answer_as_values", "_answer_sink", "whole_answer")

    def __init__(self) -> None:
        self._answer_sink: AnswerSink | None = None
        self._answer_as_values = False
        #: A whole answer, as values, when :meth:`keep_whole_answer` asked for it.
        self.whole_answer: ChatAnswer | None = None

    def send_answer_to(self, sink: AnswerSink) -> None:
        """Write the streamed answer's events to ``sink`` instead of chat chunks."""
        self._answer_sink = sink

    def keep_whole_answer(self) -> None:
        """Keep a whole (non-streamed) answer as values (:attr:`whole_answer`) instead of
        writing it as a ``chat.completion`` body."""
        self._answer_as_values = True

    def _answer_body(
        self,
        parts: AnswerParts,
        *,
        completion_id: str,
        created: int,
        model: str,
        finish_reason: FinishReason,
        usage: TokenUsage | None,
        service_tier: str | None = None,
    ) -> bytes:
        """A whole answer's ``chat.completion`` body, or nothing when it is kept as values."""
        if self._answer_as_values:
            self.whole_answer = parts.answer(finish_reason)
            return b""
        return parts.body(
            completion_id=completion_id,
            created=created,
            model=model,
            finish_reason=finish_reason,
            usage=usage,
            service_tier=service_tier,
        )

    def _new_chunk_stream(
        self, completion_id: str, created: int, model: str, *, include_usage: bool
    ) -> ChunkStream:
        sink = self._answer_sink
        if sink is None:
            encoder = ChunkEncoder(completion_id, created, model)
            sink = ChatChunkWriter(encoder, include_usage=include_usage)
        return ChunkStream(sink)
