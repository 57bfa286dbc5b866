"""The response plumbing shared by translators whose backend answers one JSON body, or
a stream of events when the request streamed (Bedrock's event stream; server-sent
events for Anthropic Messages and Gemini), both rebuilt as a chat answer."""

from __future__ import annotations

from typing import Any

from aigateway.translators.client_apis.chat import AnswerEventSource, ChunkStream
from aigateway.translators.contract import ResponseBodyOutput, ResponseHeadersDecision
from aigateway.translators.wire.sse import SseDecoder, SseEvent, is_sse


class StreamOrJsonAnswer(AnswerEventSource):
    """Collects a JSON body whole and hands it to :meth:`_json_body`; hands a stream's
    chunks to :meth:`_stream_body` as they come (``_streamed``, set by the subclass's
    ``response_headers``, says which)."""

    __slots__ = ("_json_parts", "_streamed")

    def __init__(self) -> None:
        super().__init__()
        self._streamed = False
        self._json_parts: list[bytes] = []

    def response_body(self, chunk: bytes, end_of_stream: bool) -> ResponseBodyOutput:
        """Each chunk of a stream as it comes; a JSON body once it is whole."""
        if self._streamed:
            return self._stream_body(chunk, end_of_stream)
        self._json_parts.append(chunk)
        if not end_of_stream:
            return ResponseBodyOutput(body=b"")
        return self._json_body(b"".join(self._json_parts))

    def _stream_body(self, chunk: bytes, end_of_stream: bool) -> ResponseBodyOutput:
        raise NotImplementedError

    def _json_body(self, body: bytes) -> ResponseBodyOutput:
        raise NotImplementedError


class SseOrJsonAnswer(StreamOrJsonAnswer):
    """Decides streaming from the answer's content type, collects a JSON body whole and
    hands it to :meth:`_json_body`, and feeds a stream's events one by one to
    :meth:`_on_event`, which writes them to the request's :class:`ChunkStream`
    (:meth:`_chunk_stream`). A stream that ends before its terminal event is truncated;
    nothing is written after the end."""

    __slots__ = ("_decoder", "_stream")

    def __init__(self) -> None:
        super().__init__()
        self._decoder: SseDecoder | None = None
        self._stream: ChunkStream | None = None

    def response_headers(self, status: int, content_type: str) -> ResponseHeadersDecision:
        """Streamed when the backend answers ``text/event-stream``."""
        self._streamed = is_sse(content_type)
        return ResponseHeadersDecision(streamed=self._streamed)

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

    def _on_event(self, event: SseEvent) -> ChunkStream:
        """Write one upstream event to the stream; returns the stream."""
        raise NotImplementedError

    def _chunk_stream(self, upstream_id: Any) -> ChunkStream:
        """The request's stream, made on first use (``upstream_id``: the answer's id)."""
        raise NotImplementedError
