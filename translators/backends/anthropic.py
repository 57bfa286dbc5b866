"""OpenAI chat completions <-> Anthropic Messages (``POST /v1/messages``).

JSON answers become ``chat.completion`` bodies; the Messages SSE stream
(``message_start``, ``content_block_*``, ``message_delta``, ``message_stop``, ``ping``,
``error``) becomes ``chat.completion.chunk`` events. The ``x-api-key`` header is the
processor's job (backend auth), not this module's.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aigateway.translators.backends.claude_models import native_output_config
from aigateway.translators.backends.sse_or_json import SseOrJsonAnswer
from aigateway.translators.client_apis import chat
from aigateway.translators.contract import (
    ResponseBodyOutput,
    TokenUsage,
    TranslationError,
    UpstreamRequest,
)
from aigateway.translators.wire.errors import (
    MAX_UPSTREAM_MESSAGE,
    error_type_for_status,
    openai_error_body,
    upstream_text,
)
from aigateway.translators.wire.jsoncodec import as_int, dumps, loads_or_none
from aigateway.translators.wire.sse import SseEvent

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

_FINISH_REASONS: dict[str, chat.FinishReason] = {
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


def finish_reason_from_anthropic(stop_reason: Any) -> chat.FinishReason:
    return _FINISH_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"


@dataclass(slots=True)
class MessagesUsage:
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
    counts = MessagesUsage()
    counts.update(usage)
    return counts.token_usage()


# --- request -----------------------------------------------------------------------


def _cache(mark: chat.CacheControl) -> dict[str, str]:
    if mark.ttl is None:
        return {"type": "ephemeral"}
    return {"type": "ephemeral", "ttl": mark.ttl}


def _mark_last(blocks: list[dict[str, Any]], mark: chat.CacheControl | None, param: str) -> None:
    """A message-level ``cache_control`` marks the message's last block."""
    if mark is None:
        return
    if not blocks:
        raise TranslationError("'cache_control' on a message without content", param=param)
    blocks[-1]["cache_control"] = _cache(mark)


def _text_block(text: str, part: dict[str, Any], param: str) -> dict[str, Any] | None:
    mark = chat.cache_control_of(part, param)
    if not text:  # Anthropic rejects empty text blocks
        if mark is not None:
            raise TranslationError("'cache_control' on an empty text part", param=param)
        return None
    block: dict[str, Any] = {"type": "text", "text": text}
    if mark is not None:
        block["cache_control"] = _cache(mark)
    return block


def _image_block(url: str, param: str) -> dict[str, Any]:
    if chat.pdf_remote_url(url):
        return {"type": "document", "source": {"type": "url", "url": url}}
    if url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    if chat.pdf_image_url(url):
        image = chat.parse_data_url(url, param)
        return _document_block(chat.DataDocument(image.media_type, image.data, None), param)
    image = chat.parse_data_url(url, param)
    if image.media_type not in _IMAGE_MEDIA_TYPES:
        raise TranslationError(
            f"unsupported image type '{image.media_type}' (png, jpeg, gif, webp)", param=param
        )
    return {
        "type": "image",
        "source": {"type": "base64", "media_type": image.media_type, "data": image.data},
    }


def _document_block(document: chat.DataDocument, param: str) -> dict[str, Any]:
    if document.media_type == chat.PDF_MEDIA_TYPE:
        source = {"type": "base64", "media_type": chat.PDF_MEDIA_TYPE, "data": document.data}
    elif document.media_type == "text/plain":
        try:
            text = base64.b64decode(document.data, validate=True).decode()
        except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors
            raise TranslationError(
                "a text/plain file must be base64-encoded UTF-8", param=param
            ) from None
        source = {"type": "text", "media_type": "text/plain", "data": text}
    else:
        raise TranslationError(
            f"unsupported file type '{document.media_type}' (application/pdf, text/plain)",
            param=param,
        )
    block: dict[str, Any] = {"type": "document", "source": source}
    if document.filename:
        block["title"] = document.filename
    return block


def _content_blocks(content: Any, param: str) -> list[dict[str, Any]]:
    """User content and tool results: text, images and documents, each part whole."""
    blocks: list[dict[str, Any]] = []
    for part in chat.content_parts(content, param):
        kind = part["type"]
        if kind == "text":
            block = _text_block(chat.part_text(part, param), part, param)
            if block is not None:
                blocks.append(block)
            continue
        if kind == "image_url":
            block = _image_block(chat.image_url_of(part, param), param)
        elif kind == "file":
            block = _document_block(chat.file_document(part, param), param)
        else:
            raise TranslationError(f"content part type '{kind}' is not supported", param=param)
        mark = chat.cache_control_of(part, param)
        if mark is not None:
            block["cache_control"] = _cache(mark)
        blocks.append(block)
    return blocks


