"""What a budget store does (docs/limits.md): keep, per
bucket, a log of (time, amount) entries over a sliding window, reserve amounts in
several buckets at once (all or none), and replace a reservation by what was used.

Amounts are integers (tokens, requests, or nanodollars), so running totals never
drift. A store raises :class:`StoreUnavailable` when it cannot be reached.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


class StoreUnavailable(Exception):
    """The store cannot be reached (or answered nonsense); the message says why."""


@dataclass(slots=True, frozen=True)
class Charge:
    """``amount`` to reserve in ``bucket``, which may hold at most ``limit`` in any
    ``window`` seconds."""

    bucket: str
    limit: int
    window: float
    amount: int


@dataclass(slots=True, frozen=True)
class Quota:
    """One bucket after a decision: ``used`` in the window (with the reservation when
    admitted); ``reset``: seconds until the oldest entry leaves the window (0 when
    empty); ``retry_after``: for the bucket that refused, seconds until the amount
    would fit (the whole window when it never can), else 0."""

    used: int
    reset: float
    retry_after: float = 0.0


@dataclass(slots=True, frozen=True)
class Decision:
    """The answer to a reservation: ``refused`` is the index of the first charge that
    did not fit (``None``: all were reserved, as entry ``entry``); one quota per charge."""

    refused: int | None
    quotas: tuple[Quota, ...]
    entry: int = 0


class LimitStore(Protocol):
    """Where budgets live; every method is atomic and safe to call concurrently from
    every process that shares the store."""

    async def reserve(self, charges: Sequence[Charge]) -> Decision:
        """Reserve every charge as one entry, or none of them."""
        ...

    async def settle(self, entry: int, charges: Sequence[Charge], amounts: Sequence[int]) -> None:
        """Replace the amounts entry ``entry`` reserved for ``charges`` by ``amounts``
        (an entry already out of its window is left alone)."""
        ...

    async def close(self) -> None: ...
