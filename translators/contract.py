"""The translator contract: what a chat processor asks of a schema translator.

Translators are pure: bytes and dicts in, bytes and dicts out. They never do I/O, never
touch protobuf or metrics. One translator instance serves one request, so it may keep
per-request state (stream decoders, accumulated usage).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable


@dataclass(slots=True)
class TokenUsage:
    """Token usage as a backend reported it, in OpenAI terms.

    ``cached_input_tokens`` and ``reasoning_tokens`` stay ``None`` unless the backend
    reports them, so a caller can tell "zero" from "not reported".
    """

    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    cached_input_tokens: int | None = None
    cache_write_input_tokens: int | None = None
    reasoning_tokens: int | None = None


@dataclass(slots=True, frozen=True)
class UpstreamRequest:
    """How to send a client's request upstream.

    ``body`` is ``None`` when the client's bytes can go upstream unchanged (no
    re-serialising). ``path`` is relative to the backend endpoint's prefix and may carry a
    query string. ``headers`` are set on the upstream request (overwriting); which of
    the client's headers the backend gets is the gateway's business, not a translator's.
    """

    body: bytes | None
    path: str
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(slots=True, frozen=True)
class ResponseHeadersDecision:
    """What to do with the upstream's response headers (2xx only).

    ``streamed``: switch the response body to streamed processing.
    ``content_type``: the content type the client sees, ``None`` to keep the upstream's.
    """

    streamed: bool
    content_type: str | None = None


# Not frozen: one is built per streamed chunk, and a frozen dataclass sets each field
# through object.__setattr__ (benchmarks/NOTES.md, issue 23). Treat it as read-only.
@dataclass(slots=True)
class ResponseBodyOutput:
    """The translation of one response body chunk.

    ``body``: ``None`` passes the upstream bytes on unchanged; otherwise the bytes the
    client gets instead (``b""`` sends nothing for this chunk).
    ``usage``: set once usage is known (from then on, on every later output too is fine;
    the latest one wins).
    ``error``: set when the upstream failed inside a 2xx response (an error event in the
    stream, a truncated stream, undecodable data). The body then already carries an
    OpenAI-style error for the client; the request must count as failed.
    ``complete``: this output ends the response as the client sees it: it carries the
    stream's terminal event (``data: [DONE]``, or an error event), or it is the whole
    non-streamed body. The upstream may still send bytes (the end of its body arrives
    later); nothing the client needs follows. Once set, it stays set on later outputs.
    ``model``: the model the backend says answered, once it said so (like usage, later
    outputs may repeat it). ``finish_reasons``: the OpenAI finish reasons the client has
    been given so far, one per finished choice.
    """

    body: bytes | None
    usage: TokenUsage | None = None
    error: str | None = None
    complete: bool = False
    model: str | None = None
    finish_reasons: tuple[str, ...] = ()


class Translator(Protocol):
    """Translates one OpenAI chat completion request to a backend schema and back."""

    def request(self, payload: dict[str, Any], raw: bytes) -> UpstreamRequest:
        """Translate the parsed client request. ``raw`` is the client's exact body.

        Raises ``TranslationError`` for requests the schema cannot express.
        """
        ...

    def response_headers(self, status: int, content_type: str) -> ResponseHeadersDecision:
        """Decide streaming and content type for a 2xx upstream response."""
        ...

    def response_body(self, chunk: bytes, end_of_stream: bool) -> ResponseBodyOutput:
        """Translate a 2xx response body chunk (the whole body when not streamed)."""
        ...

    def error_body(self, status: int, body: bytes, headers: Mapping[str, str]) -> bytes | None:
        """Turn a non-2xx upstream body (whole) into an OpenAI error JSON body;
        ``None`` when ``body`` already is one and can pass unchanged. ``headers`` are the
        upstream response headers (lower-case names, first values)."""
        ...


@runtime_checkable
class StreamEnding(Protocol):
    """A translator whose client API has its own error event (not OpenAI's ``data:
    {"error": ...}``), for a stream the gateway must end itself."""

    def end_stream(self, message: str, code: str) -> bytes:
        """The client API's error event ending the stream; nothing is written after it."""
        ...


class TranslationError(Exception):
    """The client's request cannot be expressed for the backend: a 400 for the client."""

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
