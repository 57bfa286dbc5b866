"""Reading an Anthropic Messages request (``POST /v1/messages``) as a chat completion
request, for backends reached through the chat pivot (docs/client-apis.md, "Anthropic
Messages API").

Prompt-cache marks and Anthropic's ``thinking`` pass on in the chat dialect the
Anthropic and Bedrock translators read (docs/client-apis.md, "Prompt caching",
"Reasoning") when the backend takes them; elsewhere cache marks are dropped (those
backends cache on their own) and ``thinking`` becomes ``reasoning_effort``. What cannot
be expressed is a 400 naming the field.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

from aigateway.translators.client_apis.chat.request import set_streaming
from aigateway.translators.client_apis.field_policy import MESSAGES_FIELDS, MESSAGES_TOOL_FIELDS
from aigateway.translators.contract import TranslationError
from aigateway.translators.wire.jsoncodec import as_int, dumps

_ROLES = frozenset({"user", "assistant", "system"})
_TOOL_CHOICES = {"auto": "auto", "any": "required", "none": "none"}
_SERVICE_TIERS = {"auto": None, "standard_only": "default"}
# Anthropic's efforts above high are the highest effort every chat backend knows.
_EFFORTS = {"low": "low", "medium": "medium", "high": "high", "xhigh": "high", "max": "high"}
# Editing context edits that only clear thinking: nothing to do where thinking is not sent.
_CLEAR_THINKING = "clear_thinking_"


def _error(message: str, param: str) -> TranslationError:
    return TranslationError(message, param=param)


@dataclass(slots=True, frozen=True)
class MessagesOptions:
    """What the backend behind the pivot takes of Anthropic's own request features."""

    #: ``cache_control`` marks pass on (Anthropic and Bedrock translators place them).
    cache_marks: bool = False
    #: ``thinking`` passes on as is (Claude); otherwise it becomes ``reasoning_effort``.
    thinking: bool = False


@dataclass(slots=True)
class MessagesRequest:
    """A Messages request read for the chat pivot: the chat completion request, and
    chat field -> the client's field, for 400s the backend's chat translator raises."""

    chat: dict[str, Any]
    params: dict[str, str] = field(default_factory=dict)


def reasoning_effort_for_budget(budget: int) -> str:
    """The ``reasoning_effort`` nearest a thinking budget (docs/client-apis.md, "Reasoning",
    read the other way)."""
    if budget < 4096:
        return "low"
    if budget < 16384:
        return "medium"
    return "high"


def read_messages_request(payload: dict[str, Any], options: MessagesOptions) -> MessagesRequest:
    """The chat completion request for a Messages request."""
    chat: dict[str, Any] = {"model": payload.get("model")}
    params = {
        "max_completion_tokens": "max_tokens",
        "stop": "stop_sequences",
        "user": "metadata.user_id",
        "reasoning_effort": "thinking",
        "response_format": "output_config.format",
    }
    for key, value in payload.items():
        if value is None or key in ("model", "messages", "system", "cache_control"):
            continue
        if MESSAGES_FIELDS.skips(key):
            continue
        if key == "max_tokens":
            if as_int(value) is None or value < 1:
                raise _error("'max_tokens' must be a positive integer", key)
            chat["max_completion_tokens"] = value
        elif key in ("temperature", "top_p"):
            chat[key] = value
        elif key == "stop_sequences":
            if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
                raise _error("'stop_sequences' must be a list of strings", key)
            if value:
                chat["stop"] = value
        elif key == "stream":
            set_streaming(chat, value, key)
        elif key == "metadata":
            user = value.get("user_id") if isinstance(value, dict) else None
            if isinstance(user, str) and user:
                chat["user"] = user
        elif key == "tools":
            chat["tools"] = _tools(value, options)
        elif key == "tool_choice":
            _tool_choice(value, chat)
        elif key == "thinking":
            _thinking(value, options, chat)
        elif key == "output_config":
            _output_config(value, options, chat, params)
        elif key == "context_management":
            _context_management(value, options)
        elif key == "speed":
            if value != "standard":
                raise _error("only 'speed': 'standard' is supported for this model", key)
        elif key == "service_tier":
            if not isinstance(value, str) or value not in _SERVICE_TIERS:
                raise _error("'service_tier' must be auto or standard_only", key)
            if _SERVICE_TIERS[value] is not None:
                chat["service_tier"] = _SERVICE_TIERS[value]
        else:
            raise _error(f"'{key}' is not supported for this model", key)
    if "max_completion_tokens" not in chat:
        raise _error("'max_tokens' is required", "max_tokens")
    messages: list[dict[str, Any]] = []
    system = payload.get("system")
    if system is not None:
        parts = _system_parts(system, options)
        if parts:
            params["messages[0]"] = "system"
            messages.append({"role": "system", "content": parts})
    _read_messages(payload.get("messages"), options, messages, params)
    mark = payload.get("cache_control")
    if mark is not None and options.cache_marks:
        # A request-wide mark caches the whole prompt: the end of its last message.
        messages[-1]["cache_control"] = mark
    chat["messages"] = messages
    return MessagesRequest(chat, params)


