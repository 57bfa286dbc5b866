"""OpenAI chat completions <-> AWS Bedrock Converse / ConverseStream.

Requests go to ``/model/{modelId}/converse`` (JSON) or ``/converse-stream`` (an
``application/vnd.amazon.eventstream`` of binary frames, decoded with botocore's
``EventStreamBuffer``). Responses come back as OpenAI ``chat.completion`` bodies or
``chat.completion.chunk`` SSE events. SigV4 signing is not done here (see
``extproc.aws_auth``): it has to cover the final bytes, after any other rewriting.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

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

EVENT_STREAM_CONTENT_TYPE = "application/vnd.amazon.eventstream"

_IMAGE_FORMATS = {
    "image/png": "png",
    "image/jpeg": "jpeg",
    "image/jpg": "jpeg",
    "image/gif": "gif",
    "image/webp": "webp",
}

_FINISH_REASONS: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}

# Bedrock rejects toolUse/toolResult history without a toolConfig; a bare schema
# stands in for tools the client no longer lists.
_ANY_OBJECT_SCHEMA: dict[str, Any] = {"type": "object", "properties": {}}

# A frame's prelude: total length, headers length, prelude CRC (4 bytes each).
_PRELUDE_LENGTH = 12
_MIN_FRAME_LENGTH = 16
# botocore's own limits: 128 KiB of headers, 16 MiB of payload.
_MAX_FRAME_LENGTH = _MIN_FRAME_LENGTH + 128 * 1024 + 16 * 1024 * 1024


@dataclass(slots=True, frozen=True)
class BedrockError:
    """How a Bedrock error type reads in OpenAI terms."""

    status: int
    type: str
    code: str | None = None  # None: use the Bedrock error name itself


# Keys are lower-case: headers say "ThrottlingException", stream frames "throttlingException".
_ERRORS: dict[str, BedrockError] = {
    "throttlingexception": BedrockError(429, "rate_limit_error", "rate_limit_exceeded"),
    "servicequotaexceededexception": BedrockError(429, "rate_limit_error", "insufficient_quota"),
    "validationexception": BedrockError(400, "invalid_request_error"),
    "accessdeniedexception": BedrockError(403, "permission_error"),
    "unrecognizedclientexception": BedrockError(403, "authentication_error"),
    "invalidsignatureexception": BedrockError(403, "authentication_error"),
    "incompletesignatureexception": BedrockError(403, "authentication_error"),
    "missingauthenticationtokenexception": BedrockError(403, "authentication_error"),
    "expiredtokenexception": BedrockError(403, "authentication_error"),
    "resourcenotfoundexception": BedrockError(404, "invalid_request_error", "model_not_found"),
    "conflictexception": BedrockError(409, "conflict_error"),
    "modeltimeoutexception": BedrockError(408, "timeout_error"),
    "modelnotreadyexception": BedrockError(429, "server_error", "model_not_ready"),
    "modelerrorexception": BedrockError(424, "server_error"),
    "modelstreamerrorexception": BedrockError(424, "server_error"),
    "internalserverexception": BedrockError(500, "server_error"),
    "serviceunavailableexception": BedrockError(503, "server_error"),
}


def bedrock_error_name(error_type: str | None) -> str:
    """``ValidationException:http://internal.amazon.com/...`` or ``ns#ValidationException``
    (the ``x-amzn-errortype`` / ``__type`` forms) -> ``ValidationException``."""
    if not error_type:
        return ""
    name = error_type.split(":", 1)[0]
    return name.rsplit("#", 1)[-1].strip()


def bedrock_error(error_type: str | None, default_status: int = 500) -> BedrockError:
    """The OpenAI status/type/code for a Bedrock error or in-stream exception type."""
    name = bedrock_error_name(error_type)
    known = _ERRORS.get(name.lower())
    if known is not None:
        return BedrockError(known.status, known.type, known.code or name)
    return BedrockError(default_status, error_type_for_status(default_status), name or None)


def bedrock_exception_status(exception_type: str) -> int:
    """The HTTP status Bedrock documents for an exception type (in-stream ones included)."""
    return bedrock_error(exception_type).status


def _event_stream_types() -> tuple[Any, type[Exception]]:
    """botocore's ``EventStreamBuffer`` and ``ParserError`` (botocore is the `aws` extra)."""
    try:
        from botocore.eventstream import EventStreamBuffer, ParserError
    except ImportError:
        raise RuntimeError("Bedrock streaming needs botocore: install aigateway[aws]") from None
    return EventStreamBuffer, ParserError


