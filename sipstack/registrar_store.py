"""Persistence of registrar bindings in SQLite, so a restart keeps every phone reachable.

Writes are batched: the registrar answers from memory at once and a flusher writes what changed
every `FLUSH_INTERVAL` in one transaction. A crash can lose at most that interval of refreshes,
which the phones repeat on their next refresh anyway; in exchange a burst of thousands of
REGISTERs per second costs a handful of transactions, not one fsync each.
"""

from __future__ import annotations

import asyncio
import logging

import aiosqlite

from sipstack.addressing import Address, Transport
from sipstack.registrar import Binding

log = logging.getLogger(__name__)

FLUSH_INTERVAL = 0.2

MIGRATIONS: list[str] = [
    """
    CREATE TABLE sip_bindings (
        aor         TEXT NOT NULL,
        contact_uri TEXT NOT NULL,
        contact     TEXT NOT NULL,
        expires_at  REAL NOT NULL,
        call_id     TEXT NOT NULL,
        cseq        INTEGER NOT NULL,
        transport   TEXT NOT NULL,
        source_host TEXT NOT NULL,
        source_port INTEGER NOT NULL,
        instance    TEXT,
        reg_id      TEXT,
        user_agent  TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (aor, contact_uri)
    );
    CREATE INDEX sip_bindings_expires ON sip_bindings (expires_at);
    """,
    # 2: whether a NAT sits between the phone and us (requests then go to its packets' source).
    """
    ALTER TABLE sip_bindings ADD COLUMN nat INTEGER NOT NULL DEFAULT 0;
    """,
]


class BindingStore:
    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn
        self._pending: dict[tuple[str, str], Binding | None] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def load(self, now: float) -> list[Binding]:
        """Bindings still alive at `now`; expired rows are deleted on the way."""
        await self._conn.execute("DELETE FROM sip_bindings WHERE expires_at <= ?", (now,))
        async with self._conn.execute(
            "SELECT aor, contact, contact_uri, expires_at, call_id, cseq, transport, source_host,"
            " source_port, instance, reg_id, user_agent, nat FROM sip_bindings"
        ) as cur:
            rows = await cur.fetchall()
        # Connection ids do not survive a restart: such bindings fall back to the source address.
        return [
            Binding(aor=r[0], contact=r[1], contact_uri=r[2], expires_at=r[3], call_id=r[4], cseq=r[5],
                    source=Address(Transport(r[6]), r[7], r[8]), instance=r[9], reg_id=r[10],
                    user_agent=r[11], nat=bool(r[12]))
            for r in rows
        ]

    def save(self, upserted: list[Binding], removed: list[Binding]) -> None:
        for b in removed:
            self._pending[(b.aor, b.contact_uri)] = None
        for b in upserted:
            self._pending[(b.aor, b.contact_uri)] = b
        if self._pending:
            self._wake.set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._flusher(), name="binding-store")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        await self.flush()

    async def flush(self) -> None:
        if not self._pending:
            return
        pending, self._pending = self._pending, {}
        deletes = [key for key, b in pending.items() if b is None]
        upserts = [b for b in pending.values() if b is not None]
        await self._conn.execute("BEGIN")
        try:
            await self._conn.executemany("DELETE FROM sip_bindings WHERE aor = ? AND contact_uri = ?", deletes)
            await self._conn.executemany(
                "INSERT INTO sip_bindings (aor, contact_uri, contact, expires_at, call_id, cseq, transport,"
                " source_host, source_port, instance, reg_id, user_agent, nat)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (aor, contact_uri) DO UPDATE SET contact = excluded.contact,"
                " expires_at = excluded.expires_at, call_id = excluded.call_id, cseq = excluded.cseq,"
                " transport = excluded.transport, source_host = excluded.source_host,"
                " source_port = excluded.source_port, instance = excluded.instance,"
                " reg_id = excluded.reg_id, user_agent = excluded.user_agent, nat = excluded.nat",
                [(b.aor, b.contact_uri, b.contact, b.expires_at, b.call_id, b.cseq, b.source.transport.value,
                  b.source.host, b.source.port, b.instance, b.reg_id, b.user_agent, int(b.nat))
                 for b in upserts],
            )
            await self._conn.execute("COMMIT")
        except BaseException:
            await self._conn.execute("ROLLBACK")
            # Keep what failed so the next flush retries it, unless newer changes replaced it.
            for key, b in pending.items():
                self._pending.setdefault(key, b)
            raise

    async def _flusher(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(FLUSH_INTERVAL)
            try:
                await self.flush()
            except Exception:
                log.exception("could not persist registrar bindings; will retry")
