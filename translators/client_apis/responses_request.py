"""Reading an OpenAI Responses request (``POST /v1/responses``) as a chat completion
request, for backends reached through the chat pivot (docs/client-apis.md, "OpenAI Responses API").

What a backend other than OpenAI cannot do (state kept at OpenAI, built-in tools, runs in
the background) is a 400 naming the field, never dropped.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

from aigateway.translators.client_apis.chat.request import set_streaming
from aigateway.translators.client_apis.field_policy import (
    RESPONSES_ADDITIONAL_TOOLS_FIELDS,
    RESPONSES_CONFIGURATION_UPDATE_FIELDS,
    RESPONSES_CUSTOM_TOOL_FIELDS,
    RESPONSES_FIELDS,
    RESPONSES_NAMESPACE_FIELDS,
    RESPONSES_TOOL_FIELDS,
    RESPONSES_TOOL_SEARCH_FIELDS,
    RESPONSES_TOOL_SEARCH_OUTPUT_FIELDS,
    FieldPolicy,
)
from aigateway.translators.contract import TranslationError
from aigateway.translators.wire.jsoncodec import dumps, loads_or_none

#: ``encrypted_content`` of the reasoning items the gateway writes: the signed reasoning
#: blocks of a turn, for the client to send back (docs/client-apis.md, "OpenAI Responses API").
REASONING_PREFIX = "aigw-thinking-v1:"

_INCLUDABLE = frozenset({"reasoning.encrypted_content"})
_STATEFUL = {
    "previous_response_id": "a conversation kept at OpenAI",
    "conversation": "a conversation kept at OpenAI",
    "prompt": "prompt templates kept at OpenAI",
}
_TEXT_PART_TYPES = frozenset({"input_text", "output_text", "text"})
_ROLES = frozenset({"user", "assistant", "system", "developer"})
_TOOL_OPTIONS = frozenset({"auto", "none", "required"})
#: The namespace plain function tools live in: its tools keep their plain names.
DEFAULT_NAMESPACE = "functions"
_GRAMMARS = frozenset({"lark", "regex"})


def _error(message: str, param: str) -> TranslationError:
    return TranslationError(message, param=param)


def encode_reasoning(blocks: list[dict[str, Any]]) -> str:
    """Signed reasoning blocks as a reasoning item's ``encrypted_content``."""
    raw = dumps(blocks)
    return REASONING_PREFIX + base64.urlsafe_b64encode(raw).decode("ascii")


def decode_reasoning(text: Any, param: str) -> list[dict[str, Any]]:
    """The blocks :func:`encode_reasoning` wrote (a 400 for anything else)."""
    if not isinstance(text, str) or not text.startswith(REASONING_PREFIX):
        raise _error(
            "only reasoning items this gateway returned can be sent back to this model",
            f"{param}.encrypted_content",
        )
    try:
        raw = base64.urlsafe_b64decode(text[len(REASONING_PREFIX) :])
    except ValueError:  # binascii.Error
        raise _error("'encrypted_content' is damaged", f"{param}.encrypted_content") from None
    blocks = loads_or_none(raw)
    if not isinstance(blocks, list) or not all(isinstance(b, dict) for b in blocks):
        raise _error("'encrypted_content' is damaged", f"{param}.encrypted_content")
    return blocks


@dataclass(slots=True)
class ToolOrigin:
    """The Responses tool behind a chat function whose answer is not a plain
    ``function_call``: one inside a namespace, or a custom tool (free-text input)."""

    name: str
    namespace: str | None
    custom: bool


def flat_name(namespace: str | None, name: str) -> str:
    """The chat function's name for a tool in ``namespace``: ``namespace__name``, the
    name Codex itself gives a namespaced tool where namespaces do not exist."""
    if namespace is None or namespace == DEFAULT_NAMESPACE:
        return name
    return f"{namespace.rstrip('_')}__{name.lstrip('_')}"


