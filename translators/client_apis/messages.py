"""Anthropic Messages (``POST /v1/messages``, ``/v1/messages/count_tokens``) to every
backend schema (docs/client-apis.md, "Anthropic Messages API").

- Anthropic speaks it, and so does Claude on Vertex AI (``rawPredict``):
  :class:`MessagesPassthroughTranslator` passes bodies and events through (byte for byte
  on Anthropic but for the model name; Vertex names the model in the path and wants
  ``anthropic_version`` in the body) and reads the usage. :class:`CountTokensTranslator`
  passes token counting through to Anthropic.
- The other schemas get it through their chat translator (:class:`MessagesApi` on a
  :class:`~aigateway.translators.pivot.PivotTranslator`).

Errors reach the client in Anthropic's shape: ``{"type": "error", "error": {...}}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aigateway.translators.backends.anthropic import (
    DEFAULT_VERSION,
    MESSAGES_PATH,
    VERTEX_VERSION,
    MessagesUsage,
    VertexRawPredict,
)
from aigateway.translators.backends.gemini import google_error
from aigateway.translators.client_apis.chat.events import AnswerSink, ChatAnswer
from aigateway.translators.client_apis.chat.stream import (
    UPSTREAM_INVALID_JSON,
    UPSTREAM_STREAM_ERROR,
    UPSTREAM_TRUNCATED,
)
from aigateway.translators.client_apis.messages_request import (
    MessagesOptions,
    read_messages_request,
)
from aigateway.translators.client_apis.messages_stream import (
    MessagesEventStream,
    error_event,
    message_body,
    new_message_id,
)
from aigateway.translators.client_apis.passthrough import PassthroughAnswer
from aigateway.translators.contract import (
    ResponseBodyOutput,
    ResponseHeadersDecision,
    TokenUsage,
    UpstreamRequest,
)
from aigateway.translators.wire.errors import (
    MAX_UPSTREAM_MESSAGE,
    anthropic_error_body,
    anthropic_error_from_openai,
    is_anthropic_error,
    upstream_text,
)
from aigateway.translators.wire.jsoncodec import dumps, loads_or_none
from aigateway.translators.wire.sse import SseDecoder, SseEvent, encode_sse_event

COUNT_TOKENS_PATH = "/v1/messages/count_tokens"


def anthropic_error_body_for(status: int, body: bytes) -> bytes | None:
    """A non-2xx upstream body in Anthropic's shape: ``None`` when it already is one, a
    Google error (Vertex AI's own refusals) or anything else wrapped with ``status``."""
    doc = loads_or_none(body)
    if is_anthropic_error(doc):
        return None
    google = google_error(doc, status)
    if google is not None:
        return anthropic_error_body(google.message, status=status)
    return anthropic_error_body(
        upstream_text(body) or f"upstream returned HTTP {status}", status=status
    )


class MessagesApi:
    """The Messages API on the chat pivot (a ``ClientApi``): one per request."""

    __slots__ = ("_id", "_model", "_options", "_params")

    def __init__(self, options: MessagesOptions) -> None:
        self._options = options
        self._id = new_message_id()
        self._model = ""
        self._params: dict[str, str] = {}

    def chat_request(self, payload: dict[str, Any]) -> dict[str, Any]:
        request = read_messages_request(payload, self._options)
        self._model = str(payload.get("model", ""))
        self._params = request.params
        return request.chat

    def client_params(self) -> dict[str, str]:
        return self._params

    def answer(self, answer: ChatAnswer, usage: TokenUsage | None) -> bytes:
        return message_body(message_id=self._id, model=self._model, answer=answer, usage=usage)

    def stream(self) -> AnswerSink:
        return MessagesEventStream(self._id, self._model)

    def error_body(self, status: int, openai_error: bytes) -> bytes | None:
        return anthropic_error_from_openai(status, openai_error)


class MessagesPassthroughTranslator(PassthroughAnswer):
    """``/v1/messages`` on Anthropic, or on Claude on Vertex AI (``vertex``).

    ``client_version`` is the ``anthropic-version`` the client sent (it passes on; without
    one, ``version`` is sent). ``anthropic-beta`` passes on as the client sent it.
    """

    __slots__ = (
        "_answered_by",
        "_client_version",
        "_ended",
        "_reported",
        "_usage",
        "_version",
        "_vertex",
        "backend_model",
    )

    def __init__(
        self,
        backend_model: str,
        *,
        version: str = DEFAULT_VERSION,
        client_version: str | None = None,
        vertex: VertexRawPredict | None = None,
    ) -> None:
        super().__init__()
        self.backend_model = backend_model
        self._version = version
        self._client_version = client_version
        self._vertex = vertex
        self._usage = MessagesUsage()
        self._reported = False  # the upstream has reported usage
        self._ended = False
        self._answered_by: str | None = None  # the model the upstream says answered

    def _token_usage(self) -> TokenUsage | None:
        return self._usage.token_usage() if self._reported else None

    def request(self, payload: dict[str, Any], raw: bytes) -> UpstreamRequest:
        if self._vertex is not None:
            # Vertex names the model in the path and takes the version in the body.
            del payload["model"]
            payload["anthropic_version"] = VERTEX_VERSION
            action = ":streamRawPredict" if payload.get("stream") is True else ":rawPredict"
            return UpstreamRequest(dumps(payload), self._vertex.model_path + action)
        headers = () if self._client_version else (("anthropic-version", self._version),)
        if payload.get("model") != self.backend_model:
            payload["model"] = self.backend_model
            return UpstreamRequest(dumps(payload), MESSAGES_PATH, headers)
        return UpstreamRequest(None, MESSAGES_PATH, headers)

    def _whole_body(self, body: bytes) -> ResponseBodyOutput:
        doc = loads_or_none(body)
        if not isinstance(doc, dict):
            error = anthropic_error_body(
                "The upstream sent a response that is not JSON.", status=502
            )
            return ResponseBodyOutput(error, error=UPSTREAM_INVALID_JSON, complete=True)
        self._usage.update(doc.get("usage"))
        self._reported = True
        self._note_model(doc.get("model"))
        return ResponseBodyOutput(None, self._token_usage(), complete=True, model=self._answered_by)

    def _stream_chunk(
        self, decoder: SseDecoder, chunk: bytes, end_of_stream: bool
    ) -> ResponseBodyOutput:
        usage = self._usage
        if self._ended:
            return ResponseBodyOutput(b"", self._token_usage(), complete=True)
        held_back = decoder.pending
        events = decoder.feed(chunk)
        keep: list[SseEvent] = []
        error: str | None = None
        tail = b""
        for event in events:
            doc = loads_or_none(event.data)
            if not isinstance(doc, dict):
                error = UPSTREAM_INVALID_JSON
                tail = error_event("The upstream sent an event that is not JSON.", "api_error")
                break
            kind = doc.get("type", event.event)
            keep.append(event)
            if kind == "message_start":
                message = doc.get("message")
                if isinstance(message, dict):
                    usage.update(message.get("usage"))
                    self._note_model(message.get("model"))
                self._reported = True
            elif kind == "message_delta":
                usage.update(doc.get("usage"))
                self._reported = True
            elif kind == "message_stop":
                self._ended = True
                break
            elif kind == "error":
                error = UPSTREAM_STREAM_ERROR  # passed on: the client reads it as an error
                break
        if error is None and end_of_stream and not self._ended:
            error = UPSTREAM_TRUNCATED
            tail = error_event("The upstream ended the stream before it was complete.", "api_error")
        if error is not None:
            self._ended = True
        whole = len(keep) == len(events) and not tail
        if not held_back and not decoder.pending and whole:
            body = None  # whole events, all kept: the upstream's bytes pass unchanged
        else:
            body = b"".join(encode_sse_event(e.data, e.event or None) for e in keep) + tail
        return ResponseBodyOutput(
            body, self._token_usage(), error, complete=self._ended, model=self._answered_by
        )

    def _note_model(self, model: Any) -> None:
        if isinstance(model, str) and model:
            self._answered_by = model

    def end_stream(self, message: str, code: str) -> bytes:
        """An Anthropic ``error`` event (see ``StreamEnding``)."""
        self._ended = True
        return error_event(message[:MAX_UPSTREAM_MESSAGE], "api_error")

    def error_body(self, status: int, body: bytes, headers: Mapping[str, str]) -> bytes | None:
        return anthropic_error_body_for(status, body)


class CountTokensTranslator:
    """``/v1/messages/count_tokens`` on Anthropic, or on Claude on Vertex AI at
    ``vertex_path`` (its ``count-tokens:rawPredict``, the model named in the body): the
    body passes (but for the model name) and so does the answer. A count is not usage:
    nothing is reported."""

    __slots__ = ("_client_version", "_version", "_vertex_path", "backend_model")

    def __init__(
        self,
        backend_model: str,
        *,
        version: str = DEFAULT_VERSION,
        client_version: str | None = None,
        vertex_path: str | None = None,
    ) -> None:
        self.backend_model = backend_model
        self._version = version
        self._client_version = client_version
        self._vertex_path = vertex_path

    def request(self, payload: dict[str, Any], raw: bytes) -> UpstreamRequest:
        if self._vertex_path is not None:
            payload["model"] = self.backend_model
            return UpstreamRequest(dumps(payload), self._vertex_path)
        headers = () if self._client_version else (("anthropic-version", self._version),)
        if payload.get("model") != self.backend_model:
            payload["model"] = self.backend_model
            return UpstreamRequest(dumps(payload), COUNT_TOKENS_PATH, headers)
        return UpstreamRequest(None, COUNT_TOKENS_PATH, headers)

    def response_headers(self, status: int, content_type: str) -> ResponseHeadersDecision:
        return ResponseHeadersDecision(streamed=False)

    def response_body(self, chunk: bytes, end_of_stream: bool) -> ResponseBodyOutput:
        return ResponseBodyOutput(None, complete=end_of_stream)

    def error_body(self, status: int, body: bytes, headers: Mapping[str, str]) -> bytes | None:
        return anthropic_error_body_for(status, body)
