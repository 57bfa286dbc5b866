"""Reading an OpenAI chat completion request into plain values: messages, content
parts, tools, sampling parameters. Every translator whose backend does not speak OpenAI
(Bedrock Converse, Anthropic Messages) reads requests through these, so they agree on
every edge (data URLs, tool-call ids, parameter checks).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from aigateway.translators.client_apis.field_policy import CHAT_FIELDS
from aigateway.translators.contract import TranslationError
from aigateway.translators.wire.jsoncodec import NOT_JSON, parse

ToolChoiceMode = Literal["auto", "required", "none", "named"]


@dataclass(slots=True, frozen=True)
class CacheControl:
    """A prompt-cache breakpoint (``cache_control: {"type": "ephemeral", "ttl": ...}``)."""

    ttl: str | None = None  # "5m" or "1h"; None: the backend's default (5 minutes)


@dataclass(slots=True, frozen=True)
class FunctionTool:
    name: str
    description: str | None
    parameters: dict[str, Any]
    strict: bool = False
    cache_control: CacheControl | None = None


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


def set_streaming(chat: dict[str, Any], value: Any, param: str) -> None:
    """Another client API's ``stream`` flag on the chat request it becomes: a streamed
    chat request asks for usage, which the gateway meters."""
    if not isinstance(value, bool):
        raise TranslationError(f"'{param}' must be a boolean", param=param)
    if value:
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}


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
    """Refuse what would silently change the answer's shape if dropped (the chat table
    of docs/client-apis.md, "Field policy"); unknown fields are logged and left out."""
    for key, value in payload.items():
        if value is None or CHAT_FIELDS.skips(key) or key not in CHAT_FIELDS.refused:
            continue
        hint = "; use 'tools'" if key in ("functions", "function_call") else ""
        raise TranslationError(f"'{key}' is not supported for this model{hint}", param=key)
    n = payload.get("n")
    if n is not None and n != 1:
        raise TranslationError("only n=1 is supported for this model", param="n")


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
        strict = fn.get("strict")
        if strict is not None and not isinstance(strict, bool):
            raise TranslationError("'function.strict' must be a boolean", param=param)
        out.append(
            FunctionTool(
                fn["name"],
                description if isinstance(description, str) else None,
                parameters,
                strict=strict is True,
                cache_control=cache_control_of(tool, param)
                or cache_control_of(fn, f"{param}.function"),
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
    args = parse(raw)
    if args is NOT_JSON:
        raise TranslationError("'function.arguments' is not valid JSON", param=param)
    if not isinstance(args, dict):
        raise TranslationError("'function.arguments' must be a JSON object", param=param)
    return call_id, fn["name"], args


def tool_calls_of(
    message: dict[str, Any], param: str
) -> Iterator[tuple[str, Any, str, str, dict[str, Any]]]:
    """An assistant message's ``tool_calls``, each as (its param, the item, id, function
    name, parsed arguments object)."""
    calls = message.get("tool_calls") or []
    if not isinstance(calls, list):
        raise TranslationError("'tool_calls' must be a list", param=param)
    for j, call in enumerate(calls):
        where = f"{param}.tool_calls[{j}]"
        call_id, name, args = tool_call_fields(call, where)
        yield where, call, call_id, name, args


def tool_result_id(message: dict[str, Any], param: str) -> str:
    """A tool message's ``tool_call_id``: the call it answers."""
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise TranslationError("a tool message needs 'tool_call_id'", param=param)
    return call_id


def check_named_tool(choice: ToolChoice, tools: list[FunctionTool]) -> None:
    """A ``named`` tool choice must name one of the request's function tools."""
    if choice.name not in {t.name for t in tools}:
        raise TranslationError(
            f"'tool_choice' names unknown function '{choice.name}'", param="tool_choice"
        )


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


# --- prompt caching, documents, reasoning, structured answers ------------------------
# What the "mapped / not mapped" table of docs/client-apis.md promises for Anthropic and Bedrock.

_CACHE_TTLS = frozenset({"5m", "1h"})


