"""``/v1/embeddings``: OpenAI embeddings on openai and azure-openai backends."""

from __future__ import annotations

from typing import Any

from aigateway.extproc.framework.processor import ImmediateResponse
from aigateway.extproc.gateway.routed import RoutedProcessor


class EmbeddingsProcessor(RoutedProcessor):
    """One embeddings request; usage is reported as prompt (and total) tokens."""

    __slots__ = ()

    operation = "embeddings"
    api = "embeddings"
    endpoint = "embeddings"

    def validate(self, payload: dict[str, Any]) -> None:
        value = payload.get("input")
        if not isinstance(value, str | list) or not value:
            raise ImmediateResponse.error(
                400,
                "'input' must be a non-empty string or array.",
                param="input",
                code="invalid_input",
            )
