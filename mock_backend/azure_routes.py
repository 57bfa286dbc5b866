"""Azure OpenAI routes: ``/openai/deployments/{deployment}/chat/completions`` and
``/openai/deployments/{deployment}/embeddings``.

Bodies are OpenAI's (see :mod:`.openai_routes`); the ``model`` in responses is the
deployment name. The ``api-version`` query parameter is required (400 without it).
"""

from __future__ import annotations

from aiohttp import web

from .errors import OPENAI_ERRORS, MockError
from .openai_routes import chat_completion, embeddings
from .routing import MockCall, provider_route
from .state import MockState

__all__ = ["add_azure_routes"]


def add_azure_routes(app: web.Application) -> None:
    """Register the Azure OpenAI routes on ``app``."""
    prefix = "/openai/deployments/{deployment}"
    app.router.add_post(
        prefix + "/chat/completions",
        provider_route(OPENAI_ERRORS, _chat, check=_require_api_version),
    )
    app.router.add_post(
        prefix + "/embeddings",
        provider_route(OPENAI_ERRORS, _embeddings, check=_require_api_version),
    )


def _require_api_version(request: web.Request, body: bytes, state: MockState) -> None:
    if not request.query.get("api-version"):
        raise MockError(
            400,
            "The api-version query parameter (?api-version=) is required for all requests.",
            code="MissingApiVersionParameter",
        )


async def _chat(call: MockCall) -> web.StreamResponse:
    return await chat_completion(call, call.request.match_info["deployment"])


async def _embeddings(call: MockCall) -> web.StreamResponse:
    return await embeddings(call, call.request.match_info["deployment"])