class EventStreamFrames:
    """Incremental AWS event-stream frame decoder.

    Frames are cut out by their length prefix and handed to botocore's
    ``EventStreamBuffer`` one at a time, which checks both CRCs and parses the
    headers. Feeding it whole chunks instead would re-copy its buffer once per frame.
    """

    __slots__ = ("_buffer", "_decode_errors", "_pending", "_prelude_checked")

    def __init__(self) -> None:
        buffer_type, parser_error = _event_stream_types()
        self._buffer = buffer_type()
        # Valid CRCs around malformed headers make botocore raise more than ParserError.
        self._decode_errors = (parser_error, KeyError, IndexError, ValueError, struct.error)
        self._pending = bytearray()
        self._prelude_checked = False

    @property
    def pending(self) -> bool:
        """True while a partial frame is buffered."""
        return bool(self._pending)

    def feed(self, chunk: bytes) -> tuple[list[Any], str | None]:
        """The complete frames (botocore ``EventStreamMessage``s) and, if the bytes are
        not a valid event stream, why (frames before the bad one are still returned)."""
        pending = self._pending
        pending += chunk
        frames: list[Any] = []
        while len(pending) >= _PRELUDE_LENGTH:
            total = int.from_bytes(pending[:4], "big")
            if total < _MIN_FRAME_LENGTH or total > _MAX_FRAME_LENGTH:
                return frames, f"bad frame length {total}"
            if len(pending) < total:
                # Check the prelude CRC now: a corrupt length must not make us wait.
                if not self._prelude_checked:
                    if zlib.crc32(pending[:8]) != int.from_bytes(pending[8:12], "big"):
                        return frames, "prelude checksum mismatch"
                    self._prelude_checked = True
                break
            self._buffer.add_data(bytes(pending[:total]))
            del pending[:total]  # bytearray drops its head in place: no quadratic copying
            self._prelude_checked = False
            try:
                frames.append(self._buffer.next())
            except self._decode_errors as exc:
                return frames, f"{type(exc).__name__}: {exc}"
            except StopIteration:
                return frames, "undecodable frame"
        return frames, None


def _block_index(event: dict[str, Any]) -> int:
    return as_int(event.get("contentBlockIndex")) or 0


def usage_from_converse(usage: Any) -> TokenUsage:
    """Converse ``usage`` -> TokenUsage. ``inputTokens`` excludes cache reads and writes,
    OpenAI's ``prompt_tokens`` includes them."""
    if not isinstance(usage, dict):
        return TokenUsage()
    cache_read = as_int(usage.get("cacheReadInputTokens"))
    cache_write = as_int(usage.get("cacheWriteInputTokens"))
    prompt = (as_int(usage.get("inputTokens")) or 0) + (cache_read or 0) + (cache_write or 0)
    completion = as_int(usage.get("outputTokens")) or 0
    return TokenUsage(
        input_tokens=prompt,
        output_tokens=completion,
        total_tokens=prompt + completion,
        cached_input_tokens=cache_read,
        cache_write_input_tokens=cache_write,
    )


def finish_reason_from_converse(stop_reason: Any) -> FinishReason:
    return _FINISH_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"


# --- request -----------------------------------------------------------------------


def _user_blocks(content: Any, param: str) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for part in content_parts(content, param):
        kind = part["type"]
        if kind == "text":
            text = part_text(part, param)
            if text:  # Bedrock rejects blank text blocks
                blocks.append({"text": text})
        elif kind == "image_url":
            image = parse_data_url(image_url_of(part, param), param)
            fmt = _IMAGE_FORMATS.get(image.media_type)
            if fmt is None:
                raise TranslationError(
                    f"unsupported image type '{image.media_type}' (png, jpeg, gif, webp)",
                    param=param,
                )
            blocks.append({"image": {"format": fmt, "source": {"bytes": image.data}}})
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
                blocks.append({"text": text})
        elif kind != "refusal":  # a refusal carries no content worth replaying
            raise TranslationError(f"content part type '{kind}' is not supported", param=param)
    calls = message.get("tool_calls") or []
    if not isinstance(calls, list):
        raise TranslationError("'tool_calls' must be a list", param=param)
    for j, call in enumerate(calls):
        call_id, name, args = tool_call_fields(call, f"{param}.tool_calls[{j}]")
        blocks.append({"toolUse": {"toolUseId": call_id, "name": name, "input": args}})
    return blocks


