"""机构/用户/角色/字典: the organisation tree, users and passwords, roles and data scopes."""

from __future__ import annotations

import pytest

from crm import access, audit, passwords
from crm.access import SYSTEM, DataScope
from crm.errors import Conflict, Forbidden, NotFound, ValidationError
from crm.service import Crm


async def test_departments_form_a_tree_that_can_be_reorganised(crm: Crm) -> None:
    hq = await crm.org.create_department(SYSTEM, "总部")
    sales = await crm.org.create_department(SYSTEM, "销售部", parent_id=hq.id, sort_order=2)
    service = await crm.org.create_department(SYSTEM, "客服中心", parent_id=hq.id, sort_order=1)
    team = await crm.org.create_department(SYSTEM, "客服一组", parent_id=service.id)
    assert team.path == f"/{hq.id}/{service.id}/{team.id}/"

    tree = await crm.org.department_tree(SYSTEM)
    assert [n.department.name for n in tree] == ["总部"]
    assert [n.department.name for n in tree[0].children] == ["客服中心", "销售部"]  # by sort order
    assert tree[0].children[0].children[0].department.name == "客服一组"

    # moving a department carries its subtree along
    moved = await crm.org.update_department(SYSTEM, service.id, parent_id=sales.id)
    assert moved.path == f"/{hq.id}/{sales.id}/{service.id}/"
    by_id = {d.id: d for d in await crm.org.list_departments(SYSTEM)}
    assert by_id[team.id].path == f"/{hq.id}/{sales.id}/{service.id}/{team.id}/"

    with pytest.raises(ValidationError) as cycle:
        await crm.org.update_department(SYSTEM, sales.id, parent_id=team.id)
    assert cycle.value.code == "department.cycle"
    with pytest.raises(Conflict):
        await crm.org.create_department(SYSTEM, "销售部", parent_id=hq.id)
    with pytest.raises(Conflict) as has_children:
        await crm.org.delete_department(SYSTEM, sales.id)
    assert has_children.value.code == "department.has_children"
    await crm.org.delete_department(SYSTEM, team.id)
    with pytest.raises(NotFound):
        await crm.org.create_department(SYSTEM, "x", parent_id=team.id)


async def test_seeded_roles_and_their_scopes(crm: Crm) -> None:
    roles = {r.name: r for r in await crm.org.list_roles(SYSTEM)}
    assert set(roles) == {"admin", "supervisor", "agent", "technician", "auditor", "expert"}
    assert roles["expert"].data_scope is DataScope.OWN and access.APPOINTMENT_CONSULT in roles["expert"].permissions
    assert roles["agent"].data_scope is DataScope.OWN
    assert roles["supervisor"].data_scope is DataScope.DEPARTMENT
    assert roles["admin"].data_scope is DataScope.ALL
    assert access.WORKORDER_AUDIT in roles["auditor"].permissions
    assert access.WORKORDER_AUDIT not in roles["technician"].permissions
    # the admin manages but is never dispatched to as a technician
    assert roles["admin"].permissions == access.ALL_PERMISSIONS - {access.WORKORDER_RECEIVE}
    for role in roles.values():
        assert role.permissions <= access.ALL_PERMISSIONS and role.builtin


async def test_users_roles_and_login(crm: Crm, org) -> None:
    user = await crm.org.create_user(
        org.admin, "Wang.Li", "王丽", "correct horse", roles=["agent", "technician"], department_id=org.service_center
    )
    assert user.username == "wang.li" and user.display_name == "王丽" and user.roles == ("agent", "technician")
    with pytest.raises(Conflict):
        await crm.org.create_user(org.admin, "WANG.LI", "另一个王丽", "correct horse")

    actor = await crm.org.authenticate("wang.li", "correct horse")
    assert actor is not None and actor.user_id == user.id
    # union of the roles' permissions, widest scope
    assert {access.TICKET_WRITE, access.WORKORDER_RECEIVE} <= actor.permissions
    assert actor.data_scope is DataScope.OWN and actor.department_id == org.service_center
    assert await crm.org.authenticate("wang.li", "wrong horse") is None
    assert await crm.org.authenticate("nobody", "correct horse") is None

    await crm.org.update_user(org.admin, user.id, active=False)
    assert await crm.org.authenticate("wang.li", "correct horse") is None
    with pytest.raises(Forbidden):
        await crm.org.actor_for_user(user.id)