def custom_input(arguments: str) -> str:
    """A custom tool call's input from the chat call's arguments (``{"input": ...}``); what
    the model wrote, unchanged, if it is not that."""
    doc = loads_or_none(arguments)
    text = doc.get("input") if isinstance(doc, dict) else None
    return text if isinstance(text, str) else arguments


@dataclass(slots=True)
class ResponsesRequest:
    """A Responses request read for the chat pivot.

    ``chat``: the chat completion request. ``echo``: the request fields the response
    object repeats. ``params``: chat field -> the client's field, for 400s the backend's
    chat translator raises. ``tools``: chat function name -> its Responses tool, for the
    functions whose calls go back as something else than a plain ``function_call``.
    """

    chat: dict[str, Any]
    echo: dict[str, Any]
    streamed: bool
    params: dict[str, str] = field(default_factory=dict)
    tools: dict[str, ToolOrigin] = field(default_factory=dict)


def read_responses_request(payload: dict[str, Any]) -> ResponsesRequest:
    """The chat completion request for a Responses request (``TranslationError`` naming
    the Responses field for what cannot be expressed)."""
    chat: dict[str, Any] = {"model": payload.get("model")}
    params: dict[str, str] = {
        "max_completion_tokens": "max_output_tokens",
        "response_format": "text.format",
        "reasoning_effort": "reasoning.effort",
    }
    messages: list[dict[str, Any]] = []
    tools = _Tools()
    for key, value in payload.items():
        if value is None or key in ("model", "input", "instructions"):
            continue
        if RESPONSES_FIELDS.skips(key):
            continue
        if key in _STATEFUL:
            raise _error(f"'{key}' ({_STATEFUL[key]}) is only supported by OpenAI models", key)
        if key == "store":
            if value is True:
                raise _error(
                    "'store': true (responses kept at OpenAI) is only supported by OpenAI"
                    " models; send 'store': false",
                    key,
                )
        elif key == "background":
            if value is True:
                raise _error("'background' responses are only supported by OpenAI models", key)
        elif key == "truncation":
            if value != "disabled":
                raise _error("only 'truncation': 'disabled' is supported for this model", key)
        elif key == "include":
            _check_include(value)
        elif key == "stream":
            set_streaming(chat, value, key)
        elif key == "max_output_tokens":
            chat["max_completion_tokens"] = value
        elif key in ("temperature", "top_p", "parallel_tool_calls", "user", "service_tier"):
            chat[key] = value
        elif key == "tools":
            tools.read(value, "tools")
        elif key == "tool_choice":
            chat["tool_choice"] = _tool_choice(value)
        elif key == "text":
            fmt = _text_format(value)
            if fmt is not None:
                chat["response_format"] = fmt
        elif key == "reasoning":
            effort = _reasoning_effort(value)
            if effort is not None:
                chat["reasoning_effort"] = effort
        else:
            raise _error(f"'{key}' is not supported for this model", key)
    instructions = payload.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise _error("'instructions' must be a string", "instructions")
        if instructions:
            params[f"messages[{len(messages)}]"] = "instructions"
            messages.append({"role": "system", "content": instructions})
    updates = _read_input(payload.get("input"), messages, params, tools)
    if not messages:
        raise _error("'input' must not be empty", "input")
    # The last configuration_update of a setting applies to this answer, over the request's.
    for key, (value, param) in updates.items():
        chat.pop(key, None)
        if value is not None:
            chat[key] = value
        params[key] = param
    if tools.chat:
        chat["tools"] = list(tools.chat.values())
    chat["messages"] = messages
    return ResponsesRequest(chat, _echo(payload), chat.get("stream") is True, params, tools.origins)


def _check_include(value: Any) -> None:
    if not isinstance(value, list):
        raise _error("'include' must be a list", "include")
    for i, item in enumerate(value):
        if not isinstance(item, str) or item not in _INCLUDABLE:
            raise _error(
                f"'include' value {str(item)[:100]!r} is only supported by OpenAI models"
                " (this model can include reasoning.encrypted_content)",
                f"include[{i}]",
            )


