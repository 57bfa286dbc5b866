"""Undoing an upstream's ``content-encoding`` incrementally, in linear time.

The gateway asks upstreams for ``identity``; this is for those that compress anyway.
One ``zlib.decompressobj`` per response keeps its state across chunks, so each byte is
inflated once, however the body is split.
"""

from __future__ import annotations

import zlib

# wbits: 16 + 15 reads gzip framing; 32 + 15 auto-detects zlib or gzip ("deflate" is
# meant to be zlib-wrapped, but some servers send gzip under that name).
_WBITS = {"gzip": 31, "x-gzip": 31, "deflate": 47}


class ContentDecodingError(Exception):
    """The body is not valid for its declared encoding."""


class ContentDecoder:
    __slots__ = ("_z",)

    def __init__(self, encoding: str) -> None:
        self._z = zlib.decompressobj(_WBITS[encoding])

    @staticmethod
    def supports(encoding: str) -> bool:
        return encoding in _WBITS

    def decode(self, chunk: bytes, end_of_stream: bool) -> bytes:
        try:
            out = self._z.decompress(chunk)
            if end_of_stream:
                out += self._z.flush()
                if not self._z.eof:
                    raise ContentDecodingError("the compressed body ends early")
        except zlib.error as exc:
            raise ContentDecodingError(str(exc)) from None
        return out
