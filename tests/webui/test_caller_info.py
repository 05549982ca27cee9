"""The member's name on the ring (issue #7): a SIP caller rings a browser agent over the real
agent WebSocket; the ring comes at once with the number, and a moment later `caller_info`
names the CRM member who holds that number (a real SQLite CRM, looked up through the
composition root's CrmBridge as the server does). Nobody's number, a slow or failing CRM, and
a call that ended before the answer came all leave the ring as it was."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from acd.browser_ringing import SipRinging
from acd.caller_info import CallerInfoAnnouncer
from acd.lookups import CallerInfo
from callcenter.crm_bridge import CrmBridge
from callcenter.database import open_database
from crm.access import SYSTEM
from crm.db import Database
from crm.service import Crm
from tests.webui.test_softphone_ws import Agent, Site, open_socket
from tests.webui.test_softphone_ws import site as site  # noqa: F401  (the fixture)

pytestmark = pytest.mark.timeout(60)

MEMBER_PHONE = "13812345678"


@dataclass
class Caller:
    """A SIP call as `SipRinging` sees it (acd.browser_ringing.RingingCall), without media:
    what these tests check is signalling only."""

    caller: str
    id: str = "sip-call-7"
    events: list[tuple] = field(default_factory=list)

    def connect_browser(self, port, extension: str) -> None:
        self.events.append(("answered", extension))

    def browser_failed(self, status: int, busy: bool) -> None:
        self.events.append(("failed", status, busy))

    def send_dtmf_to_caller(self, digits: str) -> None:
        self.events.append(("dtmf", digits))

    def hangup(self, reason: str, *, side: str) -> None:
        self.events.append(("hangup", reason))

    def hold_for_browser(self, port, held: bool) -> None:
        self.events.append(("hold", held))


class CountingBridge:
    """The real CrmBridge, counting the look-ups it was asked for."""

    def __init__(self, bridge: CrmBridge) -> None:
        self.bridge = bridge
        self.asked: list[str] = []

    async def caller(self, number: str) -> CallerInfo | None:
        self.asked.append(number)
        return await self.bridge.caller(number)


class GatedLookup:
    """A CRM that answers only when let (`open`), or never; or fails outright."""

    def __init__(self, answer: CallerInfo | None = None, *, fail: bool = False) -> None:
        self.answer = answer
        self.fail = fail
        self.gate = asyncio.Event()

    async def caller(self, number: str) -> CallerInfo | None:
        if self.fail:
            raise RuntimeError("database is locked")
        await self.gate.wait()
        return self.answer


@pytest.fixture
async def crm(site: Site, tmp_path: Path) -> AsyncIterator[Crm]:  # noqa: F811
    """The site's CRM database (a second connection, as the server's CRM has its own) with one
    gold member calling from MEMBER_PHONE."""
    conn = await open_database(tmp_path / "callcenter.db")
    try:
        crm = Crm.build(Database(conn))
        await crm.members.create(SYSTEM, "王芳", phones=[MEMBER_PHONE], level="gold")
        await crm.members.create(SYSTEM, "赵六", phones=["13900001111"])
        yield crm
    finally:
        await conn.close()


async def no_caller_info_before_pong(agent: Agent) -> list[dict]:
    """Everything the agent received up to a ping's answer, which holds no caller_info."""
    await agent.send(type="ping", ref="p")
    await agent.expect("pong", ref="p")
    assert [m for m in agent.seen if m["type"] == "caller_info"] == []
    return agent.seen


async def test_the_ring_comes_first_then_the_member_calling_from_that_number(site: Site, crm: Crm) -> None:  # noqa: F811
    bridge = CountingBridge(CrmBridge(crm))
    announcer = CallerInfoAnnouncer(bridge)
    ringing = SipRinging(site.agents, caller_info=announcer)
    async with open_socket(site, "agent1") as ws:
        agent = Agent(ws)
        await agent.register()
        # The trunk sends the number in its national form with the long-distance 0.
        caller = Caller("013812345678")
        assert ringing.ring(caller, "2001", "")
        incoming = await agent.expect("incoming")
        assert incoming["peer"] == "013812345678" and incoming["peer_name"] == ""
        info = await agent.expect("caller_info", call_id=incoming["call_id"])
        member = info["member"]
        assert member["name"] == "王芳" and member["vip_rank"] == 20 and member["blacklisted"] is False
        assert isinstance(member["id"], int) and member["id"] > 0
        assert [m["type"] for m in agent.seen] == ["welcome", "registered", "incoming", "caller_info"]
        assert bridge.asked == ["013812345678"]
        # The agent answers and the call goes on as any other.
        await agent.send(type="answer", call_id=incoming["call_id"], ref="a")
        await agent.expect("ok", ref="a")
        assert caller.events == [("answered", "2001")]
        await agent.send(type="hangup", call_id=incoming["call_id"], ref="h")
        await agent.expect("ok", ref="h")
    await announcer.close()


