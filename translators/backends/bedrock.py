"""OpenAI chat completions <-> AWS Bedrock Converse / ConverseStream.

Requests go to ``/model/{modelId}/converse`` (JSON) or ``/converse-stream`` (an
``application/vnd.amazon.eventstream`` of binary frames, decoded with botocore's
``EventStreamBuffer``). Responses come back as OpenAI ``chat.completion`` bodies or
``chat.completion.chunk`` SSE events. SigV4 signing is not done here (see
``extproc.aws_auth``): it has to cover the final bytes, after any other rewriting.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from aigateway.translators.backends.claude_models import native_output_config
from aigateway.translators.backends.sse_or_json import StreamOrJsonAnswer
from aigateway.translators.client_apis import chat
from aigateway.translators.contract import (
    ResponseBodyOutput,
    ResponseHeadersDecision,
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
from aigateway.translators.wire.eventstream import EventStreamFrames, event_stream_types
from aigateway.translators.wire.jsoncodec import as_int, dumps, loads_or_none
from aigateway.translators.wire.sse import media_type

EVENT_STREAM_CONTENT_TYPE = "application/vnd.amazon.eventstream"

_IMAGE_FORMATS = {
    "image/png": "png",
    "image/jpeg": "jpeg",
    "image/jpg": "jpeg",
    "image/gif": "gif",
    "image/webp": "webp",
}

_FINISH_REASONS: dict[str, chat.FinishReason] = {
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


def finish_reason_from_converse(stop_reason: Any) -> chat.FinishReason:
    return _FINISH_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"


# --- request -----------------------------------------------------------------------


_DOCUMENT_FORMATS = {
    "application/pdf": "pdf",
    "text/csv": "csv",
    "application/msword": "doc",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "application/vnd.ms-excel": "xls",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
    "text/html": "html",
    "text/plain": "txt",
    "text/markdown": "md",
}
# Characters a Converse document name may not hold (letters, digits, single spaces,
# hyphens, parentheses and square brackets are allowed).
_NAME_FORBIDDEN = re.compile(r"[^A-Za-z0-9\-()\[\]\s]+")
_SERVICE_TIERS = frozenset({"priority", "default", "flex", "reserved"})
# maxTokens when thinking needs one and the client gave none (Anthropic's default too).
DEFAULT_MAX_TOKENS = 4096


def _cache_point(mark: chat.CacheControl) -> dict[str, Any]:
    point = {"type": "default"}
    if mark.ttl is not None:
        point["ttl"] = mark.ttl
    return {"cachePoint": point}


def _append(
    blocks: list[dict[str, Any]], block: dict[str, Any], mark: chat.CacheControl | None
) -> None:
    """A block, and the cache point right after it when the client marked it."""
    blocks.append(block)
    if mark is not None:
        blocks.append(_cache_point(mark))


def _mark_end(blocks: list[dict[str, Any]], mark: chat.CacheControl | None, param: str) -> None:
    """A message-level ``cache_control``: a cache point after the message's blocks."""
    if mark is None:
        return
    if not blocks:
        raise TranslationError("'cache_control' on a message without content", param=param)
    if "cachePoint" not in blocks[-1]:
        blocks.append(_cache_point(mark))


class _DocumentNames:
    """Converse document names: restricted characters, unique in a request."""

    __slots__ = ("_used",)

    def __init__(self) -> None:
        self._used: set[str] = set()

    def name(self, filename: str | None) -> str:
        stem = filename.rsplit(".", 1)[0] if filename and "." in filename else filename or ""
        base = " ".join(_NAME_FORBIDDEN.sub(" ", stem).split())[:180] or "document"
        name, n = base, 1
        while name in self._used:
            n += 1
            name = f"{base} ({n})"
        self._used.add(name)
        return name


def _document_block(
    document: chat.DataDocument, names: _DocumentNames, param: str
) -> dict[str, Any]:
    fmt = _DOCUMENT_FORMATS.get(document.media_type)
    if fmt is None:
        kinds = ", ".join(sorted(_DOCUMENT_FORMATS.values()))
        raise TranslationError(
            f"unsupported file type '{document.media_type}' ({kinds})", param=param
        )
    return {
        "document": {
            "format": fmt,
            "name": names.name(document.filename),
            "source": {"bytes": document.data},
        }
    }


