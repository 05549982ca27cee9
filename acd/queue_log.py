"""The queue log in the database: every ACD event with its exact time, Asterisk's queue_log
layout (time, call, queue, agent, event, data), for reports and audits of who did what."""

from __future__ import annotations

import asyncio
import logging

import aiosqlite

from acd.distributor import QueueLogEntry

log = logging.getLogger(__name__)

MIGRATIONS_QUEUE_LOG = """
CREATE TABLE queue_log (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    at       REAL NOT NULL,
    call_id  TEXT NOT NULL,
    queue    TEXT NOT NULL,
    agent    TEXT NOT NULL,
    event    TEXT NOT NULL,
    data     TEXT NOT NULL DEFAULT ''
);
CREATE INDEX queue_log_at ON queue_log (at);
CREATE INDEX queue_log_call ON queue_log (call_id);
"""


class QueueLogWriter:
    """Appends entries in order; writes are batched so a burst of events costs one statement."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn
        self._pending: list[QueueLogEntry] = []
        self._task: asyncio.Task[None] | None = None

    def append(self, entry: QueueLogEntry) -> None:
        self._pending.append(entry)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        await asyncio.sleep(0)  # let the rest of this burst arrive
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                await self._conn.executemany(
                    "INSERT INTO queue_log (at, call_id, queue, agent, event, data) VALUES (?, ?, ?, ?, ?, ?)",
                    [(e.at, e.call_id, e.queue_id, e.agent_id, e.event, "|".join(e.data)) for e in batch])
            except Exception:
                log.exception("could not write %d queue log entries", len(batch))

    async def close(self) -> None:
        if self._task is not None:
            await self._task