def _output_config(
    value: Any, options: MessagesOptions, chat: dict[str, Any], params: dict[str, str]
) -> None:
    if not isinstance(value, dict):
        raise _error("'output_config' must be an object", "output_config")
    if options.thinking:
        chat["output_config"] = value  # Claude's own, passed on as thinking is
        return
    for key, item in value.items():
        if item is None:
            continue
        if key == "effort":
            if not isinstance(item, str) or item not in _EFFORTS:
                raise _error(
                    "'output_config.effort' must be low, medium, high, xhigh or max",
                    "output_config.effort",
                )
            chat["reasoning_effort"] = _EFFORTS[item]
            params["reasoning_effort"] = "output_config.effort"
        elif key == "format":
            schema = item.get("schema") if isinstance(item, dict) else None
            if not isinstance(item, dict) or item.get("type") != "json_schema":
                raise _error(
                    "'output_config.format.type' must be json_schema", "output_config.format"
                )
            spec: dict[str, Any] = {"name": "output", "strict": True}
            if schema is not None:
                spec["schema"] = schema
            chat["response_format"] = {"type": "json_schema", "json_schema": spec}
        else:
            raise _error(
                f"'output_config.{key}' is not supported for this model", f"output_config.{key}"
            )


def _context_management(value: Any, options: MessagesOptions) -> None:
    edits = value.get("edits") if isinstance(value, dict) else None
    if not isinstance(edits, list):
        raise _error("'context_management.edits' must be a list", "context_management")
    for i, edit in enumerate(edits):
        kind = edit.get("type") if isinstance(edit, dict) else None
        thinking_only = isinstance(kind, str) and kind.startswith(_CLEAR_THINKING)
        # Where thinking is never sent there is none to clear; Claude keeping all is a no-op.
        if thinking_only and (not options.thinking or edit.get("keep") == "all"):
            continue
        raise _error(
            "context editing is only supported by Anthropic models"
            " (here: clearing thinking where none is kept)",
            f"context_management.edits[{i}]",
        )


def _system_parts(
    system: Any, options: MessagesOptions, where: str = "system"
) -> list[dict[str, Any]]:
    if isinstance(system, str):
        return [{"type": "text", "text": system}] if system else []
    if not isinstance(system, list):
        raise _error("system content must be a string or a list of text blocks", where)
    parts: list[dict[str, Any]] = []
    for i, block in enumerate(system):
        param = f"{where}[{i}]"
        if not isinstance(block, dict) or block.get("type") != "text":
            raise _error("system content blocks must be text blocks", param)
        parts.append(_text_part(block, param, options))
    return parts


def _text_part(block: dict[str, Any], param: str, options: MessagesOptions) -> dict[str, Any]:
    text = block.get("text")
    if not isinstance(text, str):
        raise _error("a text block needs 'text'", f"{param}.text")
    part: dict[str, Any] = {"type": "text", "text": text}
    _carry_cache_mark(block, part, options)
    return part


def _carry_cache_mark(
    block: dict[str, Any], target: dict[str, Any], options: MessagesOptions
) -> None:
    mark = block.get("cache_control")
    if mark is not None and options.cache_marks:
        target["cache_control"] = mark


