"""The Processor interface: one object per HTTP request, one async method per phase.

A processor never builds protobuf. Each phase returns a :class:`Result` (or raises
:class:`ImmediateResponse`); the server turns it into the ext_proc message and owns the
protocol rules. Wrappers take an inner processor and are processors themselves, so
they compose like ASGI middleware::

    processor = InstrumentedProcessor(TenantBudget(ChatCompletionProcessor(...)))
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

#: Immediate responses carry details starting with this (Envoy's access log shows them
#: as %RESPONSE_CODE_DETAILS%); Envoy's own local replies are told apart by it.
LOCAL_REPLY_DETAILS_PREFIX = "aigateway_"


class Headers:
    """HTTP headers as Envoy sent them: ordered ``(name, value)`` pairs, repeats kept.

    Names are lower-case (Envoy sends them so). Values are text decoded as Latin-1, which
    maps every byte to one character, so nothing is lost and ``encode("latin-1")`` gives
    the original bytes back.
    """

    __slots__ = ("_first", "end_of_stream", "metadata", "pairs")

    def __init__(
        self,
        pairs: list[tuple[str, str]],
        *,
        end_of_stream: bool = False,
        metadata: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        self.pairs = pairs
        #: True when no body follows these headers.
        self.end_of_stream = end_of_stream
        #: The request's dynamic metadata Envoy forwards with request headers
        #: (``metadata_options.forwarding_namespaces``), by namespace; empty without.
        self.metadata: Mapping[str, Mapping[str, Any]] = metadata or _NO_METADATA
        first = dict(pairs)
        if len(first) != len(pairs):  # a repeated name: its first value, not its last
            first = {}
            for name, value in pairs:
                first.setdefault(name, value)
        self._first = first

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of ``name`` (lower-case), or ``default``."""
        return self._first.get(name, default)

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name`` (lower-case), in order."""
        return [v for n, v in self.pairs if n == name]

    def __contains__(self, name: object) -> bool:
        return name in self._first

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self.pairs)

    def __len__(self) -> int:
        return len(self.pairs)

    def __repr__(self) -> str:
        # Values may carry credentials: show names only.
        return f"Headers({[n for n, _ in self.pairs]!r}, end_of_stream={self.end_of_stream})"

    @property
    def first(self) -> Mapping[str, str]:
        """Each header's first value by name (read-only view)."""
        return MappingProxyType(self._first)

    @property
    def path(self) -> str:
        return self._first.get(":path", "")

    @property
    def method(self) -> str:
        return self._first.get(":method", "")

    @property
    def status(self) -> int:
        """The ``:status`` of response headers as an int (0 when absent or bad)."""
        try:
            return int(self._first.get(":status", "0"))
        except ValueError:
            return 0


_NO_METADATA: Mapping[str, Mapping[str, Any]] = MappingProxyType({})


@dataclass(slots=True, frozen=True)
class Result:
    """What to do with one message. The default continues unchanged.

    ``body`` replaces the body (``b""`` empties it); in buffered phases the server sets
    ``content-length`` to match. ``clear_route_cache`` only acts in the request
    direction. ``stream_response_body`` (response headers only) switches the response
    body to streamed processing. A field set in a phase where Envoy would not honour it
    is an error (``ResultError``), not ignored. ``dynamic_metadata`` maps namespace -> fields; Envoy
    merges each message's fields into the request's metadata, so a processor can
    publish facts as soon as it learns them.

    ``end_of_response`` (response body only) says this chunk gives the client the end of
    its response: a stream's terminal event (``data: [DONE]``, ``message_stop``...).
    Upstreams often end their body later, and clients hang up as soon as they have the
    terminal event; from here on the request counts as complete whatever follows
    (``docs/architecture.md``, "Accounting rules").
    """

    set_headers: tuple[tuple[str, str], ...] = ()
    remove_headers: tuple[str, ...] = ()
    body: bytes | None = None
    clear_route_cache: bool = False
    stream_response_body: bool = False
    dynamic_metadata: Mapping[str, Mapping[str, Any]] | None = None
    end_of_response: bool = False

    def header(self, name: str) -> str | None:
        """The last value this result sets for ``name``, if any."""
        value = None
        for n, v in self.set_headers:
            if n == name:
                value = v
        return value


#: Continue unchanged.
CONTINUE = Result()


@dataclass(slots=True, frozen=True)
class LocalError:
    """An error answered locally, before it is written in any format: what
    :meth:`ImmediateResponse.error` raises and an :data:`ErrorFormatter` writes.

    ``message`` is for people; ``code`` (machine-readable), ``type`` (its class) and
    ``param`` (the request field at fault) are there for formats that carry them.
    """

    status: int
    message: str
    type: str | None = None
    code: str | int | None = None
    param: str | None = None


#: Writes a :class:`LocalError` for a request to a path (with its query string):
#: returns ``(content_type, body)``. The application gives one to the
#: :class:`~aigateway.extproc.Router`, in its clients' format; the default is
#: :func:`plain_error`.
ErrorFormatter = Callable[[LocalError, str], tuple[str, bytes]]


def plain_error(error: LocalError, path: str) -> tuple[str, bytes]:
    """The framework's own format for errors: the message as plain text."""
    return "text/plain; charset=utf-8", error.message.encode()


