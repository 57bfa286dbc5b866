import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aigateway.translators.backends.openai import OpenAIChatTranslator
from aigateway.translators.client_apis.messages import MessagesPassthroughTranslator
from aigateway.translators.client_apis.responses import ResponsesPassthroughTranslator
from aigateway.translators.contract import Translator
from aigateway.translators.wire.sse import SSE_DONE, SseDecoder, SseEvent, encode_sse_event, is_sse


def decode_all(chunks: list[bytes]) -> list[SseEvent]:
    decoder = SseDecoder()
    events: list[SseEvent] = []
    for chunk in chunks:
        events.extend(decoder.feed(chunk))
    return events


def reference_decode(stream: bytes) -> list[SseEvent]:
    """Whole-stream decoding straight from the spec's wording, no incremental state."""
    if stream.startswith(b"\xef\xbb\xbf"):
        stream = stream[3:]
    lines = re.split(rb"\r\n|\r|\n", stream)
    lines.pop()  # text after the last line end is never a complete line
    events, data, event, last_id = [], [], "", None
    for line in lines:
        if line == b"":
            if data:
                events.append(SseEvent(b"\n".join(data), event, last_id))
            data, event = [], ""
        elif line.startswith(b":"):
            continue
        else:
            field, _, value = line.partition(b":")
            if value.startswith(b" "):
                value = value[1:]
            if field == b"data":
                data.append(value)
            elif field == b"event":
                event = value.decode("utf-8", "replace")
            elif field == b"id" and b"\0" not in value:
                last_id = value.decode("utf-8", "replace")
    return events


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"])
def test_line_endings(eol: bytes) -> None:
    stream = eol.join([b"data: one", b"", b"data:two", b"", b""])
    assert decode_all([stream]) == [SseEvent(b"one"), SseEvent(b"two")]


def test_space_after_colon_is_optional_and_only_one_is_removed() -> None:
    events = decode_all([b"data:a\n\ndata: b\n\ndata:  c\n\n"])
    assert [e.data for e in events] == [b"a", b"b", b" c"]


def test_comments_and_unknown_fields_are_ignored() -> None:
    stream = b": keep-alive\nretry: 100\nfoo: bar\ndata: x\n\n:\n\n"
    assert decode_all([stream]) == [SseEvent(b"x")]


def test_multiline_data_event_name_and_id() -> None:
    stream = b"event: message_start\nid: 7\ndata: {\ndata: }\n\n"
    assert decode_all([stream]) == [SseEvent(b"{\n}", "message_start", "7")]


def test_event_without_data_is_not_dispatched_and_resets_type() -> None:
    stream = b"event: ping\n\ndata: x\n\n"
    assert decode_all([stream]) == [SseEvent(b"x", "")]


def test_crlf_split_between_chunks_is_one_line_end() -> None:
    # Treated as two line ends, "\r" + "\n" would dispatch "a" alone.
    chunks = [b"data: a\r", b"\ndata: b\r\n\r\n"]
    assert decode_all(chunks) == [SseEvent(b"a\nb")]


def test_bom_is_stripped_even_when_split() -> None:
    assert decode_all([b"\xef", b"\xbb", b"\xbfdata: x\n\n"]) == [SseEvent(b"x")]


def test_pending_reports_partial_event() -> None:
    decoder = SseDecoder()
    decoder.feed(b'data: {"a":')
    assert decoder.pending
    decoder.feed(b"1}\n\n")
    assert not decoder.pending


def test_long_line_in_many_chunks() -> None:
    payload = b"x" * 100_000
    chunks = [b"data: "] + [payload[i : i + 7] for i in range(0, len(payload), 7)] + [b"\n\n"]
    assert decode_all(chunks) == [SseEvent(payload)]


def test_encode_round_trips() -> None:
    wire = encode_sse_event(b'{"a":1}') + encode_sse_event(b"l1\nl2", "delta") + SSE_DONE
    assert decode_all([wire]) == [
        SseEvent(b'{"a":1}'),
        SseEvent(b"l1\nl2", "delta"),
        SseEvent(b"[DONE]"),
    ]


_values = st.binary(max_size=12).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
_line = st.one_of(
    st.tuples(st.sampled_from([b"data", b"event", b"id", b"retry", b"x"]), _values).map(
        lambda t: t[0] + b":" + t[1]
    ),
    st.tuples(st.sampled_from([b"data: ", b"data:"]), _values).map(lambda t: t[0] + t[1]),
    _values.map(lambda v: b":" + v),
    st.just(b"data"),
    st.just(b""),
)


@st.composite
def streams(draw: st.DrawFn) -> bytes:
    lines = draw(st.lists(_line, max_size=30))
    out = bytearray(b"\xef\xbb\xbf" if draw(st.booleans()) else b"")
    for line in lines:
        out += line + draw(st.sampled_from([b"\n", b"\r\n", b"\r"]))
    return bytes(out + draw(_values))


@settings(max_examples=300, deadline=None)
@given(stream=streams(), cuts=st.lists(st.integers(min_value=0), max_size=12))
def test_any_split_decodes_like_the_whole_stream(stream: bytes, cuts: list[int]) -> None:
    points = sorted({c % (len(stream) + 1) for c in cuts})
    chunks = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]
    assert decode_all(chunks) == reference_decode(stream)


@settings(max_examples=100, deadline=None)
@given(stream=streams())
def test_byte_by_byte_decodes_like_the_whole_stream(stream: bytes) -> None:
    assert decode_all([stream[i : i + 1] for i in range(len(stream))]) == reference_decode(stream)


@pytest.mark.parametrize(
    ("content_type", "sse"),
    [
        ("text/event-stream", True),
        ("text/event-stream; charset=utf-8", True),
        ("Text/Event-Stream;charset=UTF-8", True),
        (" text/event-stream ", True),
        ("application/json", False),
        ("text/event-streams", False),
        ("", False),
    ],
)
def test_the_sse_content_type_is_read_without_parameters_or_case(
    content_type: str, sse: bool
) -> None:
    assert is_sse(content_type) is sse


@pytest.mark.parametrize(
    "translator",
    [
        OpenAIChatTranslator("gpt-4o"),
        ResponsesPassthroughTranslator("gpt-4o"),
        MessagesPassthroughTranslator("claude"),
    ],
    ids=["openai", "responses", "messages"],
)
def test_every_translator_streams_on_the_same_check(translator: Translator) -> None:
    assert translator.response_headers(200, "Text/Event-Stream; charset=utf-8").streamed
