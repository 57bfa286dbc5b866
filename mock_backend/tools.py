"""Tool calls: which tool the mock calls and with which deterministic arguments.

The mock calls a tool only when the request defines tools, and then

- the tool named by the ``x-mock-tool-call`` header (400 if the request lacks it), else
- the tool the request's tool choice forces (a named tool; or the first tool for
  OpenAI ``"required"``, Bedrock ``{"any": {}}``, Anthropic ``{"type": "any"}``).

Arguments come from the tool's JSON schema: every ``required`` property gets a value of
its type (string ``"mock"``, number/integer ``1``, boolean ``true``, array ``[]``,
object: its own required properties; ``enum``/``const``: the first allowed value).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .errors import MockError

__all__ = [
    "ToolDefinition",
    "argument_fragments",
    "arguments_json",
    "mock_arguments",
    "select_tool",
]


@dataclass(frozen=True, slots=True)
class ToolDefinition:
    """A tool the request offers: its name and the JSON schema of its arguments."""

    name: str
    schema: Any


def select_tool(
    tools: list[ToolDefinition], *, header: str | None, forced: str | None
) -> ToolDefinition | None:
    """The tool to call, or ``None`` to answer with text.

    ``header`` is the ``x-mock-tool-call`` knob; ``forced`` the name the request's tool
    choice forces (``None`` when it does not force one).
    """
    if not tools:
        return None
    name = header or forced
    if name is None:
        return None
    for tool in tools:
        if tool.name == name:
            return tool
    raise MockError(400, f"tool {name!r} is not among the tools defined in the request")


def mock_arguments(schema: Any) -> dict[str, Any]:
    """Deterministic arguments satisfying the ``required`` part of a JSON schema."""
    if not isinstance(schema, dict):
        return {}
    properties = schema.get("properties")
    if not isinstance(properties, dict):
        properties = {}
    required = schema.get("required")
    if not isinstance(required, list):
        return {}
    return {name: _mock_value(properties.get(name)) for name in required if isinstance(name, str)}


def arguments_json(schema: Any) -> str:
    """:func:`mock_arguments` as compact JSON text."""
    return json.dumps(mock_arguments(schema), separators=(",", ":"), ensure_ascii=False)


def argument_fragments(arguments: str, tokens: int) -> list[str]:
    """``arguments`` split into ``min(tokens, len)`` near-equal fragments (at least one),
    so a streamed tool call sends about one fragment per reported output token."""
    count = max(1, min(tokens, len(arguments)))
    size, extra = divmod(len(arguments), count)
    fragments: list[str] = []
    start = 0
    for i in range(count):
        end = start + size + (1 if i < extra else 0)
        fragments.append(arguments[start:end])
        start = end
    return fragments


def _mock_value(prop: Any) -> Any:
    if not isinstance(prop, dict):
        return "mock"
    enum = prop.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    if "const" in prop:
        return prop["const"]
    kind = prop.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind in ("integer", "number"):
        return 1
    if kind == "boolean":
        return True
    if kind == "array":
        return []
    if kind == "object":
        return mock_arguments(prop)
    if kind == "null":
        return None
    return "mock"
