"""数据恢复: restoring an uploaded backup, safely.

A live database is never overwritten under the running server: the SIP registrar, the ACD and
the sessions hold state read from it, and another connection may be mid-transaction. Restore
is therefore staged and applied at the next start:

1. `stage` checks the uploaded file: it must be an SQLite database (the 16-byte header), pass
   `PRAGMA integrity_check` and `foreign_key_check` (`crm.backup.check_file`), carry this
   product's `schema_migrations` with a `crm` component, and no component newer than the
   running release knows (an older one is brought up to date by the migrations at start).
   It is then copied with the online backup API to `<database>.restore`, replacing any earlier
   staged file, and audited.
2. `apply_pending_restore(db_path)`, called by the composition root before it opens the
   database, checks the staged file again and swaps it in: the current database (with its -wal
   and -shm, as one set, since nothing has it open) is kept as `<database>.before-restore-<time>`
   and the staged file renamed into place (a rename is atomic), so a restore can itself be undone.

Everyone is signed out by a restore: sessions live in the same database.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from crm import access, audit
from crm.access import Actor
from crm.backup import BackupService, check_file
from crm.clock import Clock
from crm.db import Database
from crm.errors import NotFound, ValidationError

#: Every SQLite 3 database file begins with these 16 bytes (sqlite.org/fileformat.html §1.3).
SQLITE_HEADER = b"SQLite format 3\x00"
PENDING_SUFFIX = ".restore"
KEPT_SUFFIX = ".before-restore-"


@dataclass(frozen=True)
class StagedRestore:
    path: str
    bytes: int
    schema_versions: dict[str, int]
    staged_at: float


def pending_path(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + PENDING_SUFFIX)


def check_upload(path: Path, known: Mapping[str, int]) -> dict[str, int]:
    """The schema versions of a valid callcenter database at `path`, else ValidationError
    (blocking: run it in a thread)."""
    with path.open("rb") as f:
        if f.read(len(SQLITE_HEADER)) != SQLITE_HEADER:
            raise ValidationError("backup", "the file is not an SQLite database", code="restore.not_sqlite")
    report = check_file(path)
    if not report.ok:
        if any("schema_migrations" in p for p in report.problems):
            raise ValidationError("backup", "an SQLite database, but not a callcenter one", code="restore.not_callcenter")
        raise ValidationError("backup", f"the database is damaged: {'; '.join(report.problems[:3])}",
                              code="restore.corrupt")  # fmt: skip
    versions = report.schema_versions
    if "crm" not in versions:
        raise ValidationError("backup", "an SQLite database, but not a callcenter one", code="restore.not_callcenter")
    newer = [f"{c} {v} > {known.get(c, 0)}" for c, v in versions.items() if v > known.get(c, 0)]
    if newer:
        raise ValidationError("backup", f"made by a newer release ({', '.join(newer)})", code="restore.newer_schema")
    return versions


class RestoreService:
    def __init__(self, db: Database, backup: BackupService, clock: Clock | None = None) -> None:
        self.db = db
        self.backup = backup
        self.clock = clock or Clock()

    async def schema_versions(self) -> dict[str, int]:
        rows = await self.db.fetch_all("SELECT component, version FROM schema_migrations")
        return {r["component"]: r["version"] for r in rows}

    async def stage(self, actor: Actor, upload: Path) -> StagedRestore:
        """Check `upload` and stage it as the database of the next start (see the module docstring)."""
        actor.require(access.BACKUP_RUN)
        versions = await asyncio.to_thread(check_upload, upload, await self.schema_versions())
        target = pending_path(await self.backup.database_path())
        target.unlink(missing_ok=True)  # a newer upload replaces an earlier staged one
        info = await self.backup.restore(actor, upload, target)
        return StagedRestore(info.path, info.bytes, versions, target.stat().st_mtime)

    async def pending(self, actor: Actor) -> StagedRestore | None:
        actor.require(access.BACKUP_RUN)
        target = pending_path(await self.backup.database_path())
        if not target.is_file():
            return None
        report = await asyncio.to_thread(check_file, target)
        return StagedRestore(str(target), target.stat().st_size, report.schema_versions, target.stat().st_mtime)

    async def cancel(self, actor: Actor) -> None:
        actor.require(access.BACKUP_RUN)
        target = pending_path(await self.backup.database_path())
        if not target.is_file():
            raise NotFound("no restore is staged", code="restore.none_pending")
        target.unlink()
        async with self.db.transaction() as tx:
            await audit.record(tx, self.clock, actor, "backup", None, "restore_cancel", after={"path": str(target)})


#: Sign-in sessions stored in the database: a restored copy would bring back sessions that were
#: alive when the backup was made, so they are emptied (see the module docstring).
SESSION_TABLES = ("web_sessions",)


def _sign_everyone_out(db_path: Path) -> None:
    conn = sqlite3.connect(db_path)
    try:
        present = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        for table in SESSION_TABLES:
            if table in present:
                conn.execute(f"DELETE FROM {table}")
        conn.commit()
    finally:
        conn.close()


def apply_pending_restore(db_path: Path) -> Path | None:
    """Swap a staged restore in before the database is opened; return where the previous
    database was kept (None when nothing was staged). A staged file that no longer passes its
    check is set aside as `<name>.rejected` and the current database is kept."""
    staged = pending_path(db_path)
    if not staged.is_file():
        return None
    report = check_file(staged)
    if not report.ok or "crm" not in report.schema_versions:
        os.replace(staged, staged.with_name(staged.name + ".rejected"))
        return None
    kept = db_path.with_name(f"{db_path.name}{KEPT_SUFFIX}{time.strftime('%Y%m%dT%H%M%S')}")
    for suffix in ("", "-wal", "-shm"):  # the database and its WAL move together, as one set
        current = Path(str(db_path) + suffix)
        if current.exists():
            os.replace(current, Path(str(kept) + suffix))
    os.replace(staged, db_path)
    _sign_everyone_out(db_path)
    directory = os.open(db_path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return kept



