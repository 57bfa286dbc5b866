"""Another client API on top of a chat translator: the chat translators are the pivot
(docs/client-apis.md, "Client APIs"). The client's request becomes a chat completion request, which
the backend's own chat translator sends; the backend's answer, once that translator has
made it a chat completion, becomes the client API's answer.

:class:`PivotTranslator` does the plumbing every client API shares (bodies, streams,
errors, usage); a :class:`ClientApi` says what its API's requests and answers are.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from aigateway.translators.client_apis.chat.answers import (
    ChunkReader,
    read_completion,
)
from aigateway.translators.client_apis.chat.events import AnswerSink, ChatAnswer, EventBuffer
from aigateway.translators.client_apis.chat.stream import (
    UPSTREAM_INVALID_JSON,
    AnswerEventSource,
    invalid_json_body,
)
from aigateway.translators.contract import (
    ResponseBodyOutput,
    ResponseHeadersDecision,
    TokenUsage,
    TranslationError,
    Translator,
    UpstreamRequest,
)
from aigateway.translators.wire.jsoncodec import dumps


class ClientApi(Protocol):
    """One request's client API (per request: it keeps what the answer repeats of the
    request)."""

    def chat_request(self, payload: dict[str, Any]) -> dict[str, Any]:
        """The chat completion request for the client's; ``TranslationError`` (naming the
        client's field) for what it cannot express. Streams must ask for usage."""
        ...

    def client_params(self) -> dict[str, str]:
        """Chat fields (or prefixes: ``messages[3]``) -> the client's, to name the client's
        field in a 400 the backend's chat translator raises."""
        ...

    def answer(self, answer: ChatAnswer, usage: TokenUsage | None) -> bytes:
        """The whole answer body for a non-streamed request."""
        ...

    def stream(self) -> AnswerSink:
        """A writer for a streamed answer."""
        ...

    def error_body(self, status: int, openai_error: bytes) -> bytes | None:
        """An OpenAI error body in this API's shape (``None``: it already is)."""
        ...


class PivotTranslator:
    """A :class:`Translator` for ``api`` over ``inner``, the backend's chat translator."""

    __slots__ = ("_api", "_inner", "_parts", "_reader", "_stream", "_streamed", "_values")

    def __init__(self, inner: Translator, api: ClientApi) -> None:
        self._inner = inner
        self._api = api
        self._streamed = False
        self._parts: list[bytes] = []  # a non-streamed body the inner passes unchanged
        self._stream: AnswerSink | None = None
        self._reader: ChunkReader | None = None
        self._values: AnswerEventSource | None = None  # an inner that gives answers as values

    def request(self, payload: dict[str, Any], raw: bytes) -> UpstreamRequest:
        chat = self._api.chat_request(payload)
        chat_body = dumps(chat)
        try:
            upstream = self._inner.request(chat, chat_body)
        except TranslationError as exc:
            raise client_error(exc, self._api.client_params()) from None
        # `None` means "the client's bytes": here those are the chat request's.
        return UpstreamRequest(
            body=chat_body if upstream.body is None else upstream.body,
            path=upstream.path,
            headers=upstream.headers,
        )

    def response_headers(self, status: int, content_type: str) -> ResponseHeadersDecision:
        decision = self._inner.response_headers(status, content_type)
        self._streamed = decision.streamed
        if decision.streamed:
            stream = self._stream = self._api.stream()
            if isinstance(self._inner, AnswerEventSource):
                self._inner.send_answer_to(EventBuffer(stream))  # its events, no bytes
            else:
                self._reader = ChunkReader(stream)  # the backend's own chat stream
            return ResponseHeadersDecision(streamed=True, content_type="text/event-stream")
        if isinstance(self._inner, AnswerEventSource):
            self._inner.keep_whole_answer()  # no chat.completion body to write and read back
            self._values = self._inner
        return ResponseHeadersDecision(streamed=False, content_type="application/json")

    def response_body(self, chunk: bytes, end_of_stream: bool) -> ResponseBodyOutput:
        out = self._inner.response_body(chunk, end_of_stream)
        stream = self._stream
        if stream is not None:
            if self._reader is None:
                events = out.body or b""  # the inner translator wrote to our stream
            else:
                if not stream.finished:
                    stream.usage = out.usage
                    self._reader.feed(chunk if out.body is None else out.body)
                events = stream.output()
            return ResponseBodyOutput(
                events,
                out.usage,
                out.error,
                complete=stream.finished,
                model=out.model,
                finish_reasons=out.finish_reasons,
            )
        if out.body is None:
            self._parts.append(chunk)
        if not out.complete:
            return ResponseBodyOutput(b"", out.usage, model=out.model)
        whole = b"".join(self._parts) if out.body is None else out.body
        if out.error is not None:
            body = self._api.error_body(502, whole)
            return ResponseBodyOutput(
                whole if body is None else body, out.usage, out.error, complete=True
            )
        answer = self._values.whole_answer if self._values is not None else None
        if answer is None:
            answer = read_completion(whole)
        if answer is None:
            bad = invalid_json_body("not a chat completion")
            body = self._api.error_body(502, bad)
            return ResponseBodyOutput(
                bad if body is None else body, out.usage, UPSTREAM_INVALID_JSON, complete=True
            )
        return ResponseBodyOutput(
            self._api.answer(answer, out.usage),
            out.usage,
            complete=True,
            model=out.model,
            finish_reasons=out.finish_reasons,
        )

    def end_stream(self, message: str, code: str) -> bytes:
        """The client API's error event (see ``StreamEnding``)."""
        stream = self._stream
        if stream is None or stream.finished:
            return b""
        stream.error({"message": message, "code": code})
        return stream.output()

    def error_body(self, status: int, body: bytes, headers: Mapping[str, str]) -> bytes | None:
        openai = self._inner.error_body(status, body, headers)
        converted = self._api.error_body(status, body if openai is None else openai)
        return openai if converted is None else converted


def client_error(exc: TranslationError, params: dict[str, str]) -> TranslationError:
    """``exc`` naming the client's field instead of the chat field (the longest mapped
    prefix wins: ``messages[3].content`` -> ``input[2].content``)."""
    message, param = exc.message, exc.param
    renamed: str | None = None
    for chat, client in sorted(params.items(), key=lambda kv: -len(kv[0])):
        if "[" not in chat:
            message = message.replace(f"'{chat}'", f"'{client}'")
        if (
            renamed is None
            and param is not None
            and (param == chat or param.startswith((chat + ".", chat + "[")))
        ):
            renamed = client + param[len(chat) :]
    return TranslationError(message, param=param if renamed is None else renamed)
