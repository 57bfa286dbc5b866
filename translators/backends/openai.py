"""OpenAI chat completions to an OpenAI-compatible backend (and the usage in its answers).

The cheapest translator: bodies pass unchanged unless something must change (the
upstream model name, or ``stream_options.include_usage`` so usage is always known).
Streamed chunks pass through byte for byte, except when the client did not ask for
usage: then the extra usage-only chunk is cut out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aigateway.translators.client_apis.passthrough import PassthroughAnswer
from aigateway.translators.contract import (
    ResponseBodyOutput,
    TokenUsage,
    UpstreamRequest,
)
from aigateway.translators.wire.errors import openai_error_body, passthrough_error_body
from aigateway.translators.wire.jsoncodec import NOT_JSON, as_int, dumps, loads_or_none, parse
from aigateway.translators.wire.sse import SseDecoder, SseEvent, encode_sse_event

CHAT_COMPLETIONS_PATH = "/v1/chat/completions"
EMBEDDINGS_PATH = "/v1/embeddings"


@dataclass(slots=True, frozen=True)
class UsageKeys:
    """Where an OpenAI-style ``usage`` object keeps its counts: chat completions say
    ``prompt``/``completion``, the Responses API ``input``/``output``."""

    input_tokens: str
    output_tokens: str
    input_details: str
    output_details: str


CHAT_USAGE_KEYS = UsageKeys(
    "prompt_tokens", "completion_tokens", "prompt_tokens_details", "completion_tokens_details"
)
RESPONSES_USAGE_KEYS = UsageKeys(
    "input_tokens", "output_tokens", "input_tokens_details", "output_tokens_details"
)


def usage_from_openai(usage: Any, keys: UsageKeys = CHAT_USAGE_KEYS) -> TokenUsage | None:
    """``TokenUsage`` from an OpenAI ``usage`` object (``None`` if it is not one)."""
    if not isinstance(usage, dict):
        return None
    prompt = as_int(usage.get(keys.input_tokens)) or 0
    completion = as_int(usage.get(keys.output_tokens)) or 0
    total = as_int(usage.get("total_tokens"))
    out = TokenUsage(prompt, completion, total if total is not None else prompt + completion)
    details = usage.get(keys.input_details)
    if isinstance(details, dict):
        out.cached_input_tokens = as_int(details.get("cached_tokens"))
        written = as_int(details.get("cache_write_tokens"))
        out.cache_write_input_tokens = written or None  # 0 is what every answer says
    details = usage.get(keys.output_details)
    if isinstance(details, dict):
        out.reasoning_tokens = as_int(details.get("reasoning_tokens"))
    return out


class OpenAIChatTranslator(PassthroughAnswer):
    """``Translator`` for ``schema: openai`` (and the base of Azure OpenAI's)."""

    __slots__ = (
        "_done",
        "_ended",
        "_finish_reasons",
        "_hide_usage",
        "_model",
        "_usage",
        "backend_model",
        "path",
    )

    def __init__(self, backend_model: str | None = None, path: str = CHAT_COMPLETIONS_PATH) -> None:
        super().__init__()
        self.backend_model = backend_model
        self.path = path
        self._hide_usage = False
        self._usage: TokenUsage | None = None
        self._done = False
        self._ended = False
        self._model: str | None = None  # what the backend says answered
        self._finish_reasons: tuple[str, ...] = ()

    def request(self, payload: dict[str, Any], raw: bytes) -> UpstreamRequest:
        """Mutates ``payload`` when the upstream needs a different body."""
        changed = False
        if self.backend_model is not None and payload.get("model") != self.backend_model:
            payload["model"] = self.backend_model
            changed = True
        if payload.get("stream") is True:
            options = payload.get("stream_options")
            if not (isinstance(options, dict) and options.get("include_usage") is True):
                self._hide_usage = True
                payload["stream_options"] = {
                    **(options if isinstance(options, dict) else {}),
                    "include_usage": True,
                }
                changed = True
        return UpstreamRequest(dumps(payload) if changed else None, self.path)

    def _whole_body(self, body: bytes) -> ResponseBodyOutput:
        doc = parse(body)
        if doc is NOT_JSON:
            return ResponseBodyOutput(
                openai_error_body(
                    "The upstream sent a response that is not JSON.",
                    status=502,
                    code="bad_upstream",
                ),
                error="upstream_invalid_json",
                complete=True,
            )
        usage = None
        if isinstance(doc, dict):
            usage = usage_from_openai(doc.get("usage"))
            self._note_answer(doc)
        return ResponseBodyOutput(
            None,
            usage,
            complete=True,
            model=self._model,
            finish_reasons=self._finish_reasons,
        )

    def _note_answer(self, doc: dict[str, Any]) -> None:
        """The answering model and the finish reasons, from a response or chunk."""
        if self._model is None:
            model = doc.get("model")
            if isinstance(model, str) and model:
                self._model = model
        choices = doc.get("choices")
        if isinstance(choices, list):
            for choice in choices:
                reason = choice.get("finish_reason") if isinstance(choice, dict) else None
                if isinstance(reason, str):
                    self._finish_reasons = (*self._finish_reasons, reason)

    def _stream_chunk(
        self, decoder: SseDecoder, chunk: bytes, end_of_stream: bool
    ) -> ResponseBodyOutput:
        if self._ended:
            # The client already has its terminal event: the rest is not for it.
            return ResponseBodyOutput(b"", self._usage, complete=True)
        held_back = decoder.pending  # bytes of an event earlier chunks did not pass on
        events = decoder.feed(chunk)
        keep: list[SseEvent] = []
        changed = False
        error: str | None = None
        tail = b""
        for i, event in enumerate(events):
            data = event.data
            if data == b"[DONE]":
                self._done = True
                keep.append(event)
                changed = changed or i + 1 < len(events)  # nothing after [DONE] goes out
                break
            # Every event is parsed: usage is read from it, and an upstream that sends
            # broken JSON gets a clean error event instead of breaking the client.
            doc = loads_or_none(data)
            if not isinstance(doc, dict):
                error = "upstream_invalid_json"
                tail = _error_event("The upstream sent an event that is not a JSON object.", error)
                break
            usage = doc.get("usage")
            if usage is not None:
                parsed = usage_from_openai(usage)
                if parsed is not None:
                    self._usage = parsed
                if self._hide_usage and doc.get("choices") == []:
                    changed = True
                    continue  # the usage-only chunk the client did not ask for
            if isinstance(doc.get("error"), dict):
                error = "upstream_stream_error"  # passed on: the client reads it as an error
                keep.append(event)
                break
            self._note_answer(doc)
            keep.append(event)
        if error is None and end_of_stream and not self._done:
            error = "upstream_truncated"
            tail = _error_event("The upstream ended the stream before it was complete.", error)
        if error is not None or self._done:
            self._ended = True  # nothing after [DONE] or an error event is passed on
        if not (held_back or decoder.pending or changed or error):
            body = None  # whole events, all kept: the upstream's bytes pass unchanged
        else:
            # Only complete events go out; a partial one waits for the rest of its bytes.
            body = b"".join(encode_sse_event(e.data, e.event or None) for e in keep) + tail
        # Positional: this runs per streamed chunk, and keywords cost a dict unpacking.
        return ResponseBodyOutput(
            body, self._usage, error, self._ended, self._model, self._finish_reasons
        )

    def error_body(self, status: int, body: bytes, headers: Mapping[str, str]) -> bytes | None:
        return passthrough_error_body(status, body)


def _error_event(message: str, code: str) -> bytes:
    return encode_sse_event(openai_error_body(message, status=502, code=code))


class OpenAIEmbeddingsTranslator(OpenAIChatTranslator):
    """``/v1/embeddings`` on an OpenAI-compatible backend: the body passes unchanged
    (but for the model name) and the JSON answer's ``usage`` is read."""

    __slots__ = ()

    def __init__(self, backend_model: str | None = None, path: str = EMBEDDINGS_PATH) -> None:
        super().__init__(backend_model, path)
