"""The response plumbing shared by translators whose backend answers one JSON body, or
server-sent events when the request streamed (Anthropic Messages, Gemini), both
rebuilt as OpenAI chat completions."""

from __future__ import annotations

from typing import Any

from aigateway.translators.client_apis.chat import ChunkStream
from aigateway.translators.contract import ResponseBodyOutput, ResponseHeadersDecision
from aigateway.translators.wire.sse import SseDecoder, SseEvent


class SseOrJsonAnswer:
    """Decides streaming from the answer's content type, collects a JSON body whole and
    hands it to :meth:`_json_body`, and feeds a stream's events one by one to
    :meth:`_on_event`, which writes them to the request's :class:`ChunkStream`
    (:meth:`_chunk_stream`). A stream that ends before its terminal event is truncated;
    nothing is written after the end."""

    __slots__ = ("_decoder", "_json_parts", "_stream", "_streamed")

    def __init__(self) -> None:
        self._streamed = False
        self._json_parts: list[bytes] = []
        self._decoder: SseDecoder | None = None
        self._stream: ChunkStream | None = None

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

    def _stream_body(self, chunk: bytes, end_of_stream: bool) -> ResponseBodyOutput:
        if self._decoder is None:
            self._decoder = SseDecoder()
        stream = self._stream
        if stream is not None and stream.finished:  # nothing after [DONE] or an error
            return stream.output()
        for event in self._decoder.feed(chunk):
            stream = self._on_event(event)
            if stream.finished:
                break
        if stream is None:  # no event yet: keep the id free for the upstream's own
            if not end_of_stream:
                return ResponseBodyOutput(body=b"")
            stream = self._chunk_stream(None)
        if end_of_stream and not stream.finished:
            stream.truncated()
        return stream.output()

    def _json_body(self, body: bytes) -> ResponseBodyOutput:
        raise NotImplementedError

    def _on_event(self, event: SseEvent) -> ChunkStream:
        """Write one upstream event to the stream; returns the stream."""
        raise NotImplementedError

    def _chunk_stream(self, upstream_id: Any) -> ChunkStream:
        """The request's stream, made on first use (``upstream_id``: the answer's id)."""
        raise NotImplementedError
