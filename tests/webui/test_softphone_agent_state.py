"""Queue agents set their own state on the softphone's WebSocket (/ws/agent) and see every change
of it, over a real socket: uvicorn on 127.0.0.1, a real SQLite file holding the CRM, the signed-in
sessions, the queue log and the audit log, the real ACD glue (QueueRouter) and the supervisors'
REST API beside the page. The stories: an agent logs in from the page (ADDMEMBER, audited), goes
on lunch (PAUSE lunch: a callback waiting is offered to nobody) and back to ready (it is offered
at once); a supervisor's not-ready, a desk phone's *64 and auto not-ready after missed offers all
reach the agent's page; an agent in no queue is told so; the agent acts on their own extension
only, and refusals say why."""

from __future__ import annotations

import asyncio
import json
import random
import socket
import sqlite3
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette

from acd.agent_presence import AgentPresence
from acd.agents import NotReadyReason
from acd.queue_calls import FEATURE_READY, QueueDefinition, QueueRouter
from acd.queue_log import QueueLogWriter
from acd.schema import MIGRATIONS as ACD_MIGRATIONS
from acd.webrtc_agents import WebRtcAgents
from callcenter.database import apply_migrations, open_database
from crm import schema
from crm.access import SYSTEM
from crm.db import Database
from crm.passwords import ScryptParams
from crm.service import Crm
from mediacore.engine import MediaEngine
from mediacore.webrtc import WebRtcSettings
from tests.mediacore.test_webrtc_bridge import wait_until
from tests.webui.test_softphone_ws import Agent, open_socket
from webui.api.http import bearer_authenticator
from webui.pages import Pages
from webui.sessions import MIGRATIONS as SESSION_MIGRATIONS
from webui.sessions import SessionStore
from webui.softphone import SoftphonePages
from webui.supervisor_api import SupervisorApi

pytestmark = pytest.mark.timeout(60)

#: Sales: agent1 (2001) first, agent3 (2003) after; service: agent1 with penalty 2, paused
#: after two unanswered offers. agent2 (2002) is in no queue.
QUEUES = [
    {"number": "8001", "name": "销售", "members": ["2001", "2003"], "wrapuptime": 5, "joinempty": True},
    {"number": "8002", "name": "客服", "members": ["2001:2"], "max_missed": 2, "joinempty": True},
]


@dataclass
class Site:
    url: str
    origin: str
    tokens: dict[str, str]
    csrf: dict[str, str]
    router: QueueRouter
    db: Path
    queue_log: QueueLogWriter

    def rows(self, sql: str) -> list[dict[str, Any]]:
        conn = sqlite3.connect(self.db, timeout=10)
        conn.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in conn.execute(sql).fetchall()]
        finally:
            conn.close()

    async def queue_log_of(self, agent: str) -> list[tuple[str, str]]:
        """The agent's rows in the queue log table, once what was logged is written."""
        await self.queue_log.close()   # waits for the write behind, if any
        return [(r["event"], r["data"]) for r in self.rows(
            f"SELECT event, data FROM queue_log WHERE agent = '{agent}' ORDER BY id")]


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    db = tmp_path / "callcenter.db"
    conn = await open_database(db)
    base = 20000 + 2 * random.randrange(0, 4900)
    engine = MediaEngine("127.0.0.1", base, base + 99)
    server: uvicorn.Server | None = None
    task: asyncio.Task[None] | None = None
    agents: WebRtcAgents | None = None
    queue_log: QueueLogWriter | None = None
    try:
        await apply_migrations(conn, "crm", schema.MIGRATIONS)
        await apply_migrations(conn, "webui", SESSION_MIGRATIONS)
        await apply_migrations(conn, "acd", ACD_MIGRATIONS)
        crm = Crm.build(Database(conn), password_params=ScryptParams(log2_n=4, r=8, p=1))
        sessions = SessionStore(conn)
        tokens, csrf = {}, {}
        for username, extension, role in (("agent1", "2001", "agent"), ("agent2", "2002", "agent"),
                                          ("agent3", "2003", "agent"), ("sup", None, "supervisor")):
            user = await crm.org.create_user(SYSTEM, username, f"用户{username}", "secret-pass", roles=[role],
                                             extension=extension)
            tokens[username], session = await sessions.create(user.id, "en")
            csrf[username] = session.csrf
        queue_log = QueueLogWriter(conn)
        router = QueueRouter([QueueDefinition.from_table(q) for q in QUEUES], lambda ext: f"坐席{ext}",
                             on_log=queue_log.append)
        presence = AgentPresence(router)
        router.on_agent = presence.changed
        await engine.start()
        agents = WebRtcAgents(engine, WebRtcSettings())
        pages = Pages(crm, sessions)
        authenticate = pages.api_authenticator(bearer_authenticator(crm))
        app = Starlette(routes=pages.routes() + SoftphonePages(pages, agents, presence).routes()
                        + SupervisorApi(crm, authenticate, router).routes())
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(app, loop="none", lifespan="off", log_level="warning",
                                               ws="websockets-sansio"))
        server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
        await wait_until(lambda: server.started or task.done(), 10)
        yield Site(f"ws://127.0.0.1:{port}/ws/agent", f"http://127.0.0.1:{port}", tokens, csrf, router, db,
                   queue_log)
    finally:
        if agents is not None:
            await agents.close()
        if server is not None and task is not None:
            server.should_exit = True
            await asyncio.wait_for(task, 10)
        if queue_log is not None:
            await queue_log.close()
        engine.close()
        await conn.close()


