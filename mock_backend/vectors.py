"""Deterministic embedding vectors: the same input always embeds to the same unit vector."""

from __future__ import annotations

import base64
import hashlib
import random
import struct
from functools import lru_cache

__all__ = ["embedding_base64", "embedding_vector"]


@lru_cache(maxsize=1024)
def embedding_vector(key: str, dimensions: int) -> tuple[float, ...]:
    """A unit-length vector of float32 values derived from ``key`` alone."""
    # Seeded from a digest, not for secrecy: the same text must give the same vector.
    rng = random.Random(hashlib.sha256(key.encode()).digest())  # noqa: S311
    values = [rng.uniform(-1.0, 1.0) for _ in range(dimensions)]
    norm = sum(v * v for v in values) ** 0.5 or 1.0
    packed = struct.pack(f"<{dimensions}f", *(v / norm for v in values))
    return struct.unpack(f"<{dimensions}f", packed)


def embedding_base64(vector: tuple[float, ...]) -> str:
    """``vector`` as OpenAI's ``encoding_format: "base64"``: little-endian float32 bytes."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