def cache_control_of(holder: dict[str, Any], param: str) -> CacheControl | None:
    """The ``cache_control`` a content part, message, tool or tool call carries."""
    value = holder.get("cache_control")
    if value is None:
        return None
    if not isinstance(value, dict) or value.get("type") != "ephemeral":
        raise TranslationError(
            '\'cache_control\' must be {"type": "ephemeral"}', param=f"{param}.cache_control"
        )
    ttl = value.get("ttl")
    if ttl is not None and ttl not in _CACHE_TTLS:
        raise TranslationError(
            "'cache_control.ttl' must be '5m' or '1h'", param=f"{param}.cache_control"
        )
    return CacheControl(ttl)


def part_refusal(part: dict[str, Any], param: str) -> str:
    refusal = part.get("refusal")
    if not isinstance(refusal, str):
        raise TranslationError("a refusal part needs 'refusal'", param=param)
    return refusal


@dataclass(slots=True, frozen=True)
class DataDocument:
    media_type: str  # e.g. "application/pdf"
    data: str  # base64, as the client sent it
    filename: str | None


PDF_MEDIA_TYPE = "application/pdf"


def file_document(part: dict[str, Any], param: str) -> DataDocument:
    """An OpenAI ``file`` part (``file.file_data`` a base64 data URL) as a document."""
    file = part.get("file")
    if not isinstance(file, dict):
        raise TranslationError("a file part needs 'file'", param=param)
    filename = file.get("filename")
    filename = filename if isinstance(filename, str) and filename else None
    data = file.get("file_data")
    if not isinstance(data, str) or not data:
        if file.get("file_id") is not None:
            raise TranslationError(
                "uploaded files ('file.file_id') are not supported; send 'file.file_data'",
                param=param,
            )
        raise TranslationError("a file part needs 'file.file_data'", param=param)
    if not data.startswith("data:"):
        raise TranslationError("'file.file_data' must be a base64 data: URL", param=param)
    parsed = parse_data_url(data, param)
    return DataDocument(parsed.media_type, parsed.data, filename)


def pdf_image_url(url: str) -> bool:
    """An ``image_url`` that is really a PDF (clients send documents this way too)."""
    return url[:5].lower() == "data:" and url[5:].lower().startswith(PDF_MEDIA_TYPE)


def pdf_remote_url(url: str) -> bool:
    """A remote ``image_url`` whose path names a PDF file."""
    path = url.split("?", 1)[0].split("#", 1)[0]
    return url.startswith(("https://", "http://")) and path.lower().endswith(".pdf")


@dataclass(slots=True, frozen=True)
class ThinkingBlock:
    """A reasoning block of an earlier assistant turn, replayed with its signature.

    ``redacted``: the block was encrypted by the provider and ``data`` holds it.
    """

    thinking: str
    signature: str
    redacted: bool = False
    data: str = ""


#: Assistant content parts that replay reasoning (read with the message's thinking_blocks).
THINKING_PARTS = frozenset({"thinking", "redacted_thinking"})


