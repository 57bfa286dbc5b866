"""``/v1/embeddings``: OpenAI embeddings on openai and azure-openai backends."""

from __future__ import annotations

from typing import Any

from aigateway.extproc.framework.processor import ImmediateResponse
from aigateway.extproc.gateway.backends import ModelRoute
from aigateway.extproc.gateway.routed import RoutedProcessor
from aigateway.translators.base import ChatTranslator


class EmbeddingsProcessor(RoutedProcessor):
    """One embeddings request; usage is reported as prompt (and total) tokens."""

    __slots__ = ()

    operation = "embeddings"
    api = "embeddings"

    def validate(self, payload: dict[str, Any]) -> None:
        value = payload.get("input")
        if not isinstance(value, str | list) or not value:
            raise ImmediateResponse.error(
                400,
                "'input' must be a non-empty string or array.",
                param="input",
                code="invalid_input",
            )

    def new_translator(self, route: ModelRoute) -> ChatTranslator:
        if route.new_embeddings_translator is None:
            raise ImmediateResponse.error(
                400,
                f"The model `{route.model.name}` does not support embeddings"
                f" (its backend's schema is {route.backend.schema_}).",
                param="model",
                code="unsupported_endpoint",
            )
        return route.new_embeddings_translator()
