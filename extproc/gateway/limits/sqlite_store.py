"""The ``memory`` store: budgets in one SQLite file that every ``serve --workers``
process of a machine opens (docs/limits.md says why
SQLite). Each reservation and each settlement is one ``BEGIN IMMEDIATE`` transaction,
run in the store's own thread: another process may hold the lock for a moment, and
SQLite's busy wait sleeps, which the event loop must never do.
"""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from aigateway.extproc.gateway.limits.store import Charge, Decision, Quota, StoreUnavailable

#: The environment variable that names the store file a ``serve --workers`` parent made.
STORE_FILE_ENV = "AIGATEWAY_LIMITS_FILE"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    bucket TEXT NOT NULL, entry INTEGER NOT NULL, t REAL NOT NULL, amount INTEGER NOT NULL,
    PRIMARY KEY (bucket, entry)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS entries_by_time ON entries (bucket, t);
CREATE TABLE IF NOT EXISTS totals (
    bucket TEXT PRIMARY KEY, total INTEGER NOT NULL, expires REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS totals_by_expiry ON totals (expires);
CREATE TABLE IF NOT EXISTS sequence (n INTEGER NOT NULL);
INSERT INTO sequence SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM sequence);
"""

T = TypeVar("T")


def _connect(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=10.0, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    # Budgets live as long as the gateway: a crash loses them with the processes anyway.
    db.execute("PRAGMA synchronous=OFF")
    return db


def create_store_file(path: str) -> None:
    """Create the store file with its tables (the ``serve --workers`` parent does, once,
    before it starts the workers)."""
    db = _connect(path)
    try:
        db.executescript(_SCHEMA)
    finally:
        db.close()


class SqliteStore:
    """A :class:`~aigateway.extproc.gateway.limits.store.LimitStore` in the SQLite file
    ``path`` (``None``: a file of its own, removed at :meth:`close`)."""

    def __init__(self, path: str | None = None, *, clock: Callable[[], float] = time.time) -> None:
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.path = path  # None: made on first use
        self.clock = clock
        self._db: sqlite3.Connection | None = None
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="aigateway-limits")

    async def reserve(self, charges: Sequence[Charge]) -> Decision:
        return await self._run(lambda db: self._reserve(db, charges))

    async def settle(self, entry: int, charges: Sequence[Charge], amounts: Sequence[int]) -> None:
        await self._run(lambda db: self._settle(db, entry, charges, amounts))

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._thread, self._close)
        self._thread.shutdown()
        if self._tmp is not None:
            self._tmp.cleanup()

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(
            self._thread, self._transaction, work
        )

    def _transaction(self, work: Callable[[sqlite3.Connection], T]) -> T:
        try:
            db = self._db
            if db is None:
                if self.path is None:
                    self._tmp = tempfile.TemporaryDirectory(prefix="aigateway-limits-")
                    self.path = str(Path(self._tmp.name) / "limits.sqlite3")
                    create_store_file(self.path)
                db = self._db = _connect(self.path)
            db.execute("BEGIN IMMEDIATE")
            try:
                out = work(db)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            return out
        except sqlite3.Error as exc:
            self._close()
            raise StoreUnavailable(f"SQLite store {self.path}: {exc}") from None

    def _reserve(self, db: sqlite3.Connection, charges: Sequence[Charge]) -> Decision:
        now = self.clock()
        _sweep(db, now)
        used: list[int] = []
        refused: int | None = None
        for i, charge in enumerate(charges):
            total = _trim(db, charge.bucket, now - charge.window)
            used.append(total)
            if refused is None and total + charge.amount > charge.limit:
                refused = i
        if refused is not None:
            quotas = []
            for i, charge in enumerate(charges):
                retry = _retry_after(db, charge, used[i], now) if i == refused else 0.0
                quotas.append(Quota(used[i], _reset(db, charge, now), retry))
            return Decision(refused, tuple(quotas))
        (entry,) = db.execute("UPDATE sequence SET n = n + 1 RETURNING n").fetchone()
        quotas = []
        for i, charge in enumerate(charges):
            db.execute(
                "INSERT INTO entries VALUES (?, ?, ?, ?)",
                (charge.bucket, entry, now, charge.amount),
            )
            db.execute(
                "INSERT INTO totals VALUES (?, ?, ?) ON CONFLICT (bucket)"
                " DO UPDATE SET total = total + excluded.total, expires = excluded.expires",
                (charge.bucket, charge.amount, now + charge.window),
            )
            quotas.append(Quota(used[i] + charge.amount, _reset(db, charge, now)))
        return Decision(None, tuple(quotas), entry)

    def _settle(
        self,
        db: sqlite3.Connection,
        entry: int,
        charges: Sequence[Charge],
        amounts: Sequence[int],
    ) -> None:
        for charge, amount in zip(charges, amounts, strict=True):
            row = db.execute(
                "SELECT amount FROM entries WHERE bucket = ? AND entry = ?", (charge.bucket, entry)
            ).fetchone()
            if row is None or row[0] == amount:
                continue
            db.execute(
                "UPDATE entries SET amount = ? WHERE bucket = ? AND entry = ?",
                (amount, charge.bucket, entry),
            )
            db.execute(
                "UPDATE totals SET total = total + ? WHERE bucket = ?",
                (amount - row[0], charge.bucket),
            )


def _sweep(db: sqlite3.Connection, now: float) -> None:
    """Drop up to two budgets whose every entry has left the window, so that budget
    keys clients make up do not pile up."""
    for (bucket,) in db.execute(
        "SELECT bucket FROM totals WHERE expires <= ? LIMIT 2", (now,)
    ).fetchall():
        db.execute("DELETE FROM entries WHERE bucket = ?", (bucket,))
        db.execute("DELETE FROM totals WHERE bucket = ?", (bucket,))


def _trim(db: sqlite3.Connection, bucket: str, cut: float) -> int:
    """Drop ``bucket``'s entries at or before ``cut``; what is left in it."""
    freed, count = db.execute(
        "SELECT coalesce(sum(amount), 0), count(*) FROM entries WHERE bucket = ? AND t <= ?",
        (bucket, cut),
    ).fetchone()
    if count:
        db.execute("DELETE FROM entries WHERE bucket = ? AND t <= ?", (bucket, cut))
        db.execute("UPDATE totals SET total = total - ? WHERE bucket = ?", (freed, bucket))
    row = db.execute("SELECT total FROM totals WHERE bucket = ?", (bucket,)).fetchone()
    return 0 if row is None else int(row[0])


def _reset(db: sqlite3.Connection, charge: Charge, now: float) -> float:
    query = "SELECT min(t) FROM entries WHERE bucket = ?"
    (oldest,) = db.execute(query, (charge.bucket,)).fetchone()
    return 0.0 if oldest is None else max(oldest + charge.window - now, 0.0)


def _retry_after(db: sqlite3.Connection, charge: Charge, used: int, now: float) -> float:
    """Seconds until enough of the oldest entries leave the window for ``charge``."""
    if charge.amount > charge.limit:
        return charge.window
    need = used + charge.amount - charge.limit
    freed = 0
    for t, amount in db.execute(
        "SELECT t, amount FROM entries WHERE bucket = ? ORDER BY t", (charge.bucket,)
    ):
        freed += amount
        if freed >= need:
            return max(float(t) + charge.window - now, 0.0)
    return charge.window
