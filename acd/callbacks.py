"""Queued callbacks in the database, so a restart never loses a caller who was promised a call.

The ACD (acd.distributor) decides; this module only keeps its `CallbackChanged` events, in
order, one row per callback (upserted by the call's id), and reads the pending ones back at
start. Writes are batched like the queue log's: a burst of changes costs one statement.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import aiosqlite

from acd.distributor import CallbackChanged
from acd.queues import CallbackStatus, QueuedCall
from acd.write_behind import WriteBehind

MIGRATIONS_CALLBACKS = """
CREATE TABLE queue_callbacks (
    call_id      TEXT PRIMARY KEY,
    queue        TEXT NOT NULL,
    number       TEXT NOT NULL,
    status       TEXT NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    not_before   REAL NOT NULL DEFAULT 0,
    entered_at   REAL NOT NULL,
    priority     INTEGER NOT NULL DEFAULT 0,
    requested_at REAL NOT NULL,
    updated_at   REAL NOT NULL
);
CREATE INDEX queue_callbacks_status ON queue_callbacks (status, queue);
"""

# Portable upsert (SQLite 3.24+, PostgreSQL 9.5+): the first change books the row, later ones
# move it on; the time it was requested stays.
_UPSERT = (
    "INSERT INTO queue_callbacks (call_id, queue, number, status, attempts, not_before, entered_at, priority,"
    " requested_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (call_id) DO UPDATE SET queue = excluded.queue, number = excluded.number,"
    " status = excluded.status, attempts = excluded.attempts, not_before = excluded.not_before,"
    " updated_at = excluded.updated_at"
)


@dataclass(frozen=True)
class CallbackRow:
    call_id: str
    queue: str
    number: str
    status: CallbackStatus
    attempts: int
    not_before: float
    entered_at: float
    priority: int
    requested_at: float
    updated_at: float


class CallbackStore:
    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn
        self._rows = WriteBehind(conn, _UPSERT, "callback changes")

    def save(self, change: CallbackChanged) -> None:
        """Keep a change; written behind, in the order given."""
        at = time.time()
        self._rows.add((change.call_id, change.queue_id, change.number, change.status.value, change.attempts,
                        change.not_before, change.entered_at, change.priority, at, at))

    async def close(self) -> None:
        """Wait for what is still to be written."""
        await self._rows.close()

    async def rows(self, status: CallbackStatus | None = None) -> list[CallbackRow]:
        """Every callback (or those with `status`), oldest request first."""
        sql = ("SELECT call_id, queue, number, status, attempts, not_before, entered_at, priority, requested_at,"
               " updated_at FROM queue_callbacks")
        args: tuple[str, ...] = ()
        if status is not None:
            sql += " WHERE status = ?"
            args = (status.value,)
        async with self._conn.execute(sql + " ORDER BY requested_at, call_id", args) as cur:
            return [CallbackRow(r[0], r[1], r[2], CallbackStatus(r[3]), int(r[4]), float(r[5]), float(r[6]),
                                int(r[7]), float(r[8]), float(r[9])) for r in await cur.fetchall()]

    async def pending(self) -> list[QueuedCall]:
        """The callbacks still to make, as ACD entries with their place and tries."""
        return [QueuedCall(r.call_id, r.queue, r.entered_at, caller=r.number, priority=r.priority,
                           callback=r.number, attempts=r.attempts, not_before=r.not_before)
                for r in await self.rows(CallbackStatus.PENDING)]