@dataclass(slots=True)
class _Tools:
    """The chat functions of a request: its ``tools`` and those its ``additional_tools``
    items declare, namespaces flattened; a later definition of a name replaces the earlier."""

    chat: dict[str, dict[str, Any]] = field(default_factory=dict)  # by chat name
    origins: dict[str, ToolOrigin] = field(default_factory=dict)

    def read(self, value: Any, param: str) -> None:
        if not isinstance(value, list):
            raise _error("'tools' must be a list", param)
        for i, tool in enumerate(value):
            where = f"{param}[{i}]"
            if not isinstance(tool, dict):
                raise _error("each tool must be an object", where)
            kind = tool.get("type")
            if kind == "namespace":
                self._namespace(tool, where)
            elif kind == "tool_search":
                _tool_search(tool, where)
            else:
                self._add(tool, where, None)

    def _namespace(self, tool: dict[str, Any], param: str) -> None:
        _check_fields(tool, RESPONSES_NAMESPACE_FIELDS, param)
        name, inner = tool.get("name"), tool.get("tools")
        if not isinstance(name, str) or not name:
            raise _error("a namespace tool needs 'name'", f"{param}.name")
        if not isinstance(inner, list):
            raise _error("a namespace tool needs a list of 'tools'", f"{param}.tools")
        for j, member in enumerate(inner):
            where = f"{param}.tools[{j}]"
            if not isinstance(member, dict):
                raise _error("each tool must be an object", where)
            self._add(member, where, name)

    def _add(self, tool: dict[str, Any], param: str, namespace: str | None) -> None:
        kind = tool.get("type")
        if kind == "function":
            function = _function_tool(tool, param)
        elif kind == "custom":
            function = _custom_tool(tool, param)
        else:
            raise _error(
                f"built-in tools ({str(kind)[:60]!r}) are only supported by OpenAI models;"
                " use function tools",
                f"{param}.type",
            )
        name = function["name"]
        flat = flat_name(namespace, name)
        function["name"] = flat
        self.chat[flat] = {"type": "function", "function": function}
        if namespace is not None or kind == "custom":
            self.origins[flat] = ToolOrigin(name, namespace, kind == "custom")
        else:
            self.origins.pop(flat, None)


def _tool_search(tool: dict[str, Any], param: str) -> None:
    """OpenAI's tool search is left out: every deferred tool it would find goes to the
    backend with the others (docs/client-apis.md, "OpenAI Responses API"). A search the
    client runs finds tools the request does not hold, so it is refused."""
    _check_fields(tool, RESPONSES_TOOL_SEARCH_FIELDS, param)
    execution = tool.get("execution")
    if execution == "client":
        raise _error(
            "a tool search the client runs ('execution': 'client') is only supported by"
            " OpenAI models; declare the tools instead",
            f"{param}.execution",
        )
    if execution not in (None, "server"):
        raise _error("'execution' must be server or client", f"{param}.execution")


def _check_fields(item: dict[str, Any], policy: FieldPolicy, param: str) -> None:
    translated = policy.translated
    for key, value in item.items():
        if key in translated or value is None or policy.skips(key):
            continue
        raise _error(f"'{key}' is not supported for this model", f"{param}.{key}")


def _tool_name(tool: dict[str, Any], param: str) -> str:
    name = tool.get("name")
    if not isinstance(name, str) or not name:
        raise _error(f"a {tool.get('type')} tool needs 'name'", f"{param}.name")
    return name


def _function_tool(tool: dict[str, Any], param: str) -> dict[str, Any]:
    name = _tool_name(tool, param)
    _check_fields(tool, RESPONSES_TOOL_FIELDS, param)
    function: dict[str, Any] = {"name": name}
    for key in ("description", "parameters", "strict"):
        if tool.get(key) is not None:
            function[key] = tool[key]
    return function