def assistant_texts(message: dict[str, Any], param: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """An assistant message's text and refusal parts as (text, part), then its
    ``refusal`` when no refusal part said it (with no part: ``{}``). Thinking parts are
    :func:`thinking_blocks_of`'s."""
    refused = False
    for part in content_parts(message.get("content"), param):
        kind = part["type"]
        if kind in THINKING_PARTS:
            continue
        if kind == "text":
            yield part_text(part, param), part
        elif kind == "refusal":  # the turn happened: the model reads it as what it said
            refused = True
            yield part_refusal(part, param), part
        else:
            raise TranslationError(f"content part type '{kind}' is not supported", param=param)
    refusal = message.get("refusal")
    if isinstance(refusal, str) and refusal and not refused:
        yield refusal, {}


def thinking_blocks_of(message: dict[str, Any], param: str) -> list[ThinkingBlock]:
    """The reasoning an assistant history message replays: its ``thinking_blocks`` (the
    field our answers carry) and its ``thinking`` / ``redacted_thinking`` content parts
    (``reasoning_content`` alone has no signature and cannot be replayed)."""
    blocks = message.get("thinking_blocks")
    if blocks is not None and not isinstance(blocks, list):
        raise TranslationError("'thinking_blocks' must be a list", param=f"{param}.thinking_blocks")
    found = [(f"{param}.thinking_blocks[{j}]", b) for j, b in enumerate(blocks or [])]
    content = message.get("content")
    if isinstance(content, list):
        found += [
            (f"{param}.content[{j}]", part)
            for j, part in enumerate(content)
            if isinstance(part, dict) and part.get("type") in THINKING_PARTS
        ]
    return [_thinking_block(block, where) for where, block in found]


def _thinking_block(block: Any, where: str) -> ThinkingBlock:
    kind = block.get("type") if isinstance(block, dict) else None
    if kind == "thinking":
        assert isinstance(block, dict)
        text, signature = block.get("thinking"), block.get("signature")
        if not isinstance(text, str) or not isinstance(signature, str) or not signature:
            raise TranslationError(
                "a thinking block needs 'thinking' and its 'signature'", param=where
            )
        return ThinkingBlock(text, signature)
    if kind == "redacted_thinking":
        assert isinstance(block, dict)
        data = block.get("data")
        if not isinstance(data, str) or not data:
            raise TranslationError("a redacted_thinking block needs 'data'", param=where)
        return ThinkingBlock("", "", redacted=True, data=data)
    raise TranslationError(
        "thinking blocks are of type 'thinking' or 'redacted_thinking'", param=where
    )


# Thinking budget per reasoning_effort (docs/client-apis.md, "Reasoning"); 1024 is
# Anthropic's minimum.
REASONING_BUDGETS: dict[str, int] = {
    "minimal": 1024,
    "low": 1024,
    "medium": 4096,
    "high": 16384,
    "xhigh": 24576,
}


@dataclass(slots=True, frozen=True)
class Thinking:
    """Anthropic's ``thinking`` object for the request, and where it came from."""

    config: dict[str, Any]
    budget: int | None  # budget_tokens when enabled
    from_effort: bool  # mapped from reasoning_effort (else the client's own `thinking`)


def thinking_of(payload: dict[str, Any]) -> Thinking | None:
    """``reasoning_effort`` mapped to a thinking budget, or a client's own ``thinking``."""
    effort = payload.get("reasoning_effort")
    own = payload.get("thinking")
    if effort is not None and own is not None:
        raise TranslationError(
            "send either 'reasoning_effort' or 'thinking', not both", param="reasoning_effort"
        )
    if effort is not None:
        if effort == "none":
            return None
        budget = REASONING_BUDGETS.get(effort) if isinstance(effort, str) else None
        if budget is None:
            raise TranslationError(
                "'reasoning_effort' must be one of none, minimal, low, medium, high, xhigh",
                param="reasoning_effort",
            )
        if response_format_of(payload) is not None or _unsigned_tool_turn(payload):
            # A wish Claude cannot meet here: forced answer tools and a tool turn replayed
            # without its thinking both refuse thinking (docs/client-apis.md, "Reasoning").
            return None
        return Thinking({"type": "enabled", "budget_tokens": budget}, budget, from_effort=True)
    if own is None:
        return None
    if not isinstance(own, dict) or not isinstance(own.get("type"), str):
        raise TranslationError("'thinking' must be an object with a 'type'", param="thinking")
    if own["type"] != "enabled":
        return Thinking(own, None, from_effort=False)
    budget = own.get("budget_tokens")
    if not isinstance(budget, int) or isinstance(budget, bool) or budget < 1:
        raise TranslationError(
            "'thinking.budget_tokens' must be a positive integer", param="thinking.budget_tokens"
        )
    return Thinking(own, budget, from_effort=False)


def _unsigned_tool_turn(payload: dict[str, Any]) -> bool:
    """The last assistant message calls tools but carries no thinking to replay."""
    messages = payload.get("messages")
    if not isinstance(messages, list):
        return False
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "assistant":
            return bool(message.get("tool_calls")) and not message.get("thinking_blocks")
    return False


def output_tokens_with_thinking(payload: dict[str, Any], thinking: Thinking, default: int) -> int:
    """``max_tokens`` for a request that thinks with a budget: always above the budget.

    A budget the gateway chose (``reasoning_effort``) is added to the client's limit (or
    ``default``), so the answer keeps the room the client asked for; a client's own
    ``thinking`` keeps its limit, which must then exceed its budget.
    """
    assert thinking.budget is not None
    requested = max_output_tokens(payload)
    if thinking.from_effort or requested is None:
        return thinking.budget + (requested if requested is not None else default)
    if requested <= thinking.budget:
        key = "max_completion_tokens" if "max_completion_tokens" in payload else "max_tokens"
        raise TranslationError(f"'{key}' must be greater than 'thinking.budget_tokens'", param=key)
    return requested


# The forced tool that carries a structured answer (docs/client-apis.md, "Structured answers").
RESPONSE_FORMAT_TOOL = "json_tool_call"


@dataclass(slots=True, frozen=True)
class ResponseFormat:
    """A JSON answer asked for with ``response_format``, as a tool's input schema."""

    schema: dict[str, Any]
    description: str
    strict: bool


def response_format_of(payload: dict[str, Any]) -> ResponseFormat | None:
    value = payload.get("response_format")
    if value is None:
        return None
    kind = value.get("type") if isinstance(value, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return ResponseFormat({"type": "object"}, "Answer with a JSON object.", strict=False)
    if kind != "json_schema":
        raise TranslationError(
            "'response_format.type' must be text, json_object or json_schema",
            param="response_format",
        )
    assert isinstance(value, dict)
    spec = value.get("json_schema")
    if not isinstance(spec, dict):
        raise TranslationError(
            "'response_format.json_schema' must be an object", param="response_format.json_schema"
        )
    schema = spec.get("schema")
    if schema is None:
        schema = {"type": "object"}
    # A tool's input is an object; OpenAI also requires the root schema to be one.
    if not isinstance(schema, dict) or schema.get("type") != "object":
        raise TranslationError(
            "the root of 'response_format.json_schema.schema' must be of type object",
            param="response_format.json_schema.schema",
        )
    description = spec.get("description")
    if not isinstance(description, str) or not description:
        name = spec.get("name")
        description = f"Answer with a JSON object: {name}." if isinstance(name, str) else ""
        description = description or "Answer with a JSON object."
    return ResponseFormat(schema, description, strict=spec.get("strict") is True)


def response_format_choice(
    fmt: ResponseFormat | None,
    choice: ToolChoice | None,
    tools: list[FunctionTool],
    thinking: Thinking | None,
) -> Literal["tool", "any"] | None:
    """How the answer tool is chosen: ``"tool"`` (forced), ``"any"`` (the client's tools
    stay callable, and a plain answer goes through the answer tool), or ``None`` when
    ``response_format`` has nothing to shape (no format, or the client forces its own
    tool call)."""
    if fmt is None:
        return None
    if any(tool.name == RESPONSE_FORMAT_TOOL for tool in tools):
        raise TranslationError(
            f"the tool name '{RESPONSE_FORMAT_TOOL}' is reserved with 'response_format'",
            param="tools",
        )
    if choice is not None and choice.mode in ("required", "named"):
        return None
    if thinking is not None and thinking.config.get("type") != "disabled":
        # The backend refuses forced tool use while thinking
        # (docs/client-apis.md, "Structured answers").
        raise TranslationError(
            "'response_format' cannot be combined with reasoning on this backend",
            param="response_format",
        )
    if tools and (choice is None or choice.mode == "auto"):
        return "any"
    return "tool"


def service_tier_of(payload: dict[str, Any]) -> str | None:
    tier = payload.get("service_tier")
    if tier is None:
        return None
    if not isinstance(tier, str):
        raise TranslationError("'service_tier' must be a string", param="service_tier")
    return tier
