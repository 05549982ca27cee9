"""数据恢复: an uploaded backup is checked and staged, then swapped in before the next start,
keeping the database it replaces; garbage, foreign and newer databases are refused."""

from __future__ import annotations

import sqlite3

import pytest

from callcenter.database import apply_migrations, open_database
from crm import schema
from crm.db import Database
from crm.errors import Forbidden, NotFound, ValidationError
from crm.members import MemberQuery
from crm.restore import apply_pending_restore, pending_path
from crm.service import Crm


async def test_a_backup_is_staged_then_swapped_in_at_the_next_start(crm: Crm, org, tmp_path) -> None:
    await crm.members.create(org.agent1, "备份前的会员", phones=["13800138000"])
    backup = await crm.backup.backup(org.admin, tmp_path / "backup.db")
    await crm.members.create(org.agent1, "备份后的会员", phones=["13900139000"])
    staged = await crm.restore.stage(org.admin, tmp_path / "backup.db")
    assert staged.schema_versions["crm"] == len(schema.MIGRATIONS)
    assert (await crm.restore.pending(org.admin)) is not None
    with pytest.raises(Forbidden):
        await crm.restore.stage(org.agent1, tmp_path / "backup.db")
    # The live database is untouched until the restart.
    assert (await crm.members.search(org.admin, MemberQuery(name="备份后的会员"))).total == 1
    live = await crm.backup.database_path()
    await crm.db.conn.execute("CREATE TABLE IF NOT EXISTS web_sessions (token_hash TEXT PRIMARY KEY)")
    await crm.db.conn.close()  # the server stops

    kept = apply_pending_restore(live)
    assert kept is not None and kept.exists() and not pending_path(live).exists()
    assert apply_pending_restore(live) is None  # nothing staged any more
    conn = await open_database(live)
    try:
        await apply_migrations(conn, "crm", schema.MIGRATIONS)
        restored = Crm.build(Database(conn), clock=crm.clock)
        assert (await restored.members.search(org.admin, MemberQuery(name="备份前的会员"))).total == 1
        assert (await restored.members.search(org.admin, MemberQuery(name="备份后的会员"))).total == 0
    finally:
        await conn.close()
    old = sqlite3.connect(kept)  # the replaced database is kept whole, its last writes included
    try:
        assert old.execute("SELECT COUNT(*) FROM members WHERE name = '备份后的会员'").fetchone()[0] == 1
    finally:
        old.close()
    assert backup.sha256


async def test_garbage_foreign_and_newer_databases_are_refused(crm: Crm, org, tmp_path) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes("这不是数据库".encode() * 100)
    foreign = tmp_path / "foreign.db"
    other = sqlite3.connect(foreign)
    other.execute("CREATE TABLE notes (body TEXT)")
    other.commit()
    other.close()
    newer = tmp_path / "newer.db"
    await crm.backup.backup(org.admin, newer)
    bumped = sqlite3.connect(newer)
    bumped.execute("UPDATE schema_migrations SET version = version + 1 WHERE component = 'crm'")
    bumped.commit()
    bumped.close()
    truncated = tmp_path / "truncated.db"
    await crm.backup.backup(org.admin, truncated)
    truncated.write_bytes(truncated.read_bytes()[: 4096 * 3])
    for path, code in ((garbage, "restore.not_sqlite"), (foreign, "restore.not_callcenter"),
                       (newer, "restore.newer_schema"), (truncated, "restore.corrupt")):  # fmt: skip
        with pytest.raises(ValidationError) as refused:
            await crm.restore.stage(org.admin, path)
        assert refused.value.code == code, path.name
    assert await crm.restore.pending(org.admin) is None
    with pytest.raises(NotFound):
        await crm.restore.cancel(org.admin)
