"""``x-mock-fault``: resets, truncation, bad JSON, bad CRC, in-stream errors, gzip."""

from __future__ import annotations

import gzip
import json
import zlib

import pytest
from botocore.eventstream import ChecksumMismatch, EventStreamBuffer

from aigateway.mock_backend import MockBackendServer, reply_pieces

from .helpers import (
    JSON_ROUTES,
    OPENAI,
    STREAMS,
    decode_frames,
    parse_sse,
    raw_post,
    stream,
    tokens,
)

FINAL_NAMES = {
    "openai": ["done"],
    "anthropic": ["message_stop"],
    "bedrock": ["messageStop", "metadata"],
}


@pytest.mark.parametrize("provider", STREAMS)
async def test_reset_aborts_the_stream_after_n_tokens(
    mock_server: MockBackendServer, provider: str
) -> None:
    response, items = await stream(
        mock_server, provider, **{"x-mock-fault": "reset", "x-mock-fault-after": "3"}
    )
    assert response.reset
    assert not response.complete
    assert tokens(provider, items) == list(reply_pieces(3))


@pytest.mark.parametrize("provider", STREAMS)
async def test_reset_default_is_after_two_tokens(
    mock_server: MockBackendServer, provider: str
) -> None:
    response, items = await stream(mock_server, provider, **{"x-mock-fault": "reset"})
    assert response.reset
    assert tokens(provider, items) == list(reply_pieces(2))


@pytest.mark.parametrize("provider", JSON_ROUTES)
async def test_reset_of_a_json_body(mock_server: MockBackendServer, provider: str) -> None:
    path, body = JSON_ROUTES[provider]
    response = await raw_post(mock_server.port, path, body, {"x-mock-fault": "reset"})
    assert response.status == 200
    assert response.reset
    assert not response.complete
    assert len(response.body) == int(response.headers["content-length"]) // 2


@pytest.mark.parametrize("provider", STREAMS)
async def test_truncate_drops_only_the_final_events(
    mock_server: MockBackendServer, provider: str
) -> None:
    _, whole = await stream(mock_server, provider)
    response, items = await stream(mock_server, provider, **{"x-mock-fault": "truncate"})
    assert response.complete and not response.reset
    names = [name for name, _ in items]
    assert names == [name for name, _ in whole if name not in FINAL_NAMES[provider]]
    assert [name for name, _ in whole][len(names) :] == FINAL_NAMES[provider]
    assert tokens(provider, items) == list(reply_pieces(6))


@pytest.mark.parametrize("provider", STREAMS)
async def test_truncate_with_fault_after_ends_early(
    mock_server: MockBackendServer, provider: str
) -> None:
    response, items = await stream(
        mock_server, provider, **{"x-mock-fault": "truncate", "x-mock-fault-after": "1"}
    )
    assert response.complete
    assert tokens(provider, items) == list(reply_pieces(1))
    assert not {name for name, _ in items} & set(FINAL_NAMES[provider])


@pytest.mark.parametrize("provider", JSON_ROUTES)
@pytest.mark.parametrize("fault", ["truncate", "bad-json"])
async def test_json_body_cut_in_half(
    mock_server: MockBackendServer, provider: str, fault: str
) -> None:
    path, body = JSON_ROUTES[provider]
    response = await raw_post(mock_server.port, path, body, {"x-mock-fault": fault})
    assert response.status == 200
    assert response.complete
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.body)


@pytest.mark.parametrize("provider", STREAMS)
async def test_bad_json_inserts_one_broken_event(
    mock_server: MockBackendServer, provider: str
) -> None:
    response, items = await stream(mock_server, provider, **{"x-mock-fault": "bad-json"})
    assert response.complete
    broken = [i for i, (_, payload) in enumerate(items) if not isinstance(payload, dict)]
    if provider == "openai":
        broken.remove(len(items) - 1)  # data: [DONE] is not JSON by design
    assert len(broken) == 1
    assert tokens(provider, items[: broken[0]]) == list(reply_pieces(2))
    assert tokens(provider, items) == list(reply_pieces(6))  # and the stream carries on
    assert items[-1][0] == FINAL_NAMES[provider][-1]