def _tools(value: Any, options: MessagesOptions) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise _error("'tools' must be a list", "tools")
    out: list[dict[str, Any]] = []
    for i, tool in enumerate(value):
        param = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise _error("each tool must be an object", param)
        kind = tool.get("type")
        if kind not in (None, "custom"):
            raise _error(
                f"server tools ({str(kind)[:60]!r}) are only supported by Anthropic models;"
                " use client tools",
                f"{param}.type",
            )
        for key, field_value in tool.items():
            if field_value is None or MESSAGES_TOOL_FIELDS.skips(key):
                continue
            if key not in MESSAGES_TOOL_FIELDS.translated:
                raise _error(f"'{key}' is not supported for tools of this model", f"{param}.{key}")
        name = tool.get("name")
        if not isinstance(name, str) or not name:
            raise _error("a tool needs 'name'", f"{param}.name")
        schema = tool.get("input_schema")
        if not isinstance(schema, dict):
            raise _error(
                "a tool needs 'input_schema', a JSON schema object", f"{param}.input_schema"
            )
        function: dict[str, Any] = {"name": name, "parameters": schema}
        if isinstance(tool.get("description"), str):
            function["description"] = tool["description"]
        if isinstance(tool.get("strict"), bool):
            function["strict"] = tool["strict"]
        spec: dict[str, Any] = {"type": "function", "function": function}
        _carry_cache_mark(tool, spec, options)
        out.append(spec)
    return out


def _tool_choice(value: Any, chat: dict[str, Any]) -> None:
    if not isinstance(value, dict):
        raise _error("'tool_choice' must be an object", "tool_choice")
    kind, name = value.get("type"), value.get("name")
    if isinstance(kind, str) and kind in _TOOL_CHOICES:
        chat["tool_choice"] = _TOOL_CHOICES[kind]
    elif kind == "tool" and isinstance(name, str) and name:
        chat["tool_choice"] = {"type": "function", "function": {"name": name}}
    else:
        raise _error("'tool_choice.type' must be auto, any, tool or none", "tool_choice")
    if value.get("disable_parallel_tool_use") is True:
        chat["parallel_tool_calls"] = False


def _thinking(value: Any, options: MessagesOptions, chat: dict[str, Any]) -> None:
    if options.thinking:
        chat["thinking"] = value  # the backend's chat translator checks it
        return
    kind = value.get("type") if isinstance(value, dict) else None
    if kind in ("disabled", "adaptive"):
        return  # adaptive: the model decides, as every other backend does by default
    if kind != "enabled":
        raise _error(
            "'thinking.type' must be enabled, adaptive or disabled for this model", "thinking"
        )
    assert isinstance(value, dict)
    budget = as_int(value.get("budget_tokens"))
    if budget is None or budget < 1:
        raise _error(
            "'thinking.budget_tokens' must be a positive integer", "thinking.budget_tokens"
        )
    chat["reasoning_effort"] = reasoning_effort_for_budget(budget)


# --- messages ----------------------------------------------------------------------


def _read_messages(
    value: Any,
    options: MessagesOptions,
    messages: list[dict[str, Any]],
    params: dict[str, str],
) -> None:
    if not isinstance(value, list) or not value:
        raise _error("'messages' must be a non-empty list", "messages")
    for i, message in enumerate(value):
        param = f"messages[{i}]"
        role = message.get("role") if isinstance(message, dict) else None
        if not isinstance(role, str) or role not in _ROLES:
            raise _error("each message needs a 'role' of user, assistant or system", param)
        content = message.get("content")
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        if not isinstance(content, list):
            raise _error("'content' must be a string or a list of blocks", f"{param}.content")
        first = len(messages)
        if role == "system":
            parts = _system_parts(content, options, f"{param}.content")
            if parts:
                messages.append({"role": "system", "content": parts})
        elif role == "user":
            _user_messages(content, param, options, messages)
        else:
            messages.append(_assistant_message(content, param, options))
        for k in range(first, len(messages)):
            params[f"messages[{k}]"] = param


def _user_messages(
    blocks: list[Any], param: str, options: MessagesOptions, messages: list[dict[str, Any]]
) -> None:
    """A user turn: tool results become tool messages, the rest user messages, in order."""
    parts: list[dict[str, Any]] = []
    for j, block in enumerate(blocks):
        where = f"{param}.content[{j}]"
        if not isinstance(block, dict):
            raise _error("each content block must be an object", where)
        if block.get("type") == "tool_result":
            if parts:
                messages.append({"role": "user", "content": parts})
                parts = []
            messages.append(_tool_message(block, where, options))
        else:
            parts.append(_user_part(block, where, options))
    if parts:
        messages.append({"role": "user", "content": parts})


def _user_part(block: dict[str, Any], param: str, options: MessagesOptions) -> dict[str, Any]:
    kind = block.get("type")
    if kind == "text":
        return _text_part(block, param, options)
    if kind == "image":
        part: dict[str, Any] = {"type": "image_url", "image_url": {"url": _image_url(block, param)}}
    elif kind == "document":
        part = {"type": "file", "file": _document_file(block, param)}
    else:
        raise _error(
            f"content blocks of type {str(kind)[:60]!r} are not supported here", f"{param}.type"
        )
    _carry_cache_mark(block, part, options)
    return part