def _system_blocks(message: dict[str, Any], param: str) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for part in chat.content_parts(message.get("content"), param):
        if part["type"] != "text":
            raise TranslationError("only text content is supported here", param=param)
        block = _text_block(chat.part_text(part, param), part, param)
        if block is not None:
            blocks.append(block)
    _mark_last(blocks, chat.cache_control_of(message, param), param)
    return blocks


def _user_blocks(message: dict[str, Any], param: str) -> list[dict[str, Any]]:
    blocks = _content_blocks(message.get("content"), param)
    _mark_last(blocks, chat.cache_control_of(message, param), param)
    return blocks


def _thinking_block(block: chat.ThinkingBlock) -> dict[str, Any]:
    if block.redacted:
        return {"type": "redacted_thinking", "data": block.data}
    return {"type": "thinking", "thinking": block.thinking, "signature": block.signature}


def _assistant_blocks(message: dict[str, Any], param: str) -> list[dict[str, Any]]:
    # Thinking first: Anthropic wants a tool-use turn to start with its signed thinking.
    blocks = [_thinking_block(b) for b in chat.thinking_blocks_of(message, param)]
    for text, part in chat.assistant_texts(message, param):
        block = _text_block(text, part, param)
        if block is not None:
            blocks.append(block)
    for where, call, call_id, name, args in chat.tool_calls_of(message, param):
        use: dict[str, Any] = {"type": "tool_use", "id": call_id, "name": name, "input": args}
        mark = chat.cache_control_of(call, where)
        if mark is not None:
            use["cache_control"] = _cache(mark)
        blocks.append(use)
    _mark_last(blocks, chat.cache_control_of(message, param), param)
    return blocks


def _tool_result_block(message: dict[str, Any], param: str) -> dict[str, Any]:
    call_id = chat.tool_result_id(message, param)
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": call_id}
    blocks = _content_blocks(message.get("content"), param)
    if len(blocks) == 1 and set(blocks[0]) == {"type", "text"}:
        block["content"] = blocks[0]["text"]
    elif blocks:
        block["content"] = blocks
    mark = chat.cache_control_of(message, param)
    if mark is not None:
        block["cache_control"] = _cache(mark)
    return block


_SERVICE_TIERS = {"auto": "auto", "default": "standard_only"}


def messages_request(
    payload: dict[str, Any], *, model: str, default_max_tokens: int
) -> dict[str, Any]:
    """The Messages request body for an OpenAI chat completion request."""
    chat.reject_unsupported(payload)
    system: list[dict[str, Any]] = []
    messages: list[dict[str, Any]] = []
    for i, message in enumerate(chat.messages_of(payload)):
        role = message["role"]
        param = f"messages[{i}]"
        if role in ("system", "developer"):
            system.extend(_system_blocks(message, param))
        elif role == "user":
            chat.append_merged(messages, "user", _user_blocks(message, param), "content")
        elif role == "assistant":
            chat.append_merged(messages, "assistant", _assistant_blocks(message, param), "content")
        elif role == "tool":
            chat.append_merged(messages, "user", [_tool_result_block(message, param)], "content")
        else:
            raise TranslationError(f"unsupported message role '{role}'", param=param)

    output_config, payload = native_output_config(payload, model)
    thinking = chat.thinking_of(payload)
    if thinking is not None and thinking.budget is not None:
        max_tokens: int | None = chat.output_tokens_with_thinking(
            payload, thinking, default_max_tokens
        )
    else:
        max_tokens = chat.max_output_tokens(payload)
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": max_tokens if max_tokens is not None else default_max_tokens,
        "messages": messages,
    }
    if system:
        body["system"] = system
    if thinking is not None:
        body["thinking"] = thinking.config
    for key in ("temperature", "top_p"):
        value = chat.number_param(payload, key)
        if value is not None:
            body[key] = value
    stops = chat.stop_sequences(payload)
    if stops:
        body["stop_sequences"] = stops
    if chat.is_streaming(payload):
        body["stream"] = True
    user = payload.get("user")
    if isinstance(user, str) and user:
        body["metadata"] = {"user_id": user}
    tier = chat.service_tier_of(payload)
    if tier is not None:
        if tier not in _SERVICE_TIERS:
            raise TranslationError(
                f"service_tier '{tier}' is not supported by this model (auto, default)",
                param="service_tier",
            )
        body["service_tier"] = _SERVICE_TIERS[tier]
    if output_config:
        body["output_config"] = output_config
    _add_tools(body, payload, thinking)
    return body


def _tool_spec(tool: chat.FunctionTool) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": tool.name, "input_schema": tool.parameters}
    if tool.description:
        spec["description"] = tool.description
    if tool.strict:
        spec["strict"] = True
    if tool.cache_control is not None:
        spec["cache_control"] = _cache(tool.cache_control)
    return spec


