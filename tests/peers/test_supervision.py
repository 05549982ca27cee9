"""A supervisor's desk phone on an agent's live call: *56 + the agent's extension whispers (the
engine's room routes are proven by tone in tests/mediacore/test_engine_taps.py); an extension
without a supervisor's rights is refused and the attempt logged; the use is audited."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from bench.sipp import SippResult, free_port, run_sipp
from callcenter.database import open_database
from tests.peers.test_calls import Callee

pytestmark = pytest.mark.peers


async def audit_actions(db: Path) -> list[str]:
    conn = await open_database(db)
    try:
        async with conn.execute("SELECT action FROM audit_log WHERE entity = 'call'") as cur:
            return [row[0] for row in await cur.fetchall()]
    finally:
        await conn.close()


def wait_for(server, text: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in server.server.log():
        assert time.monotonic() < deadline, f"no {text!r} in the log:\n{server.server.log()[-3000:]}"
        time.sleep(0.1)


def test_a_supervisor_whispers_to_an_agent_and_others_are_refused(tmp_path: Path) -> None:
    site = Callee(tmp_path, "uas_answer.xml", free_port("127.0.0.1"))
    try:
        wait_for(site, "demo data seeded")         # the CRM's users (and their rights) exist
        results: dict[str, SippResult] = {}
        caller = threading.Thread(target=lambda: results.setdefault("caller", site.call(
            "uac_call.xml", free_port("127.0.0.1"), talk_ms=6000)))
        caller.start()
        wait_for(site, "dials 1002")
        time.sleep(1.5)                            # answered and bridged
        whisper = run_sipp("uac_call.xml", site.target, tmp_path / "sup", service="*561002",
                           auth=("1010", "demo1010"), timeout=20,
                           keys={"caller": "1010", "rtp_port": str(free_port("127.0.0.1"))}, extra=["-d", "2000"])
        refused = run_sipp("uac_call.xml", site.target, tmp_path / "agent3", service="*551002",
                           auth=("1003", "demo1003"), timeout=20,
                           keys={"caller": "1003", "rtp_port": str(free_port("127.0.0.1"))}, extra=["-d", "2000"])
        caller.join(40)
        assert whisper.successful == 1, site.server.log()[-4000:]
        assert results["caller"].successful == 1, results["caller"].output
        log = site.server.log()
        assert "supervisor supervisor1 (1010) whisper on agent 1002" in log
        assert "security: extension 1003 tried to listen on 1002" in log
        assert refused.successful == 0
    finally:
        site.close()
    assert asyncio.run(audit_actions(tmp_path / "data" / "callcenter.db")).count("supervise_whisper") == 1
