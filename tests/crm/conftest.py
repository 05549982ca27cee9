"""Fixtures of the CRM tests: a real SQLite file per test, a fixed clock, and a small organisation.

The suite runs with --import-mode=importlib, so test modules cannot import from here: everything
they share is a fixture.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from callcenter.database import apply_migrations, open_database
from crm import schema
from crm.access import SYSTEM, Actor
from crm.clock import FixedClock
from crm.db import Database
from crm.passwords import ScryptParams
from crm.service import Crm

#: Cheap scrypt for the many users tests create; the default parameters have their own test.
FAST_HASH = ScryptParams(log2_n=4, r=8, p=1)
#: 2026-11-23 10:00 in Shanghai.
START = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)


@pytest.fixture
async def db(tmp_path):
    conn = await open_database(tmp_path / "callcenter.db")
    try:
        await apply_migrations(conn, "crm", schema.MIGRATIONS)
        yield Database(conn)
    finally:
        await conn.close()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(START)


@pytest.fixture
def fast_hash() -> ScryptParams:
    return FAST_HASH


@pytest.fixture
def crm(db: Database, clock: FixedClock) -> Crm:
    return Crm.build(db, clock=clock, password_params=FAST_HASH)


@dataclass
class Org:
    """总部 > 客服中心 (agents, supervisor) and 总部 > 售后服务部 (technicians), plus an auditor."""

    hq: int
    service_center: int
    after_sales: int
    admin: Actor
    supervisor: Actor
    agent1: Actor
    agent2: Actor
    tech_pudong: Actor
    tech_xuhui: Actor
    auditor: Actor


async def _make_user(
    crm: Crm, username: str, roles: list[str], *, department_id: int | None = None, region: str | None = None
) -> Actor:
    user = await crm.org.create_user(
        SYSTEM, username, f"用户{username}", "secret-pass", roles=roles, department_id=department_id, region=region
    )
    return await crm.org.actor_for_user(user.id)


@pytest.fixture
def make_user():
    """`await make_user(crm, username, roles, department_id=..., region=...)` -> the user's Actor."""
    return _make_user


@pytest.fixture
async def org(crm: Crm) -> Org:
    hq = await crm.org.create_department(SYSTEM, "总部")
    service = await crm.org.create_department(SYSTEM, "客服中心", parent_id=hq.id)
    after_sales = await crm.org.create_department(SYSTEM, "售后服务部", parent_id=hq.id)
    return Org(
        hq=hq.id,
        service_center=service.id,
        after_sales=after_sales.id,
        admin=await _make_user(crm, "admin", ["admin"], department_id=hq.id),
        supervisor=await _make_user(crm, "sup1", ["supervisor"], department_id=service.id),
        agent1=await _make_user(crm, "agent1", ["agent"], department_id=service.id),
        agent2=await _make_user(crm, "agent2", ["agent"], department_id=service.id),
        tech_pudong=await _make_user(crm, "tech1", ["technician"], department_id=after_sales.id, region="浦东新区"),
        tech_xuhui=await _make_user(crm, "tech2", ["technician"], department_id=after_sales.id, region="徐汇区"),
        auditor=await _make_user(crm, "audit1", ["auditor"], department_id=hq.id),
    )
