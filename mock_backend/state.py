"""Per-application state shared by the mock's routes."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

from .gcp_tokens import GcpServiceAccount, IssuedTokens
from .request_log import RequestLog
from .sigv4 import AwsCredentials

__all__ = ["STATE", "MockState"]


@dataclass(slots=True)
class MockState:
    """Configuration and counters of one mock backend application."""

    requests: RequestLog
    models: tuple[str, ...]
    embedding_dimensions: int
    aws_credentials: AwsCredentials | None = None
    #: the key the Gemini routes require in ``x-goog-api-key`` (``None``: any key)
    gemini_api_key: str | None = None
    #: service accounts whose signed JWTs the token endpoint accepts, by client email
    gcp_accounts: dict[str, GcpServiceAccount] = field(default_factory=dict)
    #: the access tokens it issued (the Vertex AI routes require one)
    gcp_tokens: IssuedTokens = field(default_factory=IssuedTokens)
    #: how the knobs' delays are waited (tests inject a recorder)
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _releases: dict[str, asyncio.Event] = field(default_factory=dict)

    def next_id(self) -> int:
        """A fresh sequence number for response ids (deterministic per application)."""
        return next(self._ids)

    def release_event(self, key: str) -> asyncio.Event:
        """The event ``x-mock-hold-end: KEY`` waits for (``POST /_mock/release/KEY``)."""
        event = self._releases.get(key)
        if event is None:
            event = self._releases[key] = asyncio.Event()
        return event

    def release(self, key: str) -> None:
        self.release_event(key).set()


STATE: web.AppKey[MockState] = web.AppKey("mock_backend_state", MockState)
