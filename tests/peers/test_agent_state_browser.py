"""A browser agent runs their own queue day from the softphone's WebSocket, against a real server
process: they log in (ADDMEMBER), go on lunch (PAUSE lunch) while a SIPp caller waits in their
queue unoffered, come back ready and the call rings their browser at once; they answer, talk and
hang up, and their page is told each step — ringing, on the call, wrap-up with its end time,
ready again when it is over — and then of the not-ready a supervisor sets over REST. The queue log
and the audit log the server wrote agree.

Users are made by the test (agent1 at 1001, supervisor1 at 1010; no demo CRM: seconds saved)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.server import ServerProcess
from callcenter.app import schemas
from callcenter.database import apply_all, open_database
from crm.access import SYSTEM
from crm.db import Database
from crm.passwords import ScryptParams
from crm.service import Crm
from tests.peers.seeded_server import rows
from tests.peers.test_queue_browser_agents import (
    PASSWORD,
    BrowserAgent,
    agent_log,
    finished,
    start_sipp,
    until,
)
from tests.peers.test_queue_callback import HERE, Media, RtpPeer

pytestmark = [pytest.mark.peers, pytest.mark.timeout(120)]

CONFIG = """
demo_crm = false

[[queues]]
number = "8301"
name = "客服"
members = ["1001"]
wrapuptime = 2
ring_timeout = 10
answer = true
"""


async def make_users(data: Path) -> None:
    data.mkdir(parents=True, exist_ok=True)
    conn = await open_database(data / "callcenter.db")
    try:
        await apply_all(conn, schemas())
        crm = Crm.build(Database(conn), password_params=ScryptParams(log2_n=4, r=8, p=1))
        for username, role, extension in (("agent1", "agent", "1001"), ("supervisor1", "supervisor", "1010")):
            await crm.org.create_user(SYSTEM, username, username, PASSWORD, roles=[role], extension=extension)
    finally:
        await conn.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    (tmp_path / "server.toml").write_text(CONFIG)
    asyncio.run(make_users(tmp_path / "data"))
    server = ServerProcess(tmp_path / "data", extra_args=["--config", str(tmp_path / "server.toml")])
    server.start()
    try:
        yield server
    finally:
        server.stop()


class StateBrowser(BrowserAgent):
    """A browser agent that also keeps the agent_state pushes and the replies to its requests."""

    def __init__(self, server: ServerProcess, username: str, extension: str) -> None:
        super().__init__(server, username, extension)
        self.states: list[dict[str, Any]] = []
        self.replies: dict[int, dict[str, Any]] = {}

    async def act(self, ref: int, action: str, **extra: Any) -> dict[str, Any]:
        await self._send(type="agent_state", action=action, ref=ref, **extra)
        await until(lambda: ref in self.replies, f"the reply to {action}", self.server)
        return self.replies[ref]

    async def round_trip(self, ref: int) -> None:
        """A ping answered: whatever the server sent before it handled the ping has been read."""
        await self._send(type="ping", ref=ref)
        await until(lambda: ref in self.replies, "the pong", self.server)

    def saw(self, state: str, **fields: Any) -> dict[str, Any] | None:
        return next((m for m in self.states
                     if m["state"] == state and all(m.get(k) == v for k, v in fields.items())), None)

    async def _read(self, registered: asyncio.Future[None]) -> None:
        assert self.ws is not None
        async for raw in self.ws:
            message = json.loads(raw)
            kind = message.get("type")
            if kind == "agent_state":
                self.states.append(message)
            elif kind in ("ok", "error", "pong") and isinstance(message.get("ref"), int):
                self.replies[message["ref"]] = message
            if kind == "error":
                self.errors.append(message)
            elif kind == "registered" and not registered.done():
                registered.set_result(None)
            elif kind == "incoming":
                self.incoming.append(message)
                self._spawn(self._take(message["call_id"]))
            elif kind == "answer":
                future = self._answers.pop(message["call_id"], None)
                if future is not None and not future.done():
                    future.set_result(message["sdp"])
            elif kind == "state" and message.get("state") == "ended":
                self.ended[message["call_id"]] = message.get("reason", "")
                pc = self._pcs.pop(message["call_id"], None)
                if pc is not None:
                    self._spawn(pc.close())


def queue_rows(server: ServerProcess, sql: str) -> list[dict[str, Any]]:
    return rows(server.data_dir / "callcenter.db", sql)


async def test_a_browser_agent_logs_in_pauses_takes_a_queue_call_when_ready_and_sees_every_state(
        server: ServerProcess, tmp_path: Path, procs: list[Any]) -> None:
    agent = StateBrowser(server, "agent1", "1001")
    caller = RtpPeer()
    media = Media(caller)
    try:
        await agent.register()
        await until(lambda: agent.states, "the state after register", server)
        assert agent.states[0]["state"] == "logged_out"
        assert agent.states[0]["queues"] == [{"id": "8301", "name": "客服", "penalty": 0}]

        assert (await agent.act(1, "login"))["state"] == "ready"
        await until(lambda: agent_log(server, "1001") == ["ADDMEMBER"], "ADDMEMBER in the queue log", server)
        assert (await agent.act(2, "not_ready", reason="lunch"))["reason"] == "lunch"
        await until(lambda: agent.saw("not_ready", reason="lunch"), "the lunch break on the page", server)

        # A caller waits in the queue; the agent at lunch is offered nothing.
        waiting = start_sipp(procs, server, tmp_path / "caller", str(HERE / "queue_caller_wait_bye.xml"),
                             service="8301", auth=("1007", "demo1007"), timeout=40,
                             keys={"caller": "1007", "rtp_port": str(caller.port)})
        await until(lambda: queue_rows(server, "SELECT 1 FROM queue_log WHERE event = 'ENTERQUEUE'"),
                    "the caller in the queue", server)
        # An offer goes out in the same step as ENTERQUEUE, before the row is written: after a
        # round trip begun now, it would have been read.
        await agent.round_trip(10)
        assert agent.incoming == [] and agent.states[-1]["state"] == "not_ready"

        # Ready: the call rings the browser at once; the agent answers, talks, hangs up.
        await agent.act(3, "ready")
        await until(lambda: agent.answered, "the browser to answer the queue call", server)
        assert agent.incoming[0]["peer"] == "1007"
        await until(lambda: agent.saw("on_call"), "on the call on the page", server)
        assert agent.saw("reserved") is not None   # ringing, before the answer
        await agent.hangup(agent.answered[0])
        await until(lambda: agent.saw("wrap_up"), "wrap-up on the page", server)
        wrap_up = agent.saw("wrap_up")
        assert wrap_up is not None and wrap_up["wrap_up_until"] == pytest.approx(wrap_up["since"] + 2)
        # Wrap-up ends by itself: ready again, pushed without the agent doing anything.
        await until(lambda: agent.states[-1]["state"] == "ready", "ready after wrap-up", server)
        await finished(waiting, tmp_path / "caller")   # the caller got the BYE

        # The supervisor sets the agent not ready from the wallboard's REST API: the page is told.
        async with httpx.AsyncClient(base_url=server.http_url, timeout=10) as http:
            token = (await http.post("/api/auth/token", json={"username": "supervisor1", "password": PASSWORD}))
            assert token.status_code == 201, token.text
            forced = await http.post("/api/supervisor/agents/1001/not-ready", json={"reason": "training"},
                                     headers={"Authorization": f"Bearer {token.json()['token']}"})
            assert forced.status_code == 200, forced.text
        await until(lambda: agent.states[-1]["state"] == "not_ready" and agent.states[-1]["reason"] == "training",
                    "the supervisor's not ready on the page", server)
    finally:
        media.close()
        await agent.close()

    await until(lambda: agent_log(server, "1001")[-1:] == ["PAUSE"], "the supervisor's PAUSE logged", server)
    log = queue_rows(server, "SELECT event, data FROM queue_log WHERE agent = '1001' ORDER BY id")
    assert [(r["event"], r["data"]) for r in log if r["event"] in ("ADDMEMBER", "PAUSE", "UNPAUSE")] == [
        ("ADDMEMBER", ""), ("PAUSE", "lunch"), ("UNPAUSE", ""), ("PAUSE", "training")]
    assert [r["event"] for r in log if r["event"] in ("CONNECT", "COMPLETEAGENT")] == ["CONNECT", "COMPLETEAGENT"]
    audit = queue_rows(server, "SELECT username, action FROM audit_log WHERE entity = 'agent' ORDER BY id")
    assert [(a["username"], a["action"]) for a in audit] == [
        ("agent1", "agent_login"), ("agent1", "agent_not_ready"), ("agent1", "agent_ready"),
        ("supervisor1", "force_not_ready")]