class ImmediateResponse(Exception):
    """Raise from any phase to answer the client directly, without (more of) upstream.

    Before the response is committed the server sends it as Envoy's immediate response;
    after, it can only abort the stream. A ``body`` that is not bytes is sent as JSON.
    """

    def __init__(
        self,
        status: int,
        body: bytes | Mapping[str, Any],
        *,
        headers: tuple[tuple[str, str], ...] = (),
        content_type: str = "application/json",
        details: str = "",
        dynamic_metadata: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        if not isinstance(body, bytes):
            body = json.dumps(body, separators=(",", ":")).encode()
        super().__init__(f"HTTP {status}: {details or body[:200]!r}")
        self.status = status
        #: ``None`` for an :meth:`error` not written yet (see :meth:`write`).
        self.body: bytes | None = body
        self.content_type = content_type
        #: Headers besides ``content-type``.
        self.headers = headers
        #: Published with the reply (Envoy's access log and the metrics wrapper read it).
        self.dynamic_metadata = dynamic_metadata
        #: Short machine-readable reason; Envoy's access log shows it as
        #: %RESPONSE_CODE_DETAILS% (prefixed with ``aigateway_``).
        self.details = local_reply_details(details or str(status))
        #: What :meth:`error` was given.
        self.local_error: LocalError | None = None

    @classmethod
    def error(
        cls,
        status: int,
        message: str,
        *,
        type: str | None = None,
        code: str | int | None = None,
        param: str | None = None,
        headers: tuple[tuple[str, str], ...] = (),
        dynamic_metadata: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> ImmediateResponse:
        """An error reply, written in the clients' format when it is sent: by the
        processor that knows that format (:meth:`write`), else by the router's
        :data:`ErrorFormatter`. Its details are ``code``, else ``type``, else the status.
        """
        reply = cls(
            status,
            b"",
            headers=headers,
            details=str(code) if code is not None else type or "",
            dynamic_metadata=dynamic_metadata,
        )
        reply.body = None
        reply.local_error = LocalError(status, message, type, code, param)
        return reply

    def write(self, content_type: str, body: bytes) -> None:
        """Give the reply its body."""
        self.content_type = content_type
        self.body = body


def local_reply_details(reason: str) -> str:
    """%RESPONSE_CODE_DETAILS% for a local reply: ``aigateway_<reason>``, which tells
    it apart from Envoy's own replies."""
    # Envoy rejects response code details with whitespace.
    token = "".join(c if c.isalnum() or c in "_-.{}" else "_" for c in reason)[:64]
    return LOCAL_REPLY_DETAILS_PREFIX + token


@dataclass(slots=True, frozen=True)
class Outcome:
    """How a stream ended; given to :meth:`Processor.on_stream_end` exactly once.

    ``response_complete``: the client got a whole response (the last response message,
    or an immediate response, was answered). ``status``: the HTTP status the client got
    (the upstream's, or the immediate response's; ``None`` if none was seen).
    ``local_reply``: an immediate response was sent. ``error``: the first exception a
    phase raised (not counting :class:`ImmediateResponse`). ``cancelled``: the stream
    ended before the response did (the client left, Envoy reset it, a timeout). A
    response is complete once a phase returned a result with ``end_of_response``: a
    client that hangs up after that did not cancel anything.
    """

    response_complete: bool
    status: int | None = None
    local_reply: bool = False
    error: BaseException | None = None
    cancelled: bool = False

    @property
    def succeeded(self) -> bool:
        return (
            self.response_complete
            and self.error is None
            and not self.cancelled
            and self.status is not None
            and 200 <= self.status < 300
        )


class Processor:
    """Base processor: every phase continues unchanged. Override what you need.

    One instance serves one HTTP request (one ext_proc stream), so instance attributes
    are per-request state. Phases run in order, never concurrently.
    """

    __slots__ = ()

    async def on_request_headers(self, headers: Headers) -> Result:
        """The client's request headers (``:method``, ``:path``...). The first phase;
        raise :class:`ImmediateResponse` to answer without reading the body."""
        return CONTINUE

    async def on_request_body(self, body: bytes, end_of_stream: bool) -> Result:
        """The request body: the whole of it in one call when Envoy buffers it (as the
        gateway's bootstrap does), with ``end_of_stream`` true. A ``Result`` setting
        ``clear_route_cache`` makes Envoy route again on the headers it sets."""
        return CONTINUE

    async def on_response_headers(self, headers: Headers) -> Result:
        """The upstream's response headers (``headers.status``). Set
        ``stream_response_body`` to get the body chunk by chunk as it arrives."""
        return CONTINUE

    async def on_response_body(self, body: bytes, end_of_stream: bool) -> Result:
        """The response body: whole when buffered, else one chunk per call. Set
        ``end_of_response`` on the result that gives the client its stream's end."""
        return CONTINUE

    async def on_stream_end(self, outcome: Outcome) -> None:
        """Called exactly once when the stream ends, whatever the exit path."""


class ProcessorWrapper(Processor):
    """A processor that delegates every phase to ``inner``: subclass it for wrappers
    and override only the phases you add behaviour to (call ``self.inner`` in them)."""

    __slots__ = ("inner",)

    def __init__(self, inner: Processor) -> None:
        self.inner = inner

    async def on_request_headers(self, headers: Headers) -> Result:
        return await self.inner.on_request_headers(headers)

    async def on_request_body(self, body: bytes, end_of_stream: bool) -> Result:
        return await self.inner.on_request_body(body, end_of_stream)

    async def on_response_headers(self, headers: Headers) -> Result:
        return await self.inner.on_response_headers(headers)

    async def on_response_body(self, body: bytes, end_of_stream: bool) -> Result:
        return await self.inner.on_response_body(body, end_of_stream)

    async def on_stream_end(self, outcome: Outcome) -> None:
        await self.inner.on_stream_end(outcome)
