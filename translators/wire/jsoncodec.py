"""The one JSON codec every translator uses: compact bytes out, tolerant parsing in.

One copy on purpose: private copies drift (one that could not encode a lone surrogate,
``"\\ud800"``, turned a client's bad string into a 500).
"""

from __future__ import annotations

import json
from typing import Any


def dumps(value: Any) -> bytes:
    """Compact JSON as UTF-8 bytes. Non-ASCII text stays 1-4 bytes, not a 6-byte escape;
    a lone surrogate (valid in JSON text, not in UTF-8) is written as its escape."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    try:
        return text.encode()
    except UnicodeEncodeError:
        return json.dumps(value, separators=(",", ":")).encode()


def loads_or_none(body: bytes | str) -> Any:
    """Parsed JSON, or ``None`` for bytes that are not JSON (upstream error bodies)."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None


def as_int(value: Any) -> int | None:
    """``value`` when it is a JSON integer (``bool`` is not), else ``None``."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None
