"""The CRM's handle on the one shared database connection.

All components share one aiosqlite connection in autocommit mode. SQLite has one transaction per
connection, so two asyncio tasks that both ran BEGIN ... COMMIT on it would interleave their
statements inside one transaction: one task's ROLLBACK would undo the other's writes, and a
read-modify-write would lose updates. `Database` therefore serialises transactions with an
asyncio.Lock; reads outside a transaction take the lock too, so they never see another task's
uncommitted (possibly rolled back) writes.

Inside `async with db.transaction() as tx:` the same task may call `db.fetch_*` or open a nested
transaction (a SAVEPOINT): the current transaction is found through a context variable and the
owning task, so a service that calls another service's helper does not deadlock on the lock.

Rows come back as plain dicts, so callers do not depend on the driver's row type (a PostgreSQL
backend can return the same). Placeholders are `?`.
"""

from __future__ import annotations

import asyncio
import contextvars
import sqlite3
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import aiosqlite

Row = dict[str, Any]
Params = Sequence[Any]

IntegrityError = sqlite3.IntegrityError


class Transaction:
    """Statements of one open transaction. Obtained from `Database.transaction()` only."""

    def __init__(
        self, conn: aiosqlite.Connection, task: asyncio.Task[Any] | None, *, read_only: bool = False
    ) -> None:
        self._conn = conn
        self._task = task
        self.read_only = read_only
        self._savepoints = 0
        self.closed = False

    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement; return the number of rows it changed."""
        self._check_writable()
        async with self._conn.execute(sql, tuple(params)) as cur:
            return cur.rowcount

    async def execute_many(self, sql: str, rows: Iterable[Params]) -> None:
        self._check_writable()
        await self._conn.executemany(sql, [tuple(r) for r in rows])

    async def fetch_all(self, sql: str, params: Params = ()) -> list[Row]:
        self._check_open()
        # One trip to aiosqlite's thread (execute + fetchall + close would be three): on the call
        # path a caller-ID look-up is two queries, and each trip is a thread hand-off.
        rows = await self._conn.execute_fetchall(sql, tuple(params))
        return [dict(zip(r.keys(), tuple(r), strict=True)) for r in rows]

    async def fetch_one(self, sql: str, params: Params = ()) -> Row | None:
        """The first row, or None; callers select by key or with LIMIT 1."""
        rows = await self.fetch_all(sql, params)
        return rows[0] if rows else None

    async def fetch_value(self, sql: str, params: Params = ()) -> Any:
        """The first column of the first row, or None when there is no row."""
        self._check_open()
        rows = await self._conn.execute_fetchall(sql, tuple(params))
        return None if not rows else rows[0][0]

    async def insert(self, sql: str, params: Params = ()) -> int:
        """Run an INSERT written with `RETURNING id` (SQLite ≥ 3.35 and PostgreSQL) and return the id."""
        self._check_writable()
        value = await self.fetch_value(sql, params)
        if value is None:
            raise RuntimeError(f"INSERT returned no id: {sql}")
        return int(value)

    def _check_open(self) -> None:
        if self.closed:
            raise RuntimeError("transaction already finished")

    def _check_writable(self) -> None:
        self._check_open()
        if self.read_only:
            raise RuntimeError("write attempted inside db.reading()")


_current: contextvars.ContextVar[Transaction | None] = contextvars.ContextVar("crm_transaction", default=None)


class Database:
    """Wraps the shared aiosqlite connection; see the module docstring for the locking rules."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self.conn = conn
        # Rows that know their column names: fetches take one thread trip (see Transaction.fetch_all).
        conn.row_factory = sqlite3.Row
        self._lock = asyncio.Lock()

    def _active(self) -> Transaction | None:
        tx = _current.get()
        if tx is not None and not tx.closed and tx._conn is self.conn and tx._task is asyncio.current_task():
            return tx
        return None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK if the block raises (cancellation included).

        IMMEDIATE takes SQLite's write lock at once, so another process writing the same file makes
        us wait (busy_timeout) at BEGIN rather than fail halfway through. Nested use in the same
        task opens a SAVEPOINT that rolls back alone.
        """
        outer = self._active()
        if outer is not None:
            if outer.read_only:
                raise RuntimeError("cannot open a transaction inside db.reading()")
            async with self._savepoint(outer):
                yield outer
            return
        async with self._lock:
            tx = Transaction(self.conn, asyncio.current_task())
            await self.conn.execute("BEGIN IMMEDIATE")
            token = _current.set(tx)
            try:
                yield tx
            except BaseException:
                tx.closed = True
                if self.conn.in_transaction:
                    await self.conn.execute("ROLLBACK")
                raise
            else:
                tx.closed = True
                try:
                    await self.conn.execute("COMMIT")
                except BaseException:
                    # A failed COMMIT leaves the transaction open; never hand it to the next task.
                    if self.conn.in_transaction:
                        await self.conn.execute("ROLLBACK")
                    raise
            finally:
                tx.closed = True
                _current.reset(token)

    @asynccontextmanager
    async def _savepoint(self, tx: Transaction) -> AsyncIterator[None]:
        tx._savepoints += 1
        name = f"sp{tx._savepoints}"
        await self.conn.execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            await self.conn.execute(f"ROLLBACK TO SAVEPOINT {name}")
            await self.conn.execute(f"RELEASE SAVEPOINT {name}")
            raise
        else:
            await self.conn.execute(f"RELEASE SAVEPOINT {name}")

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[Transaction]:
        """Several reads that must see one state: no other task's transaction runs in between.

        Statements run in autocommit mode; writing inside this block is a programming error.
        """
        active = self._active()
        if active is not None:
            yield active
            return
        async with self._lock:
            reader = Transaction(self.conn, asyncio.current_task(), read_only=True)
            token = _current.set(reader)
            try:
                yield reader
            finally:
                reader.closed = True
                _current.reset(token)

    async def fetch_all(self, sql: str, params: Params = ()) -> list[Row]:
        async with self.reading() as r:
            return await r.fetch_all(sql, params)

    async def fetch_one(self, sql: str, params: Params = ()) -> Row | None:
        async with self.reading() as r:
            return await r.fetch_one(sql, params)

    async def fetch_value(self, sql: str, params: Params = ()) -> Any:
        async with self.reading() as r:
            return await r.fetch_value(sql, params)

    async def execute(self, sql: str, params: Params = ()) -> int:
        """One statement in its own transaction; return the number of rows changed."""
        async with self.transaction() as tx:
            return await tx.execute(sql, params)
