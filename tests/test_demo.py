"""`callcenter demo` on a fresh data dir: extensions to register with, and a CRM seeded with
believable data whose admin password comes from CALLCENTER_ADMIN_PASSWORD."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from bench.server import ServerProcess
from callcenter.database import open_database
from crm.db import Database
from crm.service import Crm


async def _seeded(db_path: Path) -> tuple[int, bool, bool]:
    conn = await open_database(db_path)
    try:
        crm = Crm.build(Database(conn))
        members = await crm.db.fetch_value("SELECT COUNT(*) FROM members")
        admin = await crm.org.authenticate("admin", "s3cret-admin-pw")
        agent = await crm.org.authenticate("agent1", "demo1234")
        return members, admin is not None, agent is not None
    finally:
        await conn.close()


def test_demo_seeds_extensions_and_the_crm(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data", env={"CALLCENTER_ADMIN_PASSWORD": "s3cret-admin-pw"})
    server.start()
    try:
        deadline = time.monotonic() + 60
        while "demo data seeded" not in server.log() and time.monotonic() < deadline:
            time.sleep(0.2)
        members, admin_ok, agent_ok = asyncio.run(_seeded(tmp_path / "data" / "callcenter.db"))
    finally:
        assert server.stop() == 0
    assert members == 200
    assert admin_ok and agent_ok
