"""``/v1/chat/completions``: OpenAI chat completions to any backend schema."""

from __future__ import annotations

from typing import Any

from aigateway.extproc.framework.processor import ImmediateResponse
from aigateway.extproc.gateway.routed import RoutedProcessor

MAX_MESSAGES = 100_000
ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


def _invalid(message: str, param: str) -> ImmediateResponse:
    return ImmediateResponse.error(400, message, param=param, code="invalid_value")


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
        raise _invalid(f"'messages' has more than {MAX_MESSAGES} items.", "messages")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise _invalid(f"messages[{i}] must be an object.", f"messages[{i}]")
        role = message.get("role")
        if not isinstance(role, str) or role not in ROLES:
            raise _invalid(
                f"messages[{i}].role must be one of {', '.join(sorted(ROLES))}.",
                f"messages[{i}].role",
            )
        content = message.get("content")
        if content is None and role != "assistant":
            # Only an assistant message may leave content out (for its tool calls).
            raise _invalid(f"messages[{i}].content is required.", f"messages[{i}].content")
        if content is not None and not isinstance(content, str | list):
            raise _invalid(
                f"messages[{i}].content must be a string, an array of parts or null.",
                f"messages[{i}].content",
            )
        if isinstance(content, list) and not all(isinstance(part, dict) for part in content):
            raise _invalid(
                f"messages[{i}].content parts must be objects.", f"messages[{i}].content"
            )
    stream = payload.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _invalid("'stream' must be a boolean.", "stream")
    options = payload.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise _invalid("'stream_options' must be an object.", "stream_options")
    tools = payload.get("tools")
    if tools is not None and not (
        isinstance(tools, list) and all(isinstance(tool, dict) for tool in tools)
    ):
        raise _invalid("'tools' must be an array of objects.", "tools")


class ChatCompletionProcessor(RoutedProcessor):
    """One chat completion request, from client headers to the last response byte."""

    __slots__ = ()

    def validate(self, payload: dict[str, Any]) -> None:
        validate_chat_request(payload)
