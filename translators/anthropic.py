"""OpenAI chat completions <-> Anthropic Messages (``POST /v1/messages``).

JSON answers become ``chat.completion`` bodies; the Messages SSE stream
(``message_start``, ``content_block_*``, ``message_delta``, ``message_stop``, ``ping``,
``error``) becomes ``chat.completion.chunk`` events. The ``x-api-key`` header is the
processor's job (backend auth), not this module's.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aigateway.translators.base import (
    ResponseBodyOutput,
    ResponseHeadersDecision,
    TokenUsage,
    TranslationError,
    UpstreamRequest,
)
from aigateway.translators.errors import (
    MAX_UPSTREAM_MESSAGE,
    error_type_for_status,
    openai_error_body,
    upstream_text,
)
from aigateway.translators.jsoncodec import as_int, dumps, loads_or_none
from aigateway.translators.openai_request import (
    append_merged,
    content_parts,
    function_tools,
    image_url_of,
    include_usage,
    is_streaming,
    max_output_tokens,
    messages_of,
    number_param,
    parallel_tool_calls,
    parse_data_url,
    part_text,
    reject_unsupported,
    stop_sequences,
    text_parts,
    tool_call_fields,
    tool_choice,
)
from aigateway.translators.openai_stream import (
    UPSTREAM_INVALID_JSON,
    UPSTREAM_INVALID_STREAM,
    ChunkEncoder,
    ChunkStream,
    FinishReason,
    ToolCall,
    chat_completion_body,
    invalid_json_body,
    new_completion_id,
    now,
)
from aigateway.translators.sse import SseDecoder

MESSAGES_PATH = "/v1/messages"
DEFAULT_VERSION = "2023-06-01"
VERTEX_VERSION = "vertex-2023-10-16"


@dataclass(slots=True, frozen=True)
class VertexRawPredict:
    """Claude on Vertex AI: the Messages body, without ``model`` and with
    ``anthropic_version`` in it, posted to ``{model_path}:rawPredict`` (or
    ``:streamRawPredict``). ``model_path`` is the publisher model's resource path."""

    model_path: str


_IMAGE_MEDIA_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})

_FINISH_REASONS: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


_TOOL_CHOICE_TYPES = {"auto": "auto", "required": "any", "none": "none"}


@dataclass(slots=True, frozen=True)
class AnthropicError:
    status: int
    type: str


# Anthropic error types (https://docs.anthropic.com/en/api/errors) in OpenAI terms.
_ERRORS: dict[str, AnthropicError] = {
    "invalid_request_error": AnthropicError(400, "invalid_request_error"),
    "authentication_error": AnthropicError(401, "authentication_error"),
    "billing_error": AnthropicError(402, "invalid_request_error"),
    "permission_error": AnthropicError(403, "permission_error"),
    "not_found_error": AnthropicError(404, "invalid_request_error"),
    "request_too_large": AnthropicError(413, "invalid_request_error"),
    "rate_limit_error": AnthropicError(429, "rate_limit_error"),
    "api_error": AnthropicError(500, "server_error"),
    "timeout_error": AnthropicError(504, "timeout_error"),
    "overloaded_error": AnthropicError(529, "server_error"),
}


def anthropic_error(error_type: str | None, default_status: int = 500) -> AnthropicError:
    """The status and OpenAI error type for an Anthropic error type."""
    known = _ERRORS.get(error_type or "")
    if known is not None:
        return known
    return AnthropicError(default_status, error_type_for_status(default_status))


def finish_reason_from_anthropic(stop_reason: Any) -> FinishReason:
    return _FINISH_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"


