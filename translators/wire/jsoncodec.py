"""The one JSON codec every translator uses: compact bytes out, tolerant parsing in.

One copy on purpose: private copies drift (one that could not encode a lone surrogate,
``"\\ud800"``, turned a client's bad string into a 500).
"""

from __future__ import annotations

import json
import threading
from typing import Any, Final


def dumps(value: Any) -> bytes:
    """Compact JSON as UTF-8 bytes. Non-ASCII text stays 1-4 bytes, not a 6-byte escape;
    a lone surrogate (valid in JSON text, not in UTF-8) is written as its escape."""
    try:  # inline: this runs for every chunk a translator writes
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    except RecursionError:
        text = _on_fresh_stack(value, ascii_only=False)
    try:
        return text.encode()
    except UnicodeEncodeError:
        return _compact(value, ascii_only=True).encode()


def _compact(value: Any, *, ascii_only: bool) -> str:
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=ascii_only)
    except RecursionError:
        return _on_fresh_stack(value, ascii_only=ascii_only)


def _on_fresh_stack(value: Any, *, ascii_only: bool) -> str:
    """``value`` nested deeper than this stack has room for, though the parser took it
    from higher up: written from a thread's fresh stack.
    See docs/reliability.md, "Hostile and odd requests"."""
    out: list[str] = []
    failed: list[BaseException] = []

    def write() -> None:
        try:
            out.append(json.dumps(value, separators=(",", ":"), ensure_ascii=ascii_only))
        except BaseException as exc:  # raised below, in the caller's thread
            failed.append(exc)

    thread = threading.Thread(target=write, name="aigateway-deep-json")
    thread.start()
    thread.join()
    if failed:
        raise failed[0] from None
    return out[0]


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if value - value != 0.0:  # inf - inf is nan; every finite float gives 0.0
        raise ValueError(f"the number {text[:40]} is too large for a double")
    return value


def _double_range_int(text: str) -> int:
    value = int(text)
    if len(text) > 308:  # shorter ones are below 1e308, within a double
        try:
            float(value)
        except OverflowError:
            raise ValueError(f"the number {text[:40]}... is too large for a double") from None
    return value


# Built once: json.loads with hooks would build a decoder per call. The float hook runs
# only for numbers with a fraction or exponent, the int hook for the others
# (benchmarks/NOTES.md, "Strict JSON").
_STRICT = json.JSONDecoder(
    parse_constant=_refuse_constant, parse_float=_finite_float, parse_int=_double_range_int
)


def loads_strict(body: bytes) -> Any:
    """JSON as RFC 8259 defines it, from UTF-8 bytes: ``NaN``, ``Infinity`` and numbers
    beyond a double's range, integers too, raise :class:`ValueError` (Python's json
    accepts them, and upstreams would get invalid JSON or refuse them). Raises
    :class:`UnicodeDecodeError` for bytes that are not UTF-8 and :class:`RecursionError`
    for nesting too deep."""
    return _STRICT.decode(body.decode())


class _NotJson:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NOT_JSON"


#: What :func:`parse` returns for text that is not JSON (``None`` is JSON's ``null``).
NOT_JSON: Final = _NotJson()


#: The decoder ``json.loads`` uses when given no options.
_PLAIN = json.JSONDecoder()


def parse(body: bytes | str) -> Any:
    """Parsed JSON, or :data:`NOT_JSON` for text that is not JSON (bad UTF-8 and nesting
    too deep for the parser included)."""
    try:
        if type(body) is bytes and body[:1] == b"{" and body[1:2] != b"\x00":
            # What json.loads reads as UTF-8 (no BOM, no NUL), without its encoding
            # detection: this runs for every streamed event (benchmarks/NOTES.md).
            return _PLAIN.decode(body.decode("utf-8", "surrogatepass"))
        return json.loads(body)
    except (ValueError, RecursionError):
        return NOT_JSON


def loads_or_none(body: bytes | str) -> Any:
    """Parsed JSON, or ``None`` for text that is not JSON (upstream error bodies)."""
    doc = parse(body)
    return None if doc is NOT_JSON else doc


def as_int(value: Any) -> int | None:
    """``value`` when it is a JSON integer (``bool`` is not), else ``None``."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None
