"""The ``memory`` store of a single ``serve`` process: budgets in this process's
memory, each call done in one go on the event loop (it never awaits, so nothing else
runs in between: atomic), in microseconds. ``serve --workers N`` shares one
``SqliteStore`` file instead (docs/limits.md)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from aigateway.extproc.gateway.limits.store import Charge, Decision, Quota


@dataclass(slots=True)
class _Entry:
    t: float
    entry: int
    amount: int
    live: bool = True


@dataclass(slots=True)
class _Bucket:
    window: float
    log: deque[_Entry] = field(default_factory=deque)
    total: int = 0

    def trim(self, cut: float, entries: dict[int, list[tuple[_Bucket, _Entry]]]) -> None:
        log = self.log
        while log and log[0].t <= cut:
            old = log.popleft()
            old.live = False
            self.total -= old.amount
            entries.pop(old.entry, None)  # settling it later changes nothing

    def reset(self, window: float, now: float) -> float:
        return max(self.log[0].t + window - now, 0.0) if self.log else 0.0

    def retry_after(self, charge: Charge, now: float) -> float:
        if charge.amount > charge.limit:
            return charge.window
        need, freed = self.total + charge.amount - charge.limit, 0
        for old in self.log:
            freed += old.amount
            if freed >= need:
                return max(old.t + charge.window - now, 0.0)
        return charge.window


class LocalStore:
    """A :class:`~aigateway.extproc.gateway.limits.store.LimitStore` in this process."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        #: Least recently used first: idle budgets are dropped from the front.
        self._buckets: dict[str, _Bucket] = {}
        self._entries: dict[int, list[tuple[_Bucket, _Entry]]] = {}
        self._sequence = 0

    async def reserve(self, charges: Sequence[Charge]) -> Decision:
        now = self.clock()
        buckets = []
        refused: int | None = None
        self._sweep(now)
        for i, charge in enumerate(charges):
            bucket = self._buckets.pop(charge.bucket, None)
            if bucket is None:
                bucket = _Bucket(charge.window)
            self._buckets[charge.bucket] = bucket  # now the most recently used
            bucket.trim(now - charge.window, self._entries)
            buckets.append(bucket)
            if refused is None and bucket.total + charge.amount > charge.limit:
                refused = i
        if refused is not None:
            return Decision(
                refused,
                tuple(
                    Quota(
                        b.total,
                        b.reset(c.window, now),
                        b.retry_after(c, now) if i == refused else 0.0,
                    )
                    for i, (b, c) in enumerate(zip(buckets, charges, strict=True))
                ),
            )
        self._sequence += 1
        entry = self._sequence
        records = []
        for bucket, charge in zip(buckets, charges, strict=True):
            record = _Entry(now, entry, charge.amount)
            bucket.log.append(record)
            bucket.total += charge.amount
            records.append((bucket, record))
        self._entries[entry] = records
        return Decision(
            None,
            tuple(
                Quota(b.total, b.reset(c.window, now))
                for b, c in zip(buckets, charges, strict=True)
            ),
            entry,
        )

    def _sweep(self, now: float) -> None:
        """Drop up to two budgets whose every entry has left the window, least recently
        used first, so that budget keys clients make up do not pile up."""
        for _ in range(2):
            key = next(iter(self._buckets), None)
            if key is None:
                return
            bucket = self._buckets[key]
            if bucket.log and bucket.log[-1].t > now - bucket.window:
                return
            del self._buckets[key]
            for old in bucket.log:
                self._entries.pop(old.entry, None)

    def __len__(self) -> int:
        """How many budgets the store holds."""
        return len(self._buckets)

    async def settle(self, entry: int, charges: Sequence[Charge], amounts: Sequence[int]) -> None:
        records = self._entries.pop(entry, None)
        if records is None:
            return
        for (bucket, record), amount in zip(records, amounts, strict=True):
            if record.live:
                bucket.total += amount - record.amount
                record.amount = amount

    async def close(self) -> None:
        self._buckets.clear()
        self._entries.clear()