def _add_tools(
    body: dict[str, Any], payload: dict[str, Any], thinking: chat.Thinking | None
) -> None:
    tools = chat.function_tools(payload)
    choice = chat.tool_choice(payload)
    fmt = chat.response_format_of(payload)
    answer = chat.response_format_choice(fmt, choice, tools, thinking)
    if not tools and answer is None:
        if choice is not None and choice.mode in ("required", "named"):
            raise TranslationError("'tool_choice' needs 'tools'", param="tool_choice")
        return
    specs = [_tool_spec(tool) for tool in tools]
    if answer is not None:
        assert fmt is not None
        specs.append(
            _tool_spec(
                chat.FunctionTool(
                    chat.RESPONSE_FORMAT_TOOL, fmt.description, fmt.schema, strict=fmt.strict
                )
            )
        )
    body["tools"] = specs
    out: dict[str, Any] | None = None
    if answer == "tool":
        out = {"type": "tool", "name": chat.RESPONSE_FORMAT_TOOL}
    elif answer == "any":
        out = {"type": "any"}
    elif choice is None:
        pass  # Anthropic's default is auto
    elif choice.mode == "named":
        chat.check_named_tool(choice, tools)
        out = {"type": "tool", "name": choice.name}
    else:
        out = {"type": _TOOL_CHOICE_TYPES[choice.mode]}
    if chat.parallel_tool_calls(payload) is False and (out is None or out["type"] != "none"):
        out = out or {"type": "auto"}
        out["disable_parallel_tool_use"] = True
    if out is not None:
        body["tool_choice"] = out


# --- the translator ----------------------------------------------------------------


