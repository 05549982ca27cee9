"""Calls to a queue with real phones: agents (SIPp) log in with a feature code, callers dial the
queue number, the ACD rings the agents by strategy; CDRs and the queue log record it all."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from bench.server import ServerProcess
from bench.sipp import free_port, read_result, run_sipp, sipp_command
from callcenter.database import open_database

pytestmark = pytest.mark.peers

QUEUE = """
[[queues]]
number = "8100"
name = "售后热线"
strategy = "leastrecent"
members = ["1001", "1002"]
wrapuptime = 0
ring_timeout = 5
"""


async def rows(db: Path, sql: str) -> list[dict]:
    conn = await open_database(db)
    try:
        async with conn.execute(sql) as cur:
            return [dict(r) for r in await cur.fetchall()]
    finally:
        await conn.close()


def test_leastrecent_queue_alternates_between_logged_in_agents(tmp_path: Path) -> None:
    config = tmp_path / "queues.toml"
    config.write_text(QUEUE)
    server = ServerProcess(tmp_path / "data", extra_args=["--config", str(config)])
    server.start()
    target = f"127.0.0.1:{server.sip_port}"
    agents: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}
    try:
        for extension in ("1001", "1002"):
            port = free_port("127.0.0.1")
            workdir = tmp_path / f"agent{extension}"
            workdir.mkdir()
            agents[extension] = (subprocess.Popen(
                sipp_command("uas_answer.xml", target, local_port=port, calls=2, timeout=60,
                             keys={"rtp_port": str(free_port("127.0.0.1"))}),
                cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT), workdir)
            reg = run_sipp("register_contact.xml", target, tmp_path / f"reg{extension}", service=extension,
                           auth=(extension, f"demo{extension}"), keys={"contact_port": str(port)}, timeout=20)
            assert reg.successful == 1, reg.output
            # The agent logs in from the desk phone: *61.
            login = run_sipp("uac_feature.xml", target, tmp_path / f"login{extension}", service="*61",
                             auth=(extension, f"demo{extension}"),
                             keys={"caller": extension, "rtp_port": str(free_port("127.0.0.1"))}, timeout=20)
            assert login.successful == 1, login.output
        # Four customers call the queue one after the other.
        callers = run_sipp("uac_call.xml", target, tmp_path / "callers", service="8100", calls=4, rate=0.5,
                           auth=("1005", "demo1005"),
                           keys={"caller": "1005", "rtp_port": str(free_port("127.0.0.1"))},
                           timeout=60, extra=["-d", "1000", "-l", "1"])
        assert callers.successful == 4, callers.output
        for extension, (proc, workdir) in agents.items():
            out, _ = proc.communicate(timeout=30)
            assert read_result(workdir, proc.returncode, out).successful == 2, extension
    finally:
        for proc, _ in agents.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        server.stop()

    db = tmp_path / "data" / "callcenter.db"
    cdrs = asyncio.run(rows(db, "SELECT callee, answered_by, disposition FROM cdr WHERE callee = '8100' ORDER BY id"))
    assert [r["answered_by"] for r in cdrs] == ["1001", "1002", "1001", "1002"]  # least recent each time
    assert {r["disposition"] for r in cdrs} == {"ANSWERED"}
    log = asyncio.run(rows(db, "SELECT agent, event FROM queue_log ORDER BY id"))
    events = [r["event"] for r in log]
    assert events.count("ADDMEMBER") == 2 and events.count("ENTERQUEUE") == 4
    assert [r["agent"] for r in log if r["event"] == "CONNECT"] == ["1001", "1002", "1001", "1002"]
    assert events.count("COMPLETECALLER") == 4
