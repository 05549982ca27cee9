"""数据管理 (online backup, integrity check, restore into a new file) and REST API tokens."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import timedelta

import pytest

from callcenter.database import open_database
from crm import audit, schema
from crm.clock import FixedClock
from crm.db import Database
from crm.errors import Conflict, Forbidden, InvalidTransition, ValidationError
from crm.members import MemberQuery
from crm.service import Crm


async def test_online_backup_while_writers_run_then_restore(crm: Crm, org, tmp_path) -> None:
    for i in range(50):
        await crm.members.create(org.agent1, f"会员{i}", phones=[f"1380013{i:04d}"])
    stop = asyncio.Event()

    async def keep_writing() -> int:
        n = 0
        while not stop.is_set():
            await crm.members.create(org.agent2, f"新会员{n}", phones=[f"1390013{n:04d}"])
            n += 1
        return n

    writer = asyncio.create_task(keep_writing())
    await asyncio.sleep(0.05)
    info = await crm.backup.backup(org.admin, tmp_path / "backup-1.db")
    stop.set()
    written = await writer
    assert written > 0 and info.bytes > 0 and len(info.sha256) == 64 and info.schema_versions["crm"] == len(schema.MIGRATIONS)
    report = await crm.backup.verify(org.admin, info.path)
    assert report.ok and report.problems == [] and report.tables > 30

    restored_path = tmp_path / "restored.db"
    restored = await crm.backup.restore(org.admin, info.path, restored_path)
    assert restored.sha256 != "" and restored_path.exists()
    conn = await open_database(restored_path)
    try:
        copy = Crm.build(Database(conn), clock=crm.clock)
        in_copy = (await copy.members.search(org.admin, MemberQuery(), limit=1)).total
        assert 50 <= in_copy <= 50 + written  # a consistent snapshot taken while writers ran
        assert (await copy.members.search(org.admin, MemberQuery(name="会员49"))).total == 1
    finally:
        await conn.close()
    logged = await audit.list_entries(crm.db, org.admin, entity="backup")
    assert [e.action for e in logged] == ["restore", "backup"]


async def test_backups_never_overwrite_and_corrupt_files_are_refused(crm: Crm, org, tmp_path) -> None:
    info = await crm.backup.backup(org.admin, tmp_path / "b.db")
    with pytest.raises(Conflict):
        await crm.backup.backup(org.admin, info.path)
    with pytest.raises(ValidationError):
        await crm.backup.backup(org.admin, tmp_path / "no" / "such" / "dir.db")
    with pytest.raises(Forbidden):
        await crm.backup.backup(org.supervisor, tmp_path / "c.db")
    damaged = tmp_path / "damaged.db"
    data = bytearray((tmp_path / "b.db").read_bytes())
    data[4096 * 3 : 4096 * 3 + 64] = b"\xff" * 64  # scribble over a b-tree page
    damaged.write_bytes(bytes(data))
    report = await crm.backup.verify(org.admin, damaged)
    assert not report.ok and report.problems
    with pytest.raises(ValidationError) as refused:
        await crm.backup.restore(org.admin, damaged, tmp_path / "r.db")
    assert refused.value.code == "backup.corrupt" and not (tmp_path / "r.db").exists()
    (tmp_path / "text.db").write_text("not a database")
    assert not (await crm.backup.verify(org.admin, tmp_path / "text.db")).ok
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    assert "not a callcenter database" in (await crm.backup.verify(org.admin, other)).problems[0]


async def test_api_tokens(crm: Crm, org, clock: FixedClock) -> None:
    issued = await crm.tokens.create(org.agent1, name="呼叫中心大屏")
    assert issued.secret.startswith("cct_") and issued.token.prefix == issued.secret[:10]
    stored = await crm.db.fetch_value("SELECT token_hash FROM api_tokens WHERE id = ?", (issued.token.id,))
    assert issued.secret not in stored  # only the hash is kept
    actor = await crm.tokens.authenticate(issued.secret)
    assert actor is not None and actor.user_id == org.agent1.user_id and actor.permissions == org.agent1.permissions
    assert await crm.tokens.authenticate(issued.secret + "x") is None
    assert await crm.tokens.authenticate("Bearer nonsense") is None
    assert (await crm.tokens.list(org.agent1))[0].last_used_at is not None

    with pytest.raises(Forbidden):  # tokens for others need org.write
        await crm.tokens.create(org.agent1, name="x", user_id=org.agent2.user_id)
    for_agent2 = await crm.tokens.create(org.admin, name="集成", user_id=org.agent2.user_id,
                                         expires_at=clock.now() + timedelta(days=1))  # fmt: skip
    assert await crm.tokens.authenticate(for_agent2.secret) is not None
    clock.advance(timedelta(days=1))
    assert await crm.tokens.authenticate(for_agent2.secret) is None  # expired
    with pytest.raises(Forbidden):
        await crm.tokens.revoke(org.agent2, issued.token.id)
    revoked = await crm.tokens.revoke(org.agent1, issued.token.id)
    assert revoked.revoked_at is not None and await crm.tokens.authenticate(issued.secret) is None
    with pytest.raises(InvalidTransition):
        await crm.tokens.revoke(org.agent1, issued.token.id)

    live = await crm.tokens.create(org.agent1, name="again")
    await crm.org.update_user(org.admin, org.agent1.user_id, active=False)
    assert await crm.tokens.authenticate(live.secret) is None  # deactivated users' tokens stop working
