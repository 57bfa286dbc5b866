"""``/v1/chat/completions``: OpenAI chat completions to any backend schema."""

from __future__ import annotations

from typing import Any

from aigateway.extproc.framework.processor import ImmediateResponse
from aigateway.extproc.gateway.errors import invalid_value
from aigateway.extproc.gateway.routed import RoutedProcessor

MAX_MESSAGES = 100_000
ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


def check_stream_flag(payload: dict[str, Any]) -> None:
    """``stream``, when given, is a boolean (chat completions and Responses alike)."""
    stream = payload.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise invalid_value("'stream' must be a boolean.", "stream")


def check_tool_list(payload: dict[str, Any]) -> None:
    """``tools``, when given, is an array of objects (chat completions and Responses alike)."""
    tools = payload.get("tools")
    if tools is not None and not (
        isinstance(tools, list) and all(isinstance(tool, dict) for tool in tools)
    ):
        raise invalid_value("'tools' must be an array of objects.", "tools")


def validate_chat_request(payload: dict[str, Any]) -> None:
    """The structure every schema relies on, checked once so that malformed requests get
    the same 400 whatever the backend (deeper checks are the backend's)."""
    messages = payload.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ImmediateResponse.error(
            400,
            "'messages' must be a non-empty array of message objects.",
            param="messages",
            code="invalid_messages",
        )
    if len(messages) > MAX_MESSAGES:
        raise invalid_value(f"'messages' has more than {MAX_MESSAGES} items.", "messages")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise invalid_value(f"messages[{i}] must be an object.", f"messages[{i}]")
        role = message.get("role")
        if not isinstance(role, str) or role not in ROLES:
            raise invalid_value(
                f"messages[{i}].role must be one of {', '.join(sorted(ROLES))}.",
                f"messages[{i}].role",
            )
        content = message.get("content")
        if content is None and role != "assistant":
            # Only an assistant message may leave content out (for its tool calls).
            raise invalid_value(f"messages[{i}].content is required.", f"messages[{i}].content")
        if content is not None and not isinstance(content, str | list):
            raise invalid_value(
                f"messages[{i}].content must be a string, an array of parts or null.",
                f"messages[{i}].content",
            )
        if isinstance(content, list) and not all(isinstance(part, dict) for part in content):
            raise invalid_value(
                f"messages[{i}].content parts must be objects.", f"messages[{i}].content"
            )
    check_stream_flag(payload)
    options = payload.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise invalid_value("'stream_options' must be an object.", "stream_options")
    check_tool_list(payload)


class ChatCompletionProcessor(RoutedProcessor):
    """One chat completion request, from client headers to the last response byte."""

    __slots__ = ()

    def validate(self, payload: dict[str, Any]) -> None:
        validate_chat_request(payload)
