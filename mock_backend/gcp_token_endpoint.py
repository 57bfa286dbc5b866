"""The mock's Google OAuth2 token endpoint (``POST /token``): it takes service-account
JWT grants as Google's does and issues the tokens of :mod:`.gcp_tokens`.

google-auth signs the grant (RS256, with the key file's private key) and posts it to
the key file's ``token_uri``. The endpoint verifies it with google-auth's own JWT
decoder against the public key of a service account it was given, and checks the
audience Google requires and the cloud-platform scope.

The token endpoint is called by google-auth, not by the client, so its knobs are query
parameters of the key file's ``token_uri``:

==================  ================================================================
``status=S``        answer status S with an OAuth2 error body (``invalid_grant`` for
                    4xx, ``internal_failure`` for 5xx)
``fault=reset``     reset the connection (RST) instead of answering
``lifetime=N``      issue tokens that live N seconds (default: the app's)
==================  ================================================================

google-auth (the ``gcp`` extra) is imported only when used.
"""

from __future__ import annotations

import importlib
import json
from urllib.parse import parse_qs

from aiohttp import web

from .routing import abort_connection
from .state import STATE

__all__ = ["GOOGLE_TOKEN_AUDIENCE", "token_endpoint"]

#: The audience google-auth puts in every service-account grant, whatever the token_uri.
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"


def _oauth_error(status: int, error: str, description: str) -> web.Response:
    body = json.dumps({"error": error, "error_description": description})
    return web.Response(status=status, text=body, content_type="application/json")


async def token_endpoint(request: web.Request) -> web.StreamResponse:
    """``POST /token``: a JWT-bearer grant for an access token (RFC 7523)."""
    state = request.app[STATE]
    body = await request.read()
    state.requests.record(request.method, request.raw_path, request.raw_headers, body)
    query = request.query
    if query.get("fault") == "reset":
        abort_connection(request)
        return web.Response()
    if "status" in query:
        status = int(query["status"])
        if status >= 500:
            return _oauth_error(status, "internal_failure", "mock failure (status knob)")
        return _oauth_error(status, "invalid_grant", "mock refusal (status knob)")
    form = parse_qs(body.decode("utf-8", "replace"))
    if form.get("grant_type") != [JWT_BEARER_GRANT] or len(form.get("assertion", [])) != 1:
        return _oauth_error(400, "unsupported_grant_type", "Invalid grant_type: ")
    try:
        jwt = importlib.import_module("google.auth.jwt")
    except ImportError:
        return _oauth_error(500, "internal_failure", "the mock needs google-auth (aigateway[gcp])")
    assertion = form["assertion"][0]
    try:
        unverified = jwt.decode(assertion, verify=False)
    except ValueError:
        return _oauth_error(400, "invalid_grant", "Invalid JWT: malformed")
    account = state.gcp_accounts.get(str(unverified.get("iss")))
    if account is None:
        return _oauth_error(400, "invalid_grant", "Invalid grant: account not found")
    try:
        claims = jwt.decode(
            assertion,
            certs=account.public_key_pem,
            audience=GOOGLE_TOKEN_AUDIENCE,
            clock_skew_in_seconds=10,
        )
    except ValueError:
        return _oauth_error(400, "invalid_grant", "Invalid JWT Signature.")
    if CLOUD_PLATFORM_SCOPE not in str(claims.get("scope", "")).split():
        return _oauth_error(400, "invalid_scope", "Invalid OAuth scope or ID token audience.")
    lifetime = int(query["lifetime"]) if "lifetime" in query else None
    token, seconds = state.gcp_tokens.issue(lifetime)
    answer = {"access_token": token, "expires_in": int(seconds), "token_type": "Bearer"}
    return web.Response(text=json.dumps(answer), content_type="application/json")
