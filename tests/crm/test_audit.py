"""日志管理: every write leaves exactly one trace, in its own transaction, without secrets."""

from __future__ import annotations

import pytest

from crm import audit
from crm.access import SYSTEM
from crm.errors import Conflict, Forbidden, ValidationError
from crm.org import NewUser
from crm.service import Crm


async def test_a_refused_write_leaves_no_trace(crm: Crm, org) -> None:
    m = await crm.members.create(org.agent1, "曹颖", phones=["13800138000"])
    count = await crm.db.fetch_value("SELECT COUNT(*) FROM audit_log")
    with pytest.raises(Conflict):
        await crm.points.spend(org.agent1, m.id, 10, "余额不足")
    with pytest.raises(Conflict):
        await crm.members.create(org.agent1, "重复", phones=["13800138000"])
    assert await crm.db.fetch_value("SELECT COUNT(*) FROM audit_log") == count
    assert await crm.db.fetch_value("SELECT COUNT(*) FROM points_entries") == 0


async def test_users_are_logged_without_password_hashes(crm: Crm, org) -> None:
    entries = await audit.list_entries(crm.db, org.auditor, entity="user", limit=500)
    assert len(entries) == 7 and all(e.action == "create" for e in entries)
    raw = await crm.db.fetch_all("SELECT after_json FROM audit_log WHERE entity = 'user'")
    assert all("scrypt$" not in (r["after_json"] or "") for r in raw)


async def test_batch_user_creation_is_all_or_nothing(crm: Crm, org) -> None:
    before = await crm.db.fetch_value("SELECT COUNT(*) FROM users")
    with pytest.raises(ValidationError) as bad:
        await crm.org.create_users(org.admin, [NewUser("agent9", "座席九", "long enough"), NewUser("x", "太短", "pw")])
    assert bad.value.field.startswith("users[1].")
    with pytest.raises(Conflict):
        await crm.org.create_users(org.admin, [NewUser("agent9", "座席九", "long enough"),
                                               NewUser("agent1", "重名", "long enough")])  # fmt: skip
    assert await crm.db.fetch_value("SELECT COUNT(*) FROM users") == before
    made = await crm.org.create_users(org.admin, [NewUser("agent9", "座席九", "long enough"),
                                                  NewUser("agent10", "座席十", "long enough")])  # fmt: skip
    assert [u.id for u in made] == sorted(u.id for u in made)


async def test_reading_the_log_needs_permission_and_pages(crm: Crm, org) -> None:
    m = await crm.members.create(org.agent1, "彭丽", phones=["13800138000"])
    for i in range(5):
        await crm.members.update(org.agent1, m.id, notes=f"第{i}次")
    with pytest.raises(Forbidden):
        await audit.list_entries(crm.db, org.agent1)
    first = await audit.list_entries(crm.db, org.auditor, entity="member", entity_id=m.id, limit=4)
    rest = await audit.list_entries(crm.db, org.auditor, entity="member", entity_id=m.id, limit=4,
                                    before_id=first[-1].id)  # fmt: skip
    assert [e.action for e in first + rest] == ["update"] * 5 + ["create"]
    assert first[0].after["notes"] == "第4次" and first[0].before["notes"] == "第3次"
    by_agent = await audit.list_entries(crm.db, org.auditor, user_id=org.agent1.user_id)
    assert len(by_agent) == 6 and all(e.username == "agent1" for e in by_agent)
    system = await audit.list_entries(crm.db, SYSTEM, entity="department")
    assert [e.action for e in system] == ["create"] * 3
