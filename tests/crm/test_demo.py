"""The demo beauty chain: believable, rule-abiding, and the same every time for a seed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from callcenter.database import apply_migrations, open_database
from crm import schema
from crm.access import SYSTEM
from crm.clock import FixedClock
from crm.db import Database
from crm.demo import seed_demo
from crm.members import MemberQuery
from crm.passwords import ScryptParams
from crm.service import Crm
from crm.tickets import TicketQuery

NOW = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)  # 14:00 in Shanghai


async def _seeded(path, params: ScryptParams, seed: int = 7) -> Database:
    conn = await open_database(path)
    await apply_migrations(conn, "crm", schema.MIGRATIONS)
    db = Database(conn)
    await seed_demo(db, members=40, password="demo-agent-pw", admin_password="demo-admin-pw", seed=seed, now=NOW,
                    password_params=params)  # fmt: skip
    return db


async def _fingerprint(db: Database) -> list:
    return [
        await db.fetch_all("SELECT name, gender, level_code, card_no, owner_id, points_balance FROM members ORDER BY id"),
        await db.fetch_all("SELECT e164, member_id FROM member_phones ORDER BY e164"),
        await db.fetch_all("SELECT subject, status, priority, assignee_id, created_at FROM tickets ORDER BY id"),
        await db.fetch_all("SELECT serial_no, status, technician_id FROM work_orders ORDER BY id"),
    ]


async def test_demo_is_believable_and_follows_the_rules(tmp_path, fast_hash) -> None:
    db = await _seeded(tmp_path / "a.db", fast_hash)
    try:
        crm = Crm.build(db, clock=FixedClock(NOW), password_params=fast_hash)
        for username in ("agent1", "agent5", "supervisor1", "tech1", "auditor1"):
            assert await crm.org.authenticate(username, "demo-agent-pw") is not None, username
        admin = await crm.org.authenticate("admin", "demo-admin-pw")
        assert admin is not None

        members = await crm.members.search(admin, MemberQuery(), limit=50)
        assert members.total == 40
        assert {m.level_code for m in members.items} <= {"normal", "silver", "gold", "diamond"}
        assert sum(m.gender == "female" for m in members.items) > 25  # a beauty chain's clientele
        assert all(m.phones and m.phones[0].e164.startswith("+86") for m in members.items)
        assert all(m.email is None or m.email.endswith((".example.com", "@example.com", "@example.cn"))
                   for m in members.items)  # fmt: skip

        # every member is found by caller ID in the form the trunk presents it
        first = members.items[-1]
        card = await crm.members.lookup_by_caller_id(admin, "0" + first.phones[0].e164[3:])
        assert card is not None and card.member.id == first.id

        tickets = await crm.tickets.search(admin, TicketQuery(), limit=200)
        assert tickets.total > 10
        assert {t.ticket_type for t in tickets.items} >= {"consultation", "complaint"}
        assert await crm.points.reconcile(admin) == []
        calls = await db.fetch_value("SELECT COUNT(*) FROM calls WHERE member_id IS NOT NULL")
        assert calls > 0
        audit_rows = await db.fetch_value("SELECT COUNT(*) FROM audit_log")
        assert audit_rows > 100

        # running it again on the same data dir changes nothing
        before = await _fingerprint(db)
        await seed_demo(db, members=40, password="other", now=NOW, password_params=fast_hash)
        assert await _fingerprint(db) == before
    finally:
        await db.conn.close()


async def test_same_seed_same_data_other_seed_other_data(tmp_path, fast_hash) -> None:
    a, b, c = (await _seeded(tmp_path / "a.db", fast_hash), await _seeded(tmp_path / "b.db", fast_hash),
               await _seeded(tmp_path / "c.db", fast_hash, seed=8))  # fmt: skip
    try:
        assert await _fingerprint(a) == await _fingerprint(b)
        assert await _fingerprint(a) != await _fingerprint(c)
    finally:
        for db in (a, b, c):
            await db.conn.close()


async def test_work_orders_in_the_demo_carry_flags_for_the_auditor(tmp_path, fast_hash) -> None:
    conn = await open_database(tmp_path / "wo.db")
    try:
        await apply_migrations(conn, "crm", schema.MIGRATIONS)
        db = Database(conn)
        await seed_demo(db, members=150, password="demo-agent-pw", now=NOW, password_params=fast_hash)
        flags = {r["code"] for r in await db.fetch_all("SELECT DISTINCT code FROM work_order_flags")}
        assert {"duplicate", "out_of_warranty"} <= flags
        crm = Crm.build(db, clock=FixedClock(NOW))
        stats = await crm.work_orders.technician_stats(SYSTEM, datetime(2026, 9, 1, tzinfo=UTC), NOW)
        assert len(stats) == 3 and sum(s.completed for s in stats) > 0
    finally:
        await conn.close()


async def test_the_salon_half_of_the_demo(tmp_path, fast_hash) -> None:
    db = await _seeded(tmp_path / "salon.db", fast_hash)
    try:
        crm = Crm.build(db, clock=FixedClock(NOW), password_params=fast_hash)
        admin = await crm.org.authenticate("admin", "demo-admin-pw")
        expert = await crm.org.authenticate("expert1", "demo-agent-pw")
        assert admin is not None and expert is not None
        catalogue = await crm.catalogue.items(limit=50)
        assert catalogue.total == 10 and {i.kind for i in catalogue.items} == {"service", "product"}
        assert (await crm.catalogue.changes(admin)).total == 1  # a price change awaits the approver
        assert len(await crm.experts.list_experts(admin)) == 3
        statuses = {r["status"] for r in await db.fetch_all("SELECT DISTINCT status FROM appointments")}
        assert "completed" in statuses
        consulted = await db.fetch_value("SELECT COUNT(*) FROM appointments WHERE consultation_notes IS NOT NULL")
        assert consulted > 0
        assert await db.fetch_value("SELECT COUNT(*) FROM orders WHERE status IN ('paid', 'completed')") > 0
        figures = await crm.surveys.satisfaction(admin, NOW - timedelta(days=60), NOW)
        assert figures.answers > 0 and 1 <= figures.average <= 5
        public = await crm.knowledge.search(None, "玻尿酸")
        assert public.items and public.items[0].title == "玻尿酸注射后注意事项"
        sent = await crm.messaging.outbox(admin, status="sent")
        assert sent.total > 0 and all(m.provider == "local" for m in sent.items)
        assert {t.code for t in await crm.templates.list(admin)} >= {"birthday", "new_service", "points_notice"}
    finally:
        await db.conn.close()