def _source_of(block: dict[str, Any], what: str, param: str) -> dict[str, Any]:
    source = block.get("source")
    if not isinstance(source, dict):
        raise _error(f"{what} needs a 'source'", f"{param}.source")
    return source


def _base64_data_url(source: dict[str, Any], what: str, param: str) -> str:
    """A ``base64`` source as a ``data:`` URL; ``what`` names the block in the error."""
    media_type, data = source.get("media_type"), source.get("data")
    if not isinstance(media_type, str) or not isinstance(data, str) or not data:
        raise _error(f"a base64 {what} needs 'media_type' and 'data'", f"{param}.source")
    return f"data:{media_type};base64,{data}"


def _image_url(block: dict[str, Any], param: str) -> str:
    source = _source_of(block, "an image", param)
    kind = source.get("type")
    if kind == "base64":
        return _base64_data_url(source, "image", param)
    if kind == "url":
        url = source.get("url")
        if not isinstance(url, str) or not url:
            raise _error("a url image needs 'url'", f"{param}.source.url")
        return url
    raise _error("image sources must be base64 or url for this model", f"{param}.source")


def _document_file(block: dict[str, Any], param: str) -> dict[str, Any]:
    source = _source_of(block, "a document", param)
    kind = source.get("type")
    if kind == "base64":
        url = _base64_data_url(source, "document", param)
    elif kind == "text":
        text = source.get("data")
        if not isinstance(text, str):
            raise _error("a text document needs 'data'", f"{param}.source.data")
        url = "data:text/plain;base64," + base64.b64encode(text.encode()).decode("ascii")
    else:
        raise _error("document sources must be base64 or text for this model", f"{param}.source")
    file: dict[str, Any] = {"file_data": url}
    if isinstance(block.get("title"), str) and block["title"]:
        file["filename"] = block["title"]
    return file


def _tool_message(block: dict[str, Any], param: str, options: MessagesOptions) -> dict[str, Any]:
    call_id = block.get("tool_use_id")
    if not isinstance(call_id, str) or not call_id:
        raise _error("a tool_result needs 'tool_use_id'", f"{param}.tool_use_id")
    content = block.get("content")
    out: Any
    if content is None:
        out = ""
    elif isinstance(content, str):
        out = content
    elif isinstance(content, list):
        out = []
        for k, item in enumerate(content):
            where = f"{param}.content[{k}]"
            if not isinstance(item, dict) or item.get("type") not in ("text", "image", "document"):
                raise _error("tool_result content blocks must be text, image or document", where)
            out.append(_user_part(item, where, options))
    else:
        raise _error("'content' must be a string or a list of blocks", f"{param}.content")
    # `is_error` has no chat field: the result's content says what went wrong.
    message: dict[str, Any] = {"role": "tool", "tool_call_id": call_id, "content": out}
    _carry_cache_mark(block, message, options)
    return message


def _assistant_message(blocks: list[Any], param: str, options: MessagesOptions) -> dict[str, Any]:
    parts: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    thinking: list[dict[str, Any]] = []
    for j, block in enumerate(blocks):
        where = f"{param}.content[{j}]"
        if not isinstance(block, dict):
            raise _error("each content block must be an object", where)
        kind = block.get("type")
        if kind == "text":
            parts.append(_text_part(block, where, options))
        elif kind == "tool_use":
            call_id, name, arguments = block.get("id"), block.get("name"), block.get("input")
            if not isinstance(call_id, str) or not isinstance(name, str) or not name:
                raise _error("a tool_use block needs 'id' and 'name'", where)
            if not isinstance(arguments, dict):
                raise _error("'input' must be an object", f"{where}.input")
            call: dict[str, Any] = {
                "id": call_id,
                "type": "function",
                "function": {"name": name, "arguments": dumps(arguments).decode()},
            }
            _carry_cache_mark(block, call, options)
            calls.append(call)
        elif kind in ("thinking", "redacted_thinking"):
            thinking.append({k: v for k, v in block.items() if k != "cache_control"})
        else:
            raise _error(
                f"content blocks of type {str(kind)[:60]!r} are not supported here",
                f"{where}.type",
            )
    message: dict[str, Any] = {"role": "assistant", "content": parts or None}
    if calls:
        message["tool_calls"] = calls
    if thinking and options.thinking:
        # Signed reasoning only means something to Claude; other backends never made it.
        message["thinking_blocks"] = thinking
    return message
