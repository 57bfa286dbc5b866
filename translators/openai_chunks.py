"""Shared pieces for translators whose backend does not speak OpenAI.

Two halves: reading an OpenAI chat completion request (messages, content parts, tools,
sampling parameters) into plain values, and building the OpenAI ``chat.completion``
body and ``chat.completion.chunk`` SSE events the client gets back. Both the Bedrock
Converse and the Anthropic Messages translators use them, so the two agree on every
edge (data URLs, tool-call ids, usage details, error events).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from translators.base import ResponseBodyOutput, TokenUsage, TranslationError
from translators.errors import openai_error_body
from translators.sse import SSE_DONE

FinishReason = Literal["stop", "length", "tool_calls", "content_filter"]
ToolChoiceMode = Literal["auto", "required", "none", "named"]


def dumps(value: Any) -> bytes:
    """Compact JSON as UTF-8 bytes (non-ASCII text stays 1-4 bytes, not a 6-byte escape)."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    try:
        return text.encode()
    except UnicodeEncodeError:  # a lone surrogate (from a "\ud800" escape) has no UTF-8
        return json.dumps(value, separators=(",", ":")).encode()


def loads_or_none(body: bytes) -> Any:
    """Parsed JSON, or ``None`` for bytes that are not JSON (upstream error bodies)."""
    try:
        return json.loads(body)
    except ValueError:
        return None


def new_completion_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex


def now() -> int:
    return int(time.time())


# --- reading OpenAI requests -------------------------------------------------------


@dataclass(slots=True, frozen=True)
class FunctionTool:
    name: str
    description: str | None
    parameters: dict[str, Any]


@dataclass(slots=True, frozen=True)
class ToolChoice:
    mode: ToolChoiceMode
    name: str | None = None  # set when mode == "named"


@dataclass(slots=True, frozen=True)
class DataImage:
    media_type: str  # e.g. "image/png"
    data: str  # base64, as the client sent it


def is_streaming(payload: dict[str, Any]) -> bool:
    return payload.get("stream") is True


def include_usage(payload: dict[str, Any]) -> bool:
    options = payload.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def max_output_tokens(payload: dict[str, Any]) -> int | None:
    """``max_completion_tokens`` (current name) wins over ``max_tokens`` (deprecated)."""
    for key in ("max_completion_tokens", "max_tokens"):
        value = payload.get(key)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise TranslationError(f"'{key}' must be a positive integer", param=key)
        return value
    return None


def number_param(payload: dict[str, Any], key: str) -> float | None:
    value = payload.get(key)
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise TranslationError(f"'{key}' must be a number", param=key)
    return value


def stop_sequences(payload: dict[str, Any]) -> list[str] | None:
    stop = payload.get("stop")
    if stop is None:
        return None
    if isinstance(stop, str):
        return [stop]
    if isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        return list(stop) or None
    raise TranslationError("'stop' must be a string or a list of strings", param="stop")


def reject_unsupported(payload: dict[str, Any]) -> None:
    """Refuse what would silently change the answer's shape if dropped."""
    n = payload.get("n")
    if n is not None and n != 1:
        raise TranslationError("only n=1 is supported for this model", param="n")
    if payload.get("functions") is not None or payload.get("function_call") is not None:
        raise TranslationError(
            "'functions' and 'function_call' are not supported; use 'tools'", param="functions"
        )


def function_tools(payload: dict[str, Any]) -> list[FunctionTool]:
    tools = payload.get("tools")
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise TranslationError("'tools' must be a list", param="tools")
    out: list[FunctionTool] = []
    for i, tool in enumerate(tools):
        param = f"tools[{i}]"
        if not isinstance(tool, dict) or tool.get("type") != "function":
            raise TranslationError("only tools of type 'function' are supported", param=param)
        fn = tool.get("function")
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
            raise TranslationError("a function tool needs 'function.name'", param=param)
        description = fn.get("description")
        parameters = fn.get("parameters")
        if parameters is None:
            # OpenAI allows omitting parameters (a no-argument function); schemas need one.
            parameters = {"type": "object", "properties": {}}
        if not isinstance(parameters, dict):
            raise TranslationError("'parameters' must be a JSON schema object", param=param)
        out.append(
            FunctionTool(
                fn["name"], description if isinstance(description, str) else None, parameters
            )
        )
    return out