async def test_bad_crc_breaks_botocore_decoding(mock_server: MockBackendServer) -> None:
    path, body = STREAMS["bedrock"]
    response = await raw_post(mock_server.port, path, body, {"x-mock-fault": "bad-crc"})
    assert response.complete
    buffer = EventStreamBuffer()
    decoded = []
    with pytest.raises(ChecksumMismatch):
        for chunk in response.chunks:
            buffer.add_data(chunk)
            decoded.extend(buffer)
    assert [m.headers[":event-type"] for m in decoded] == ["messageStart"] + [
        "contentBlockDelta"
    ] * 2


@pytest.mark.parametrize(
    ("provider", "error_type", "expected"),
    [
        ("openai", None, "server_error"),
        ("openai", "rate_limit_error", "rate_limit_error"),
        ("anthropic", None, "overloaded_error"),
        ("anthropic", "api_error", "api_error"),
        ("bedrock", None, "modelStreamErrorException"),
        ("bedrock", "throttlingException", "throttlingException"),
    ],
)
async def test_exception_ends_the_stream_with_an_error_event(
    mock_server: MockBackendServer, provider: str, error_type: str | None, expected: str
) -> None:
    knobs = {"x-mock-fault": "exception"}
    if error_type:
        knobs["x-mock-error-type"] = error_type
    response, items = await stream(mock_server, provider, **knobs)
    assert response.complete
    assert tokens(provider, items) == list(reply_pieces(2))
    name, payload = items[-1]
    if provider == "openai":
        assert name == "chunk"
        assert set(payload) == {"error"}
        assert payload["error"]["type"] == expected
    elif provider == "anthropic":
        assert name == "error"
        assert payload["type"] == "error"
        assert payload["error"]["type"] == expected
    else:
        assert name == expected
        assert "message" in payload
        last = decode_frames(response.chunks)[-1]
        assert last.headers[":message-type"] == "exception"
        assert last.headers[":exception-type"] == expected


@pytest.mark.parametrize("provider", JSON_ROUTES)
async def test_gzip_json_body(mock_server: MockBackendServer, provider: str) -> None:
    path, body = JSON_ROUTES[provider]
    plain = await raw_post(mock_server.port, path, body)
    zipped = await raw_post(mock_server.port, path, body, {"x-mock-fault": "gzip"})
    assert zipped.headers["content-encoding"] == "gzip"
    assert "content-encoding" not in plain.headers
    unzipped = json.loads(gzip.decompress(zipped.body))
    expected = json.loads(plain.body)
    for volatile in ("id", "created", "metrics"):
        unzipped.pop(volatile, None)
        expected.pop(volatile, None)
    assert unzipped == expected


@pytest.mark.parametrize("provider", STREAMS)
async def test_gzip_stream_is_flushed_per_event(
    mock_server: MockBackendServer, provider: str
) -> None:
    path, body = STREAMS[provider]
    plain = await raw_post(mock_server.port, path, body)
    zipped = await raw_post(mock_server.port, path, body, {"x-mock-fault": "gzip"})
    assert zipped.headers["content-encoding"] == "gzip"
    inflater = zlib.decompressobj(wbits=31)
    pieces = [inflater.decompress(chunk) for chunk in zipped.chunks]
    assert inflater.eof  # the gzip trailer arrived
    assert pieces[-1] == b""  # the last chunk only closes the gzip stream
    assert len(pieces[:-1]) == len(plain.chunks)
    if provider == "bedrock":
        plain_frames = decode_frames(plain.chunks)
        frames = decode_frames(pieces[:-1])
        assert [f.headers for f in frames] == [f.headers for f in plain_frames]
        assert all(len(decode_frames([piece])) == 1 for piece in pieces[:-1])
    else:
        assert all(piece.endswith(b"\n\n") and piece.count(b"\n\n") == 1 for piece in pieces[:-1])
        assert len(parse_sse(b"".join(pieces).decode())) == len(plain.chunks)


async def test_gzip_with_reset(mock_server: MockBackendServer) -> None:
    path, body = OPENAI
    response = await raw_post(
        mock_server.port, path, body, {"x-mock-fault": "gzip, reset", "x-mock-fault-after": "1"}
    )
    assert response.reset
    inflater = zlib.decompressobj(wbits=31)
    text = b"".join(inflater.decompress(chunk) for chunk in response.chunks).decode()
    assert not inflater.eof
    events = parse_sse(text)
    assert len(events) == 2  # the role chunk and one word
    assert events[1].json()["choices"][0]["delta"]["content"] == "alpha"
