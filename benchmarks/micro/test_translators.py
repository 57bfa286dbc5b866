"""Decoding and translation, per stream or per request (pure functions: no loop)."""

from __future__ import annotations

from typing import Any

import pytest

from aigateway.extproc.gateway.routed import parse_json_body
from aigateway.translators.backends.anthropic import AnthropicMessagesTranslator
from aigateway.translators.backends.bedrock import BedrockConverseTranslator
from aigateway.translators.backends.openai import OpenAIChatTranslator
from aigateway.translators.wire.eventstream import EventStreamFrames
from aigateway.translators.wire.sse import SseDecoder
from benchmarks.micro.streams import (
    TOKENS,
    bedrock_stream_frames,
    chat_request,
    openai_stream_events,
)

OPENAI_EVENTS = openai_stream_events()
BEDROCK_FRAMES = bedrock_stream_frames()


def test_sse_decode_openai_stream(benchmark: Any) -> None:
    """A whole 64-token OpenAI stream, one event per chunk (divide by ~68 per chunk)."""

    def decode() -> int:
        decoder = SseDecoder()
        return sum(len(decoder.feed(chunk)) for chunk in OPENAI_EVENTS)

    assert benchmark(decode) == len(OPENAI_EVENTS)


def test_sse_decode_openai_stream_split_mid_event(benchmark: Any) -> None:
    """The same stream cut at fixed 100-byte offsets (events straddle chunks)."""
    raw = b"".join(OPENAI_EVENTS)
    pieces = [raw[i : i + 100] for i in range(0, len(raw), 100)]

    def decode() -> int:
        decoder = SseDecoder()
        return sum(len(decoder.feed(piece)) for piece in pieces)

    assert benchmark(decode) == len(OPENAI_EVENTS)


@pytest.mark.parametrize("client_asked_usage", [True, False], ids=["usage", "hidden-usage"])
def test_openai_stream_translation(benchmark: Any, client_asked_usage: bool) -> None:
    """OpenAI -> OpenAI per stream: passthrough, usage read from the last chunk (and,
    when the client did not ask for usage, that chunk cut out)."""
    stream = {"stream": True}
    if client_asked_usage:
        stream["stream_options"] = {"include_usage": True}  # type: ignore[assignment]

    def translate() -> Any:
        translator = OpenAIChatTranslator()
        translator.request(parse_json_body(chat_request(**stream)), b"")
        translator.response_headers(200, "text/event-stream")
        out = None
        for i, chunk in enumerate(OPENAI_EVENTS):
            out = translator.response_body(chunk, i == len(OPENAI_EVENTS) - 1)
        return out

    out = benchmark(translate)
    assert out.usage.output_tokens == TOKENS and out.error is None


def test_bedrock_event_stream_decode(benchmark: Any) -> None:
    """Frame decoding (CRCs, headers) of a 64-token ConverseStream, a frame per chunk."""

    def decode() -> int:
        frames = EventStreamFrames()
        n = 0
        for chunk in BEDROCK_FRAMES:
            decoded, error = frames.feed(chunk)
            assert error is None
            n += len(decoded)
        return n

    assert benchmark(decode) == len(BEDROCK_FRAMES)


def test_bedrock_stream_translation(benchmark: Any) -> None:
    """ConverseStream frames -> OpenAI chunks, the whole stream."""

    def translate() -> Any:
        translator = BedrockConverseTranslator("anthropic.claude-3-5-sonnet", created=1)
        translator.request(parse_json_body(chat_request(stream=True)), b"")
        translator.response_headers(200, "application/vnd.amazon.eventstream")
        out = None
        for i, frame in enumerate(BEDROCK_FRAMES):
            out = translator.response_body(frame, i == len(BEDROCK_FRAMES) - 1)
        return out

    out = benchmark(translate)
    assert out.usage.output_tokens == TOKENS and out.error is None


BODY = chat_request()


def test_request_openai_passthrough(benchmark: Any) -> None:
    """Parse + translate a request whose body goes upstream unchanged."""

    def translate() -> Any:
        return OpenAIChatTranslator("gpt-4o-mini").request(parse_json_body(BODY), BODY)

    assert benchmark(translate).body is None


def test_request_openai_rewritten(benchmark: Any) -> None:
    """Parse + translate + re-serialise (the upstream model name differs)."""

    def translate() -> Any:
        return OpenAIChatTranslator("gpt-4o-mini-2024-07-18").request(parse_json_body(BODY), BODY)

    assert benchmark(translate).body is not None


def test_request_bedrock_converse(benchmark: Any) -> None:
    def translate() -> Any:
        return BedrockConverseTranslator("anthropic.claude-3-5-sonnet").request(
            parse_json_body(BODY), BODY
        )

    assert benchmark(translate).path.endswith("/converse")


def test_request_anthropic_messages(benchmark: Any) -> None:
    def translate() -> Any:
        return AnthropicMessagesTranslator("claude-3-5-sonnet").request(parse_json_body(BODY), BODY)

    assert benchmark(translate).path == "/v1/messages"
