"""Micro-benchmarks (pytest-benchmark) of the gateway's hot paths. Not part of the test
suite: run them with ``make bench`` or ``.venv/bin/pytest benchmarks/micro``."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest

T = TypeVar("T")


def run_now(coro: Coroutine[Any, Any, T]) -> T:
    """Runs a coroutine that never suspends (a processor phase without I/O) with no
    event loop at all, so the loop's own cost stays out of the number."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coro.close()
    raise RuntimeError("the coroutine suspended; drive it with an event loop")


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """The event loop ``aigateway serve`` runs on: uvloop when installed."""
    try:
        import uvloop
    except ImportError:
        new_loop = asyncio.new_event_loop()
    else:
        new_loop = uvloop.new_event_loop()
    asyncio.set_event_loop(new_loop)
    yield new_loop
    new_loop.close()
    asyncio.set_event_loop(None)
