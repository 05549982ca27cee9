"""Rows written behind, in order, one statement per burst: the queue log and the callbacks
table take many small writes in bursts (an ACD decision logs several entries at once), and the
call layer must never wait on the database for them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import aiosqlite

log = logging.getLogger(__name__)


class WriteBehind:
    """Queues parameter rows for one `sql` statement and writes them with `executemany` from a
    task: everything queued while a write runs goes in the next one. A failed write is logged
    (the rows are lost, not retried: the caller's call goes on either way)."""

    def __init__(self, conn: aiosqlite.Connection, sql: str, what: str) -> None:
        self._conn = conn
        self._sql = sql
        self._what = what
        self._pending: list[Sequence[object]] = []
        self._task: asyncio.Task[None] | None = None

    def add(self, row: Sequence[object]) -> None:
        self._pending.append(row)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        await asyncio.sleep(0)  # let the rest of this burst arrive
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                await self._conn.executemany(self._sql, batch)
            except Exception:
                log.exception("could not write %d %s", len(batch), self._what)

    async def close(self) -> None:
        """Wait for what is still to be written."""
        if self._task is not None:
            await self._task
