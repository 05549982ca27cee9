"""The demo's main IVR with a real caller: SIPp calls through a trunk, works the menu with
RFC 4733 keys, hears its points balance read out (a known member) and leaves a complaint that
becomes a ticket with the recording attached."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import pytest
import soundfile

from acd.demo_flows import MAIN_IVR
from acd.ivr_store import FlowStore
from bench.server import ServerProcess
from bench.sipp import free_port, run_sipp
from callcenter.app import schemas
from callcenter.database import apply_all, open_database
from crm.access import SYSTEM
from crm.db import Database
from crm.service import Crm

pytestmark = pytest.mark.peers

CUSTOMER = "13800138000"
DID = "02160005000"


async def prepare(db: Path) -> None:
    conn = await open_database(db)
    try:
        await apply_all(conn, schemas())
        crm = Crm.build(Database(conn))
        member = await crm.members.create(SYSTEM, "王芳", phones=[CUSTOMER], level="gold")
        await crm.points.earn(SYSTEM, member.id, 2345, "opening balance")
        await FlowStore(conn).save(MAIN_IVR, by="test")
    finally:
        await conn.close()


async def query(db: Path, sql: str) -> list[tuple]:
    conn = await open_database(db)
    try:
        async with conn.execute(sql) as cur:
            return [tuple(r) for r in await cur.fetchall()]
    finally:
        await conn.close()


def test_points_read_out_and_a_complaint_message_becomes_a_ticket(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    asyncio.run(prepare(data / "callcenter.db"))
    caller_port = free_port("127.0.0.1")
    config = tmp_path / "callcenter.toml"
    config.write_text("\n".join([
        "[[trunks]]", 'name = "carrier"', 'host = "127.0.0.1"', f"port = {caller_port}", "qualify = 0",
        f'ip_auth = ["127.0.0.1:{caller_port}"]', f'dids = {{ "{DID}" = "5000" }}', "",
        "[dialplan]", 'timezone = "Asia/Shanghai"',
        "[[dialplan.rules]]", 'match = "5000"', 'destination = "ivr:main"', "",
        "[[time_conditions]]", 'name = "office"', 'hours = ["mon-sun 00:00-24:00"]', 'open = "5000"',
        'closed = "5000"', ""]))
    (tmp_path / "caller.csv").write_text(f"SEQUENTIAL\n{CUSTOMER}\n")
    server = ServerProcess(data, demo=False, extra_args=["--config", str(config)])
    server.start()
    try:
        result = run_sipp("ivr_caller.xml", f"127.0.0.1:{server.sip_port}", tmp_path / "sipp", service=DID,
                          local_port=caller_port, timeout=60,
                          extra=["-inf", str(tmp_path / "caller.csv"), "-mp", str(free_port("127.0.0.1"))])
        assert result.successful == 1, result.output
        deadline = time.monotonic() + 15          # the hang-up ends the message; saving follows
        while "voice message" not in server.log() and time.monotonic() < deadline:
            time.sleep(0.1)
        server_log = server.log()
    finally:
        server.stop()
    path = re.search(r"left IVR main after (.*)", server_log)
    assert path is not None, server_log[-3000:]
    steps = path.group(1).split(" > ")
    # English, the points read out for the caller (found by caller ID), then the complaint.
    assert steps[:8] == ["language", "welcome", "hours", "menu", "points", "say-points", "menu", "complaint"], steps
    tickets = asyncio.run(query(
        data / "callcenter.db", "SELECT t.ticket_type, c.recording_ref FROM tickets t JOIN calls c ON c.id = t.call_id"))
    assert len(tickets) == 1, server_log[-3000:]
    [(ticket_type, recording)] = tickets
    assert ticket_type == "complaint"
    audio, rate = soundfile.read(data / "recordings" / recording, dtype="int16")
    assert rate == 8000 and len(audio) / rate > 2.0 and abs(audio[:, 0].astype(int)).max() > 1000