def _custom_tool(tool: dict[str, Any], param: str) -> dict[str, Any]:
    """A custom tool (its input free text) as a function of one string, ``input``. A
    grammar the backend cannot enforce is given to the model as the input's description
    (docs/client-apis.md, "OpenAI Responses API")."""
    name = _tool_name(tool, param)
    _check_fields(tool, RESPONSES_CUSTOM_TOOL_FIELDS, param)
    about = "The input, as free text."
    fmt = tool.get("format")
    if fmt is not None:
        kind = fmt.get("type") if isinstance(fmt, dict) else None
        if kind == "grammar":
            assert isinstance(fmt, dict)
            syntax, definition = fmt.get("syntax"), fmt.get("definition")
            if syntax not in _GRAMMARS or not isinstance(definition, str):
                raise _error(
                    "a grammar needs 'syntax' lark or regex and its 'definition'",
                    f"{param}.format",
                )
            about = f"The input: text that matches this {syntax} grammar.\n{definition}"
        elif kind != "text":
            raise _error("'format.type' must be text or grammar", f"{param}.format.type")
    function: dict[str, Any] = {
        "name": name,
        "parameters": {
            "type": "object",
            "properties": {"input": {"type": "string", "description": about}},
            "required": ["input"],
        },
    }
    if isinstance(tool.get("description"), str):
        function["description"] = tool["description"]
    return function


def _tool_choice(value: Any) -> Any:
    if isinstance(value, str) and value in _TOOL_OPTIONS:
        return value
    if isinstance(value, dict) and value.get("type") in ("function", "custom"):
        name, namespace = value.get("name"), value.get("namespace")
        if isinstance(name, str) and name and (namespace is None or isinstance(namespace, str)):
            return {"type": "function", "function": {"name": flat_name(namespace, name)}}
    raise _error(
        "'tool_choice' must be auto, none, required or a function for this model", "tool_choice"
    )


def _text_format(value: Any, param: str = "text") -> dict[str, Any] | None:
    if not isinstance(value, dict):
        raise _error("'text' must be an object", param)
    # `verbosity` is a hint on length: ignored, as the field policy says of hints.
    fmt = value.get("format")
    if fmt is None:
        return None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind != "json_schema":
        raise _error(
            "'text.format.type' must be text, json_object or json_schema", f"{param}.format"
        )
    assert isinstance(fmt, dict)
    spec = {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}
    return {"type": "json_schema", "json_schema": spec}


def _reasoning_effort(value: Any, param: str = "reasoning") -> Any:
    if not isinstance(value, dict):
        raise _error("'reasoning' must be an object", param)
    # `summary` asks OpenAI for summaries; other backends return their reasoning as text.
    return value.get("effort")


def _echo(payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "model": payload.get("model"),
        "instructions": payload.get("instructions"),
        "max_output_tokens": payload.get("max_output_tokens"),
        "metadata": payload.get("metadata") or {},
        "parallel_tool_calls": payload.get("parallel_tool_calls") is not False,
        "reasoning": payload.get("reasoning") or {"effort": None, "summary": None},
        "store": False,
        "temperature": payload.get("temperature"),
        "text": payload.get("text") or {"format": {"type": "text"}},
        "tool_choice": payload.get("tool_choice") or "auto",
        "tools": payload.get("tools") or [],
        "top_p": payload.get("top_p"),
        "truncation": "disabled",
        "user": payload.get("user"),
    }


# --- input items -------------------------------------------------------------------


