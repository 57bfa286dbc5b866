"""The one JSON codec: compact bytes out, one way to parse in."""

from __future__ import annotations

import json
from typing import Any

import pytest

from aigateway.translators.wire.jsoncodec import NOT_JSON, dumps, loads_or_none, loads_strict, parse


@pytest.mark.parametrize(
    "text", [b"", b"{", b"\xff\xfe", b"[" * 100_000, "nan?", b'{"a": 1} trailing']
)
def test_what_is_not_json_parses_to_not_json(text: bytes | str) -> None:
    assert parse(text) is NOT_JSON
    assert loads_or_none(text) is None


def test_null_is_json() -> None:
    assert parse(b"null") is None
    assert parse(b'{"a":[1,"\\u00e9"]}') == {"a": [1, "\u00e9"]}


@pytest.mark.parametrize(
    "body",
    [
        b'{"a":[1,2.5,"\\u00e9",null,true],"b":{"c":NaN}}',
        '{"a":"\u00e9"}'.encode(),
        b'{"a":"\xed\xa0\x80"}',  # a surrogate in UTF-8 bytes: json.loads lets it pass
        b'{"a":"\xff"}',
        b'{"a":' * 100_000,
        b'\xef\xbb\xbf{"a":1}',
        '{"a":1}'.encode("utf-16"),
        '{"a":1}'.encode("utf-16-le"),
        b"{\x00",
        b" {}",
    ],
)
def test_bytes_parse_as_json_loads_reads_them(body: bytes) -> None:
    """The object fast path (benchmarks/NOTES.md) reads exactly what json.loads does."""
    try:
        expected: Any = json.loads(body)
    except (ValueError, RecursionError):
        expected = NOT_JSON
    assert parse(body) == expected


def test_dumps_is_compact_utf8_and_survives_a_lone_surrogate() -> None:
    assert dumps({"a": [1, "\u00e9"]}) == '{"a":[1,"\u00e9"]}'.encode()
    assert dumps("\ud800") == b'"\\ud800"'


@pytest.mark.parametrize("number", ["2" + "0" * 308, "-" + "9" * 309, "1" + "0" * 4000])
def test_strict_loads_refuses_integers_beyond_a_double(number: str) -> None:
    with pytest.raises(ValueError, match="too large for a double"):
        loads_strict(f'{{"max_tokens": {number}}}'.encode())


def test_strict_loads_keeps_integers_a_double_holds_exactly_as_written() -> None:
    big = "9" * 308  # below 1e308
    assert loads_strict(f"[0, -7, {big}]".encode()) == [0, -7, int(big)]


def test_dumps_writes_what_the_parser_took_from_further_down_the_stack() -> None:
    doc: Any = None
    for depth in range(1000, 0, -10):  # the most the parser reads from here
        try:
            doc = loads_strict(b'{"a":' * depth + b"1" + b"}" * depth)
            break
        except RecursionError:
            continue

    def from_below(frames: int) -> bytes:
        return dumps(doc) if frames == 0 else from_below(frames - 1)

    assert loads_strict(from_below(200)) == doc
    assert dumps(["\ud800", doc]).startswith(b'["\\ud800",')  # the escaped retry too