@dataclass(slots=True)
class _UsageCounts:
    """Anthropic usage as it accumulates over a stream (later events overwrite)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read: int | None = None
    cache_creation: int | None = None

    def update(self, usage: Any) -> None:
        if not isinstance(usage, dict):
            return
        value = as_int(usage.get("input_tokens"))
        if value is not None:
            self.input_tokens = value
        value = as_int(usage.get("output_tokens"))
        if value is not None:
            self.output_tokens = value  # cumulative in message_delta
        value = as_int(usage.get("cache_read_input_tokens"))
        if value is not None:
            self.cache_read = value
        value = as_int(usage.get("cache_creation_input_tokens"))
        if value is not None:
            self.cache_creation = value

    def token_usage(self) -> TokenUsage:
        # Anthropic's input_tokens excludes cache reads and writes; OpenAI's prompt includes them.
        prompt = self.input_tokens + (self.cache_read or 0) + (self.cache_creation or 0)
        return TokenUsage(
            input_tokens=prompt,
            output_tokens=self.output_tokens,
            total_tokens=prompt + self.output_tokens,
            cached_input_tokens=self.cache_read,
            cache_write_input_tokens=self.cache_creation,
        )


def usage_from_anthropic(usage: Any) -> TokenUsage:
    counts = _UsageCounts()
    counts.update(usage)
    return counts.token_usage()


# --- request -----------------------------------------------------------------------


def _image_block(url: str, param: str) -> dict[str, Any]:
    if url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    image = parse_data_url(url, param)
    if image.media_type not in _IMAGE_MEDIA_TYPES:
        raise TranslationError(
            f"unsupported image type '{image.media_type}' (png, jpeg, gif, webp)", param=param
        )
    return {
        "type": "image",
        "source": {"type": "base64", "media_type": image.media_type, "data": image.data},
    }


def _user_blocks(content: Any, param: str) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for part in content_parts(content, param):
        kind = part["type"]
        if kind == "text":
            text = part_text(part, param)
            if text:  # Anthropic rejects empty text blocks
                blocks.append({"type": "text", "text": text})
        elif kind == "image_url":
            blocks.append(_image_block(image_url_of(part, param), param))
        else:
            raise TranslationError(f"content part type '{kind}' is not supported", param=param)
    return blocks


def _assistant_blocks(message: dict[str, Any], param: str) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for part in content_parts(message.get("content"), param):
        kind = part["type"]
        if kind == "text":
            text = part_text(part, param)
            if text:
                blocks.append({"type": "text", "text": text})
        elif kind != "refusal":  # a refusal carries no content worth replaying
            raise TranslationError(f"content part type '{kind}' is not supported", param=param)
    calls = message.get("tool_calls") or []
    if not isinstance(calls, list):
        raise TranslationError("'tool_calls' must be a list", param=param)
    for j, call in enumerate(calls):
        call_id, name, args = tool_call_fields(call, f"{param}.tool_calls[{j}]")
        blocks.append({"type": "tool_use", "id": call_id, "name": name, "input": args})
    return blocks


def _tool_result_block(message: dict[str, Any], param: str) -> dict[str, Any]:
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise TranslationError("a tool message needs 'tool_call_id'", param=param)
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": call_id}
    texts = [t for t in text_parts(message.get("content"), param) if t]
    if len(texts) == 1:
        block["content"] = texts[0]
    elif texts:
        block["content"] = [{"type": "text", "text": t} for t in texts]
    return block


def messages_request(
    payload: dict[str, Any], *, model: str, default_max_tokens: int
) -> dict[str, Any]:
    """The Messages request body for an OpenAI chat completion request."""
    reject_unsupported(payload)
    system: list[dict[str, Any]] = []
    messages: list[dict[str, Any]] = []
    for i, message in enumerate(messages_of(payload)):
        role = message["role"]
        param = f"messages[{i}]"
        if role in ("system", "developer"):
            system.extend(
                {"type": "text", "text": t} for t in text_parts(message.get("content"), param) if t
            )
        elif role == "user":
            append_merged(messages, "user", _user_blocks(message.get("content"), param), "content")
        elif role == "assistant":
            append_merged(messages, "assistant", _assistant_blocks(message, param), "content")
        elif role == "tool":
            append_merged(messages, "user", [_tool_result_block(message, param)], "content")
        else:
            raise TranslationError(f"unsupported message role '{role}'", param=param)

    max_tokens = max_output_tokens(payload)
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": max_tokens if max_tokens is not None else default_max_tokens,
        "messages": messages,
    }
    if system:
        body["system"] = system
    for key in ("temperature", "top_p"):
        value = number_param(payload, key)
        if value is not None:
            body[key] = value
    stops = stop_sequences(payload)
    if stops:
        body["stop_sequences"] = stops
    if is_streaming(payload):
        body["stream"] = True
    user = payload.get("user")
    if isinstance(user, str) and user:
        body["metadata"] = {"user_id": user}
    _add_tools(body, payload)
    return body


def _add_tools(body: dict[str, Any], payload: dict[str, Any]) -> None:
    tools = function_tools(payload)
    choice = tool_choice(payload)
    if not tools:
        if choice is not None and choice.mode in ("required", "named"):
            raise TranslationError("'tool_choice' needs 'tools'", param="tool_choice")
        return
    specs: list[dict[str, Any]] = []
    for tool in tools:
        spec: dict[str, Any] = {"name": tool.name, "input_schema": tool.parameters}
        if tool.description:
            spec["description"] = tool.description
        specs.append(spec)
    body["tools"] = specs
    out: dict[str, Any] | None = None
    if choice is None:
        pass  # Anthropic's default is auto
    elif choice.mode == "named":
        if choice.name not in {t.name for t in tools}:
            raise TranslationError(
                f"'tool_choice' names unknown function '{choice.name}'", param="tool_choice"
            )
        out = {"type": "tool", "name": choice.name}
    else:
        out = {"type": _TOOL_CHOICE_TYPES[choice.mode]}
    if parallel_tool_calls(payload) is False and (out is None or out["type"] != "none"):
        out = out or {"type": "auto"}
        out["disable_parallel_tool_use"] = True
    if out is not None:
        body["tool_choice"] = out


# --- the translator ----------------------------------------------------------------


class AnthropicMessagesTranslator:
    """One request's translation to Anthropic Messages and back (see ``ChatTranslator``).

    ``model`` is the Anthropic model sent upstream; the client sees the ``model`` it sent.
    ``default_max_tokens`` fills Anthropic's required ``max_tokens`` when the client gave
    none. ``completion_id`` and ``created`` can be fixed (tests); otherwise the id is
    ``chatcmpl-`` plus Anthropic's message id, so logs on both sides line up.
    """

    __slots__ = (
        "_client_model",
        "_completion_id",
        "_created",
        "_decoder",
        "_default_max_tokens",
        "_include_usage",
        "_json_parts",
        "_model",
        "_stop_reason",
        "_stream",
        "_streamed",
        "_usage",
        "_version",
        "_vertex",
    )

    def __init__(
        self,
        model: str,
        *,
        version: str = DEFAULT_VERSION,
        default_max_tokens: int = 4096,
        completion_id: str | None = None,
        created: int | None = None,
        vertex: VertexRawPredict | None = None,
    ) -> None:
        self._model = model
        self._version = version
        self._vertex = vertex
        self._default_max_tokens = default_max_tokens
        self._completion_id = completion_id
        self._created = created if created is not None else now()
        self._client_model = model
        self._streamed = False
        self._include_usage = False
        self._json_parts: list[bytes] = []
        self._decoder: SseDecoder | None = None
        self._stream: ChunkStream | None = None
        self._usage = _UsageCounts()
        self._stop_reason: Any = None

    def request(self, payload: dict[str, Any], raw: bytes) -> UpstreamRequest:
        model = payload.get("model")
        if isinstance(model, str) and model:
            self._client_model = model
        body = messages_request(
            payload, model=self._model, default_max_tokens=self._default_max_tokens
        )
        self._streamed = is_streaming(payload)
        self._include_usage = self._streamed and include_usage(payload)
        if self._vertex is not None:
            del body["model"]  # Vertex names the model in the path
            body["anthropic_version"] = VERTEX_VERSION
            action = ":streamRawPredict" if self._streamed else ":rawPredict"
            return UpstreamRequest(
                body=dumps(body),
                path=self._vertex.model_path + action,
                headers=(("content-type", "application/json"),),
            )
        return UpstreamRequest(
            body=dumps(body),
            path=MESSAGES_PATH,
            headers=(("content-type", "application/json"), ("anthropic-version", self._version)),
        )

    def response_headers(self, status: int, content_type: str) -> ResponseHeadersDecision:
        media_type = content_type.split(";", 1)[0].strip().lower()
        self._streamed = media_type == "text/event-stream"
        return ResponseHeadersDecision(streamed=self._streamed)

    def response_body(self, chunk: bytes, end_of_stream: bool) -> ResponseBodyOutput:
        if self._streamed:
            return self._stream_body(chunk, end_of_stream)
        self._json_parts.append(chunk)
        if not end_of_stream:
            return ResponseBodyOutput(body=b"")
        return self._json_body(b"".join(self._json_parts))

    def error_body(self, status: int, body: bytes, headers: Mapping[str, str]) -> bytes:
        doc = loads_or_none(body)
        error = doc.get("error") if isinstance(doc, dict) else None
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            kind = error.get("type") if isinstance(error.get("type"), str) else None
            info = anthropic_error(kind, status)
            return openai_error_body(
                error["message"][:MAX_UPSTREAM_MESSAGE],
                status=status,
                type=info.type,
                code=kind or status,
            )
        message = upstream_text(body) or f"upstream returned HTTP {status}"
        return openai_error_body(message, status=status, code=status)

    def _id(self, upstream_id: Any) -> str:
        if self._completion_id is None:
            self._completion_id = (
                "chatcmpl-" + upstream_id
                if isinstance(upstream_id, str) and upstream_id
                else new_completion_id()
            )
        return self._completion_id

    # --- JSON ---

    def _json_body(self, body: bytes) -> ResponseBodyOutput:
        try:
            doc = json.loads(body)
            content = doc["content"]
            if not isinstance(content, list):
                raise TypeError("content is not a list")
        except (ValueError, KeyError, TypeError) as exc:
            return ResponseBodyOutput(
                body=invalid_json_body(f"not a Messages response ({exc!r})"),
                error=UPSTREAM_INVALID_JSON,
                complete=True,
            )
        texts: list[str] = []
        calls: list[ToolCall] = []
        for block in content:
            if not isinstance(block, dict):
                continue
            kind = block.get("type")
            if kind == "text" and isinstance(block.get("text"), str):
                texts.append(block["text"])
            elif kind == "tool_use":
                calls.append(
                    ToolCall(
                        str(block.get("id", "")),
                        str(block.get("name", "")),
                        dumps(block.get("input", {})).decode(),
                    )
                )
            # thinking / redacted_thinking / server tool blocks: no OpenAI message field
        usage = usage_from_anthropic(doc.get("usage"))
        out = chat_completion_body(
            completion_id=self._id(doc.get("id")),
            created=self._created,
            model=self._client_model,
            content="".join(texts) if texts or not calls else None,
            tool_calls=calls,
            finish_reason=finish_reason_from_anthropic(doc.get("stop_reason")),
            usage=usage,
        )
        return ResponseBodyOutput(body=out, usage=usage, complete=True)

    # --- SSE ---

    def _stream_body(self, chunk: bytes, end_of_stream: bool) -> ResponseBodyOutput:
        if self._decoder is None:
            self._decoder = SseDecoder()
        stream = self._stream
        if stream is not None and stream.finished:  # nothing after [DONE] or an error
            return stream.output()
        for event in self._decoder.feed(chunk):
            stream = self._on_event(event.data, event.event)
            if stream.finished:
                break
        if stream is None:  # no event yet: keep the id free for message_start's
            if not end_of_stream:
                return ResponseBodyOutput(body=b"")
            stream = self._chunk_stream(None)
        if end_of_stream and not stream.finished:
            stream.truncated()
        return stream.output()

    def _chunk_stream(self, upstream_id: Any) -> ChunkStream:
        if self._stream is None:
            encoder = ChunkEncoder(self._id(upstream_id), self._created, self._client_model)
            self._stream = ChunkStream(encoder, include_usage=self._include_usage)
        return self._stream

    def _on_event(self, data: bytes, event_name: str) -> ChunkStream:
        doc = loads_or_none(data)
        if not isinstance(doc, dict):
            stream = self._chunk_stream(None)
            stream.fail(
                f"The upstream sent an undecodable '{event_name}' event.",
                status=502,
                code="bad_upstream",
                error=UPSTREAM_INVALID_STREAM,
            )
            return stream
        kind = doc.get("type", event_name)
        if kind == "message_start":
            message = doc.get("message")
            message = message if isinstance(message, dict) else {}
            stream = self._chunk_stream(message.get("id"))
            self._usage.update(message.get("usage"))
            stream.usage = self._usage.token_usage()
            stream.role()
            return stream
        stream = self._chunk_stream(None)
        if kind == "content_block_delta":
            delta = doc.get("delta")
            if not isinstance(delta, dict):
                return stream
            delta_type = delta.get("type")
            if delta_type == "text_delta" and isinstance(delta.get("text"), str):
                stream.text(delta["text"])
            elif delta_type == "input_json_delta" and isinstance(delta.get("partial_json"), str):
                stream.tool_call_arguments(as_int(doc.get("index")) or 0, delta["partial_json"])
            # thinking_delta, signature_delta, citations_delta: no OpenAI chunk field
        elif kind == "content_block_start":
            block = doc.get("content_block")
            if not isinstance(block, dict):
                return stream
            if block.get("type") == "tool_use":
                stream.tool_call_start(
                    as_int(doc.get("index")) or 0,
                    str(block.get("id", "")),
                    str(block.get("name", "")),
                )
            elif block.get("type") == "text" and isinstance(block.get("text"), str):
                stream.text(block["text"])
        elif kind == "message_delta":
            delta = doc.get("delta")
            if isinstance(delta, dict) and delta.get("stop_reason") is not None:
                self._stop_reason = delta["stop_reason"]
            self._usage.update(doc.get("usage"))
            stream.usage = self._usage.token_usage()
        elif kind == "message_stop":
            stream.finish(finish_reason_from_anthropic(self._stop_reason))
            stream.complete()
        elif kind == "error":
            error = doc.get("error")
            error = error if isinstance(error, dict) else {}
            error_type = error.get("type") if isinstance(error.get("type"), str) else None
            message = error.get("message")
            info = anthropic_error(error_type)
            stream.fail(
                str(message)[:MAX_UPSTREAM_MESSAGE] if message else "upstream stream error",
                status=info.status,
                type=info.type,
                code=error_type,
            )
        # ping, content_block_stop and event types added later carry nothing for the client
        return stream