class StateAgent(Agent):
    """The page's side as a mailbox: agent_state pushes, and the replies to its own requests by
    ref; a message not yet asked for stays for the next question, in order."""

    def __init__(self, ws: Any) -> None:
        super().__init__(ws)
        self.unread: list[dict[str, Any]] = []

    async def expect(self, kind: str, timeout: float = 10.0, **fields: Any) -> dict[str, Any]:
        return await self.first(lambda m: m["type"] == kind and all(m.get(k) == v for k, v in fields.items()),
                                timeout)

    async def first(self, match: Any, timeout: float = 10.0) -> dict[str, Any]:
        skipped: list[dict[str, Any]] = []

        async def scan() -> dict[str, Any]:
            while True:
                if self.unread:
                    message = self.unread.pop(0)
                else:
                    message = json.loads(await self.ws.recv())
                    self.seen.append(message)
                    assert message["v"] == 1
                if match(message):
                    return message
                skipped.append(message)

        try:
            return await asyncio.wait_for(scan(), timeout)
        finally:
            self.unread[:0] = skipped

    async def state(self, **fields: Any) -> dict[str, Any]:
        return await self.expect("agent_state", **fields)

    async def act(self, action: str, ref: int, **extra: Any) -> dict[str, Any]:
        """Send an agent_state action; the server's reply to it (ok or error)."""
        await self.send(type="agent_state", action=action, ref=ref, **extra)
        return await self.first(lambda m: m["type"] in ("ok", "error") and m.get("ref") == ref)


async def test_an_agent_logs_in_from_the_page_goes_to_lunch_and_back_and_the_queue_log_and_audit_say_so(
        site: Site) -> None:
    async with open_socket(site, "agent1") as ws:  # type: ignore[arg-type]
        agent = StateAgent(ws)
        await agent.register()
        # Right after registering: the state now, with the agent's queues and penalties.
        first = await agent.state()
        assert first["state"] == "logged_out" and first["reason"] is None
        assert first["queues"] == [{"id": "8001", "name": "销售", "penalty": 0},
                                   {"id": "8002", "name": "客服", "penalty": 2}]

        ok = await agent.act("login", 1)
        assert ok == {"v": 1, "type": "ok", "ref": 1, "action": "login", "state": "ready", "reason": None}
        ready = await agent.state(state="ready")
        assert ready["since"] <= ready["now"]
        assert site.router.agent_state("2001")[0].value == "ready"

        assert (await agent.act("not_ready", 2, reason="lunch"))["reason"] == "lunch"
        await agent.state(state="not_ready", reason="lunch")
        # A callback waiting in sales is offered to nobody while the agent lunches (agent3 is out).
        site.router.book_callback("8001", "13800000000", time.time())
        [entry] = site.router.acd.waiting.values()
        assert entry.offered_to == set()
        assert await site.queue_log_of("2001") == [("ADDMEMBER", ""), ("PAUSE", "lunch")]

        # Back to ready: the waiting callback is offered to the agent at once (no dialer is wired
        # here to ring a phone, so each offer counts as unanswered).
        await agent.act("ready", 3)
        assert (await site.queue_log_of("2001"))[2:4] == [("UNPAUSE", ""), ("RINGNOANSWER", "0")]

        audit = site.rows("SELECT username, entity, entity_id, action, before_json, after_json FROM audit_log"
                          " WHERE entity = 'agent' ORDER BY id")
        assert [(a["username"], a["entity_id"], a["action"]) for a in audit] == [
            ("agent1", 2001, "agent_login"), ("agent1", 2001, "agent_not_ready"), ("agent1", 2001, "agent_ready")]
        assert json.loads(audit[1]["before_json"])["state"] == "ready"
        assert json.loads(audit[1]["after_json"]) == {"agent": "2001", "state": "not_ready", "reason": "lunch"}


