"""The AWS event-stream framing (Bedrock's streamed answers): frames cut out by their
length prefix, CRCs checked, headers parsed by botocore (the ``aws`` extra)."""

from __future__ import annotations

import struct
import zlib
from typing import Any

# A frame's prelude: total length, headers length, prelude CRC (4 bytes each).
_PRELUDE_LENGTH = 12
_MIN_FRAME_LENGTH = 16
# botocore's own limits: 128 KiB of headers, 16 MiB of payload.
_MAX_FRAME_LENGTH = _MIN_FRAME_LENGTH + 128 * 1024 + 16 * 1024 * 1024


def event_stream_types() -> tuple[Any, type[Exception]]:
    """botocore's ``EventStreamBuffer`` and ``ParserError`` (botocore is the `aws` extra)."""
    try:
        from botocore.eventstream import EventStreamBuffer, ParserError
    except ImportError:
        raise RuntimeError("Bedrock streaming needs botocore: install aigateway[aws]") from None
    return EventStreamBuffer, ParserError


class EventStreamFrames:
    """Incremental AWS event-stream frame decoder.

    Frames are cut out by their length prefix and handed to botocore's
    ``EventStreamBuffer`` one at a time, which checks both CRCs and parses the
    headers. Feeding it whole chunks instead would re-copy its buffer once per frame.
    """

    __slots__ = ("_buffer", "_decode_errors", "_pending", "_prelude_checked")

    def __init__(self) -> None:
        buffer_type, parser_error = event_stream_types()
        self._buffer = buffer_type()
        # Valid CRCs around malformed headers make botocore raise more than ParserError.
        self._decode_errors = (parser_error, KeyError, IndexError, ValueError, struct.error)
        self._pending = bytearray()
        self._prelude_checked = False

    @property
    def pending(self) -> bool:
        """True while a partial frame is buffered."""
        return bool(self._pending)

    def feed(self, chunk: bytes) -> tuple[list[Any], str | None]:
        """The complete frames (botocore ``EventStreamMessage``s) and, if the bytes are
        not a valid event stream, why (frames before the bad one are still returned)."""
        pending = self._pending
        pending += chunk
        frames: list[Any] = []
        while len(pending) >= _PRELUDE_LENGTH:
            total = int.from_bytes(pending[:4], "big")
            if total < _MIN_FRAME_LENGTH or total > _MAX_FRAME_LENGTH:
                return frames, f"bad frame length {total}"
            if len(pending) < total:
                # Check the prelude CRC now: a corrupt length must not make us wait.
                if not self._prelude_checked:
                    if zlib.crc32(pending[:8]) != int.from_bytes(pending[8:12], "big"):
                        return frames, "prelude checksum mismatch"
                    self._prelude_checked = True
                break
            self._buffer.add_data(bytes(pending[:total]))
            del pending[:total]  # bytearray drops its head in place: no quadratic copying
            self._prelude_checked = False
            try:
                frames.append(self._buffer.next())
            except self._decode_errors as exc:
                return frames, f"{type(exc).__name__}: {exc}"
            except StopIteration:
                return frames, "undecodable frame"
        return frames, None
