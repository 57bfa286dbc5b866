"""OpenAI Responses (``POST /v1/responses``) to every backend schema (docs/client-apis.md, "OpenAI
Responses API").

- OpenAI and Azure OpenAI speak it: :class:`ResponsesPassthroughTranslator` swaps the
  model name, passes bodies and events through byte for byte and reads the usage (from the
  JSON, or from the terminal event of a stream).
- The other schemas get it through their chat translator (:class:`ResponsesApi` on a
  :class:`~aigateway.translators.pivot.PivotTranslator`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aigateway.translators.backends.openai import RESPONSES_USAGE_KEYS, usage_from_openai
from aigateway.translators.client_apis.chat.events import AnswerSink, ChatAnswer
from aigateway.translators.client_apis.chat.stream import (
    UPSTREAM_INVALID_JSON,
    UPSTREAM_STREAM_ERROR,
    UPSTREAM_TRUNCATED,
    invalid_answer,
)
from aigateway.translators.client_apis.passthrough import PassthroughAnswer
from aigateway.translators.client_apis.responses_request import read_responses_request
from aigateway.translators.client_apis.responses_stream import (
    TERMINAL_EVENTS,
    ResponseHead,
    ResponsesEventStream,
    error_event,
    response_body,
)
from aigateway.translators.contract import (
    ResponseBodyOutput,
    TokenUsage,
    UpstreamRequest,
)
from aigateway.translators.wire.errors import passthrough_error_body
from aigateway.translators.wire.jsoncodec import as_int, dumps, loads_or_none
from aigateway.translators.wire.sse import SseDecoder, SseEvent, encode_sse_event

RESPONSES_PATH = "/v1/responses"
#: Azure OpenAI's v1 API: the deployment is the body's ``model``.
AZURE_RESPONSES_PATH = "/openai/v1/responses"


def usage_from_responses(usage: Any) -> TokenUsage | None:
    """``TokenUsage`` from a Responses ``usage`` object (``None`` if it is not one)."""
    return usage_from_openai(usage, RESPONSES_USAGE_KEYS)


class ResponsesApi:
    """The Responses API on the chat pivot (a ``ClientApi``): one per request."""

    __slots__ = ("_head", "_params")

    def __init__(self) -> None:
        self._head = ResponseHead.new({})
        self._params: dict[str, str] = {}

    def chat_request(self, payload: dict[str, Any]) -> dict[str, Any]:
        request = read_responses_request(payload)
        self._head = ResponseHead.new(request.echo, request.tools)
        self._params = request.params
        return request.chat

    def client_params(self) -> dict[str, str]:
        return self._params

    def answer(self, answer: ChatAnswer, usage: TokenUsage | None) -> bytes:
        return response_body(self._head, answer, usage)

    def stream(self) -> AnswerSink:
        return ResponsesEventStream(self._head)

    def error_body(self, status: int, openai_error: bytes) -> bytes | None:
        return None  # the Responses API's errors are OpenAI's


class ResponsesPassthroughTranslator(PassthroughAnswer):
    """``/v1/responses`` on a backend that speaks it (OpenAI, Azure OpenAI's v1 API)."""

    __slots__ = (
        "_ended",
        "_last_sequence",
        "_usage",
        "backend_model",
        "path",
    )

    def __init__(self, backend_model: str | None = None, path: str = RESPONSES_PATH) -> None:
        super().__init__()
        self.backend_model = backend_model
        self.path = path
        self._usage: TokenUsage | None = None
        self._ended = False
        self._last_sequence = -1

    def request(self, payload: dict[str, Any], raw: bytes) -> UpstreamRequest:
        if self.backend_model is not None and payload.get("model") != self.backend_model:
            payload["model"] = self.backend_model
            return UpstreamRequest(dumps(payload), self.path)
        return UpstreamRequest(None, self.path)

    def _whole_body(self, body: bytes) -> ResponseBodyOutput:
        doc = loads_or_none(body)
        if not isinstance(doc, dict):
            return invalid_answer("not JSON")
        model = doc.get("model")
        return ResponseBodyOutput(
            None,
            usage_from_responses(doc.get("usage")),
            complete=True,
            model=model if isinstance(model, str) and model else None,
        )

    def _stream_chunk(
        self, decoder: SseDecoder, chunk: bytes, end_of_stream: bool
    ) -> ResponseBodyOutput:
        if self._ended:
            # The client already has its terminal event: the rest is not for it.
            return ResponseBodyOutput(b"", self._usage, complete=True)
        held_back = decoder.pending  # bytes of an event earlier chunks did not pass on
        events = decoder.feed(chunk)
        keep: list[SseEvent] = []
        error: str | None = None
        tail = b""
        for event in events:
            # Every event is parsed: the terminal one carries the usage, and an upstream
            # that sends broken JSON gets a clean error event instead of breaking the client.
            doc = loads_or_none(event.data)
            kind = doc.get("type") if isinstance(doc, dict) else None
            if not isinstance(kind, str):
                error = UPSTREAM_INVALID_JSON
                tail = self._error_event(
                    "The upstream sent an event that is not a Responses event.", error
                )
                break
            assert isinstance(doc, dict)
            sequence = as_int(doc.get("sequence_number"))
            if sequence is not None:
                self._last_sequence = sequence
            keep.append(event)
            if kind in TERMINAL_EVENTS:
                response = doc.get("response")
                if isinstance(response, dict):
                    usage = usage_from_responses(response.get("usage"))
                    if usage is not None:
                        self._usage = usage
                if kind in ("response.failed", "error"):
                    error = UPSTREAM_STREAM_ERROR  # passed on: the client reads it as an error
                self._ended = True
                break
        if error is None and end_of_stream and not self._ended:
            error = UPSTREAM_TRUNCATED
            tail = self._error_event("The upstream ended the stream before it was complete.", error)
        if error is not None:
            self._ended = True
        whole = len(keep) == len(events) and not tail
        if not held_back and not decoder.pending and whole:
            body = None  # whole events, all kept: the upstream's bytes pass unchanged
        else:
            # Only complete events go out; a partial one waits for the rest of its bytes.
            body = b"".join(encode_sse_event(e.data, e.event or None) for e in keep) + tail
        return ResponseBodyOutput(body, self._usage, error, complete=self._ended)

    def _error_event(self, message: str, code: str) -> bytes:
        self._last_sequence += 1
        return error_event(message, code=code, sequence_number=self._last_sequence)

    def end_stream(self, message: str, code: str) -> bytes:
        """An ``error`` event numbered after the upstream's last."""
        self._ended = True
        return self._error_event(message, code)

    def error_body(self, status: int, body: bytes, headers: Mapping[str, str]) -> bytes | None:
        return passthrough_error_body(status, body)
