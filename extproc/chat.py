"""``/v1/chat/completions``: OpenAI chat completions to any backend schema."""

from __future__ import annotations

from typing import Any

from extproc.backends import ModelRoute
from extproc.processor import ImmediateResponse
from extproc.routed import RoutedProcessor
from translators.base import ChatTranslator


class ChatCompletionProcessor(RoutedProcessor):
    """One chat completion request, from client headers to the last response byte."""

    __slots__ = ()

    def validate(self, payload: dict[str, Any]) -> None:
        messages = payload.get("messages")
        if not isinstance(messages, list) or not messages:
            raise ImmediateResponse.error(
                400,
                "'messages' must be a non-empty array of message objects.",
                param="messages",
                code="invalid_messages",
            )

    def new_translator(self, route: ModelRoute) -> ChatTranslator:
        return route.new_translator()
