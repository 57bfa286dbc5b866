"""What every provider route shares: recording, knobs, delays, errors, JSON replies.

A provider handler is ``async def handler(call: MockCall) -> web.StreamResponse``;
:func:`provider_route` wraps it into an aiohttp handler that

1. reads and records the request,
2. runs the route's ``check`` (SigV4, Azure ``api-version``) and parses the knobs,
3. waits ``x-mock-ttft-ms``,
4. answers ``x-mock-status`` with the provider's error body,
5. parses the JSON body (a JSON object, else 400) and calls the handler,

and renders any :class:`MockError` in the route's :class:`ErrorDialect`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import socket
import struct
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .errors import ErrorDialect, MockError
from .knobs import DEFAULT_KNOBS, Fault, Knobs, parse_knobs
from .state import STATE, MockState

__all__ = [
    "JSON_CONTENT_TYPE",
    "MockCall",
    "abort_connection",
    "dumps",
    "provider_route",
    "send_json",
]

JSON_CONTENT_TYPE = "application/json"

_LINGER_RESET = struct.pack("ii", 1, 0)


@dataclass(slots=True)
class MockCall:
    """One request as a provider handler sees it."""

    request: web.Request
    body: bytes
    payload: dict[str, Any]
    knobs: Knobs
    state: MockState
    #: event-loop time when the request arrived (for Bedrock's ``latencyMs``)
    started: float

    def elapsed_ms(self) -> int:
        """Milliseconds since the request arrived."""
        return int((asyncio.get_running_loop().time() - self.started) * 1000)


Handler = Callable[[MockCall], Awaitable[web.StreamResponse]]
Check = Callable[[web.Request, bytes, MockState], None]


def dumps(value: object) -> bytes:
    """Compact JSON, as the providers send it."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def provider_route(
    dialect: ErrorDialect,
    handler: Handler,
    *,
    check: Check | None = None,
    json_body: bool = True,
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Wrap ``handler`` with the shared request prologue (see the module docstring).

    With ``json_body=False`` (GET routes) the body is not parsed and ``payload`` is
    empty.
    """

    async def route(request: web.Request) -> web.StreamResponse:
        state = request.app[STATE]
        started = asyncio.get_running_loop().time()
        body = await request.read()
        state.requests.record(request.method, request.raw_path, request.raw_headers, body)
        knobs = DEFAULT_KNOBS
        try:
            if check is not None:
                check(request, body, state)
            knobs = parse_knobs(request.headers)
            if knobs.ttft_s:
                await state.sleep(knobs.ttft_s)
            if knobs.status is not None and request.path.startswith(knobs.status_path):
                message = f"mock error: HTTP {knobs.status} requested by x-mock-status"
                if knobs.error_echo is not None:
                    echoed = request.headers.get(knobs.error_echo, "")
                    message += f"; you sent {knobs.error_echo}: {echoed}"
                raise MockError(knobs.status, message, error_type=knobs.error_type)
            payload = _parse_object(body) if json_body else {}
            call = MockCall(request, body, payload, knobs, state, started)
            return await handler(call)
        except MockError as error:
            if Fault.EMPTY in knobs.faults and knobs.status is not None:
                return web.Response(status=error.status)
            rendered = (error.dialect or dialect).render(error)
            return await send_json(
                request, knobs, rendered.body, status=rendered.status, headers=rendered.headers
            )

    return route


def _parse_object(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MockError(400, f"We could not parse the JSON body of your request: {exc}") from None
    if not isinstance(payload, dict):
        raise MockError(400, "The request body must be a JSON object.")
    return payload


async def send_json(
    request: web.Request,
    knobs: Knobs,
    body: bytes,
    *,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
) -> web.StreamResponse:
    """Send a non-streamed JSON body, applying the ``gzip``/``truncate``/``bad-json``/
    ``reset`` faults (see :class:`Fault`)."""
    out_headers = {"Content-Type": JSON_CONTENT_TYPE}
    if headers:
        out_headers.update(headers)
    faults = knobs.faults
    if not faults:
        return web.Response(body=body, status=status, headers=out_headers)
    if Fault.TRUNCATE in faults or Fault.BAD_JSON in faults:
        body = body[: len(body) // 2]
    if Fault.GZIP in faults:
        body = gzip.compress(body, compresslevel=1, mtime=0)
        out_headers["Content-Encoding"] = "gzip"
    if Fault.RESET not in faults:
        return web.Response(body=body, status=status, headers=out_headers)
    response = web.StreamResponse(status=status, headers=out_headers)
    response.content_length = len(body)
    await response.prepare(request)
    await response.write(body[: len(body) // 2])
    abort_connection(request)
    return response


def abort_connection(request: web.BaseRequest) -> None:
    """Reset the client's TCP connection now (RST, not FIN), dropping the response."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        # Not a TCP socket (or already closed): the plain abort below still cuts it.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    transport.abort()
