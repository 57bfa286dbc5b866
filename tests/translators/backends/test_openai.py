"""OpenAI passthrough: streams pass byte for byte when nothing changes, usage is always
read, the usage chunk is hidden from clients that did not ask, and broken upstream
streams end with a clean error event."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openai.types.chat import ChatCompletionChunk

from aigateway.translators.backends.openai import (
    OpenAIChatTranslator,
    OpenAIEmbeddingsTranslator,
    usage_from_openai,
)
from aigateway.translators.wire.sse import SseDecoder


def chunk(content: str | None = None, **extra: Any) -> dict[str, Any]:
    delta = {} if content is None else {"content": content}
    return {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
        **extra,
    }


USAGE = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
USAGE_CHUNK = {**chunk(), "choices": [], "usage": USAGE}


def sse(*docs: Any) -> bytes:
    return b"".join(
        b"data: " + (d if isinstance(d, bytes) else json.dumps(d).encode()) + b"\n\n" for d in docs
    )


def streaming(include_usage: bool) -> OpenAIChatTranslator:
    t = OpenAIChatTranslator("upstream-model")
    payload: dict[str, Any] = {"model": "m", "messages": [], "stream": True}
    if include_usage:
        payload["stream_options"] = {"include_usage": True}
    t.request(payload, b"")
    t.response_headers(200, "text/event-stream; charset=utf-8")
    return t


def run(t: OpenAIChatTranslator, pieces: list[bytes]) -> tuple[bytes, Any, str | None]:
    out, usage, error = b"", None, None
    for i, piece in enumerate(pieces):
        result = t.response_body(piece, i == len(pieces) - 1)
        out += piece if result.body is None else result.body
        usage = result.usage or usage
        error = result.error or error
    return out, usage, error


def events(wire: bytes) -> list[bytes]:
    return [e.data for e in SseDecoder().feed(wire)]


WIRE = sse(chunk("Hel"), chunk("lo"), USAGE_CHUNK, b"[DONE]")


def test_request_adds_include_usage_and_model_only_when_needed() -> None:
    t = OpenAIChatTranslator(None)
    raw = json.dumps({"model": "m", "messages": []}).encode()
    assert t.request(json.loads(raw), raw).body is None
    t = OpenAIChatTranslator("other")
    upstream = t.request({"model": "m", "messages": [], "stream": True, "stream_options": {}}, b"")
    assert upstream.body is not None
    assert json.loads(upstream.body) == {
        "model": "other",
        "messages": [],
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def test_whole_events_pass_unchanged_when_the_client_asked_for_usage() -> None:
    t = streaming(include_usage=True)
    results = [t.response_body(WIRE, True)]
    assert results[0].body is None
    assert results[0].usage is not None and results[0].usage.total_tokens == 5


@settings(max_examples=150, deadline=None)
@given(
    cuts=st.lists(st.integers(min_value=0, max_value=len(WIRE)), max_size=8), asked=st.booleans()
)
def test_any_split_gives_the_same_events(cuts: list[int], asked: bool) -> None:
    points = sorted(set(cuts))
    pieces = [WIRE[a:b] for a, b in zip([0, *points], [*points, len(WIRE)], strict=True)]
    out, usage, error = run(streaming(include_usage=asked), pieces)
    expected = events(WIRE) if asked else [d for d in events(WIRE) if b'"usage"' not in d]
    assert events(out) == expected
    assert usage is not None and usage.output_tokens == 2
    assert error is None
    for data in events(out)[:-1]:
        ChatCompletionChunk.model_validate_json(data)


def test_invalid_json_event_becomes_an_error_event_and_the_rest_is_dropped() -> None:
    t = streaming(include_usage=False)
    out, _, error = run(t, [sse(chunk("a"), b'{"choices": [', chunk("b")), sse(b"[DONE]")])
    assert error == "upstream_invalid_json"
    datas = events(out)
    assert json.loads(datas[0])["choices"][0]["delta"]["content"] == "a"
    assert json.loads(datas[1])["error"]["code"] == "upstream_invalid_json"
    assert len(datas) == 2


def test_upstream_error_event_passes_and_marks_the_request_failed() -> None:
    t = streaming(include_usage=False)
    err = {"error": {"message": "overloaded", "type": "server_error"}}
    out, _, error = run(t, [sse(chunk("a"), err)])
    assert error == "upstream_stream_error"
    assert json.loads(events(out)[-1]) == err


def test_truncated_stream_gets_an_error_event() -> None:
    out, _, error = run(streaming(include_usage=True), [sse(chunk("a"))])
    assert error == "upstream_truncated"
    assert json.loads(events(out)[-1])["error"]["code"] == "upstream_truncated"


def test_partial_event_is_held_back_until_complete() -> None:
    t = streaming(include_usage=True)
    first = t.response_body(WIRE[:10], False)
    assert first.body == b""  # nothing of an incomplete event goes out
    rest = t.response_body(WIRE[10:], True)
    assert rest.body is not None and events(rest.body) == events(WIRE)


def test_non_streamed_usage_and_invalid_json() -> None:
    t = OpenAIChatTranslator(None)
    t.request({"model": "m", "messages": []}, b"")
    t.response_headers(200, "application/json")
    assert t.response_body(json.dumps({"usage": USAGE}).encode(), True).usage == usage_from_openai(
        USAGE
    )
    t = OpenAIChatTranslator(None)
    t.response_headers(200, "application/json")
    assert t.response_body(b"<html>", True).error == "upstream_invalid_json"


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        (None, None),
        ("x", None),
        ({"prompt_tokens": "3"}, (0, 0, 0, None, None)),
        (
            {
                "prompt_tokens": 4,
                "completion_tokens": 6,
                "prompt_tokens_details": {"cached_tokens": 2},
                "completion_tokens_details": {"reasoning_tokens": 5},
            },
            (4, 6, 10, 2, 5),
        ),
    ],
)
def test_usage_parsing_is_defensive(usage: Any, expected: Any) -> None:
    parsed = usage_from_openai(usage)
    if expected is None:
        assert parsed is None
    else:
        assert parsed is not None
        got = (
            parsed.input_tokens,
            parsed.output_tokens,
            parsed.total_tokens,
            parsed.cached_input_tokens,
            parsed.reasoning_tokens,
        )
        assert got == expected


def test_embeddings_translator_path_and_usage() -> None:
    t = OpenAIEmbeddingsTranslator("emb-upstream")
    upstream = t.request({"model": "emb", "input": "a b"}, b"")
    assert upstream.path == "/v1/embeddings"
    assert upstream.body is not None and json.loads(upstream.body)["model"] == "emb-upstream"
    t.response_headers(200, "application/json")
    out = t.response_body(
        json.dumps({"usage": {"prompt_tokens": 2, "total_tokens": 2}}).encode(), True
    )
    assert out.usage is not None and (out.usage.input_tokens, out.usage.total_tokens) == (2, 2)


# --- what the backend says answered (facts for telemetry) -------------------------------


def test_the_answering_model_and_finish_reasons_are_reported() -> None:
    t = streaming(True)
    first = t.response_body(sse({**chunk("Hel"), "model": "gpt-4o-mini-2024-07-18"}), False)
    assert (first.model, first.finish_reasons) == ("gpt-4o-mini-2024-07-18", ())
    finish = {**chunk(), "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]}
    last = t.response_body(sse(finish, USAGE_CHUNK, b"[DONE]"), True)
    assert (last.model, last.finish_reasons) == ("gpt-4o-mini-2024-07-18", ("length",))

    whole = OpenAIChatTranslator(None)
    whole.response_headers(200, "application/json")
    doc = {
        "model": "gpt-4o-2024-08-06",
        "choices": [{"index": i, "finish_reason": r} for i, r in enumerate(("stop", "tool_calls"))],
        "usage": USAGE,
    }
    out = whole.response_body(json.dumps(doc).encode(), True)
    assert (out.model, out.finish_reasons) == ("gpt-4o-2024-08-06", ("stop", "tool_calls"))


def test_nothing_reported_is_none() -> None:
    t = OpenAIChatTranslator(None)
    t.response_headers(200, "application/json")
    out = t.response_body(json.dumps({"model": 3, "choices": [{"x": 1}, "y"]}).encode(), True)
    assert (out.model, out.finish_reasons) == (None, ())


#: A stream as OpenAI sends it today (recorded, the texts replaced): every chunk ends in
#: an ``obfuscation`` string, the usage chunk too, and usage reports cache writes.
RECORDED = (
    b'data: {"id":"chatcmpl-C1","object":"chat.completion.chunk","created":1761564674,'
    b'"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":null,'
    b'"choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},'
    b'"logprobs":null,"finish_reason":null}],"usage":null,"obfuscation":"Gpkah"}\n\n'
    b'data: {"id":"chatcmpl-C1","object":"chat.completion.chunk","created":1761564674,'
    b'"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":null,'
    b'"choices":[{"index":0,"delta":{"content":"Hi"},"logprobs":null,"finish_reason":null}],'
    b'"usage":null,"obfuscation":"38dLw0"}\n\n'
    b'data: {"id":"chatcmpl-C1","object":"chat.completion.chunk","created":1761564674,'
    b'"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":null,'
    b'"choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],'
    b'"usage":null,"obfuscation":"a"}\n\n'
    b'data: {"id":"chatcmpl-C1","object":"chat.completion.chunk","created":1761564674,'
    b'"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":null,'
    b'"choices":[],"usage":{"prompt_tokens":2000,"completion_tokens":5,"total_tokens":2005,'
    b'"prompt_tokens_details":{"cached_tokens":1024,"audio_tokens":0,'
    b'"cache_write_tokens":512},"completion_tokens_details":{"reasoning_tokens":0,'
    b'"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},'
    b'"obfuscation":"8618FsxJD2gV"}\n\n'
    b"data: [DONE]\n\n"
)


@pytest.mark.parametrize("asked", [True, False])
def test_the_recorded_openai_stream_with_obfuscation_and_cache_writes(asked: bool) -> None:
    out, usage, error = run(streaming(include_usage=asked), [RECORDED])
    assert error is None
    assert usage is not None
    assert (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (2000, 5, 2005)
    assert (usage.cached_input_tokens, usage.cache_write_input_tokens) == (1024, 512)
    sent = events(out)
    assert sent == (events(RECORDED) if asked else [*events(RECORDED)[:3], b"[DONE]"])
    for data in sent[:-1]:
        assert ChatCompletionChunk.model_validate_json(data).obfuscation
