"""Google OAuth2 tokens for Vertex AI: cached, refreshed before they expire, one refresh
at a time, in a thread, bounded by a timeout; failures are a 401 (credentials refused)
or a 502 (token endpoint failed). Against fake credentials and against google-auth
talking to the mock's token endpoint."""

from __future__ import annotations

import asyncio
import datetime
import json
import sys
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from google.auth import exceptions as google_exceptions

from aigateway.extproc.gateway.backends import BackendAuthError, GcpOAuth
from aigateway.extproc.gateway.gcp_auth import (
    GcpAuthError,
    GcpTokenError,
    GcpTokenSource,
    default_source,
    service_account_source,
)
from aigateway.mock_backend import (
    GcpServiceAccount,
    MockBackendServer,
    create_app,
    new_service_account_key,
    run_mock_backend,
)
from tests.e2e.stack import free_port


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeCredentials:
    """google-auth's credentials interface: refresh(request) sets token and expiry."""

    def __init__(self, lifetime: float = 3600.0) -> None:
        self.lifetime = lifetime
        self.token: str | None = None
        self.expiry: datetime.datetime | None = None
        self.refreshes = 0
        self.threads: set[int] = set()
        self.entered = threading.Event()  # a refresh has started
        self.gate: threading.Event | None = None  # when set, refresh waits for it
        self.error: BaseException | None = None

    def refresh(self, request: Any) -> None:
        self.threads.add(threading.get_ident())
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(30)
        if self.error is not None:
            raise self.error
        self.refreshes += 1
        self.token = f"token-{self.refreshes}"
        now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
        self.expiry = now + datetime.timedelta(seconds=self.lifetime)


def source(credentials: FakeCredentials, clock: Clock, **options: Any) -> GcpTokenSource:
    return GcpTokenSource(credentials, source="test", clock=clock, transport=object(), **options)


