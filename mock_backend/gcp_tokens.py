"""Google OAuth2 for the Vertex AI routes: service accounts, the access tokens the
token endpoint (:mod:`.gcp_token_endpoint`) issues, and the bearer-token check.

The endpoint issues ``ya29.mock-...`` tokens that live ``lifetime`` seconds; the Vertex
AI routes accept only those, unexpired.

cryptography (the ``gcp`` extra) is imported only when used.
"""

from __future__ import annotations

import importlib
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import ErrorDialect, MockError

__all__ = [
    "DEFAULT_TOKEN_LIFETIME",
    "GcpServiceAccount",
    "IssuedTokens",
    "new_service_account_key",
    "require_bearer",
]

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
