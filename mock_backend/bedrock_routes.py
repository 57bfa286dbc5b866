"""AWS Bedrock routes: ``/model/{modelId}/converse`` and ``/model/{modelId}/converse-stream``.

``converse`` answers Converse JSON (``output.message.content`` with ``text`` or
``toolUse`` blocks, ``stopReason``, ``usage``, ``metrics.latencyMs``).
``converse-stream`` answers ``application/vnd.amazon.eventstream`` frames, as Bedrock
sends them: ``messageStart``; for a tool call ``contentBlockStart``; one
``contentBlockDelta`` per word (or tool-input fragment); ``contentBlockStop``;
``messageStop``; ``metadata``. Payloads carry Bedrock's ``"p"`` padding field.

With thinking enabled in ``additionalModelRequestFields`` (see :mod:`.reasoning`) the
answer starts with a ``reasoningContent`` block (streamed as text deltas, then a
``signature`` delta). ``cachePoint`` blocks (``system``, ``messages``,
``toolConfig.tools``) must be ``{"type": "default"}`` (``ttl`` 5m or 1h);
``x-mock-cache-write-tokens`` reports ``cacheWriteInputTokens`` and, as Bedrock does,
``cacheDetails`` (the writes by TTL: ``1h`` when a cache point asked for it, else
``5m``). Documents need a
Converse format and a name of letters, digits, single spaces, hyphens, parentheses and
brackets. ``serviceTier`` must name a Converse tier and is echoed back (``metadata`` in
a stream).

The model id arrives percent-escaped (``anthropic.claude-3-haiku-20240307-v1%3A0``) and
is decoded. Errors are ``{"message": ...}`` with ``x-amzn-errortype``. When the app has
AWS credentials, requests must carry a valid SigV4 signature (see :mod:`.sigv4`).
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterator
from typing import Any

from aiohttp import web

from .errors import BEDROCK_ERRORS, MockError
from .eventstream import corrupt_message_crc, event_frame, exception_frame
from .prompt_words import bedrock_prompt_words
from .reasoning import check_cache_control, check_history, requested_thinking
from .routing import MockCall, dumps, provider_route, send_json
from .sigv4 import verify_sigv4
from .state import MockState
from .streaming import EventKind, StreamFaults, send_stream
from .tools import (
    ToolDefinition,
    argument_fragments,
    arguments_json,
    mock_arguments,
    select_tool,
)
from .words import limit_tokens, reply_pieces, reply_text

__all__ = ["add_bedrock_routes"]

_PADDING = string.ascii_lowercase + string.ascii_uppercase + string.digits
_STREAM_CONTENT_TYPE = "application/vnd.amazon.eventstream"
_DEFAULT_STREAM_EXCEPTION = "modelStreamErrorException"
_SERVICE_TIERS = frozenset({"priority", "default", "flex", "reserved"})
_DOCUMENT_FORMATS = frozenset({"pdf", "csv", "doc", "docx", "xls", "xlsx", "html", "txt", "md"})
_DOCUMENT_NAME = re.compile(r"(?:[A-Za-z0-9\-()\[\]]|\s(?!\s))+")


def add_bedrock_routes(app: web.Application) -> None:
    """Register the Bedrock routes on ``app``."""
    app.router.add_post(
        "/model/{model_id:.+}/converse",
        provider_route(BEDROCK_ERRORS, _converse, check=_check_signature),
    )
    app.router.add_post(
        "/model/{model_id:.+}/converse-stream",
        provider_route(BEDROCK_ERRORS, _converse_stream, check=_check_signature),
    )


def _check_signature(request: web.Request, body: bytes, state: MockState) -> None:
    if state.aws_credentials is not None:
        verify_sigv4(state.aws_credentials, request.method, request.raw_path, request.headers, body)


class _Answer:
    """What the model "says" to one Converse request."""

    __slots__ = (
        "cache_ttl",
        "input_tokens",
        "request_id",
        "service_tier",
        "stop_reason",
        "thinking",
        "tokens",
        "tool",
        "tool_use_id",
    )

    def __init__(self, call: MockCall) -> None:
        payload = call.payload
        knobs = call.knobs
        messages = payload.get("messages")
        if messages is not None and not isinstance(messages, list):
            raise MockError(400, "1 validation error detected: 'messages' must be a list")
        self.input_tokens = bedrock_prompt_words(payload)
        inference = payload.get("inferenceConfig")
        max_tokens = inference.get("maxTokens") if isinstance(inference, dict) else None
        extra = payload.get("additionalModelRequestFields")
        config = extra.get("thinking") if isinstance(extra, dict) else None
        self.thinking = requested_thinking(config, max_tokens, knobs)
        self.service_tier, self.cache_ttl = _check_request(payload, self.thinking is not None)
        tool_config = payload.get("toolConfig")
        self.tool = select_tool(
            _tools(tool_config), header=knobs.tool_call, forced=_forced_tool(tool_config)
        )
        if self.tool is None:
            inference = payload.get("inferenceConfig")
            limit = inference.get("maxTokens") if isinstance(inference, dict) else None
            self.tokens, truncated = limit_tokens(knobs.output_tokens, limit)
            self.stop_reason = "max_tokens" if truncated else "end_turn"
        else:
            self.tokens, self.stop_reason = knobs.output_tokens, "tool_use"
        seq = call.state.next_id()
        self.tool_use_id = f"tooluse_mock{seq:012d}"
        self.request_id = f"00000000-0000-4000-8000-{seq:012d}"

    @property
    def output_tokens(self) -> int:
        return self.tokens + (len(self.thinking.pieces) if self.thinking is not None else 0)

    def usage(self, call: MockCall) -> dict[str, Any]:
        cached = min(call.knobs.cached_tokens, self.input_tokens)
        written = min(call.knobs.cache_write_tokens, self.input_tokens - cached)
        usage: dict[str, Any] = {
            "inputTokens": self.input_tokens - cached - written,
            "outputTokens": self.output_tokens,
            "totalTokens": self.input_tokens + self.output_tokens,
        }
        if cached or written:
            usage["cacheReadInputTokens"] = cached
            usage["cacheWriteInputTokens"] = written
        if written:
            usage["cacheDetails"] = [{"ttl": self.cache_ttl, "inputTokens": written}]
        return usage

    def tier(self, body: dict[str, Any]) -> dict[str, Any]:
        """``body`` with the ``serviceTier`` the request asked for, if it did."""
        if self.service_tier is not None:
            body["serviceTier"] = {"type": self.service_tier}
        return body


async def _converse(call: MockCall) -> web.StreamResponse:
    answer = _Answer(call)
    content: list[dict[str, Any]] = []
    if answer.thinking is not None:
        text = {"text": answer.thinking.text, "signature": answer.thinking.signature}
        content.append({"reasoningContent": {"reasoningText": text}})
    if answer.tool is None:
        content.append({"text": reply_text(answer.tokens)})
    else:
        tool_use = {
            "toolUseId": answer.tool_use_id,
            "name": answer.tool.name,
            "input": mock_arguments(answer.tool.schema),
        }
        content.append({"toolUse": tool_use})
    body = answer.tier(
        {
            "output": {"message": {"role": "assistant", "content": content}},
            "stopReason": answer.stop_reason,
            "usage": answer.usage(call),
            "metrics": {"latencyMs": call.elapsed_ms()},
        }
    )
    headers = {"x-amzn-RequestId": answer.request_id}
    return await send_json(call.request, call.knobs, dumps(body), headers=headers)


async def _converse_stream(call: MockCall) -> web.StreamResponse:
    answer = _Answer(call)
    bad_delta = _payload(1, {"contentBlockIndex": 0, "delta": {"text": ""}})
    faults = StreamFaults(
        bad_json=event_frame("contentBlockDelta", b'{"contentBlockIndex":0,"delta":'),
        error_event=_exception_frame,
        bad_crc=corrupt_message_crc(event_frame("contentBlockDelta", bad_delta)),
        sse=False,
    )
    headers = {"Content-Type": _STREAM_CONTENT_TYPE, "x-amzn-RequestId": answer.request_id}
    return await send_stream(call, _frames(call, answer), faults, headers)


def _frames(call: MockCall, answer: _Answer) -> Iterator[tuple[EventKind, bytes]]:
    count = 0

    def frame(event_type: str, body: dict[str, Any]) -> bytes:
        nonlocal count
        count += 1
        return event_frame(event_type, _payload(count, body))

    yield EventKind.OPEN, frame("messageStart", {"role": "assistant"})
    index = 0
    if answer.thinking is not None:
        for piece in answer.thinking.pieces:
            delta = {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": piece}}}
            yield EventKind.OPEN, frame("contentBlockDelta", delta)
        signed = {"reasoningContent": {"signature": answer.thinking.signature}}
        yield EventKind.OPEN, frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": signed})
        yield EventKind.OPEN, frame("contentBlockStop", {"contentBlockIndex": 0})
        index = 1
    if answer.tool is None:
        pieces = reply_pieces(answer.tokens)
        for piece in pieces:
            delta = {"contentBlockIndex": index, "delta": {"text": piece}}
            yield EventKind.TOKEN, frame("contentBlockDelta", delta)
        if pieces:
            yield EventKind.CLOSE, frame("contentBlockStop", {"contentBlockIndex": index})
    else:
        start = {"toolUse": {"toolUseId": answer.tool_use_id, "name": answer.tool.name}}
        start_event = {"contentBlockIndex": index, "start": start}
        yield EventKind.OPEN, frame("contentBlockStart", start_event)
        arguments = arguments_json(answer.tool.schema)
        for fragment in argument_fragments(arguments, answer.tokens):
            delta = {"contentBlockIndex": index, "delta": {"toolUse": {"input": fragment}}}
            yield EventKind.TOKEN, frame("contentBlockDelta", delta)
        yield EventKind.CLOSE, frame("contentBlockStop", {"contentBlockIndex": index})
    yield EventKind.FINAL, frame("messageStop", {"stopReason": answer.stop_reason})
    metadata = {"usage": answer.usage(call), "metrics": {"latencyMs": call.elapsed_ms()}}
    yield EventKind.FINAL, frame("metadata", answer.tier(metadata))


def _check_request(payload: dict[str, Any], thinking_on: bool) -> tuple[str | None, str]:
    """What Bedrock refuses and the gateway must get right: cache points, documents,
    replayed reasoning; returns the service tier asked for and the longest cache TTL."""
    tier = payload.get("serviceTier")
    name = tier.get("type") if isinstance(tier, dict) else None
    if tier is not None and name not in _SERVICE_TIERS:
        raise MockError(400, "serviceTier.type: must be one of priority, default, flex, reserved")
    system = payload.get("system")
    blocks: list[Any] = list(system) if isinstance(system, list) else []
    messages = payload.get("messages")
    for message in messages if isinstance(messages, list) else ():
        content = message.get("content") if isinstance(message, dict) else None
        for block in content if isinstance(content, list) else ():
            blocks.append(block)
            result = block.get("toolResult") if isinstance(block, dict) else None
            if isinstance(result, dict) and isinstance(result.get("content"), list):
                blocks.extend(result["content"])
    tool_config = payload.get("toolConfig")
    tools = tool_config.get("tools") if isinstance(tool_config, dict) else None
    blocks.extend(tools if isinstance(tools, list) else ())
    ttl = "5m"
    for block in blocks:
        if not isinstance(block, dict):
            continue
        if "cachePoint" in block:
            check_cache_control(block["cachePoint"], "cachePoint", "default")
            if block["cachePoint"].get("ttl") == "1h":
                ttl = "1h"
        document = block.get("document")
        if isinstance(document, dict):
            doc_name = document.get("name")
            if document.get("format") not in _DOCUMENT_FORMATS:
                raise MockError(400, "document.format: not a supported document format")
            if not isinstance(doc_name, str) or not _DOCUMENT_NAME.fullmatch(doc_name):
                raise MockError(400, "document.name: contains characters that are not allowed")
            source = document.get("source")
            if not isinstance(source, dict) or not isinstance(source.get("bytes"), str):
                raise MockError(400, "document.source: bytes required")
    check_history(
        messages,
        thinking_on,
        is_thinking=lambda b: "reasoningContent" in b,
        is_tool_use=lambda b: "toolUse" in b,
        signed=_signed_reasoning,
    )
    return (name if isinstance(name, str) else None), ttl


def _signed_reasoning(block: dict[str, Any]) -> tuple[str, str] | None:
    reasoning = block.get("reasoningContent")
    text = reasoning.get("reasoningText") if isinstance(reasoning, dict) else None
    if not isinstance(text, dict):
        return None
    return str(text.get("text")), str(text.get("signature"))


def _payload(count: int, body: dict[str, Any]) -> bytes:
    # Bedrock pads every payload with a "p" field of varying length (hides sizes).
    return dumps({**body, "p": _PADDING[: 1 + count * 7 % len(_PADDING)]})


def _exception_frame(error_type: str | None) -> bytes:
    name = error_type or _DEFAULT_STREAM_EXCEPTION
    body: dict[str, Any] = {"message": "mock stream error (x-mock-fault: exception)"}
    if name == _DEFAULT_STREAM_EXCEPTION:
        body["originalStatusCode"] = 500
        body["originalMessage"] = "mock model failure"
    return exception_frame(name, dumps(body))


def _tools(tool_config: Any) -> list[ToolDefinition]:
    if not isinstance(tool_config, dict) or not isinstance(tool_config.get("tools"), list):
        return []
    found: list[ToolDefinition] = []
    for tool in tool_config["tools"]:
        spec = tool.get("toolSpec") if isinstance(tool, dict) else None
        if isinstance(spec, dict) and isinstance(spec.get("name"), str):
            schema = spec.get("inputSchema")
            found.append(
                ToolDefinition(
                    spec["name"], schema.get("json") if isinstance(schema, dict) else None
                )
            )
    return found


def _forced_tool(tool_config: Any) -> str | None:
    choice = tool_config.get("toolChoice") if isinstance(tool_config, dict) else None
    if not isinstance(choice, dict):
        return None
    named = choice.get("tool")
    if isinstance(named, dict) and isinstance(named.get("name"), str):
        return str(named["name"])
    if "any" in choice:
        tools = _tools(tool_config)
        return tools[0].name if tools else None
    return None