async def until(what: str, check: Callable[[], bool], timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            raise TimeoutError(what)
        await asyncio.sleep(0.01)


# --- caching and refreshing --------------------------------------------------------


async def test_tokens_are_cached() -> None:
    credentials, clock = FakeCredentials(), Clock()
    tokens = source(credentials, clock)
    assert await tokens.token() == "token-1"
    clock.now += 600
    assert await tokens.token() == "token-1"
    assert credentials.refreshes == 1


async def test_tokens_are_refreshed_before_they_expire() -> None:
    credentials, clock = FakeCredentials(lifetime=3600), Clock()
    tokens = source(credentials, clock, margin=300)
    start = clock.now
    assert await tokens.token() == "token-1"
    clock.now = start + 3600 - 300 - 1  # more than the margin left: still used
    assert await tokens.token() == "token-1"
    clock.now = start + 3600 - 300 + 1  # less than the margin left, not yet expired
    assert await tokens.token() == "token-2"
    assert credentials.refreshes == 2
    assert set(tokens.secret_values()) == {b"token-1", b"token-2"}


async def test_concurrent_requests_share_one_refresh() -> None:
    credentials, clock = FakeCredentials(), Clock()
    credentials.gate = threading.Event()
    tokens = source(credentials, clock)
    waiting = [asyncio.create_task(tokens.token()) for _ in range(20)]
    assert await asyncio.to_thread(credentials.entered.wait, 10)
    credentials.gate.set()
    assert await asyncio.gather(*waiting) == ["token-1"] * 20
    assert credentials.refreshes == 1


async def test_a_refresh_does_not_block_the_event_loop() -> None:
    credentials, clock = FakeCredentials(), Clock()
    credentials.gate = threading.Event()
    tokens = source(credentials, clock)
    pending = asyncio.create_task(tokens.token())
    assert await asyncio.to_thread(credentials.entered.wait, 10)
    # The refresh is stuck in its thread; the loop still runs everything else.
    ran = asyncio.Event()
    asyncio.get_running_loop().call_soon(ran.set)
    await asyncio.wait_for(ran.wait(), 10)
    assert not pending.done()
    assert threading.get_ident() not in credentials.threads
    credentials.gate.set()
    assert await pending == "token-1"


async def test_a_token_endpoint_that_does_not_answer_is_a_502_after_the_timeout() -> None:
    credentials, clock = FakeCredentials(), Clock()
    credentials.gate = threading.Event()
    tokens = source(credentials, clock, timeout=0.2)
    try:
        with pytest.raises(GcpTokenError) as err:
            await tokens.token()
        assert err.value.status == 502
        assert err.value.message == "the token endpoint did not answer within 0.2s"
    finally:
        credentials.gate.set()
    # The refresh that was late still lands, and the next request uses its token.
    await until("the late refresh to land", lambda: credentials.refreshes == 1)
    await until("the cache to take it", lambda: tokens.secret_values() == (b"token-1",))
    assert await tokens.token() == "token-1"
    assert credentials.refreshes == 1


async def test_a_failed_refresh_keeps_a_token_that_has_not_expired() -> None:
    credentials, clock = FakeCredentials(lifetime=3600), Clock()
    tokens = source(credentials, clock, margin=300)
    start = clock.now
    assert await tokens.token() == "token-1"
    credentials.error = google_exceptions.TransportError("connection refused")
    clock.now = start + 3500  # refresh due, token still valid
    assert await tokens.token() == "token-1"
    clock.now = start + 3601  # expired: the failure is the client's
    with pytest.raises(GcpTokenError) as err:
        await tokens.token()
    assert (err.value.status, err.value.message) == (502, "the token endpoint could not be reached")


class ExpiredThenValid(FakeCredentials):
    """Issues ``expired`` tokens already expired (``expires_in`` 0 or less), then good ones."""

    def __init__(self, expired: int, lifetime: float) -> None:
        super().__init__()
        self.expired = expired
        self.expired_lifetime = lifetime

    def refresh(self, request: Any) -> None:
        self.lifetime = self.expired_lifetime if self.refreshes < self.expired else 3600.0
        super().refresh(request)


@pytest.mark.parametrize("lifetime", [0, -60])
async def test_a_token_issued_already_expired_is_refused_and_refreshed(lifetime: float) -> None:
    credentials, clock = ExpiredThenValid(expired=1, lifetime=lifetime), Clock()
    tokens = source(credentials, clock)
    assert await tokens.token() == "token-2"
    assert credentials.refreshes == 2
    await until("the cache to take it", lambda: tokens.secret_values() == (b"token-2",))
    assert await tokens.token() == "token-2"


async def test_only_expired_tokens_are_a_502_and_none_is_cached() -> None:
    credentials, clock = ExpiredThenValid(expired=100, lifetime=0), Clock()
    tokens = source(credentials, clock)
    for _ in range(2):  # each request asks again: nothing expired is kept
        with pytest.raises(GcpTokenError) as err:
            await tokens.token()
        assert (err.value.status, err.value.message) == (
            502,
            "the token endpoint issued a token that had already expired",
        )
    assert credentials.refreshes == 4
    assert tokens.secret_values() == ()


@pytest.mark.parametrize(
    ("error", "status", "message"),
    [
        (
            google_exceptions.RefreshError(
                "invalid_grant: Invalid JWT Signature.",
                {"error": "invalid_grant", "error_description": "Invalid JWT Signature."},
            ),
            401,
            "the token endpoint refused the credentials (invalid_grant: Invalid JWT Signature.)",
        ),
        (
            google_exceptions.RefreshError(
                "internal_failure: x", {"error": "internal_failure"}, retryable=True
            ),
            502,
            "the token endpoint did not issue a token",
        ),
        (
            google_exceptions.RefreshError("<html>a proxy page echoing eyJhbGciOi...</html>"),
            502,
            "the token endpoint did not issue a token",
        ),
        (
            google_exceptions.TransportError("timed out"),
            502,
            "the token endpoint could not be reached",
        ),
        (ValueError("odd"), 502, "getting a token failed (ValueError)"),
    ],
)
async def test_failures_are_classified(error: BaseException, status: int, message: str) -> None:
    credentials = FakeCredentials()
    credentials.error = error
    with pytest.raises(GcpTokenError) as err:
        await source(credentials, Clock()).token()
    assert (err.value.status, err.value.message) == (status, message)


async def test_a_failure_is_logged_without_what_the_endpoint_answered(
    caplog: pytest.LogCaptureFixture,
) -> None:
    credentials = FakeCredentials()
    credentials.error = google_exceptions.RefreshError("proxy page quoting eyJhbGciOiJSUzI1NiJ9")
    with pytest.raises(GcpTokenError):
        await source(credentials, Clock()).token()
    assert "Google token refresh failed (test): the token endpoint did not issue a token" in (
        caplog.text
    )
    assert "eyJhbGciOi" not in caplog.text


async def test_the_authenticator_sends_a_bearer_token_and_maps_failures() -> None:
    credentials = FakeCredentials()
    auth = GcpOAuth(source(credentials, Clock()))
    assert await auth.headers("POST", "/v1/x", b"{}") == (("authorization", "Bearer token-1"),)
    assert auth.secret_values() == (b"token-1",)
    assert auth.describe() == "OAuth2 access tokens from test"
    refused = GcpOAuth(source(FakeCredentials(), Clock()))
    refused._tokens._credentials.error = google_exceptions.RefreshError(  # type: ignore[attr-defined]
        "x", {"error": "invalid_client"}
    )
    with pytest.raises(BackendAuthError) as err:
        await refused.headers("POST", "/v1/x", b"{}")
    assert err.value.status == 401


# --- google-auth against the mock's token endpoint ---------------------------------


@pytest.fixture(scope="module")
def key_file() -> tuple[str, GcpServiceAccount]:
    return new_service_account_key("http://unused/token")


@pytest.fixture
async def token_server(key_file: tuple[str, GcpServiceAccount]) -> AsyncIterator[MockBackendServer]:
    app = create_app(gcp_service_accounts=[key_file[1]])
    async with run_mock_backend("127.0.0.1", 0, app=app) as server:
        yield server


def with_token_uri(key_text: str, token_uri: str) -> str:
    return json.dumps({**json.loads(key_text), "token_uri": token_uri})


async def test_a_service_account_key_gets_tokens_from_its_token_uri(
    token_server: MockBackendServer, key_file: tuple[str, GcpServiceAccount]
) -> None:
    tokens = service_account_source(with_token_uri(key_file[0], token_server.url + "/token"))
    assert tokens.source == f"service account {key_file[1].client_email} (auth.gcp)"
    auth = GcpOAuth(tokens)
    (header,) = await auth.headers("POST", "/v1/x", b"")
    assert header[0] == "authorization" and header[1].startswith("Bearer ya29.mock-")
    assert await auth.headers("POST", "/v1/x", b"") == (header,)  # cached
    grants = [r for r in token_server.requests.snapshot() if r.path == "/token"]
    assert len(grants) == 1
    assert "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer" in grants[0].body


async def test_refused_credentials_are_a_401(token_server: MockBackendServer) -> None:
    stranger, _ = new_service_account_key(token_server.url + "/token")
    auth = GcpOAuth(service_account_source(stranger))
    with pytest.raises(BackendAuthError) as err:
        await auth.headers("POST", "/v1/x", b"")
    assert err.value.status == 401
    assert "invalid_grant" in err.value.message


async def test_an_unreachable_token_endpoint_is_a_502(
    key_file: tuple[str, GcpServiceAccount],
) -> None:
    closed = f"http://127.0.0.1:{free_port()}/token"  # reserved for this test, never bound
    auth = GcpOAuth(service_account_source(with_token_uri(key_file[0], closed)))
    with pytest.raises(BackendAuthError) as err:
        await auth.headers("POST", "/v1/x", b"")
    assert (err.value.status, err.value.message) == (502, "the token endpoint could not be reached")


async def test_a_reset_from_the_token_endpoint_is_a_502(
    token_server: MockBackendServer, key_file: tuple[str, GcpServiceAccount]
) -> None:
    uri = token_server.url + "/token?fault=reset"
    auth = GcpOAuth(service_account_source(with_token_uri(key_file[0], uri)))
    with pytest.raises(BackendAuthError) as err:
        await auth.headers("POST", "/v1/x", b"")
    assert err.value.status == 502


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "not a JSON service-account key file"),
        (
            '{"type": "authorized_user"}',
            'not a service-account key file ("type": "service_account")',
        ),
        ('{"type": "service_account"}', "not a usable service-account key file"),
    ],
)
def test_bad_key_files_are_clear_startup_errors(text: str, message: str) -> None:
    with pytest.raises(GcpAuthError) as err:
        service_account_source(text)
    assert str(err.value).startswith(message)


def test_missing_google_auth_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "google.oauth2.service_account", None)
    with pytest.raises(GcpAuthError, match=r"aigateway\[gcp\]"):
        service_account_source("{}")


# --- Application Default Credentials -----------------------------------------------


@pytest.fixture
def isolated_adc(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """ADC sees no environment, no gcloud config and no metadata server."""
    from google.auth.compute_engine import _metadata

    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    monkeypatch.setattr(_metadata, "_NO_GCE_CHECK", True)


@pytest.mark.usefixtures("isolated_adc")
def test_adc_without_credentials_is_refused_at_start() -> None:
    with pytest.raises(GcpAuthError) as err:
        default_source()
    assert str(err.value).startswith("no Google Application Default Credentials found")
    assert "auth.gcp.service_account_file" in str(err.value)


@pytest.mark.usefixtures("isolated_adc")
def test_adc_finds_a_key_file_named_by_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, key_file: tuple[str, GcpServiceAccount]
) -> None:
    path = tmp_path / "sa.json"
    path.write_text(key_file[0])
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))
    tokens = default_source()
    assert tokens.source == (
        "Google Application Default Credentials"
        f" (found: service account {key_file[1].client_email})"
    )
