"""``GET /v1/models`` and ``GET /v1/models/{id}``, answered by the gateway from its config
in OpenAI's format (no backend is asked)."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import unquote

from aigateway.extproc.framework.processor import Headers, ImmediateResponse, Processor, Result
from aigateway.extproc.gateway.config import GatewayConfig

MODELS_PATH = "/v1/models"


class ModelCatalog:
    """The models list, built once from the config."""

    __slots__ = ("by_id", "listing")

    def __init__(self, config: GatewayConfig, created: int | None = None) -> None:
        created = int(time.time()) if created is None else created
        self.by_id: dict[str, dict[str, Any]] = {
            m.name: {
                "id": m.name,
                "object": "model",
                "created": created,
                "owned_by": m.targets[0].backend,
            }
            for m in config.models
        }
        self.listing = {"object": "list", "data": list(self.by_id.values())}


class ModelsProcessor(Processor):
    """Answers the models list and single models from the config. The gateway's own
    answer, not an LLM request: ``app.py`` does not instrument its paths."""

    __slots__ = ("catalog",)

    def __init__(self, catalog: ModelCatalog) -> None:
        self.catalog = catalog

    async def on_request_headers(self, headers: Headers) -> Result:
        path = headers.path.partition("?")[0]
        if headers.method not in ("GET", "HEAD"):
            raise ImmediateResponse.error(
                405,
                f"Method {headers.method} is not allowed on {path}; use GET.",
                code="method_not_allowed",
            )
        if path.rstrip("/") == MODELS_PATH:
            raise ImmediateResponse(200, self.catalog.listing, details="models")
        model_id = unquote(path[len(MODELS_PATH) + 1 :])
        model = self.catalog.by_id.get(model_id)
        if model is None:
            raise ImmediateResponse.error(
                404,
                f"The model '{model_id[:200]}' does not exist",
                param="model",
                code="model_not_found",
            )
        raise ImmediateResponse(200, model, details="model")
