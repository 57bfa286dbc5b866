"""Google OAuth2 access tokens for Vertex AI, minted by google-auth from a
service-account key file (posting a signed JWT to the file's own ``token_uri``) or from
Application Default Credentials.

Tokens are cached and refreshed shortly before they expire. A refresh is network I/O,
so it runs in a thread (``asyncio.to_thread``), one at a time: requests that need a
token while one is being fetched wait for that fetch. Waiting is bounded by a timeout,
and a failure says whether the token endpoint refused the credentials (401) or could
not give a token (502).

google-auth is the optional ``gcp`` extra; it is imported only when a token source is
built.
"""

from __future__ import annotations

import asyncio
import collections
import datetime
import importlib
import json
import logging
import time
import warnings
from collections.abc import Callable
from types import ModuleType
from typing import Any

log = logging.getLogger("aigateway")

CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
#: How long a request waits for a token. Below Envoy's ext_proc message timeout (10 s
#: by default), so the client gets our JSON error rather than Envoy's.
TOKEN_TIMEOUT = 5.0
#: A token is replaced once it has less than this left (google-auth itself refreshes
#: 3 min 45 s early).
REFRESH_MARGIN = 300.0
#: A token without an expiry (none of Google's sources) is used this long.
_DEFAULT_LIFETIME = 3600.0
#: How many tokens to ask for before refusing ones issued already expired.
_EXPIRED_TOKEN_TRIES = 2
#: OAuth2 error codes that mean "these credentials are refused" (RFC 6749, 5.2).
_REFUSED = frozenset(
    {"invalid_grant", "invalid_client", "unauthorized_client", "access_denied", "invalid_scope"}
)


class GcpAuthError(RuntimeError):
    """Google credentials cannot be used at all (startup): google-auth is missing, the
    key file is not a service-account key, or ADC finds no credentials."""


