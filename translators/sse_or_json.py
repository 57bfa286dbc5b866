"""The response plumbing shared by translators whose backend answers one JSON body, or
server-sent events when the request streamed (Anthropic Messages, Gemini)."""

from __future__ import annotations

from aigateway.translators.base import ResponseBodyOutput, ResponseHeadersDecision


class SseOrJsonAnswer:
    """Decides streaming from the answer's content type, collects a JSON body whole, and
    hands each to the subclass: :meth:`_json_body` (the whole body) or
    :meth:`_stream_body` (one chunk of the event stream)."""

    __slots__ = ("_json_parts", "_streamed")

    def __init__(self) -> None:
        self._streamed = False
        self._json_parts: list[bytes] = []

    def response_headers(self, status: int, content_type: str) -> ResponseHeadersDecision:
        """Streamed when the backend answers ``text/event-stream``."""
        media_type = content_type.split(";", 1)[0].strip().lower()
        self._streamed = media_type == "text/event-stream"
        return ResponseHeadersDecision(streamed=self._streamed)

    def response_body(self, chunk: bytes, end_of_stream: bool) -> ResponseBodyOutput:
        """Each chunk of a stream as it comes; a JSON body once it is whole."""
        if self._streamed:
            return self._stream_body(chunk, end_of_stream)
        self._json_parts.append(chunk)
        if not end_of_stream:
            return ResponseBodyOutput(body=b"")
        return self._json_body(b"".join(self._json_parts))

    def _json_body(self, body: bytes) -> ResponseBodyOutput:
        raise NotImplementedError

    def _stream_body(self, chunk: bytes, end_of_stream: bool) -> ResponseBodyOutput:
        raise NotImplementedError
