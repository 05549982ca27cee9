"""Opening the embedded database and applying each component's numbered migrations.

Every layer that stores data (the registrar's bindings in `sipstack`, the business data in
`crm`, ...) ships its schema as an ordered list of SQL scripts. The composition root owns the
one connection and applies each component's list in order, remembering per component how far
it got, so components evolve their schemas independently and a restart applies only what is new.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import aiosqlite

log = logging.getLogger(__name__)

# Milliseconds a writer waits for another writer's lock before SQLITE_BUSY; WAL lets readers go on.
BUSY_TIMEOUT_MS = 5000


async def open_database(path: Path | str) -> aiosqlite.Connection:
    """Open (creating if needed) the SQLite database in WAL mode with foreign keys enforced."""
    conn = await aiosqlite.connect(str(path), isolation_level=None)
    conn.row_factory = aiosqlite.Row
    await conn.execute("PRAGMA journal_mode=WAL")
    # NORMAL is durable across application crashes in WAL mode; only an OS crash may lose
    # the last transactions, never corrupt the file.
    await conn.execute("PRAGMA synchronous=NORMAL")
    await conn.execute("PRAGMA foreign_keys=ON")
    await conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    return conn


async def apply_migrations(conn: aiosqlite.Connection, component: str, migrations: Sequence[str]) -> int:
    """Apply the migrations of `component` that have not run yet; return the schema version reached.

    Each migration runs in its own transaction together with the bump of the version, so a crash
    midway leaves the schema at a well-defined version.
    """
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
    )
    async with conn.execute(
        "SELECT version FROM schema_migrations WHERE component = ?", (component,)
    ) as cur:
        row = await cur.fetchone()
    current = row[0] if row else 0
    for version, script in enumerate(migrations, start=1):
        if version <= current:
            continue
        log.info("applying migration %s #%d", component, version)
        await conn.execute("BEGIN")
        try:
            for statement in _split_statements(script):
                await conn.execute(statement)
            await conn.execute(
                "INSERT INTO schema_migrations (component, version) VALUES (?, ?)"
                " ON CONFLICT (component) DO UPDATE SET version = excluded.version",
                (component, version),
            )
            await conn.execute("COMMIT")
        except BaseException:
            await conn.execute("ROLLBACK")
            raise
        current = version
    return current


async def apply_all(conn: aiosqlite.Connection, schemas: Mapping[str, Sequence[str]]) -> None:
    for component, migrations in schemas.items():
        await apply_migrations(conn, component, migrations)


def _split_statements(script: str) -> list[str]:
    """Split a migration script into statements with sqlite3's own completeness check,
    so semicolons inside strings or trigger bodies do not cut a statement in two."""
    import sqlite3

    statements: list[str] = []
    buf = ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                statements.append(buf.strip())
            buf = ""
    if buf.strip():
        statements.append(buf.strip())
    return statements