class GcpTokenError(Exception):
    """No token for this request. ``status`` is what the client gets: 401 when the
    token endpoint refused the credentials, 502 when it failed or did not answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _google(module: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise GcpAuthError(
            "Vertex AI needs google-auth: install aigateway[gcp] (pip install google-auth)"
        ) from None


def _timed_transport(timeout: float) -> Any:
    """google-auth's requests transport, with ``timeout`` on every HTTP call (its own
    default is 120 s)."""
    requests_transport = _google("google.auth.transport.requests")

    class TimedRequest(requests_transport.Request):  # type: ignore[misc, name-defined]
        def __call__(self, url: str, method: str = "GET", **kwargs: Any) -> Any:
            kwargs["timeout"] = timeout
            return super().__call__(url, method, **kwargs)

    return TimedRequest()


def _utcnow_like(expiry: datetime.datetime) -> datetime.datetime:
    now = datetime.datetime.now(datetime.UTC)
    return now if expiry.tzinfo is not None else now.replace(tzinfo=None)


def _classify(exc: BaseException) -> GcpTokenError:
    """A google-auth failure as what the client is told (never the response body: an
    endpoint could echo the signed assertion)."""
    exceptions = _google("google.auth.exceptions")
    if isinstance(exc, exceptions.RefreshError):
        data = exc.args[1] if len(exc.args) > 1 else None
        if isinstance(data, dict) and data.get("error") in _REFUSED:
            detail = str(data.get("error_description") or "")[:200]
            reason = f"{data['error']}: {detail}" if detail else str(data["error"])
            return GcpTokenError(401, f"the token endpoint refused the credentials ({reason})")
        return GcpTokenError(502, "the token endpoint did not issue a token")
    if isinstance(exc, exceptions.TransportError):
        return GcpTokenError(502, "the token endpoint could not be reached")
    return GcpTokenError(502, f"getting a token failed ({type(exc).__name__})")


class GcpTokenSource:
    """Cached OAuth2 access tokens from one google-auth credentials object.

    ``clock`` (monotonic seconds) and ``timeout`` can be set by tests; ``transport`` is
    the google-auth HTTP transport (default: requests, with ``timeout`` per call).
    """

    __slots__ = (
        "_clock",
        "_credentials",
        "_expires_at",
        "_fetch",
        "_margin",
        "_recent",
        "_refresh_at",
        "_timeout",
        "_token",
        "_transport",
        "source",
    )

    def __init__(
        self,
        credentials: Any,
        *,
        source: str,
        timeout: float = TOKEN_TIMEOUT,
        margin: float = REFRESH_MARGIN,
        clock: Callable[[], float] = time.monotonic,
        transport: Any = None,
    ) -> None:
        self._credentials = credentials
        self.source = source
        self._timeout = timeout
        self._margin = margin
        self._clock = clock
        self._transport = transport if transport is not None else _timed_transport(timeout)
        self._token: str | None = None
        self._expires_at = 0.0
        self._refresh_at = 0.0
        self._fetch: asyncio.Task[tuple[str, float]] | None = None  # the refresh in flight
        # The tokens handed out lately: an answer to a request made with the previous
        # token may arrive after a refresh, and must still be redacted.
        self._recent: collections.deque[bytes] = collections.deque(maxlen=3)

    def __repr__(self) -> str:
        return f"GcpTokenSource({self.source!r})"

    def secret_values(self) -> tuple[bytes, ...]:
        return tuple(self._recent)

    async def token(self) -> str:
        """A valid access token; raises :class:`GcpTokenError`. Never blocks the loop."""
        token = self._token
        if token is not None and self._clock() < self._refresh_at:
            return token
        fetch = self._fetch
        if fetch is None:
            fetch = self._fetch = asyncio.get_running_loop().create_task(
                asyncio.to_thread(self._refresh)
            )
            fetch.add_done_callback(self._refreshed)
        try:
            fresh, _ = await asyncio.wait_for(asyncio.shield(fetch), self._timeout)
        except TimeoutError:
            if self._still_valid():
                assert self._token is not None
                return self._token
            raise GcpTokenError(
                502, f"the token endpoint did not answer within {self._timeout:g}s"
            ) from None
        except GcpTokenError:
            if self._still_valid():  # a refresh before expiry failed: the old one still works
                assert self._token is not None
                return self._token
            raise
        return fresh

    def _still_valid(self) -> bool:
        return self._token is not None and self._clock() < self._expires_at

    def _refresh(self) -> tuple[str, float]:
        """In a worker thread: ask the token endpoint; (token, seconds it lives). A token
        issued already expired is never used: asked for once more, then refused."""
        for _ in range(_EXPIRED_TOKEN_TRIES):
            token, lifetime = self._fetch_token()
            if lifetime > 0:
                return token, lifetime
            log.warning("Google token refresh (%s): the token had already expired", self.source)
        raise GcpTokenError(502, "the token endpoint issued a token that had already expired")

    def _fetch_token(self) -> tuple[str, float]:
        credentials = self._credentials
        try:
            credentials.refresh(self._transport)
        except Exception as exc:
            error = _classify(exc)
            # Transport errors say what failed to connect; anything else may quote a body.
            exceptions = _google("google.auth.exceptions")
            detail = str(exc)[:300] if isinstance(exc, exceptions.TransportError) else error.message
            log.warning("Google token refresh failed (%s): %s", self.source, detail)
            raise error from None
        token = credentials.token
        if not isinstance(token, str) or not token:
            raise GcpTokenError(502, "the token endpoint answered without an access token")
        expiry = credentials.expiry
        if isinstance(expiry, datetime.datetime):
            lifetime = (expiry - _utcnow_like(expiry)).total_seconds()
        else:
            lifetime = _DEFAULT_LIFETIME
        return token, lifetime

    def _refreshed(self, fetch: asyncio.Task[tuple[str, float]]) -> None:
        """On the loop, when a refresh ends (even if every waiter gave up on it)."""
        self._fetch = None
        if fetch.cancelled() or fetch.exception() is not None:
            return
        token, lifetime = fetch.result()
        now = self._clock()
        self._token = token
        self._expires_at = now + lifetime
        self._refresh_at = now + lifetime - self._margin
        self._recent.append(token.encode())


def service_account_source(key_file_text: str, **options: Any) -> GcpTokenSource:
    """Tokens for the service account in a key file's JSON (its ``token_uri`` is used)."""
    service_account = _google("google.oauth2.service_account")
    try:
        info = json.loads(key_file_text)
    except ValueError:
        raise GcpAuthError("not a JSON service-account key file") from None
    if not isinstance(info, dict) or info.get("type") != "service_account":
        raise GcpAuthError('not a service-account key file ("type": "service_account")')
    try:
        credentials = service_account.Credentials.from_service_account_info(
            info, scopes=[CLOUD_PLATFORM_SCOPE]
        )
    except (ValueError, KeyError, TypeError) as exc:
        # Messages name missing fields or an unreadable key, never the key itself.
        raise GcpAuthError(f"not a usable service-account key file: {exc}") from None
    source = f"service account {credentials.service_account_email} (auth.gcp)"
    return GcpTokenSource(credentials, source=source, **options)


def default_source(**options: Any) -> GcpTokenSource:
    """Tokens from Application Default Credentials; refuses when ADC finds none."""
    google_auth = _google("google.auth")
    exceptions = _google("google.auth.exceptions")
    try:
        with warnings.catch_warnings():
            # e.g. "end user credentials without a quota project": not a startup failure
            warnings.simplefilter("ignore")
            credentials, _project = google_auth.default(scopes=[CLOUD_PLATFORM_SCOPE])
    except exceptions.DefaultCredentialsError as exc:
        first = str(exc).split(". ", 1)[0].strip()
        raise GcpAuthError(
            f"no Google Application Default Credentials found ({first}): set"
            " auth.gcp.service_account_file, GOOGLE_APPLICATION_CREDENTIALS, or run"
            " `gcloud auth application-default login`"
        ) from None
    source = f"Google Application Default Credentials (found: {_kind(credentials)})"
    return GcpTokenSource(credentials, source=source, **options)


def _kind(credentials: Any) -> str:
    module = type(credentials).__module__
    email = getattr(credentials, "service_account_email", None)
    if module.endswith("service_account"):
        return f"service account {email}"
    if "compute_engine" in module:
        return "the metadata server's service account"
    if module == "google.oauth2.credentials":
        return "gcloud user credentials"
    if "impersonated" in module:
        return "impersonated service account"
    if "external_account" in module or "identity_pool" in module or module.endswith(".aws"):
        return "workload identity federation"
    return type(credentials).__name__
