"""数据管理: online backup of the whole database, integrity check of a backup, restore.

Backup uses SQLite's online backup API (`sqlite3.Connection.backup`) on a connection of its own,
in a worker thread: the shared connection and the event loop carry on, and in WAL mode writers
carry on too, because the copy reads one consistent snapshot in a single step (a stepwise copy
restarts whenever another connection writes, and might never finish on a busy center). The copy
is written to a temporary name, checked, flushed to disk, then renamed: a crash never leaves a
half-written file under a backup's name.

A check opens the file read-only and runs `PRAGMA integrity_check` (every page, index and
constraint) and `foreign_key_check`, and reads the schema versions it carries.

Restore never overwrites: it checks the backup, then copies it into a new file, which the
operator (or the composition root, at the next start) puts in place of the live database.

This module is SQLite's by nature; a PostgreSQL deployment uses pg_dump instead.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from crm import access, audit
from crm.access import Actor
from crm.clock import Clock, to_iso
from crm.db import Database
from crm.errors import Conflict, ValidationError

#: integrity_check stops listing problems after this many; one is enough to refuse a backup.
MAX_PROBLEMS = 20


@dataclass(frozen=True)
class BackupInfo:
    path: str
    bytes: int
    sha256: str
    created_at: str
    #: component -> schema version, from `schema_migrations`
    schema_versions: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class IntegrityReport:
    path: str
    ok: bool
    problems: list[str]
    schema_versions: dict[str, int]
    tables: int


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _copy(source: Path, target: Path) -> None:
    """Copy one SQLite database into a new file (blocking; runs in a worker thread)."""
    tmp = target.with_name(target.name + ".part")
    tmp.unlink(missing_ok=True)
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    try:
        dst = sqlite3.connect(tmp)
        try:
            src.backup(dst, pages=-1)  # one step: one snapshot, never restarted by writers
            # A backup is one self-contained file: no -wal beside it to lose on the way.
            dst.execute("PRAGMA journal_mode=DELETE")
        finally:
            dst.close()
    finally:
        src.close()
    with tmp.open("rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, target)
    directory = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself is durable
    finally:
        os.close(directory)


def check_file(path: Path) -> IntegrityReport:
    """Integrity of a database file (blocking; runs in a worker thread)."""
    if not path.is_file():
        return IntegrityReport(str(path), False, ["no such file"], {}, 0)
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        return IntegrityReport(str(path), False, [f"cannot open: {exc}"], {}, 0)
    try:
        problems = [r[0] for r in conn.execute(f"PRAGMA integrity_check({MAX_PROBLEMS})")]
        if problems == ["ok"]:
            problems = []
        problems += [f"foreign key: {r[0]} row {r[1]} -> {r[2]}" for r in conn.execute("PRAGMA foreign_key_check")][:MAX_PROBLEMS]
        tables = conn.execute("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
        try:
            versions = dict(conn.execute("SELECT component, version FROM schema_migrations").fetchall())
        except sqlite3.Error:
            versions = {}
            problems.append("no schema_migrations table: not a callcenter database")
    except sqlite3.DatabaseError as exc:
        return IntegrityReport(str(path), False, [f"not a database: {exc}"], {}, 0)
    finally:
        conn.close()
    return IntegrityReport(str(path), not problems, problems, versions, tables)


class BackupService:
    def __init__(self, db: Database, clock: Clock | None = None) -> None:
        self.db = db
        self.clock = clock or Clock()

    async def database_path(self) -> Path:
        rows = await self.db.fetch_all("PRAGMA database_list")
        main = next((r for r in rows if r["name"] == "main"), None)
        if main is None or not main["file"]:
            raise ValidationError("database", "the database is in memory: nothing to back up", code="backup.no_file")
        return Path(main["file"])

    async def backup(self, actor: Actor, target: Path | str) -> BackupInfo:
        """Copy the live database to `target` (which must not exist) and check the copy."""
        actor.require(access.BACKUP_RUN)
        target = Path(target)
        if target.exists():
            raise Conflict(f"{target} exists: a backup never overwrites", code="backup.target_exists")
        if not target.parent.is_dir():
            raise ValidationError("target", f"directory {target.parent} does not exist", code="backup.no_directory")
        source = await self.database_path()
        await asyncio.to_thread(_copy, source, target)
        return await self._checked(actor, target, "backup")

    async def verify(self, actor: Actor, path: Path | str) -> IntegrityReport:
        actor.require(access.BACKUP_RUN)
        return await asyncio.to_thread(check_file, Path(path))

    async def restore(self, actor: Actor, backup: Path | str, target: Path | str) -> BackupInfo:
        """Check `backup` and copy it into the new file `target`, to be swapped in at restart."""
        actor.require(access.BACKUP_RUN)
        backup, target = Path(backup), Path(target)
        if target.exists():
            raise Conflict(f"{target} exists: restore writes a new file only", code="backup.target_exists")
        report = await asyncio.to_thread(check_file, backup)
        if not report.ok:
            raise ValidationError("backup", f"{backup} fails its check: {'; '.join(report.problems[:3])}",
                                  code="backup.corrupt")  # fmt: skip
        await asyncio.to_thread(_copy, backup, target)
        return await self._checked(actor, target, "restore")

    async def _checked(self, actor: Actor, path: Path, action: str) -> BackupInfo:
        report = await asyncio.to_thread(check_file, path)
        if not report.ok:
            path.unlink(missing_ok=True)
            raise ValidationError("target", f"the copy failed its check: {'; '.join(report.problems[:3])}",
                                  code="backup.corrupt")  # fmt: skip
        info = BackupInfo(str(path), path.stat().st_size, await asyncio.to_thread(_sha256, path),
                          to_iso(self.clock.now()), report.schema_versions)  # fmt: skip
        async with self.db.transaction() as tx:
            await audit.record(tx, self.clock, actor, "backup", None, action, after=info)
        return info