def _read_input(
    value: Any, messages: list[dict[str, Any]], params: dict[str, str], tools: _Tools
) -> dict[str, tuple[Any, str]]:
    """Reads the items into ``messages`` and ``tools``; returns what ``configuration_update``
    items set last: chat field -> (its value, the item's field)."""
    updates: dict[str, tuple[Any, str]] = {}
    if isinstance(value, str):
        if value:
            messages.append({"role": "user", "content": value})
        return updates
    if not isinstance(value, list):
        raise _error("'input' must be a string or a list of items", "input")
    thinking: list[dict[str, Any]] = []  # signed reasoning for the next assistant message
    for i, item in enumerate(value):
        param = f"input[{i}]"
        if not isinstance(item, dict):
            raise _error("each input item must be an object", param)
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if not isinstance(role, str) or role not in _ROLES:
                raise _error("'role' must be user, assistant, system or developer", f"{param}.role")
            message: dict[str, Any] = {"role": role, "content": _content(item, param)}
            if role == "assistant" and thinking:
                message["thinking_blocks"], thinking = thinking, []
            params[f"messages[{len(messages)}]"] = param
            messages.append(message)
        elif kind in ("function_call", "custom_tool_call"):
            call = _function_call(item, param)
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant" and not thinking:
                last.setdefault("tool_calls", []).append(call)
            else:
                message = {"role": "assistant", "content": None, "tool_calls": [call]}
                if thinking:
                    message["thinking_blocks"], thinking = thinking, []
                params[f"messages[{len(messages)}]"] = param
                messages.append(message)
        elif kind in ("function_call_output", "custom_tool_call_output"):
            call_id = item.get("call_id")
            if not isinstance(call_id, str) or not call_id:
                raise _error(f"a {kind} needs 'call_id'", f"{param}.call_id")
            params[f"messages[{len(messages)}]"] = param
            messages.append(
                {"role": "tool", "tool_call_id": call_id, "content": _output(item, param)}
            )
        elif kind == "reasoning":
            # Reasoning without our signed blocks cannot be replayed (as in chat history).
            if item.get("encrypted_content") is not None:
                thinking.extend(decode_reasoning(item["encrypted_content"], param))
        elif kind == "agent_message":
            # A message between Codex's agents: a user message, as Codex sends it to
            # backends without them (docs/client-apis.md, "OpenAI Responses API").
            params[f"messages[{len(messages)}]"] = param
            messages.append({"role": "user", "content": _agent_text(item, param)})
        elif kind == "additional_tools":
            # Codex declares its tools in the conversation: they join the request's.
            _check_fields(item, RESPONSES_ADDITIONAL_TOOLS_FIELDS, param)
            tools.read(item.get("tools"), f"{param}.tools")
        elif kind == "configuration_update":
            # Settings from here on (docs/client-apis.md, "OpenAI Responses API").
            _check_fields(item, RESPONSES_CONFIGURATION_UPDATE_FIELDS, param)
            if item.get("reasoning") is not None:
                effort = _reasoning_effort(item["reasoning"], f"{param}.reasoning")
                if effort is not None:
                    updates["reasoning_effort"] = (effort, f"{param}.reasoning.effort")
            if item.get("text") is not None:
                fmt = _text_format(item["text"], f"{param}.text")
                updates["response_format"] = (fmt, f"{param}.text.format")
        elif kind == "tool_search_output":
            # The tools a tool search loaded: they join the request's.
            _check_fields(item, RESPONSES_TOOL_SEARCH_OUTPUT_FIELDS, param)
            tools.read(item.get("tools"), f"{param}.tools")
        elif kind == "tool_search_call":
            pass  # the search itself: what it found is in its tool_search_output item
        elif kind == "item_reference":
            raise _error(
                "'item_reference' (items kept at OpenAI) is only supported by OpenAI models",
                f"{param}.type",
            )
        else:
            raise _error(
                f"input items of type {str(kind)[:60]!r} are not supported for this model",
                f"{param}.type",
            )
    return updates


def _agent_text(item: dict[str, Any], param: str) -> str:
    content = item.get("content")
    if not isinstance(content, list):
        raise _error("'content' must be a list of parts", f"{param}.content")
    texts = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "encrypted_content":
            raise _error(
                "encrypted agent messages are only supported by OpenAI models",
                f"{param}.content[{j}]",
            )
        if kind != "input_text" or not isinstance(part.get("text"), str):
            raise _error("an agent message's parts must be input_text", f"{param}.content[{j}]")
        texts.append(part["text"])
    return "\n".join(texts)


