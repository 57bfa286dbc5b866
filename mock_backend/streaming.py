"""Sending a streamed reply: one write per event, inter-token delays and stream faults.

A provider builds its stream as an iterable of ``(EventKind, bytes)``; it is consumed
lazily, so an event can compute values (e.g. Bedrock's ``latencyMs``) when it is sent.
Each event is its own ``write`` (its own HTTP chunk), so with ``x-mock-itl-ms`` the
tokens reach the client as separate chunks.
"""

from __future__ import annotations

import asyncio
import enum
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from aiohttp import web

from .knobs import Fault
from .routing import MockCall, abort_connection

__all__ = ["EventKind", "StreamFaults", "send_stream", "sse_event"]

_STREAM_FAULTS = frozenset(
    {Fault.RESET, Fault.TRUNCATE, Fault.BAD_JSON, Fault.BAD_CRC, Fault.EXCEPTION}
)


class EventKind(enum.Enum):
    """Where an event sits in the stream; decides delays and where faults fire."""

    #: before any content (``message_start``, role chunk, ``messageStart``, ...)
    OPEN = enum.auto()
    #: one token of content (a word, a tool-argument fragment)
    TOKEN = enum.auto()
    #: after the content, not final (finish chunk, ``message_delta``, ...)
    CLOSE = enum.auto()
    #: what ``truncate`` drops (``[DONE]``, ``message_stop``, ``messageStop``/``metadata``)
    FINAL = enum.auto()


@dataclass(frozen=True, slots=True)
class StreamFaults:
    """The provider-specific events the stream faults inject.

    ``error_event`` gets the ``x-mock-error-type`` knob (``None`` for the provider's
    default) and returns the in-stream error event. ``bad_crc`` is ``None`` where the
    framing has no checksum (SSE). ``keepalive`` is what ``x-mock-keepalive`` sends
    before every event (``None``: the framing has none). ``sse``: the stream is
    text/event-stream (``x-mock-crlf`` applies).
    """

    bad_json: bytes
    error_event: Callable[[str | None], bytes]
    bad_crc: bytes | None = None
    keepalive: bytes | None = None
    sse: bool = True


Stream = Iterable[tuple[EventKind, bytes]]


def sse_event(data: bytes, event: str | None = None) -> bytes:
    """One Server-Sent Event: optional ``event:`` line, one ``data:`` line, blank line."""
    if event is None:
        return b"data: " + data + b"\n\n"
    return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"


async def send_stream(
    call: MockCall,
    events: Stream,
    faults: StreamFaults,
    headers: Mapping[str, str],
) -> web.StreamResponse:
    """Stream ``events`` as a chunked 200 response with ``headers``.

    Applies ``x-mock-itl-ms`` (before every token event but the first) and the stream
    faults of :class:`~extproc.mock_backend.knobs.Fault`. A client that goes away ends
    the stream quietly.
    """
    knobs = call.knobs
    response = web.StreamResponse(status=200, headers=headers)
    compressor = None
    if Fault.GZIP in knobs.faults:
        compressor = zlib.compressobj(1, zlib.DEFLATED, 31)  # wbits 31: gzip container
        response.headers["Content-Encoding"] = "gzip"
    stream_faults = knobs.faults & _STREAM_FAULTS
    at_final = knobs.fault_after is None and stream_faults == {Fault.TRUNCATE}
    fault_after = knobs.stream_fault_after
    pending = bool(stream_faults)
    itl = knobs.itl_s
    sleep = call.state.sleep
    tokens = 0

    crlf = knobs.crlf and faults.sse
    split = knobs.split
    keepalive = faults.keepalive if knobs.keepalive else None

    async def write(data: bytes) -> None:
        if crlf:
            data = data.replace(b"\n", b"\r\n")
        if compressor is not None:
            data = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
        if split is None:
            await response.write(data)
            return
        for start in range(0, len(data), split):
            await response.write(data[start : start + split])

    async def fire() -> bool:
        """Inject the faults; True when the stream must stop here."""
        if Fault.BAD_JSON in stream_faults:
            await write(faults.bad_json)
        if Fault.BAD_CRC in stream_faults and faults.bad_crc is not None:
            await write(faults.bad_crc)
        if Fault.EXCEPTION in stream_faults:
            await write(faults.error_event(knobs.error_type))
        if Fault.RESET in stream_faults:
            abort_connection(call.request)
            return True
        return bool(stream_faults & {Fault.TRUNCATE, Fault.EXCEPTION})

    try:
        await response.prepare(call.request)
        for kind, data in events:
            if pending and (
                kind is EventKind.FINAL
                if at_final
                else kind is not EventKind.OPEN
                and (kind is not EventKind.TOKEN or tokens >= fault_after)
            ):
                pending = False
                if await fire():
                    return await _end(response, compressor, call)
            if kind is EventKind.TOKEN:
                if tokens and itl:
                    await sleep(itl)
                tokens += 1
            if keepalive is not None:
                await write(keepalive)
            await write(data)
        if pending:
            await fire()
        if knobs.tail_s:
            await sleep(knobs.tail_s)
        if knobs.hold_end is not None:
            await _held(call, knobs.hold_end)
        return await _end(response, compressor, call)
    except ConnectionError:
        return response  # the client went away mid-stream


async def _held(call: MockCall, key: str) -> None:
    """Wait for ``POST /_mock/release/KEY``, or for the client to go away."""
    released = asyncio.ensure_future(call.state.release_event(key).wait())
    transport = call.request.transport
    while not released.done():
        if transport is None or transport.is_closing():
            released.cancel()
            return
        await asyncio.wait({released}, timeout=0.05)


async def _end(
    response: web.StreamResponse, compressor: zlib._Compress | None, call: MockCall
) -> web.StreamResponse:
    transport = call.request.transport
    if transport is None or transport.is_closing():
        return response  # reset: no chunked terminator, no gzip trailer
    if compressor is not None:
        await response.write(compressor.flush())
    await response.write_eof()
    return response
