"""Reading an OpenAI chat completion request into plain values: messages, content
parts, tools, sampling parameters. Every translator whose backend does not speak OpenAI
(Bedrock Converse, Anthropic Messages) reads requests through these, so they agree on
every edge (data URLs, tool-call ids, parameter checks).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from aigateway.translators.base import TranslationError

ToolChoiceMode = Literal["auto", "required", "none", "named"]


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
