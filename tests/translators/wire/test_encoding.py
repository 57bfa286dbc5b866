import gzip
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aigateway.translators.wire.encoding import ContentDecoder, ContentDecodingError


def decode(encoding: str, data: bytes, cuts: list[int]) -> bytes:
    decoder = ContentDecoder(encoding)
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    return b"".join(decoder.decode(p, i == len(pieces) - 1) for i, p in enumerate(pieces))


@settings(max_examples=200, deadline=None)
@given(plain=st.binary(max_size=3000), cuts=st.lists(st.integers(min_value=0), max_size=20))
def test_gzip_and_deflate_decode_whatever_the_split(plain: bytes, cuts: list[int]) -> None:
    assert decode("gzip", gzip.compress(plain), cuts) == plain
    assert decode("deflate", zlib.compress(plain), cuts) == plain
    assert decode("deflate", gzip.compress(plain), cuts) == plain  # mislabelled gzip


def test_truncated_and_corrupt_bodies_are_errors() -> None:
    body = gzip.compress(b"x" * 1000)
    with pytest.raises(ContentDecodingError, match="ends early"):
        decode("gzip", body[:-10], [])
    with pytest.raises(ContentDecodingError):
        decode("gzip", b"not gzip at all", [])


def test_supported_encodings() -> None:
    assert ContentDecoder.supports("gzip") and ContentDecoder.supports("deflate")
    assert not ContentDecoder.supports("br")