def _content_blocks(
    content: Any, names: _DocumentNames, param: str
) -> tuple[list[dict[str, Any]], list[chat.CacheControl | None]]:
    """User content and tool results: text, images and documents, each part whole, and
    the cache mark of each block."""
    blocks: list[dict[str, Any]] = []
    marks: list[chat.CacheControl | None] = []
    for part in chat.content_parts(content, param):
        kind = part["type"]
        mark = chat.cache_control_of(part, param)
        if kind == "text":
            text = chat.part_text(part, param)
            if not text:  # Bedrock rejects blank text blocks
                if mark is not None:
                    raise TranslationError("'cache_control' on an empty text part", param=param)
                continue
            block: dict[str, Any] = {"text": text}
        elif kind == "image_url":
            url = chat.image_url_of(part, param)
            image = chat.parse_data_url(url, param)
            if chat.pdf_image_url(url):
                block = _document_block(
                    chat.DataDocument(image.media_type, image.data, None), names, param
                )
            else:
                fmt = _IMAGE_FORMATS.get(image.media_type)
                if fmt is None:
                    raise TranslationError(
                        f"unsupported image type '{image.media_type}' (png, jpeg, gif, webp)",
                        param=param,
                    )
                block = {"image": {"format": fmt, "source": {"bytes": image.data}}}
        elif kind == "file":
            block = _document_block(chat.file_document(part, param), names, param)
        else:
            raise TranslationError(f"content part type '{kind}' is not supported", param=param)
        blocks.append(block)
        marks.append(mark)
    return blocks, marks


def _user_blocks(
    message: dict[str, Any], names: _DocumentNames, param: str
) -> list[dict[str, Any]]:
    found, marks = _content_blocks(message.get("content"), names, param)
    blocks: list[dict[str, Any]] = []
    for block, mark in zip(found, marks, strict=True):
        _append(blocks, block, mark)
    _mark_end(blocks, chat.cache_control_of(message, param), param)
    return blocks


def _system_blocks(message: dict[str, Any], param: str) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for part in chat.content_parts(message.get("content"), param):
        if part["type"] != "text":
            raise TranslationError("only text content is supported here", param=param)
        text = chat.part_text(part, param)
        mark = chat.cache_control_of(part, param)
        if text:
            _append(blocks, {"text": text}, mark)
        elif mark is not None:
            raise TranslationError("'cache_control' on an empty text part", param=param)
    _mark_end(blocks, chat.cache_control_of(message, param), param)
    return blocks


def _reasoning_block(block: chat.ThinkingBlock) -> dict[str, Any]:
    if block.redacted:
        return {"reasoningContent": {"redactedContent": block.data}}
    text = {"text": block.thinking, "signature": block.signature}
    return {"reasoningContent": {"reasoningText": text}}


def _assistant_blocks(message: dict[str, Any], param: str) -> list[dict[str, Any]]:
    # Reasoning first, as the model produced it; Claude wants it before a tool use.
    blocks = [_reasoning_block(b) for b in chat.thinking_blocks_of(message, param)]
    for text, part in chat.assistant_texts(message, param):
        mark = chat.cache_control_of(part, param)
        if text:
            _append(blocks, {"text": text}, mark)
        elif mark is not None:
            raise TranslationError("'cache_control' on an empty text part", param=param)
    for where, call, call_id, name, args in chat.tool_calls_of(message, param):
        use = {"toolUse": {"toolUseId": call_id, "name": name, "input": args}}
        _append(blocks, use, chat.cache_control_of(call, where))
    _mark_end(blocks, chat.cache_control_of(message, param), param)
    return blocks


def _tool_result_blocks(
    message: dict[str, Any], names: _DocumentNames, param: str
) -> list[dict[str, Any]]:
    """The toolResult block, then a cache point when it or any of its parts is marked
    (a tool result's content cannot hold one)."""
    call_id = chat.tool_result_id(message, param)
    content, marks = _content_blocks(message.get("content"), names, param)
    result = {"toolResult": {"toolUseId": call_id, "content": content or [{"text": ""}]}}
    mark = chat.cache_control_of(message, param) or next((m for m in marks if m is not None), None)
    blocks: list[dict[str, Any]] = []
    _append(blocks, result, mark)
    return blocks


def is_claude(model_id: str) -> bool:
    """A Bedrock model counts as Claude when its id names it (docs/client-apis.md, "Reasoning")."""
    return "claude" in model_id.lower()


