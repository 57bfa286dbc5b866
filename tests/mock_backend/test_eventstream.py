"""The hand-written AWS event-stream encoder against botocore's decoder."""

from __future__ import annotations

import itertools
import json

import pytest
from botocore.eventstream import ChecksumMismatch, EventStreamBuffer
from hypothesis import given, settings
from hypothesis import strategies as st

from aigateway.mock_backend.eventstream import (
    corrupt_message_crc,
    encode_frame,
    event_frame,
    exception_frame,
)

from .helpers import decode_frames

FRAMES = [
    event_frame("messageStart", b'{"role":"assistant"}'),
    event_frame("contentBlockDelta", '{"contentBlockIndex":0,"delta":{"text":"é ☃"}}'.encode()),
    event_frame("metadata", b"{}"),
    exception_frame("throttlingException", b'{"message":"slow down"}'),
    encode_frame([], b""),
]
WIRE = b"".join(FRAMES)


def decoded(chunks: list[bytes]) -> list[tuple[dict[str, object], bytes]]:
    return [(message.headers, message.payload) for message in decode_frames(chunks)]


def test_frames_decode_with_their_headers_and_payloads() -> None:
    messages = decode_frames([WIRE])
    assert [m.headers for m in messages] == [
        {
            ":event-type": "messageStart",
            ":content-type": "application/json",
            ":message-type": "event",
        },
        {
            ":event-type": "contentBlockDelta",
            ":content-type": "application/json",
            ":message-type": "event",
        },
        {":event-type": "metadata", ":content-type": "application/json", ":message-type": "event"},
        {
            ":exception-type": "throttlingException",
            ":content-type": "application/json",
            ":message-type": "exception",
        },
        {},
    ]
    assert json.loads(messages[1].payload)["delta"]["text"] == "é ☃"
    assert messages[4].payload == b""


def test_every_single_split_point_decodes_the_same() -> None:
    whole = decoded([WIRE])
    assert len(whole) == len(FRAMES)
    for offset in range(len(WIRE) + 1):
        assert decoded([WIRE[:offset], WIRE[offset:]]) == whole


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(WIRE)), max_size=12))
def test_random_splits_decode_the_same(cuts: list[int]) -> None:
    points = [0, *sorted(cuts), len(WIRE)]
    chunks = [WIRE[a:b] for a, b in itertools.pairwise(points)]
    assert decoded(chunks) == decoded([WIRE])


def test_corrupted_crc_is_rejected() -> None:
    buffer = EventStreamBuffer()
    buffer.add_data(corrupt_message_crc(FRAMES[0]))
    with pytest.raises(ChecksumMismatch):
        next(iter(buffer))


def test_header_value_too_long_is_refused() -> None:
    with pytest.raises(ValueError, match="too long"):
        encode_frame([("x" * 300, "v")], b"")
