"""AWS event-stream frame encoding (``application/vnd.amazon.eventstream``).

Frame layout (all integers big-endian)::

    total length (4) | headers length (4) | prelude CRC32 (4)
    headers | payload | message CRC32 (4, over everything before it)

Each header is ``name length (1) | name | type (1; 7 = string) | value length (2) |
value``. Only string headers are needed for Bedrock's ConverseStream. botocore only
decodes frames, hence this small encoder.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from functools import lru_cache

__all__ = ["corrupt_message_crc", "encode_frame", "event_frame", "exception_frame"]

_STRING_HEADER = 7
_PRELUDE = struct.Struct(">II")
_CRC = struct.Struct(">I")
_PRELUDE_AND_CRC_LEN = 12
_MESSAGE_CRC_LEN = 4


def encode_frame(headers: Sequence[tuple[str, str]], payload: bytes) -> bytes:
    """One complete frame with string headers (in the given order) and ``payload``."""
    return _frame(_encode_headers(tuple(headers)), payload)


def event_frame(event_type: str, payload: bytes) -> bytes:
    """A ``:message-type event`` frame with a JSON payload, as Bedrock sends them."""
    return _frame(_event_headers(event_type), payload)


def exception_frame(exception_type: str, payload: bytes) -> bytes:
    """A ``:message-type exception`` frame (a modeled error ending the stream)."""
    return _frame(_exception_headers(exception_type), payload)


def corrupt_message_crc(frame: bytes) -> bytes:
    """``frame`` with its trailing message CRC flipped, so decoders must reject it."""
    (crc,) = _CRC.unpack_from(frame, len(frame) - _MESSAGE_CRC_LEN)
    return frame[:-_MESSAGE_CRC_LEN] + _CRC.pack(crc ^ 0xFFFFFFFF)


def _frame(header_bytes: bytes, payload: bytes) -> bytes:
    total = _PRELUDE_AND_CRC_LEN + len(header_bytes) + len(payload) + _MESSAGE_CRC_LEN
    prelude = _PRELUDE.pack(total, len(header_bytes))
    message = prelude + _CRC.pack(zlib.crc32(prelude)) + header_bytes + payload
    return message + _CRC.pack(zlib.crc32(message))


@lru_cache(maxsize=64)
def _encode_headers(headers: tuple[tuple[str, str], ...]) -> bytes:
    parts: list[bytes] = []
    for name, value in headers:
        raw_name = name.encode()
        raw_value = value.encode()
        if len(raw_name) > 255 or len(raw_value) > 0xFFFF:
            raise ValueError(f"event-stream header {name!r} is too long")
        parts.append(
            bytes((len(raw_name),))
            + raw_name
            + bytes((_STRING_HEADER,))
            + struct.pack(">H", len(raw_value))
            + raw_value
        )
    return b"".join(parts)


@lru_cache(maxsize=32)
def _event_headers(event_type: str) -> bytes:
    return _encode_headers(
        (
            (":event-type", event_type),
            (":content-type", "application/json"),
            (":message-type", "event"),
        )
    )


@lru_cache(maxsize=32)
def _exception_headers(exception_type: str) -> bytes:
    return _encode_headers(
        (
            (":exception-type", exception_type),
            (":content-type", "application/json"),
            (":message-type", "exception"),
        )
    )
