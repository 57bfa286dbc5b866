"""Anthropic Messages content blocks as the translator tests write them."""

from __future__ import annotations

from typing import Any


def tool_use(block_id: str, name: str, tool_input: Any) -> dict[str, Any]:
    """A ``tool_use`` content block (an assistant's tool call)."""
    return {"type": "tool_use", "id": block_id, "name": name, "input": tool_input}