class AnthropicMessagesTranslator(SseOrJsonAnswer):
    """One request's translation to Anthropic Messages and back (see ``Translator``).

    ``model`` is the Anthropic model sent upstream; the client sees the ``model`` it sent.
    ``default_max_tokens`` fills Anthropic's required ``max_tokens`` when the client gave
    none. ``completion_id`` and ``created`` can be fixed (tests); otherwise the id is
    ``chatcmpl-`` plus Anthropic's message id, so logs on both sides line up.
    """

    __slots__ = (
        "_answer_blocks",
        "_answer_tool",
        "_called_tools",
        "_client_model",
        "_completion_id",
        "_created",
        "_default_max_tokens",
        "_include_usage",
        "_model",
        "_stop_reason",
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
        super().__init__()
        self._model = model
        self._version = version
        self._vertex = vertex
        self._default_max_tokens = default_max_tokens
        self._completion_id = completion_id
        self._created = created if created is not None else chat.now()
        self._client_model = model
        self._include_usage = False
        self._usage = MessagesUsage()
        self._stop_reason: Any = None
        self._answer_tool = (
            False  # response_format asked for: the answer tool's input is the answer
        )
        self._answer_blocks: set[int] = set()  # stream blocks that carry the answer tool's input
        self._called_tools = False  # the stream called one of the client's tools

    def request(self, payload: dict[str, Any], raw: bytes) -> UpstreamRequest:
        model = payload.get("model")
        if isinstance(model, str) and model:
            self._client_model = model
        body = messages_request(
            payload, model=self._model, default_max_tokens=self._default_max_tokens
        )
        self._answer_tool = chat.response_format_of(payload) is not None and any(
            spec["name"] == chat.RESPONSE_FORMAT_TOOL for spec in body.get("tools", ())
        )
        self._streamed = chat.is_streaming(payload)
        self._include_usage = self._streamed and chat.include_usage(payload)
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

    def error_body(self, status: int, body: bytes, headers: Mapping[str, str]) -> bytes:
        doc = loads_or_none(body)
        if isinstance(doc, list) and doc:
            doc = doc[0]  # Vertex AI wraps some errors in a list
        error = doc.get("error") if isinstance(doc, dict) else None
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            # Anthropic's "type", or Google's "status" on Vertex AI's own refusals
            named = error.get("type", error.get("status"))
            kind = named if isinstance(named, str) and named else None
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
                else chat.new_completion_id()
            )
        return self._completion_id

    # --- JSON ---

    def _json_body(self, body: bytes) -> ResponseBodyOutput:
        doc = loads_or_none(body)
        content = doc.get("content") if isinstance(doc, dict) else None
        if not isinstance(content, list) or not isinstance(doc, dict):
            return chat.invalid_answer("not a Messages response (no content list)")
        answer = chat.AnswerParts()
        for block in content:
            if not isinstance(block, dict):
                continue
            kind = block.get("type")
            if kind == "text" and isinstance(block.get("text"), str):
                answer.texts.append(block["text"])
            elif kind == "tool_use":
                arguments = dumps(block.get("input", {})).decode()
                if self._answer_tool and block.get("name") == chat.RESPONSE_FORMAT_TOOL:
                    answer.texts.append(arguments)
                    continue
                answer.calls.append(
                    chat.ToolCall(str(block.get("id", "")), str(block.get("name", "")), arguments)
                )
            elif kind == "thinking" and isinstance(block.get("thinking"), str):
                answer.thinking(block["thinking"], str(block.get("signature", "")))
            elif kind == "redacted_thinking" and isinstance(block.get("data"), str):
                answer.redacted_thinking(block["data"])
            # server tool blocks and citations: no OpenAI message field
        usage = usage_from_anthropic(doc.get("usage"))
        finish = self._finish_reason(doc.get("stop_reason"), bool(answer.calls))
        out = self._answer_body(
            answer,
            completion_id=self._id(doc.get("id")),
            created=self._created,
            model=self._client_model,
            finish_reason=finish,
            usage=usage,
        )
        model = doc.get("model")
        return ResponseBodyOutput(
            body=out,
            usage=usage,
            complete=True,
            model=model if isinstance(model, str) and model else None,
            finish_reasons=(finish,),
        )

    def _finish_reason(self, stop_reason: Any, called_tools: bool) -> chat.FinishReason:
        return chat.answer_tool_finish(
            finish_reason_from_anthropic(stop_reason), self._answer_tool, called_tools
        )

    # --- SSE ---

    def _chunk_stream(self, upstream_id: Any) -> chat.ChunkStream:
        if self._stream is None:
            self._stream = self._new_chunk_stream(
                self._id(upstream_id),
                self._created,
                self._client_model,
                include_usage=self._include_usage,
            )
        return self._stream

    def _on_event(self, event: SseEvent) -> chat.ChunkStream:
        data, event_name = event.data, event.event
        doc = loads_or_none(data)
        if not isinstance(doc, dict):
            stream = self._chunk_stream(None)
            stream.fail(
                f"The upstream sent an undecodable '{event_name}' event.",
                status=502,
                code="bad_upstream",
                error=chat.UPSTREAM_INVALID_STREAM,
            )
            return stream
        kind = doc.get("type", event_name)
        if kind == "message_start":
            message = doc.get("message")
            message = message if isinstance(message, dict) else {}
            stream = self._chunk_stream(message.get("id"))
            if isinstance(message.get("model"), str) and message["model"]:
                stream.model = message["model"]
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
            index = as_int(doc.get("index")) or 0
            if delta_type == "text_delta" and isinstance(delta.get("text"), str):
                stream.text(delta["text"])
            elif delta_type == "input_json_delta" and isinstance(delta.get("partial_json"), str):
                if index in self._answer_blocks:
                    stream.text(delta["partial_json"])
                else:
                    stream.tool_call_arguments(index, delta["partial_json"])
            elif delta_type == "thinking_delta" and isinstance(delta.get("thinking"), str):
                stream.reasoning(index, delta["thinking"])
            elif delta_type == "signature_delta" and isinstance(delta.get("signature"), str):
                stream.reasoning_signature(index, delta["signature"])
            # citations_delta: no OpenAI chunk field
        elif kind == "content_block_start":
            block = doc.get("content_block")
            if not isinstance(block, dict):
                return stream
            index = as_int(doc.get("index")) or 0
            block_type = block.get("type")
            if block_type == "tool_use":
                name = str(block.get("name", ""))
                if self._answer_tool and name == chat.RESPONSE_FORMAT_TOOL:
                    self._answer_blocks.add(index)
                else:
                    self._called_tools = True
                    stream.tool_call_start(index, str(block.get("id", "")), name)
            elif block_type == "text" and isinstance(block.get("text"), str):
                stream.text(block["text"])
            elif block_type == "thinking":
                thinking = block.get("thinking")
                stream.reasoning(index, thinking if isinstance(thinking, str) else "")
                if isinstance(block.get("signature"), str):
                    stream.reasoning_signature(index, block["signature"])
            elif block_type == "redacted_thinking" and isinstance(block.get("data"), str):
                stream.redacted_reasoning(block["data"])
        elif kind == "content_block_stop":
            stream.reasoning_end(as_int(doc.get("index")) or 0)
        elif kind == "ping":
            stream.keepalive()
        elif kind == "message_delta":
            delta = doc.get("delta")
            if isinstance(delta, dict) and delta.get("stop_reason") is not None:
                self._stop_reason = delta["stop_reason"]
            self._usage.update(doc.get("usage"))
            stream.usage = self._usage.token_usage()
        elif kind == "message_stop":
            stream.finish(self._finish_reason(self._stop_reason, self._called_tools))
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
        # event types added later carry nothing for the client
        return stream