def converse_request(payload: dict[str, Any], *, model_id: str = "") -> dict[str, Any]:
    """The Converse request body for an OpenAI chat completion request to ``model_id``."""
    chat.reject_unsupported(payload)
    claude_output, payload = native_output_config(payload, model_id)
    system: list[dict[str, Any]] = []
    messages: list[dict[str, Any]] = []
    names = _DocumentNames()
    history_tools: dict[str, None] = {}  # tool names used in the history, in order
    for i, message in enumerate(chat.messages_of(payload)):
        role = message["role"]
        param = f"messages[{i}]"
        if role in ("system", "developer"):
            system.extend(_system_blocks(message, param))
        elif role == "user":
            chat.append_merged(messages, "user", _user_blocks(message, names, param), "content")
        elif role == "assistant":
            blocks = _assistant_blocks(message, param)
            for block in blocks:
                if "toolUse" in block:
                    history_tools[block["toolUse"]["name"]] = None
            chat.append_merged(messages, "assistant", blocks, "content")
        elif role == "tool":
            chat.append_merged(
                messages, "user", _tool_result_blocks(message, names, param), "content"
            )
        else:
            raise TranslationError(f"unsupported message role '{role}'", param=param)

    body: dict[str, Any] = {"messages": messages}
    if system:
        body["system"] = system

    thinking = chat.thinking_of(payload)
    if thinking is not None and thinking.from_effort and not is_claude(model_id):
        raise TranslationError(
            "'reasoning_effort' is supported for Claude models on this backend",
            param="reasoning_effort",
        )
    inference: dict[str, Any] = {}
    if thinking is not None and thinking.budget is not None:
        max_tokens: int | None = chat.output_tokens_with_thinking(
            payload, thinking, DEFAULT_MAX_TOKENS
        )
    else:
        max_tokens = chat.max_output_tokens(payload)
    if max_tokens is not None:
        inference["maxTokens"] = max_tokens
    for key, name in (("temperature", "temperature"), ("top_p", "topP")):
        value = chat.number_param(payload, key)
        if value is not None:
            inference[name] = value
    stops = chat.stop_sequences(payload)
    if stops:
        inference["stopSequences"] = stops
    if inference:
        body["inferenceConfig"] = inference
    native: dict[str, Any] = {}
    if thinking is not None:
        # Claude's own request field, which Converse passes through to the model.
        native["thinking"] = thinking.config
    output_config = payload.get("output_config")
    if output_config is not None:
        # Claude's effort and output format, passed through the same way.
        if not is_claude(model_id) or not isinstance(output_config, dict):
            raise TranslationError(
                "'output_config' (an object) is supported for Claude models on this backend",
                param="output_config",
            )
        native["output_config"] = output_config
    elif claude_output:
        native["output_config"] = claude_output
    if native:
        body["additionalModelRequestFields"] = native

    has_tool_history = bool(history_tools) or _has_results(messages)
    tool_config = _tool_config(payload, has_tool_history=has_tool_history, thinking=thinking)
    if tool_config is None and history_tools:
        tool_config = {
            "tools": [
                {"toolSpec": {"name": name, "inputSchema": {"json": _ANY_OBJECT_SCHEMA}}}
                for name in history_tools
            ]
        }
    if tool_config is not None:
        body["toolConfig"] = tool_config
    tier = chat.service_tier_of(payload)
    if tier is not None and tier != "auto":  # "auto": the backend's own default
        if tier not in _SERVICE_TIERS:
            raise TranslationError(
                f"service_tier '{tier}' is not supported by this backend "
                "(auto, default, flex, priority, reserved)",
                param="service_tier",
            )
        body["serviceTier"] = {"type": tier}
    return body


def _has_results(messages: list[dict[str, Any]]) -> bool:
    return any(
        "toolResult" in block
        for message in messages
        if message["role"] == "user"
        for block in message["content"]
    )


def _tool_specs(tool: chat.FunctionTool) -> list[dict[str, Any]]:
    spec: dict[str, Any] = {"name": tool.name, "inputSchema": {"json": tool.parameters}}
    if tool.description:  # Bedrock wants a non-empty description or none
        spec["description"] = tool.description
    if tool.strict:
        spec["strict"] = True
    specs: list[dict[str, Any]] = []
    _append(specs, {"toolSpec": spec}, tool.cache_control)
    return specs