def tool_choice(payload: dict[str, Any]) -> ToolChoice | None:
    """``None`` when the client did not say (the backend's default, "auto", applies)."""
    choice = payload.get("tool_choice")
    if choice is None:
        return None
    if choice in ("auto", "required", "none"):
        return ToolChoice(choice)
    if isinstance(choice, dict) and choice.get("type") == "function":
        fn = choice.get("function")
        if isinstance(fn, dict) and isinstance(fn.get("name"), str):
            return ToolChoice("named", fn["name"])
    raise TranslationError("unsupported 'tool_choice'", param="tool_choice")


def parallel_tool_calls(payload: dict[str, Any]) -> bool | None:
    value = payload.get("parallel_tool_calls")
    return value if isinstance(value, bool) else None


def messages_of(payload: dict[str, Any]) -> list[dict[str, Any]]:
    messages = payload.get("messages")
    if not isinstance(messages, list) or not messages:
        raise TranslationError("'messages' must be a non-empty list", param="messages")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise TranslationError("each message needs a 'role'", param=f"messages[{i}]")
    return messages


def content_parts(content: Any, param: str) -> list[dict[str, Any]]:
    """A message's ``content`` as a list of parts (a plain string is one text part)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list):
        for part in content:
            if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                raise TranslationError("each content part needs a 'type'", param=param)
        return content
    raise TranslationError("'content' must be a string or a list of parts", param=param)


def text_parts(content: Any, param: str) -> list[str]:
    """The texts of a message that may only carry text (system, developer, tool)."""
    if isinstance(content, str):
        return [content]
    texts: list[str] = []
    for part in content_parts(content, param):
        if part["type"] != "text":
            raise TranslationError("only text content is supported here", param=param)
        texts.append(part_text(part, param))
    return texts


def part_text(part: dict[str, Any], param: str) -> str:
    text = part.get("text")
    if not isinstance(text, str):
        raise TranslationError("a text part needs 'text'", param=param)
    return text


def image_url_of(part: dict[str, Any], param: str) -> str:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str) or not url:
        raise TranslationError("an image_url part needs 'image_url.url'", param=param)
    return url


def parse_data_url(url: str, param: str) -> DataImage:
    """``data:image/png;base64,AAAA`` -> its media type and base64 payload."""
    if not url.startswith("data:"):
        raise TranslationError(
            "only base64 data: URLs are supported for images with this model", param=param
        )
    header, sep, data = url[5:].partition(",")
    media_type, _, encoding = header.partition(";")
    if not sep or encoding.lower() != "base64" or not data:
        raise TranslationError("image data URLs must be base64-encoded", param=param)
    return DataImage(media_type.strip().lower(), data)


def tool_call_fields(call: Any, param: str) -> tuple[str, str, dict[str, Any]]:
    """An assistant ``tool_calls`` item -> (id, function name, parsed arguments object)."""
    if not isinstance(call, dict) or call.get("type", "function") != "function":
        raise TranslationError("only function tool calls are supported", param=param)
    fn = call.get("function")
    call_id = call.get("id")
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
        raise TranslationError("a tool call needs 'function.name'", param=param)
    if not isinstance(call_id, str) or not call_id:
        raise TranslationError("a tool call needs an 'id'", param=param)
    raw = fn.get("arguments")
    if raw is None or raw == "":
        return call_id, fn["name"], {}
    if not isinstance(raw, str):
        raise TranslationError("'function.arguments' must be a JSON string", param=param)
    try:
        args = json.loads(raw)
    except ValueError:
        raise TranslationError("'function.arguments' is not valid JSON", param=param) from None
    if not isinstance(args, dict):
        raise TranslationError("'function.arguments' must be a JSON object", param=param)
    return call_id, fn["name"], args


def append_merged(
    messages: list[dict[str, Any]], role: str, blocks: list[dict[str, Any]], key: str
) -> None:
    """Append a message, merging into the previous one when the role repeats (both
    Bedrock and Anthropic want user/assistant turns to alternate)."""
    if not blocks:
        return
    if messages and messages[-1]["role"] == role:
        messages[-1][key].extend(blocks)
    else:
        messages.append({"role": role, key: blocks})


# --- building OpenAI responses -----------------------------------------------------


@dataclass(slots=True, frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, as OpenAI clients expect


def usage_dict(usage: TokenUsage) -> dict[str, Any]:
    out: dict[str, Any] = {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
    }
    if usage.cached_input_tokens is not None:
        out["prompt_tokens_details"] = {"cached_tokens": usage.cached_input_tokens}
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
) -> bytes:
    """A whole ``chat.completion`` response body."""
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
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
    return dumps(body)


# ResponseBodyOutput.error values: a bounded set, so logs and metrics can use them as is
# (the client's error event carries the details). The OpenAI translator uses the same.
UPSTREAM_TRUNCATED = "upstream_truncated"
UPSTREAM_STREAM_ERROR = "upstream_stream_error"
UPSTREAM_INVALID_STREAM = "upstream_invalid_stream"
UPSTREAM_INVALID_JSON = "upstream_invalid_json"


def truncated_event() -> bytes:
    return error_event(
        "The upstream ended the stream before it was complete.",
        status=502,
        code=UPSTREAM_TRUNCATED,
    )


def invalid_json_body(detail: str) -> bytes:
    return openai_error_body(
        f"The upstream sent a response that could not be translated: {detail}",
        status=502,
        code="bad_upstream",
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

    def _choice(self, delta: bytes, finish_reason: bytes = b"null") -> bytes:
        return (
            self._head
            + b'"choices":[{"index":0,"delta":'
            + delta
            + b',"logprobs":null,"finish_reason":'
            + finish_reason
            + b"}]}\n\n"
        )

    def role(self) -> bytes:
        return self._choice(b'{"role":"assistant","content":""}')

    def content(self, text: str) -> bytes:
        return self._choice(b'{"content":' + dumps(text) + b"}")

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

    def finish(self, reason: FinishReason) -> bytes:
        return self._choice(b"{}", b'"' + reason.encode() + b'"')

    def usage(self, usage: TokenUsage) -> bytes:
        """The usage-only chunk (``choices: []``) of ``stream_options.include_usage``."""
        return self._head + b'"choices":[],"usage":' + dumps(usage_dict(usage)) + b"}\n\n"


class ChunkStream:
    """One streamed response being rebuilt as OpenAI chunks from another schema's events.

    Translators call one method per upstream event; the events for the client collect
    until ``output()`` hands them over as one body. After ``[DONE]`` or an error event
    (``finished``), nothing more is emitted.
    """

    __slots__ = ("_encoder", "_include_usage", "_out", "_tool_index", "error", "finished", "usage")

    def __init__(self, encoder: ChunkEncoder, *, include_usage: bool) -> None:
        self._encoder = encoder
        self._include_usage = include_usage
        self._out: list[bytes] = []
        self._tool_index: dict[int, int] = {}  # upstream content block index -> tool call index
        self.usage: TokenUsage | None = None
        self.error: str | None = None
        self.finished = False

    def role(self) -> None:
        self._out.append(self._encoder.role())

    def text(self, text: str) -> None:
        if text:
            self._out.append(self._encoder.content(text))

    def tool_call_start(self, block_index: int, call_id: str, name: str) -> None:
        index = len(self._tool_index)
        self._tool_index[block_index] = index
        self._out.append(self._encoder.tool_call_start(index, call_id, name))

    def tool_call_arguments(self, block_index: int, fragment: str) -> None:
        index = self._tool_index.get(block_index)
        if index is not None and fragment:  # no call without its start (id and name)
            self._out.append(self._encoder.tool_call_arguments(index, fragment))

    def finish(self, reason: FinishReason) -> None:
        self._out.append(self._encoder.finish(reason))

    def complete(self) -> None:
        """The usage chunk (if the client asked for it), then ``[DONE]``."""
        if self._include_usage and self.usage is not None:
            self._out.append(self._encoder.usage(self.usage))
        self._out.append(SSE_DONE)
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
        self._out.append(error_event(message, status=status, type=type, code=code))
        self.error = error
        self.finished = True

    def truncated(self) -> None:
        self._out.append(truncated_event())
        self.error = UPSTREAM_TRUNCATED
        self.finished = True

    def output(self) -> ResponseBodyOutput:
        """What the events since the last call add up to, for the client."""
        out = self._out
        body = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        return ResponseBodyOutput(body=body, usage=self.usage, error=self.error)
