"""The mock backend's aiohttp application: every provider route plus introspection."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web

from .anthropic_routes import add_anthropic_routes
from .azure_routes import add_azure_routes
from .bedrock_routes import add_bedrock_routes
from .errors import OPENAI_ERRORS, MockError
from .gcp_tokens import DEFAULT_TOKEN_LIFETIME, GcpServiceAccount, IssuedTokens
from .google_routes import add_google_routes
from .openai_routes import add_openai_routes
from .request_log import DEFAULT_HISTORY_SIZE, RequestLog
from .responses_routes import add_responses_routes
from .routing import dumps
from .sigv4 import AwsCredentials
from .state import STATE, MockState

__all__ = [
    "DEFAULT_EMBEDDING_DIMENSIONS",
    "DEFAULT_MODELS",
    "create_app",
    "request_log",
]

DEFAULT_MODELS: tuple[str, ...] = ("mock-chat", "mock-embedding")
DEFAULT_EMBEDDING_DIMENSIONS = 16
_MAX_REQUEST_BODY = 64 * 1024 * 1024


def create_app(
    *,
    aws_credentials: AwsCredentials | None = None,
    gemini_api_key: str | None = None,
    gcp_service_accounts: Sequence[GcpServiceAccount] = (),
    gcp_token_lifetime: float = DEFAULT_TOKEN_LIFETIME,
    path_prefix: str = "",
    models: Sequence[str] = DEFAULT_MODELS,
    embedding_dimensions: int = DEFAULT_EMBEDDING_DIMENSIONS,
    history_size: int = DEFAULT_HISTORY_SIZE,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> web.Application:
    """Build the mock backend application.

    Routes: OpenAI ``POST /v1/chat/completions``, ``POST /v1/embeddings``,
    ``GET /v1/models`` (lists ``models``), ``POST /v1/responses``; Azure OpenAI
    ``POST /openai/deployments/{d}/chat/completions``, ``.../embeddings`` and
    ``POST /openai/v1/responses``; Bedrock ``POST /model/{id}/converse`` and
    ``.../converse-stream``; Anthropic ``POST /v1/messages`` and
    ``/v1/messages/count_tokens``; the Gemini API and Vertex AI (see :mod:`.google_routes`) and
    a Google OAuth2 token endpoint ``POST /token`` (see :mod:`.gcp_token_endpoint`);
    ``GET``/``DELETE /_mock/requests`` (the last ``history_size`` requests). Anything
    else is a 404.

    With ``aws_credentials`` the Bedrock routes require a valid SigV4 signature made
    with them. With ``gemini_api_key`` the Gemini API routes require that key (else any
    key). The token endpoint grants tokens living ``gcp_token_lifetime`` seconds to the
    ``gcp_service_accounts`` (JWTs signed with their keys); the Vertex AI routes require
    one of those tokens. ``path_prefix`` (``/api``) serves the provider routes under a
    prefix, as a backend behind a path-routing proxy. ``embedding_dimensions`` is the
    vector size when a request does not ask for ``dimensions``. ``sleep`` waits the
    ``x-mock-ttft-ms``/``x-mock-itl-ms`` delays (tests pass a recorder instead of
    :func:`asyncio.sleep`).
    """
    if embedding_dimensions < 1:
        raise ValueError("embedding_dimensions must be >= 1")
    if path_prefix and (not path_prefix.startswith("/") or path_prefix.endswith("/")):
        raise ValueError("path_prefix must start with / and not end with one")
    app = web.Application(client_max_size=_MAX_REQUEST_BODY)
    app[STATE] = MockState(
        requests=RequestLog(history_size),
        models=tuple(models),
        embedding_dimensions=embedding_dimensions,
        aws_credentials=aws_credentials,
        gemini_api_key=gemini_api_key,
        gcp_accounts={account.client_email: account for account in gcp_service_accounts},
        gcp_tokens=IssuedTokens(gcp_token_lifetime),
        sleep=sleep,
    )
    providers = app
    if path_prefix:
        providers = web.Application(client_max_size=_MAX_REQUEST_BODY)
        providers[STATE] = app[STATE]
    add_openai_routes(providers)
    add_responses_routes(providers)
    add_azure_routes(providers)
    add_bedrock_routes(providers)
    add_anthropic_routes(providers)
    add_google_routes(providers)
    if path_prefix:
        app.add_subapp(path_prefix, providers)
    app.router.add_get("/_mock/requests", _list_requests)
    app.router.add_delete("/_mock/requests", _clear_requests)
    app.router.add_post("/_mock/release/{key}", _release)
    app.router.add_route("*", "/{tail:.*}", _not_found)
    return app


def request_log(app: web.Application) -> RequestLog:
    """The request log of an app made by :func:`create_app` (for in-process tests)."""
    return app[STATE].requests


async def _list_requests(request: web.Request) -> web.Response:
    entries = [entry.to_json() for entry in request.app[STATE].requests.snapshot()]
    return web.Response(body=dumps(entries), content_type="application/json")


async def _clear_requests(request: web.Request) -> web.Response:
    request.app[STATE].requests.clear()
    return web.Response(status=204)


async def _release(request: web.Request) -> web.Response:
    request.app[STATE].release(request.match_info["key"])
    return web.Response(status=204)


async def _not_found(request: web.Request) -> web.Response:
    body = await request.read()
    request.app[STATE].requests.record(request.method, request.raw_path, request.raw_headers, body)
    error = MockError(404, f"Invalid URL ({request.method} {request.path})")
    rendered = OPENAI_ERRORS.render(error)
    return web.Response(body=rendered.body, status=404, headers=rendered.headers)