def _tool_config(
    payload: dict[str, Any], *, has_tool_history: bool, thinking: chat.Thinking | None
) -> dict[str, Any] | None:
    tools = chat.function_tools(payload)
    choice = chat.tool_choice(payload)
    fmt = chat.response_format_of(payload)
    answer = chat.response_format_choice(fmt, choice, tools, thinking)
    specs = [spec for tool in tools for spec in _tool_specs(tool)]
    if answer is not None:
        assert fmt is not None
        if choice is not None and choice.mode == "none" and not has_tool_history:
            specs = []  # the client's tools may not be called: leave them out
        answer_tool = chat.FunctionTool(
            chat.RESPONSE_FORMAT_TOOL, fmt.description, fmt.schema, fmt.strict
        )
        specs.extend(_tool_specs(answer_tool))
        if answer == "tool":
            return {"tools": specs, "toolChoice": {"tool": {"name": chat.RESPONSE_FORMAT_TOOL}}}
        return {"tools": specs, "toolChoice": {"any": {}}}
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
            chat.check_named_tool(choice, tools)
            config["toolChoice"] = {"tool": {"name": choice.name}}
    return config


# --- the translator ----------------------------------------------------------------


class BedrockConverseTranslator(StreamOrJsonAnswer):
    """One request's translation to Bedrock Converse and back (see ``Translator``).

    ``model_id`` is the Bedrock model id, inference profile or ARN; the client sees the
    ``model`` it sent. ``completion_id`` and ``created`` can be fixed (tests).
    """

    __slots__ = (
        "_answer_blocks",
        "_answer_tool",
        "_called_tools",
        "_client_model",
        "_completion_id",
        "_created",
        "_dropped_blocks",
        "_frames",
        "_include_usage",
        "_metadata_seen",
        "_model_id",
        "_one_call",
        "_stop_reason",
        "_stopped",
        "_stream",
    )

    def __init__(
        self, model_id: str, *, completion_id: str | None = None, created: int | None = None
    ) -> None:
        super().__init__()
        self._model_id = model_id
        self._completion_id = completion_id or chat.new_completion_id()
        self._created = created if created is not None else chat.now()
        self._client_model = model_id
        self._include_usage = False
        self._frames: EventStreamFrames | None = None
        self._stream: chat.ChunkStream | None = None
        self._stopped = False  # messageStop seen
        self._stop_reason: Any = None
        self._metadata_seen = False  # metadata (usage) seen
        self._answer_tool = (
            False  # response_format asked for: the answer tool's input is the answer
        )
        self._answer_blocks: set[int] = set()  # stream blocks that carry the answer tool's input
        self._called_tools = False  # the stream called one of the client's tools
        self._one_call = False  # parallel_tool_calls: false
        self._dropped_blocks: set[int] = set()  # stream blocks of calls past the first

    def request(self, payload: dict[str, Any], raw: bytes) -> UpstreamRequest:
        model = payload.get("model")
        if isinstance(model, str) and model:
            self._client_model = model
        converse = converse_request(payload, model_id=self._model_id)
        body = dumps(converse)
        self._answer_tool = chat.response_format_of(payload) is not None and any(
            tool.get("toolSpec", {}).get("name") == chat.RESPONSE_FORMAT_TOOL
            for tool in converse.get("toolConfig", {}).get("tools", ())
        )
        # Converse has no switch for it: the answer keeps its first tool call only.
        self._one_call = chat.parallel_tool_calls(payload) is False
        self._streamed = chat.is_streaming(payload)
        self._include_usage = self._streamed and chat.include_usage(payload)
        model_path = "/model/" + quote(self._model_id, safe="")
        if self._streamed:
            event_stream_types()  # fail before calling upstream, not after
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
        self._streamed = media_type(content_type) == EVENT_STREAM_CONTENT_TYPE
        if self._streamed:
            return ResponseHeadersDecision(streamed=True, content_type="text/event-stream")
        return ResponseHeadersDecision(streamed=False)

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
        doc = loads_or_none(body)
        output = doc.get("output") if isinstance(doc, dict) else None
        message = output.get("message") if isinstance(output, dict) else None
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list) or not isinstance(doc, dict):
            return chat.invalid_answer("not a Converse response (no output.message.content)")
        answer = chat.AnswerParts()
        for block in content:
            if not isinstance(block, dict):
                continue
            if isinstance(block.get("text"), str):
                answer.texts.append(block["text"])
            elif isinstance(block.get("toolUse"), dict):
                use = block["toolUse"]
                arguments = dumps(use.get("input", {})).decode()
                if self._answer_tool and use.get("name") == chat.RESPONSE_FORMAT_TOOL:
                    answer.texts.append(arguments)
                    continue
                if self._one_call and answer.calls:
                    continue
                answer.calls.append(
                    chat.ToolCall(
                        str(use.get("toolUseId", "")), str(use.get("name", "")), arguments
                    )
                )
            elif isinstance(block.get("reasoningContent"), dict):
                found = block["reasoningContent"]
                text = found.get("reasoningText")
                if isinstance(text, dict) and isinstance(text.get("text"), str):
                    answer.thinking(text["text"], str(text.get("signature", "")))
                elif isinstance(found.get("redactedContent"), str):
                    answer.redacted_thinking(found["redactedContent"])
            # citations, guardContent: no OpenAI message field
        usage = usage_from_converse(doc.get("usage"))
        out = self._answer_body(
            answer,
            completion_id=self._completion_id,
            created=self._created,
            model=self._client_model,
            finish_reason=self._finish_reason(doc.get("stopReason"), bool(answer.calls)),
            usage=usage,
            service_tier=_service_tier(doc),
        )
        return ResponseBodyOutput(body=out, usage=usage, complete=True)

    def _finish_reason(self, stop_reason: Any, called_tools: bool) -> chat.FinishReason:
        return chat.answer_tool_finish(
            finish_reason_from_converse(stop_reason), self._answer_tool, called_tools
        )

    # --- event stream ---

    def _stream_body(self, chunk: bytes, end_of_stream: bool) -> ResponseBodyOutput:
        stream = self._stream
        if stream is None or self._frames is None:
            stream = self._stream = self._new_chunk_stream(
                self._completion_id,
                self._created,
                self._client_model,
                include_usage=self._include_usage,
            )
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
                    error=chat.UPSTREAM_INVALID_STREAM,
                )
            elif end_of_stream:
                stream.truncated()
        return stream.output()

    def _on_frame(self, stream: chat.ChunkStream, frame: Any) -> None:
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
                error=chat.UPSTREAM_INVALID_STREAM,
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
            index = _block_index(doc)
            tool_use = delta.get("toolUse")
            if isinstance(tool_use, dict) and isinstance(tool_use.get("input"), str):
                if index in self._dropped_blocks:
                    return
                if index in self._answer_blocks:
                    stream.text(tool_use["input"])
                else:
                    stream.tool_call_arguments(index, tool_use["input"])
                return
            reasoning = delta.get("reasoningContent")
            if isinstance(reasoning, dict):
                if isinstance(reasoning.get("text"), str):
                    stream.reasoning(index, reasoning["text"])
                if isinstance(reasoning.get("signature"), str):
                    stream.reasoning_signature(index, reasoning["signature"])
                if isinstance(reasoning.get("redactedContent"), str):
                    stream.redacted_reasoning(reasoning["redactedContent"])
            # citation deltas have no OpenAI chunk field
        elif event_type == "contentBlockStart":
            start = doc.get("start")
            tool_use = start.get("toolUse") if isinstance(start, dict) else None
            if isinstance(tool_use, dict):
                name = str(tool_use.get("name", ""))
                if self._answer_tool and name == chat.RESPONSE_FORMAT_TOOL:
                    self._answer_blocks.add(_block_index(doc))
                elif self._one_call and self._called_tools:
                    self._dropped_blocks.add(_block_index(doc))
                else:
                    self._called_tools = True
                    stream.tool_call_start(
                        _block_index(doc), str(tool_use.get("toolUseId", "")), name
                    )
        elif event_type == "contentBlockStop":
            stream.reasoning_end(_block_index(doc))
        elif event_type == "messageStart":
            stream.role()
        elif event_type == "messageStop":
            self._stop_reason = doc.get("stopReason")
            self._stopped = True
            self._end(stream)
        elif event_type == "metadata":
            stream.usage = usage_from_converse(doc.get("usage"))
            stream.service_tier = _service_tier(doc)
            self._metadata_seen = True
            self._end(stream)
        # event types added later carry nothing for the client

    def _end(self, stream: chat.ChunkStream) -> None:
        """Finish once both messageStop and metadata are in: the finish chunk then
        carries the service tier, which only metadata reports."""
        if self._stopped and self._metadata_seen:
            stream.finish(self._finish_reason(self._stop_reason, self._called_tools))
            stream.complete()


def _service_tier(doc: dict[str, Any]) -> str | None:
    tier = doc.get("serviceTier")
    kind = tier.get("type") if isinstance(tier, dict) else None
    return kind if isinstance(kind, str) else None


def _frame_message(payload: bytes) -> str:
    doc = loads_or_none(payload)
    if isinstance(doc, dict):
        for key in ("message", "Message"):
            if isinstance(doc.get(key), str):
                return str(doc[key])[:MAX_UPSTREAM_MESSAGE]
    return upstream_text(payload)