async def test_a_member_of_the_lowest_level_is_named_without_vip(site: Site, crm: Crm) -> None:  # noqa: F811
    announcer = CallerInfoAnnouncer(CrmBridge(crm))
    ringing = SipRinging(site.agents, caller_info=announcer)
    async with open_socket(site, "agent1") as ws:
        agent = Agent(ws)
        await agent.register()
        assert ringing.ring(Caller("+86 139 0000 1111"), "2001", "")
        info = await agent.expect("caller_info")
        assert info["member"]["name"] == "赵六" and info["member"]["vip_rank"] == 0


async def test_an_extension_or_unknown_number_rings_without_caller_info(site: Site, crm: Crm) -> None:  # noqa: F811
    announcer = CallerInfoAnnouncer(CrmBridge(crm))
    ringing = SipRinging(site.agents, caller_info=announcer)
    async with open_socket(site, "agent1") as ws:
        agent = Agent(ws)
        await agent.register()
        for number, call_id in (("1001", "c1"), ("13700000000", "c2"), ("anonymous", "c3"), ("x" * 40, "c4")):
            assert ringing.ring(Caller(number, id=call_id), "2001", "分机")
            incoming = await agent.expect("incoming")
            assert incoming["peer"] == number
            await announcer.drain()
            await no_caller_info_before_pong(agent)
            ringing.stop(call_id)
            await agent.expect("state", call_id=incoming["call_id"], state="ended")


async def test_agents_rung_together_share_one_look_up(site: Site, crm: Crm) -> None:  # noqa: F811
    bridge = CountingBridge(CrmBridge(crm))
    announcer = CallerInfoAnnouncer(bridge)
    ringing = SipRinging(site.agents, caller_info=announcer)
    async with open_socket(site, "agent1") as ws1, open_socket(site, "agent2") as ws2:
        agent1, agent2 = Agent(ws1), Agent(ws2)
        await agent1.register()
        await agent2.register()
        caller = Caller(MEMBER_PHONE)
        assert ringing.ring(caller, "2001", "") and ringing.ring(caller, "2002", "")  # a ring-all step
        for agent in (agent1, agent2):
            incoming = await agent.expect("incoming")
            info = await agent.expect("caller_info", call_id=incoming["call_id"])
            assert info["member"]["name"] == "王芳"
        assert bridge.asked == [MEMBER_PHONE]


async def test_a_slow_crm_never_delays_the_ring_and_is_given_up(site: Site) -> None:  # noqa: F811
    slow = GatedLookup(CallerInfo(5, "王芳", 20, False, 0))   # never opened
    announcer = CallerInfoAnnouncer(slow, timeout=0.2)
    ringing = SipRinging(site.agents, caller_info=announcer)
    async with open_socket(site, "agent1") as ws:
        agent = Agent(ws)
        await agent.register()
        assert ringing.ring(Caller(MEMBER_PHONE), "2001", "王女士")
        incoming = await agent.expect("incoming")   # while the CRM still has not answered
        assert incoming["peer_name"] == "王女士" and not slow.gate.is_set()
        await announcer.drain()                      # the look-up gave up
        await no_caller_info_before_pong(agent)
        assert site.agents.calls_of("2001")[0].state.value == "ringing"


async def test_a_failing_crm_leaves_the_ring_as_it_was(site: Site) -> None:  # noqa: F811
    announcer = CallerInfoAnnouncer(GatedLookup(fail=True))
    ringing = SipRinging(site.agents, caller_info=announcer)
    async with open_socket(site, "agent1") as ws:
        agent = Agent(ws)
        await agent.register()
        assert ringing.ring(Caller(MEMBER_PHONE), "2001", "")
        incoming = await agent.expect("incoming")
        await announcer.drain()
        await no_caller_info_before_pong(agent)
        await agent.send(type="reject", call_id=incoming["call_id"])
        await agent.expect("state", call_id=incoming["call_id"], state="ended")


async def test_no_caller_info_for_a_call_that_ended_before_the_crm_answered(site: Site) -> None:  # noqa: F811
    late = GatedLookup(CallerInfo(5, "王芳", 20, False, 0))
    announcer = CallerInfoAnnouncer(late)
    ringing = SipRinging(site.agents, caller_info=announcer)
    async with open_socket(site, "agent1") as ws:
        agent = Agent(ws)
        await agent.register()
        caller = Caller(MEMBER_PHONE)
        assert ringing.ring(caller, "2001", "")
        incoming = await agent.expect("incoming")
        ringing.stop(caller.id)   # the caller hung up while it rang
        await agent.expect("state", call_id=incoming["call_id"], state="ended")
        late.gate.set()
        await announcer.drain()
        await no_caller_info_before_pong(agent)


async def test_closing_abandons_look_ups_in_flight(site: Site) -> None:  # noqa: F811
    never = GatedLookup(CallerInfo(5, "王芳", 20, False, 0))
    announcer = CallerInfoAnnouncer(never)
    ringing = SipRinging(site.agents, caller_info=announcer)
    async with open_socket(site, "agent1") as ws:
        agent = Agent(ws)
        await agent.register()
        assert ringing.ring(Caller(MEMBER_PHONE), "2001", "")
        await agent.expect("incoming")
        await announcer.close()
        await announcer.drain()    # nothing left waiting
        never.gate.set()
        await no_caller_info_before_pong(agent)