def _tool_result_block(message: dict[str, Any], param: str) -> dict[str, Any]:
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise TranslationError("a tool message needs 'tool_call_id'", param=param)
    texts = [t for t in text_parts(message.get("content"), param) if t]
    content = [{"text": t} for t in texts] or [{"text": ""}]
    return {"toolResult": {"toolUseId": call_id, "content": content}}


def converse_request(payload: dict[str, Any]) -> dict[str, Any]:
    """The Converse request body for an OpenAI chat completion request."""
    reject_unsupported(payload)
    system: list[dict[str, Any]] = []
    messages: list[dict[str, Any]] = []
    history_tools: dict[str, None] = {}  # tool names used in the history, in order
    for i, message in enumerate(messages_of(payload)):
        role = message["role"]
        param = f"messages[{i}]"
        if role in ("system", "developer"):
            system.extend({"text": t} for t in text_parts(message.get("content"), param) if t)
        elif role == "user":
            append_merged(messages, "user", _user_blocks(message.get("content"), param), "content")
        elif role == "assistant":
            blocks = _assistant_blocks(message, param)
            for block in blocks:
                if "toolUse" in block:
                    history_tools[block["toolUse"]["name"]] = None
            append_merged(messages, "assistant", blocks, "content")
        elif role == "tool":
            append_merged(messages, "user", [_tool_result_block(message, param)], "content")
        else:
            raise TranslationError(f"unsupported message role '{role}'", param=param)

    body: dict[str, Any] = {"messages": messages}
    if system:
        body["system"] = system

    inference: dict[str, Any] = {}
    max_tokens = max_output_tokens(payload)
    if max_tokens is not None:
        inference["maxTokens"] = max_tokens
    for key, name in (("temperature", "temperature"), ("top_p", "topP")):
        value = number_param(payload, key)
        if value is not None:
            inference[name] = value
    stops = stop_sequences(payload)
    if stops:
        inference["stopSequences"] = stops
    if inference:
        body["inferenceConfig"] = inference

    has_tool_history = bool(history_tools) or _has_results(messages)
    tool_config = _tool_config(payload, has_tool_history=has_tool_history)
    if tool_config is None and history_tools:
        tool_config = {
            "tools": [
                {"toolSpec": {"name": name, "inputSchema": {"json": _ANY_OBJECT_SCHEMA}}}
                for name in history_tools
            ]
        }
    if tool_config is not None:
        body["toolConfig"] = tool_config
    return body


def _has_results(messages: list[dict[str, Any]]) -> bool:
    return any(
        "toolResult" in block
        for message in messages
        if message["role"] == "user"
        for block in message["content"]
    )


def _tool_config(payload: dict[str, Any], *, has_tool_history: bool) -> dict[str, Any] | None:
    tools = function_tools(payload)
    choice = tool_choice(payload)
    specs: list[dict[str, Any]] = []
    for tool in tools:
        spec: dict[str, Any] = {"name": tool.name, "inputSchema": {"json": tool.parameters}}
        if tool.description:  # Bedrock wants a non-empty description or none
            spec["description"] = tool.description
        specs.append({"toolSpec": spec})
    if choice is not None and choice.mode == "none":
        # Converse has no "none": leave tools out, unless the history needs them.
        return {"tools": specs} if specs and has_tool_history else None
    if not specs:
        if choice is not None and choice.mode != "auto":
            raise TranslationError("'tool_choice' needs 'tools'", param="tool_choice")
        return None
    config: dict[str, Any] = {"tools": specs}
    if choice is not None:
        if choice.mode == "auto":
            config["toolChoice"] = {"auto": {}}
        elif choice.mode == "required":
            config["toolChoice"] = {"any": {}}
        else:
            if choice.name not in {t.name for t in tools}:
                raise TranslationError(
                    f"'tool_choice' names unknown function '{choice.name}'", param="tool_choice"
                )
            config["toolChoice"] = {"tool": {"name": choice.name}}
    return config


