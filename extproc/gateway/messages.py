"""``/v1/messages`` and ``/v1/messages/count_tokens``: the Anthropic Messages API to any
backend schema, with errors in Anthropic's shape (docs/client-apis.md, "Anthropic Messages API")."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from aigateway.extproc.framework.processor import LocalError
from aigateway.extproc.gateway.backends import ModelRoute
from aigateway.extproc.gateway.errors import anthropic_error_reply, invalid_value
from aigateway.extproc.gateway.routed import RoutedProcessor
from aigateway.translators.matrix import ClientApi

MAX_MESSAGES = 100_000
ROLES = frozenset({"user", "assistant", "system"})


def validate_messages(payload: dict[str, Any]) -> None:
    """The structure every schema relies on (``messages``, ``system``), checked once so
    that malformed requests get the same 400 whatever the backend."""
    messages = payload.get("messages")
    if not isinstance(messages, list) or not messages:
        raise invalid_value("messages: must be a non-empty array of message objects.", "messages")
    if len(messages) > MAX_MESSAGES:
        raise invalid_value(f"messages: has more than {MAX_MESSAGES} items.", "messages")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise invalid_value(f"messages.{i}: must be an object.", f"messages[{i}]")
        role = message.get("role")
        if not isinstance(role, str) or role not in ROLES:
            raise invalid_value(
                f"messages.{i}.role: must be one of user, assistant, system.", f"messages[{i}].role"
            )
        content = message.get("content")
        if not isinstance(content, str | list):
            raise invalid_value(
                f"messages.{i}.content: must be a string or an array of content blocks.",
                f"messages[{i}].content",
            )
        if isinstance(content, list) and not all(isinstance(block, dict) for block in content):
            raise invalid_value(
                f"messages.{i}.content: content blocks must be objects.", f"messages[{i}].content"
            )
    system = payload.get("system")
    if system is not None and not isinstance(system, str | list):
        raise invalid_value("system: must be a string or an array of text blocks.", "system")


class _AnthropicShaped(RoutedProcessor):
    """A Messages endpoint: the gateway's own errors in Anthropic's shape too."""

    __slots__ = ()

    api = "messages"
    endpoint: ClassVar[ClientApi] = "messages"

    def local_error_body(self, error: LocalError) -> bytes:
        return anthropic_error_reply(error)

    def client_version(self) -> str | None:
        headers = self._request_headers
        return headers.get("anthropic-version") if headers is not None else None


class MessagesProcessor(_AnthropicShaped):
    """One Messages API request, from client headers to the last response byte."""

    __slots__ = ()

    def validate(self, payload: dict[str, Any]) -> None:
        validate_messages(payload)
        max_tokens = payload.get("max_tokens")
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            raise invalid_value("max_tokens: a positive integer is required.", "max_tokens")
        stream = payload.get("stream")
        if stream is not None and not isinstance(stream, bool):
            raise invalid_value("stream: must be a boolean.", "stream")


class CountTokensProcessor(_AnthropicShaped):
    """``/v1/messages/count_tokens``, passed through to Anthropic backends.

    Not counted in the metrics (``app.py`` does not instrument its path): a token count
    is not an LLM generation, Anthropic does not bill it, and Claude Code sends one with
    many turns, so counting it would skew each model's request rate and latency. Its
    access-log line still shows it.
    """

    __slots__ = ()

    operation = "count_tokens"
    endpoint = "count_tokens"
    limited = False  # not a generation: no budget pays for it

    def validate(self, payload: dict[str, Any]) -> None:
        validate_messages(payload)

    def route_for(self, route: ModelRoute) -> ModelRoute:
        # Token counting is not worth a retry: the first backend that can count does.
        for target in route.model.targets:
            candidate = self.table.lookup_on(route.model.name, target.backend)
            if candidate is not None and candidate.translators.supports("count_tokens"):
                return dataclasses.replace(candidate, several=False)
        return dataclasses.replace(route, several=False)
