"""The chat completions tool the tests call, with the parameters each test needs."""

from __future__ import annotations

from typing import Any


def weather_tool(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    """A ``get_weather`` function tool taking ``properties``."""
    return {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {"type": "object", "properties": properties, "required": required},
        },
    }