# --- the translator ----------------------------------------------------------------


class BedrockConverseTranslator:
    """One request's translation to Bedrock Converse and back (see ``ChatTranslator``).

    ``model_id`` is the Bedrock model id, inference profile or ARN; the client sees the
    ``model`` it sent. ``completion_id`` and ``created`` can be fixed (tests).
    """

    __slots__ = (
        "_client_model",
        "_completion_id",
        "_created",
        "_frames",
        "_include_usage",
        "_json_parts",
        "_metadata_seen",
        "_model_id",
        "_stopped",
        "_stream",
        "_streamed",
    )

    def __init__(
        self, model_id: str, *, completion_id: str | None = None, created: int | None = None
    ) -> None:
        self._model_id = model_id
        self._completion_id = completion_id or new_completion_id()
        self._created = created if created is not None else now()
        self._client_model = model_id
        self._streamed = False
        self._include_usage = False
        self._json_parts: list[bytes] = []
        self._frames: EventStreamFrames | None = None
        self._stream: ChunkStream | None = None
        self._stopped = False  # messageStop seen
        self._metadata_seen = False  # metadata (usage) seen

    def request(self, payload: dict[str, Any], raw: bytes) -> UpstreamRequest:
        model = payload.get("model")
        if isinstance(model, str) and model:
            self._client_model = model
        body = dumps(converse_request(payload))
        self._streamed = is_streaming(payload)
        self._include_usage = self._streamed and include_usage(payload)
        model_path = "/model/" + quote(self._model_id, safe="")
        if self._streamed:
            _event_stream_types()  # fail before calling upstream, not after
            return UpstreamRequest(
                body=body,
                path=model_path + "/converse-stream",
                headers=(
                    ("content-type", "application/json"),
                    ("accept", EVENT_STREAM_CONTENT_TYPE),
                ),
            )
        return UpstreamRequest(
            body=body,
            path=model_path + "/converse",
            headers=(("content-type", "application/json"), ("accept", "application/json")),
        )

    def response_headers(self, status: int, content_type: str) -> ResponseHeadersDecision:
        media_type = content_type.split(";", 1)[0].strip().lower()
        self._streamed = media_type == EVENT_STREAM_CONTENT_TYPE
        if self._streamed:
            return ResponseHeadersDecision(streamed=True, content_type="text/event-stream")
        return ResponseHeadersDecision(streamed=False)

    def response_body(self, chunk: bytes, end_of_stream: bool) -> ResponseBodyOutput:
        if self._streamed:
            return self._stream_body(chunk, end_of_stream)
        self._json_parts.append(chunk)
        if not end_of_stream:
            return ResponseBodyOutput(body=b"")
        return self._json_body(b"".join(self._json_parts))

    def error_body(self, status: int, body: bytes, headers: Mapping[str, str]) -> bytes:
        """Bedrock names the error in the ``x-amzn-errortype`` header (or ``__type``)."""
        error_type = headers.get("x-amzn-errortype")
        message = ""
        doc = loads_or_none(body)
        if isinstance(doc, dict):
            for key in ("message", "Message"):
                if isinstance(doc.get(key), str):
                    message = doc[key][:MAX_UPSTREAM_MESSAGE]
                    break
            if not error_type and isinstance(doc.get("__type"), str):
                error_type = doc["__type"]
        if not message:
            message = upstream_text(body) or f"upstream returned HTTP {status}"
        info = bedrock_error(error_type, status)
        code: str | int = info.code or status
        return openai_error_body(message, status=status, type=info.type, code=code)

    # --- JSON ---

    def _json_body(self, body: bytes) -> ResponseBodyOutput:
        try:
            doc = json.loads(body)
            content = doc["output"]["message"]["content"]
            if not isinstance(content, list):
                raise TypeError("content is not a list")
        except (ValueError, KeyError, TypeError) as exc:
            return ResponseBodyOutput(
                body=invalid_json_body(f"not a Converse response ({exc!r})"),
                error=UPSTREAM_INVALID_JSON,
                complete=True,
            )
        texts: list[str] = []
        calls: list[ToolCall] = []
        for block in content:
            if not isinstance(block, dict):
                continue
            if isinstance(block.get("text"), str):
                texts.append(block["text"])
            elif isinstance(block.get("toolUse"), dict):
                use = block["toolUse"]
                calls.append(
                    ToolCall(
                        str(use.get("toolUseId", "")),
                        str(use.get("name", "")),
                        dumps(use.get("input", {})).decode(),
                    )
                )
            # reasoningContent, citations, guardContent: no OpenAI message field
        usage = usage_from_converse(doc.get("usage"))
        out = chat_completion_body(
            completion_id=self._completion_id,
            created=self._created,
            model=self._client_model,
            content="".join(texts) if texts or not calls else None,
            tool_calls=calls,
            finish_reason=finish_reason_from_converse(doc.get("stopReason")),
            usage=usage,
        )
        return ResponseBodyOutput(body=out, usage=usage, complete=True)

    # --- event stream ---

    def _stream_body(self, chunk: bytes, end_of_stream: bool) -> ResponseBodyOutput:
        stream = self._stream
        if stream is None or self._frames is None:
            encoder = ChunkEncoder(self._completion_id, self._created, self._client_model)
            stream = self._stream = ChunkStream(encoder, include_usage=self._include_usage)
            self._frames = EventStreamFrames()
        if stream.finished:  # after [DONE] or an error event the client gets nothing more
            return stream.output()
        frames, decode_error = self._frames.feed(chunk)
        for frame in frames:
            self._on_frame(stream, frame)
            if stream.finished:
                break
        if not stream.finished:
            if decode_error is not None:
                stream.fail(
                    f"The upstream sent an invalid event stream: {decode_error}",
                    status=502,
                    code="bad_upstream",
                    error=UPSTREAM_INVALID_STREAM,
                )
            elif end_of_stream:
                stream.truncated()
        return stream.output()

    def _on_frame(self, stream: ChunkStream, frame: Any) -> None:
        headers: dict[str, Any] = frame.headers
        message_type = headers.get(":message-type", "event")
        if message_type == "exception":
            name = str(headers.get(":exception-type", "exception"))
            info = bedrock_error(name)
            message = _frame_message(frame.payload) or name
            stream.fail(message, status=info.status, type=info.type, code=info.code)
            return
        if message_type == "error":
            code = str(headers.get(":error-code", "error"))
            message = str(headers.get(":error-message", "")) or code
            stream.fail(message, status=502, code=code)
            return
        event_type = headers.get(":event-type")
        doc = loads_or_none(frame.payload)
        if not isinstance(doc, dict):
            stream.fail(
                f"The upstream sent an undecodable '{event_type}' event.",
                status=502,
                code="bad_upstream",
                error=UPSTREAM_INVALID_STREAM,
            )
            return
        if event_type == "contentBlockDelta":
            delta = doc.get("delta")
            if not isinstance(delta, dict):
                return
            text = delta.get("text")
            if isinstance(text, str):
                stream.text(text)
                return
            tool_use = delta.get("toolUse")
            if isinstance(tool_use, dict) and isinstance(tool_use.get("input"), str):
                stream.tool_call_arguments(_block_index(doc), tool_use["input"])
            # reasoningContent and citation deltas have no OpenAI chunk field
        elif event_type == "contentBlockStart":
            start = doc.get("start")
            tool_use = start.get("toolUse") if isinstance(start, dict) else None
            if isinstance(tool_use, dict):
                stream.tool_call_start(
                    _block_index(doc),
                    str(tool_use.get("toolUseId", "")),
                    str(tool_use.get("name", "")),
                )
        elif event_type == "messageStart":
            stream.role()
        elif event_type == "messageStop":
            stream.finish(finish_reason_from_converse(doc.get("stopReason")))
            self._stopped = True
            if self._metadata_seen:
                stream.complete()
        elif event_type == "metadata":
            stream.usage = usage_from_converse(doc.get("usage"))
            self._metadata_seen = True
            if self._stopped:
                stream.complete()
        # contentBlockStop and event types added later carry nothing for the client


def _frame_message(payload: bytes) -> str:
    doc = loads_or_none(payload)
    if isinstance(doc, dict):
        for key in ("message", "Message"):
            if isinstance(doc.get(key), str):
                return str(doc[key])[:MAX_UPSTREAM_MESSAGE]
    return upstream_text(payload)
