"""A bounded record of the requests the mock received, for tests to inspect.

Served as JSON by ``GET /_mock/requests`` (oldest first, newest last) and cleared by
``DELETE /_mock/requests``. End-to-end tests use it to check what reached the upstream:
API keys, the rewritten model, the path.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

__all__ = ["DEFAULT_HISTORY_SIZE", "RecordedRequest", "RequestLog"]

DEFAULT_HISTORY_SIZE = 1000


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One received request.

    ``path`` is the path and query exactly as received (still percent-escaped).
    ``headers`` has lower-case names; repeated headers are joined with ``", "``.
    ``body`` is the body decoded as UTF-8 (undecodable bytes replaced).
    """

    method: str
    path: str
    headers: dict[str, str]
    body: str

    def to_json(self) -> dict[str, object]:
        """The JSON object ``GET /_mock/requests`` lists."""
        return {
            "method": self.method,
            "path": self.path,
            "headers": self.headers,
            "body": self.body,
        }


# Stored raw and converted when read: recording stays cheap on the benchmark path.
_Raw = tuple[str, str, tuple[tuple[bytes, bytes], ...], bytes]


class RequestLog:
    """The last ``maxlen`` requests, oldest first."""

    __slots__ = ("_entries",)

    def __init__(self, maxlen: int = DEFAULT_HISTORY_SIZE) -> None:
        self._entries: deque[_Raw] = deque(maxlen=maxlen)

    def record(
        self,
        method: str,
        raw_path: str,
        raw_headers: tuple[tuple[bytes, bytes], ...],
        body: bytes,
    ) -> None:
        """Remember one request (cheap: nothing is decoded here)."""
        self._entries.append((method, raw_path, raw_headers, body))

    def snapshot(self) -> list[RecordedRequest]:
        """The recorded requests, oldest first."""
        return [_decode(entry) for entry in list(self._entries)]

    def clear(self) -> int:
        """Forget every recorded request; returns how many there were."""
        count = len(self._entries)
        self._entries.clear()
        return count

    def __len__(self) -> int:
        return len(self._entries)


def _decode(entry: _Raw) -> RecordedRequest:
    method, path, raw_headers, body = entry
    headers: dict[str, str] = {}
    for raw_name, raw_value in raw_headers:
        name = raw_name.decode("latin-1").lower()
        value = raw_value.decode("utf-8", errors="replace")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return RecordedRequest(method, path, headers, body.decode("utf-8", errors="replace"))
