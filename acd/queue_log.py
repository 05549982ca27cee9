"""The queue log in the database: every ACD event with its exact time, Asterisk's queue_log
layout (time, call, queue, agent, event, data), for reports and audits of who did what."""

from __future__ import annotations

import aiosqlite

from acd.distributor import QueueLogEntry
from acd.write_behind import WriteBehind

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
        self._rows = WriteBehind(
            conn, "INSERT INTO queue_log (at, call_id, queue, agent, event, data) VALUES (?, ?, ?, ?, ?, ?)",
            "queue log entries")

    def append(self, entry: QueueLogEntry) -> None:
        self._rows.add((entry.at, entry.call_id, entry.queue_id, entry.agent_id, entry.event, "|".join(entry.data)))

    async def close(self) -> None:
        await self._rows.close()
