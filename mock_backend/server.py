"""Running the mock backend on a TCP port."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiohttp import web

from .app import create_app, request_log
from .request_log import RequestLog

__all__ = ["MockBackendServer", "run_mock_backend", "serve_mock_backend"]

#: seconds in-flight responses get to finish when the server stops
DEFAULT_SHUTDOWN_TIMEOUT = 2.0

_WILDCARDS = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}


@dataclass(frozen=True, slots=True)
class MockBackendServer:
    """A running mock backend: where it listens and its application."""

    host: str
    port: int
    app: web.Application
    tls: bool = False

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:40123`` (IPv6 hosts in brackets; a
        wildcard listen address is reached through loopback)."""
        host = _WILDCARDS.get(self.host, self.host)
        host = f"[{host}]" if ":" in host else host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    @property
    def requests(self) -> RequestLog:
        """The requests received so far (same data as ``GET /_mock/requests``)."""
        return request_log(self.app)


@asynccontextmanager
async def run_mock_backend(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    app: web.Application | None = None,
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT,
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[MockBackendServer]:
    """Serve ``app`` (default: :func:`create_app()`) on ``host:port`` while the block runs.

    ``port=0`` picks a free port; the yielded server has the bound one. Listening has
    started when the block is entered. ``host=""`` listens on all interfaces. With
    ``ssl_context`` it serves HTTPS.
    """
    app = create_app() if app is None else app
    runner = web.AppRunner(
        app, access_log=None, handle_signals=False, shutdown_timeout=shutdown_timeout
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host or None, port, backlog=1024, ssl_context=ssl_context)
        await site.start()
        bound = runner.addresses[0]
        yield MockBackendServer(host=host, port=int(bound[1]), app=app, tls=ssl_context is not None)
    finally:
        await runner.cleanup()


async def serve_mock_backend(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    app: web.Application | None = None,
    ready: Callable[[str, int], None] | None = None,
    stop: asyncio.Event | None = None,
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT,
    ssl_context: ssl.SSLContext | None = None,
) -> None:
    """Serve the mock backend until ``stop`` is set (or the task is cancelled).

    ``ready(host, port)`` is called once the socket accepts connections, with the
    bound port (useful with ``port=0``).
    """
    async with run_mock_backend(
        host, port, app=app, shutdown_timeout=shutdown_timeout, ssl_context=ssl_context
    ) as server:
        if ready is not None:
            ready(server.host, server.port)
        if stop is None:
            await asyncio.Event().wait()  # until cancelled
        else:
            await stop.wait()