def _content(item: dict[str, Any], param: str) -> str | list[dict[str, Any]]:
    content = item.get("content")
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _error("'content' must be a string or a list of parts", f"{param}.content")
    return [_part(part, f"{param}.content[{j}]") for j, part in enumerate(content)]


def _part(part: Any, param: str) -> dict[str, Any]:
    if not isinstance(part, dict):
        raise _error("each content part must be an object", param)
    if part.get("prompt_cache_breakpoint") is not None:
        raise _error(
            "'prompt_cache_breakpoint' is only supported by OpenAI models",
            f"{param}.prompt_cache_breakpoint",
        )
    kind = part.get("type")
    if isinstance(kind, str) and kind in _TEXT_PART_TYPES:
        text = part.get("text")
        if not isinstance(text, str):
            raise _error("a text part needs 'text'", f"{param}.text")
        return {"type": "text", "text": text}
    if kind == "refusal":
        refusal = part.get("refusal")
        if not isinstance(refusal, str):
            raise _error("a refusal part needs 'refusal'", f"{param}.refusal")
        return {"type": "refusal", "refusal": refusal}
    if kind == "input_image":
        url = part.get("image_url")
        if not isinstance(url, str) or not url:
            if part.get("file_id") is not None:
                raise _error(
                    "uploaded files ('file_id') are only supported by OpenAI models",
                    f"{param}.file_id",
                )
            raise _error("an input_image needs 'image_url'", f"{param}.image_url")
        image: dict[str, Any] = {"url": url}
        if isinstance(part.get("detail"), str):
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    if kind == "input_file":
        data = part.get("file_data")
        if not isinstance(data, str) or not data:
            where = "file_id" if part.get("file_id") is not None else "file_url"
            raise _error(
                "only files sent as 'file_data' (a base64 data: URL) are supported for this model",
                f"{param}.{where}",
            )
        file: dict[str, Any] = {"file_data": data}
        if isinstance(part.get("filename"), str):
            file["filename"] = part["filename"]
        return {"type": "file", "file": file}
    raise _error(f"content parts of type {str(kind)[:60]!r} are not supported", f"{param}.type")


def _function_call(item: dict[str, Any], param: str) -> dict[str, Any]:
    """A ``function_call`` or ``custom_tool_call`` item as a chat tool call (named as
    its tool is in the chat request)."""
    kind, call_id, name = item["type"], item.get("call_id"), item.get("name")
    namespace = item.get("namespace")
    if not isinstance(call_id, str) or not call_id:
        raise _error(f"a {kind} needs 'call_id'", f"{param}.call_id")
    if not isinstance(name, str) or not name:
        raise _error(f"a {kind} needs 'name'", f"{param}.name")
    if namespace is not None and not isinstance(namespace, str):
        raise _error("'namespace' must be a string", f"{param}.namespace")
    if kind == "custom_tool_call":
        text = item.get("input")
        if not isinstance(text, str):
            raise _error("'input' must be a string", f"{param}.input")
        arguments = dumps({"input": text}).decode()
    elif isinstance(item.get("arguments"), str):
        arguments = item["arguments"]
    else:
        raise _error("'arguments' must be a JSON string", f"{param}.arguments")
    function = {"name": flat_name(namespace, name), "arguments": arguments}
    return {"id": call_id, "type": "function", "function": function}


def _output(item: dict[str, Any], param: str) -> str | list[dict[str, Any]]:
    output = item.get("output")
    if isinstance(output, str):
        return output
    if not isinstance(output, list):
        raise _error("'output' must be a string or a list of parts", f"{param}.output")
    return [_part(part, f"{param}.output[{j}]") for j, part in enumerate(output)]
