"""Small decoders the mock backend tests read responses with."""

from __future__ import annotations

import asyncio
import json
import socket
from dataclasses import dataclass
from typing import Any

from botocore.eventstream import EventStreamBuffer, EventStreamMessage

from aigateway.mock_backend import MockBackendServer


@dataclass(frozen=True)
class Sse:
    event: str | None
    data: str

    def json(self) -> Any:
        return json.loads(self.data)


def parse_sse(text: str) -> list[Sse]:
    """Whole-body SSE parsing; asserts every event is properly terminated."""
    assert text.endswith("\n\n"), f"body does not end with a blank line: {text[-40:]!r}"
    events = []
    for block in text[:-2].split("\n\n"):
        event = None
        data = []
        for line in block.split("\n"):
            name, _, value = line.partition(": ")
            if name == "event":
                event = value
            elif name == "data":
                data.append(value)
            else:
                raise AssertionError(f"unexpected SSE line {line!r}")
        events.append(Sse(event, "\n".join(data)))
    return events


def decode_frames(chunks: list[bytes]) -> list[EventStreamMessage]:
    """AWS event-stream frames, decoded by botocore fed chunk by chunk."""
    buffer = EventStreamBuffer()
    messages = []
    for chunk in chunks:
        buffer.add_data(chunk)
        messages.extend(buffer)
    assert buffer._data == b"", "trailing bytes after the last frame"
    return messages


def frame_events(messages: list[EventStreamMessage]) -> list[tuple[str, dict[str, Any]]]:
    """(event type, payload without Bedrock's "p" padding) per event frame."""
    out = []
    for message in messages:
        assert message.headers[":message-type"] == "event"
        assert message.headers[":content-type"] == "application/json"
        payload = json.loads(message.payload)
        assert isinstance(payload.pop("p"), str)
        out.append((message.headers[":event-type"], payload))
    return out


def user_messages(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


@dataclass(frozen=True)
class RawResponse:
    """A response read off the socket, HTTP chunk boundaries kept."""

    status: int
    headers: dict[str, str]
    chunks: list[bytes]
    #: the chunked terminator (or the whole content-length) arrived
    complete: bool
    #: the server reset the connection
    reset: bool

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)


def _exchange(port: int, request: bytes) -> tuple[bytes, bool]:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        data = bytearray()
        while True:
            try:
                received = sock.recv(65536)
            except ConnectionResetError:
                return bytes(data), True
            if not received:
                return bytes(data), False
            data += received


def _parse_raw(data: bytes, reset: bool) -> RawResponse:
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding") != "chunked":
        length = int(headers.get("content-length", len(rest)))
        return RawResponse(status, headers, [rest], len(rest) == length, reset)
    chunks = []
    while True:
        size_line, sep, after = rest.partition(b"\r\n")
        if not sep:
            return RawResponse(status, headers, chunks, False, reset)
        size = int(size_line, 16)
        if size == 0:
            return RawResponse(status, headers, chunks, after == b"\r\n", reset)
        if len(after) < size + 2:
            return RawResponse(status, headers, [*chunks, after[:size]], False, reset)
        chunks.append(after[:size])
        rest = after[size + 2 :]


async def raw_post(
    port: int, path: str, body: Any, headers: dict[str, str] | None = None
) -> RawResponse:
    """POST over a plain socket (in a thread), keeping chunk boundaries and resets."""
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    fields = {
        "host": ("Host", f"127.0.0.1:{port}"),
        "content-type": ("Content-Type", "application/json"),
    }
    for name, value in (headers or {}).items():
        fields[name.lower()] = (name, value)
    fields["content-length"] = ("Content-Length", str(len(payload)))
    fields["connection"] = ("Connection", "close")
    lines = [f"POST {path} HTTP/1.1", *(f"{name}: {value}" for name, value in fields.values())]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode() + payload
    data, reset = await asyncio.to_thread(_exchange, port, request)
    return _parse_raw(data, reset)


# Streaming requests of each provider, and how to read their text back.

MESSAGES = [{"role": "user", "content": "count these four words"}]
OPENAI = (
    "/v1/chat/completions",
    {"model": "m", "messages": MESSAGES, "stream": True, "stream_options": {"include_usage": True}},
)
ANTHROPIC = (
    "/v1/messages",
    {"model": "c", "max_tokens": 100, "messages": MESSAGES, "stream": True},
)
BEDROCK = (
    "/model/amazon.nova-lite-v1%3A0/converse-stream",
    {"messages": [{"role": "user", "content": [{"text": "count these four words"}]}]},
)
STREAMS = {"openai": OPENAI, "anthropic": ANTHROPIC, "bedrock": BEDROCK}
JSON_ROUTES = {
    "openai": ("/v1/chat/completions", {"model": "m", "messages": MESSAGES}),
    "anthropic": ("/v1/messages", {"model": "c", "max_tokens": 100, "messages": MESSAGES}),
    "bedrock": ("/model/amazon.nova-lite-v1%3A0/converse", BEDROCK[1]),
    "embeddings": ("/v1/embeddings", {"model": "e", "input": "some text"}),
}


async def stream(
    server: MockBackendServer, provider: str, **knobs: str
) -> tuple[RawResponse, list[tuple[str, Any]]]:
    """Stream from ``provider`` and decode to ``(name, payload)`` pairs: SSE events by
    ``event:`` name (OpenAI: ``chunk``/``done``), Bedrock frames by event type."""
    path, body = STREAMS[provider]
    response = await raw_post(server.port, path, body, {"x-mock-output-tokens": "6", **knobs})
    assert response.status == 200
    if provider == "bedrock":
        items = []
        for message in decode_frames(response.chunks):
            kind = message.headers[":message-type"]
            name = message.headers[f":{kind}-type"]
            try:
                items.append((name, json.loads(message.payload)))
            except ValueError:
                items.append((name, message.payload))
        return response, items
    items = []
    for event in parse_sse(response.body.decode()):
        name = event.event or ("done" if event.data == "[DONE]" else "chunk")
        try:
            items.append((name, event.json()))
        except ValueError:
            items.append((name, event.data))
    return response, items


def tokens(provider: str, items: list[tuple[str, Any]]) -> list[str]:
    """The text pieces among decoded items."""
    if provider == "openai":
        return [
            p["choices"][0]["delta"]["content"]
            for name, p in items
            if name == "chunk" and isinstance(p, dict) and p.get("choices")
            if p["choices"][0]["delta"].get("content")
        ]
    if provider == "anthropic":
        return [
            p["delta"]["text"]
            for n, p in items
            if n == "content_block_delta" and isinstance(p, dict)
        ]
    return [
        p["delta"]["text"] for n, p in items if n == "contentBlockDelta" and isinstance(p, dict)
    ]