async def test_password_changes(crm: Crm, org) -> None:
    with pytest.raises(Forbidden):
        await crm.org.set_password(org.agent1, org.agent1.user_id, "new password 1", old_password="wrong")
    await crm.org.set_password(org.agent1, org.agent1.user_id, "new password 1", old_password="secret-pass")
    assert await crm.org.authenticate("agent1", "new password 1") is not None
    with pytest.raises(Forbidden):  # an agent cannot reset someone else's password
        await crm.org.set_password(org.agent1, org.agent2.user_id, "hijacked pw")
    await crm.org.set_password(org.admin, org.agent2.user_id, "reset by admin")
    assert await crm.org.authenticate("agent2", "reset by admin") is not None
    with pytest.raises(ValidationError):
        await crm.org.set_password(org.admin, org.agent2.user_id, "short")
    # An administrator's own password takes the current one too: an open session is not enough.
    with pytest.raises(Forbidden):
        await crm.org.set_password(org.admin, org.admin.user_id, "taken over pw")
    assert await crm.org.authenticate("admin", "taken over pw") is None
    # the log says a password was set, never what it is
    entries = await audit.list_entries(crm.db, org.admin, entity="user", entity_id=org.agent2.user_id)
    assert [e.action for e in entries] == ["login", "set_password", "create"]
    assert entries[1].username == "admin"
    raw = await crm.db.fetch_all("SELECT before_json, after_json FROM audit_log")
    assert all("reset by admin" not in str(r) and "scrypt$" not in str(r) for r in raw)


def test_default_scrypt_parameters_hash_and_verify(fast_hash) -> None:
    stored = passwords.hash_password("美容中心2026")
    assert stored.startswith("scrypt$14$8$5$")
    assert passwords.verify_password("美容中心2026", stored)
    assert not passwords.verify_password("美容中心2027", stored)
    # the same password hashes differently for every user (per-user salt)
    assert passwords.hash_password("美容中心2026", fast_hash) != passwords.hash_password("美容中心2026", fast_hash)
    assert not passwords.needs_rehash(stored)
    assert passwords.needs_rehash(passwords.hash_password("x", fast_hash))
    for corrupt in ("", "scrypt$99$8$1$AAAA$AAAA", "md5$abc", "scrypt$14$8$5$!!$??"):
        assert not passwords.verify_password("x", corrupt)


async def test_login_upgrades_weak_hashes(crm: Crm, org) -> None:
    crm.org.password_params = passwords.ScryptParams(log2_n=5, r=8, p=1)
    assert await crm.org.authenticate("agent1", "secret-pass") is not None
    stored = await crm.db.fetch_value("SELECT password_hash FROM users WHERE id = ?", (org.agent1.user_id,))
    assert stored.startswith("scrypt$5$8$1$")


async def test_custom_roles(crm: Crm, org, make_user) -> None:
    role = await crm.org.create_role(org.admin, "vip_desk", "VIP专席", [access.MEMBER_READ, access.TICKET_READ], "department")
    assert role.data_scope is DataScope.DEPARTMENT and not role.builtin
    with pytest.raises(ValidationError) as unknown:
        await crm.org.create_role(org.admin, "bad", "坏角色", ["member.fly"], "all")
    assert unknown.value.code == "role.unknown_permission"
    actor = await make_user(crm, "vip1", ["vip_desk"], department_id=org.service_center)
    assert actor.permissions == {access.MEMBER_READ, access.TICKET_READ}
    await crm.org.update_role(org.admin, "vip_desk", permissions=[access.MEMBER_READ])
    assert (await crm.org.actor_for_user(actor.user_id)).permissions == {access.MEMBER_READ}
    with pytest.raises(Conflict):
        await crm.org.delete_role(org.admin, "vip_desk")  # still held by vip1
    with pytest.raises(Conflict):
        await crm.org.delete_role(org.admin, "agent")  # built in
    with pytest.raises(Forbidden):
        await crm.org.create_role(org.supervisor, "x_role", "X", [], "own")


async def test_dictionaries_and_levels(crm: Crm, org) -> None:
    channels = await crm.dictionaries.items("source_channel")
    assert [c.code for c in channels][:3] == ["phone", "web", "wechat"]
    await crm.dictionaries.put_item(org.admin, "source_channel", "douyin", "抖音", sort_order=25)
    await crm.dictionaries.put_item(org.admin, "source_channel", "print", "报纸杂志", sort_order=60, active=False)
    codes = [c.code for c in await crm.dictionaries.items("source_channel")]
    assert codes.index("douyin") == codes.index("web") + 1 and "print" not in codes
    with pytest.raises(Forbidden):
        await crm.dictionaries.put_item(org.agent1, "source_channel", "x", "X")

    levels = await crm.dictionaries.levels()
    assert [lv.name for lv in levels] == ["普通", "银卡", "金卡", "钻石"]
    await crm.dictionaries.put_level(org.admin, "platinum", "铂金", 25)
    assert [lv.code for lv in await crm.dictionaries.levels()][-2:] == ["platinum", "diamond"]
    with pytest.raises(Conflict):
        await crm.dictionaries.put_level(org.admin, "black", "黑卡", 30)  # rank taken by diamond
    await crm.dictionaries.delete_level(org.admin, "platinum")