async def test_a_supervisors_not_ready_a_desk_phone_code_and_auto_not_ready_reach_the_agents_page(site: Site) -> None:
    async with open_socket(site, "agent1") as ws:  # type: ignore[arg-type]
        agent = StateAgent(ws)
        await agent.register()
        await agent.state(state="logged_out")
        await agent.act("login", 1)
        await agent.state(state="ready")

        # The supervisor's force action over REST (the wallboard's 置忙 button).
        async with httpx.AsyncClient(base_url=site.origin, cookies={"cc_session": site.tokens["sup"]}) as http:
            response = await http.post("/api/supervisor/agents/2001/not-ready", json={"reason": "training"},
                                       headers={"X-CSRF-Token": site.csrf["sup"]})
        assert response.status_code == 200, response.text
        await agent.state(state="not_ready", reason="training")

        # The desk phone's *64: ready again.
        site.router.feature("2001", FEATURE_READY, time.time())
        await agent.state(state="ready", reason=None)

        # Two offers of the service queue unanswered in a row (max_missed = 2; no phone can ring
        # here, which counts as unanswered): the ACD pauses the agent with the system's reason.
        site.router.book_callback("8002", "13800000001", time.time())
        paused = await agent.state(state="not_ready")
        assert paused["reason"] == "after_call"
        assert (await site.queue_log_of("2001"))[-3:] == [("RINGNOANSWER", "0"), ("RINGNOANSWER", "0"),
                                                          ("PAUSE", "auto")]


async def test_a_burst_of_changes_is_pushed_once_with_the_final_state(site: Site) -> None:
    async with open_socket(site, "agent1") as ws:  # type: ignore[arg-type]
        agent = StateAgent(ws)
        await agent.register()
        await agent.state(state="logged_out")
        now = time.time()
        # Log in, pause, change the reason and come back, all in one turn of the server's loop.
        site.router.force_ready("2001", now)
        site.router.force_not_ready("2001", NotReadyReason.BREAK, now)
        site.router.force_not_ready("2001", NotReadyReason.MEETING, now)
        site.router.force_ready("2001", now)
        await agent.act("ready", 1)   # answered after the push: the push came first
        pushed = [m for m in agent.seen if m["type"] == "agent_state"]
        assert [(m["state"], m["reason"]) for m in pushed] == [("logged_out", None), ("ready", None)]


async def test_an_agent_in_no_queue_is_told_so_and_gets_no_state(site: Site) -> None:
    async with open_socket(site, "agent2") as ws:  # type: ignore[arg-type]
        agent = StateAgent(ws)
        await agent.register()
        error = await agent.act("login", 7)
        assert error["type"] == "error" and error["code"] == "not_an_agent" and error["ref"] == 7
        assert not [m for m in agent.seen if m["type"] == "agent_state"]


async def test_an_agent_acts_on_their_own_extension_only_and_refusals_say_why(site: Site) -> None:
    async with open_socket(site, "agent3") as ws:  # type: ignore[arg-type]
        agent = StateAgent(ws)
        await agent.register()
        await agent.state(state="logged_out")
        assert (await agent.act("ready", 1))["code"] == "logged_out"
        assert (await agent.act("not_ready", 2, reason="lunch"))["code"] == "logged_out"
        # Naming another agent changes nothing about them: the message acts on the sender.
        await agent.act("login", 3, agent="2001")
        assert site.router.agent_state("2001")[0].value == "logged_out"
        assert site.router.agent_state("2003")[0].value == "ready"
        assert (await agent.act("not_ready", 4, reason="after_call"))["code"] == "bad_reason"
        assert (await agent.act("not_ready", 5, reason="nap"))["code"] == "bad_reason"
        assert (await agent.act("dance", 6))["code"] == "bad_action"
        assert (await agent.act("not_ready", 8, reason=5))["code"] == "bad_message"
        # Logging out twice writes one REMOVEMEMBER.
        await agent.act("logout", 9)
        assert (await agent.act("logout", 10))["state"] == "logged_out"
        assert await site.queue_log_of("2003") == [("ADDMEMBER", ""), ("REMOVEMEMBER", "")]


async def test_agent_state_needs_registering_first(site: Site) -> None:
    async with open_socket(site, "agent1") as ws:  # type: ignore[arg-type]
        agent = StateAgent(ws)
        await agent.send(type="hello", v=1)
        await agent.expect("welcome")
        assert (await agent.act("login", 1))["code"] == "register_first"
        assert site.router.agent_state("2001")[0].value == "logged_out"
