"""Server-sent events: an incremental decoder and an encoder.

The decoder follows the WHATWG event-stream parsing rules: lines end in ``\\n``,
``\\r\\n`` or a lone ``\\r``; ``field:value`` with one optional space after the colon;
lines starting with ``:`` are comments; a blank line dispatches the event; an event
with no data is not dispatched. Chunks may split anything anywhere, including a
``\\r\\n`` pair or a multi-byte character. Data stays ``bytes``: JSON parsers take bytes
and re-encoding an event needs no UTF-8 round trip.
"""

from __future__ import annotations

from dataclasses import dataclass

SSE_DONE = b"data: [DONE]\n\n"
SSE_CONTENT_TYPE = "text/event-stream"
_BOM = b"\xef\xbb\xbf"


def media_type(content_type: str) -> str:
    """A ``content-type`` header's media type: no parameters, lower case."""
    return content_type.split(";", 1)[0].strip().lower()


def is_sse(content_type: str) -> bool:
    """The ``content-type`` of server-sent events (parameters and case aside)."""
    return media_type(content_type) == SSE_CONTENT_TYPE


@dataclass(slots=True)
class SseEvent:
    data: bytes
    event: str = ""
    id: str | None = None


class SseDecoder:
    """Feed it body chunks; it returns the events each chunk completes."""

    __slots__ = ("_buf", "_data", "_event", "_id", "_last_cr", "_started")

    def __init__(self) -> None:
        self._buf: list[bytes] = []  # pieces of an unterminated line
        self._data: list[bytes] = []
        self._event = ""
        self._id: str | None = None
        self._last_cr = False  # previous chunk ended in "\r": a "\n" next is its pair
        self._started = False

    @property
    def pending(self) -> bool:
        """True while a partial line or an undispatched event is buffered."""
        return bool(self._buf or self._data or self._event)

    def feed(self, chunk: bytes) -> list[SseEvent]:
        """The events ``chunk`` completes (an event split across chunks comes whole,
        from the call that brings its end)."""
        if self._last_cr:
            self._last_cr = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        if not chunk:
            return []
        if not self._started:
            head = b"".join(self._buf) + chunk
            if len(head) < len(_BOM) and _BOM.startswith(head):
                self._buf = [head]
                return []
            self._started = True
            self._buf = []
            chunk = head[len(_BOM) :] if head.startswith(_BOM) else head
        self._last_cr = chunk[-1:] == b"\r"
        if b"\n" not in chunk and b"\r" not in chunk:
            # No line ends: park the piece; joining once per line keeps long lines linear.
            self._buf.append(chunk)
            return []
        if self._buf:
            self._buf.append(chunk)
            data = b"".join(self._buf)
        else:
            data = chunk
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = data.split(b"\n")
        tail = lines.pop()  # the unterminated rest ("" when data ended with a line end)
        self._buf = [tail] if tail else []
        events: list[SseEvent] = []
        for line in lines:
            if not line:
                if self._data:
                    events.append(SseEvent(b"\n".join(self._data), self._event, self._id))
                    self._data = []
                self._event = ""
                continue
            if line[0] == 0x3A:  # ":" starts a comment
                continue
            colon = line.find(b":")
            if colon == -1:
                field, value = line, b""
            else:
                field = line[:colon]
                value = line[colon + 1 :]
                if value[:1] == b" ":
                    value = value[1:]
            if field == b"data":
                self._data.append(value)
            elif field == b"event":
                self._event = value.decode("utf-8", "replace")
            elif field == b"id" and b"\0" not in value:
                self._id = value.decode("utf-8", "replace")
            # "retry" and unknown fields are ignored, as the spec says
        return events


def encode_sse_event(data: bytes, event: str | None = None) -> bytes:
    """One event in wire form; multi-line data becomes several ``data:`` lines."""
    if b"\n" in data or b"\r" in data:
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\ndata: ")
    if event:
        return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"
    return b"data: " + data + b"\n\n"
