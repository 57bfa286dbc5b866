"""The response plumbing of a client API passed through to a backend that speaks it
(chat completions to OpenAI, Responses to OpenAI, Messages to Anthropic): a JSON body
read once whole, or server-sent events checked one by one as they pass."""

from __future__ import annotations

from aigateway.translators.contract import ResponseBodyOutput, ResponseHeadersDecision
from aigateway.translators.wire.sse import SseDecoder, is_sse


class PassthroughAnswer:
    """Streams when the backend answers SSE; :meth:`_whole_body` reads a JSON body once
    it is whole, :meth:`_stream_chunk` each chunk of a stream."""

    __slots__ = ("_body", "_decoder")

    def __init__(self) -> None:
        self._decoder: SseDecoder | None = None
        self._body: list[bytes] = []

    def response_headers(self, status: int, content_type: str) -> ResponseHeadersDecision:
        if is_sse(content_type):
            self._decoder = SseDecoder()
            return ResponseHeadersDecision(streamed=True)
        return ResponseHeadersDecision(streamed=False)

    def response_body(self, chunk: bytes, end_of_stream: bool) -> ResponseBodyOutput:
        if self._decoder is not None:
            return self._stream_chunk(self._decoder, chunk, end_of_stream)
        self._body.append(chunk)
        if not end_of_stream:
            return ResponseBodyOutput(None)
        return self._whole_body(b"".join(self._body))

    def _whole_body(self, body: bytes) -> ResponseBodyOutput:
        raise NotImplementedError

    def _stream_chunk(
        self, decoder: SseDecoder, chunk: bytes, end_of_stream: bool
    ) -> ResponseBodyOutput:
        raise NotImplementedError
