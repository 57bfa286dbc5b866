"""Google OAuth2 for the Vertex AI routes: a token endpoint (``POST /token``) that takes
service-account JWT grants as Google's does, and the bearer-token check.

google-auth signs the grant (RS256, with the key file's private key) and posts it to
the key file's ``token_uri``. The endpoint verifies it with google-auth's own JWT
decoder against the public key of a service account it was given, checks the audience
Google requires and the cloud-platform scope, and issues ``ya29.mock-...`` tokens that
live ``lifetime`` seconds. The Vertex AI routes accept only those, unexpired.

The token endpoint is called by google-auth, not by the client, so its knobs are query
parameters of the key file's ``token_uri``:

==================  ================================================================
``status=S``        answer status S with an OAuth2 error body (``invalid_grant`` for
                    4xx, ``internal_failure`` for 5xx)
``fault=reset``     reset the connection (RST) instead of answering
``lifetime=N``      issue tokens that live N seconds (default: the app's)
==================  ================================================================

google-auth and cryptography (the ``gcp`` extra) are imported only when used.
"""

from __future__ import annotations

import importlib
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from aiohttp import web

from .errors import ErrorDialect, MockError

__all__ = [
    "DEFAULT_TOKEN_LIFETIME",
    "GOOGLE_TOKEN_AUDIENCE",
    "GcpServiceAccount",
    "IssuedTokens",
    "new_service_account_key",
    "require_bearer",
    "token_endpoint",
]

#: The audience google-auth puts in every service-account grant, whatever the token_uri.
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
DEFAULT_TOKEN_LIFETIME = 3600
_UNAUTHENTICATED = (
    "Request had invalid authentication credentials. Expected OAuth 2 access token, login"
    " cookie or other valid authentication credential. See"
    " https://developers.google.com/identity/sign-in/web/devconsole-project."
)


@dataclass(frozen=True, slots=True)
class GcpServiceAccount:
    """A service account the token endpoint knows: its email and public key (PEM)."""

    client_email: str
    public_key_pem: str

    @classmethod
    def from_key_file(cls, text: str) -> GcpServiceAccount:
        """The public half of a service-account key file (JSON with ``private_key``)."""
        serialization = importlib.import_module("cryptography.hazmat.primitives.serialization")
        info = json.loads(text)
        if not isinstance(info, dict) or info.get("type") != "service_account":
            raise ValueError('not a service-account key file ("type": "service_account")')
        key = serialization.load_pem_private_key(info["private_key"].encode(), password=None)
        public = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return cls(str(info["client_email"]), public.decode())


def new_service_account_key(
    token_uri: str,
    *,
    client_email: str = "aigateway-mock@aigateway-mock.iam.gserviceaccount.com",
    project_id: str = "aigateway-mock",
) -> tuple[str, GcpServiceAccount]:
    """A throwaway service-account key file (its JSON text, a fresh RSA key) whose
    grants go to ``token_uri``, and its public half for the token endpoint."""
    rsa = importlib.import_module("cryptography.hazmat.primitives.asymmetric.rsa")
    serialization = importlib.import_module("cryptography.hazmat.primitives.serialization")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    info = {
        "type": "service_account",
        "project_id": project_id,
        "private_key_id": secrets.token_hex(20),
        "private_key": private,
        "client_email": client_email,
        "client_id": "100000000000000000000",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
    }
    return json.dumps(info, indent=2), GcpServiceAccount(client_email, public.decode())


class IssuedTokens:
    """The access tokens the token endpoint issued, with their expiry."""

    __slots__ = ("_clock", "_expiry", "issued", "lifetime")

    def __init__(
        self, lifetime: float = DEFAULT_TOKEN_LIFETIME, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.lifetime = lifetime
        self._clock = clock
        self._expiry: dict[str, float] = {}
        #: how many tokens were issued so far
        self.issued = 0

    def issue(self, lifetime: float | None = None) -> tuple[str, float]:
        """A new token and its lifetime in seconds."""
        now = self._clock()
        for token in [t for t, end in self._expiry.items() if end <= now]:
            del self._expiry[token]  # expired: forget it, the map stays small
        seconds = self.lifetime if lifetime is None else lifetime
        token = "ya29.mock-" + secrets.token_urlsafe(32)
        self._expiry[token] = now + seconds
        self.issued += 1
        return token, seconds

    def valid(self, token: str) -> bool:
        end = self._expiry.get(token)
        return end is not None and self._clock() < end


def require_bearer(headers: Any, tokens: IssuedTokens, dialect: ErrorDialect | None = None) -> None:
    """Refuse (401) a request without a valid issued bearer token; ``dialect`` replaces
    the route's error shape (Vertex AI's front end answers for every publisher)."""
    scheme, _, token = (headers.get("authorization") or "").partition(" ")
    if scheme.lower() != "bearer" or not tokens.valid(token.strip()):
        raise MockError(401, _UNAUTHENTICATED, dialect=dialect)


def _oauth_error(status: int, error: str, description: str) -> web.Response:
    body = json.dumps({"error": error, "error_description": description})
    return web.Response(status=status, text=body, content_type="application/json")


async def token_endpoint(request: web.Request) -> web.StreamResponse:
    """``POST /token``: a JWT-bearer grant for an access token (RFC 7523)."""
    from .routing import abort_connection
    from .state import STATE

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
