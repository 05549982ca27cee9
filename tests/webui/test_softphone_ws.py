"""The agent WebSocket (/ws/agent) over a real socket: uvicorn on 127.0.0.1, a real SQLite CRM
with signed-in sessions, the real media engine, and aiortc standing in for the browser's
RTCPeerConnection. The story: an agent signs in, registers their extension, dials the echo
test and hears themself; calls another browser agent; reconnects without losing the call."""

from __future__ import annotations

import asyncio
import json
import random
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import uvicorn
from starlette.applications import Starlette
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from acd.browser_ringing import SipRinging
from acd.events import CallEnded
from acd.webrtc_agents import WebRtcAgents
from callcenter.database import apply_migrations, open_database
from crm import schema
from crm.access import SYSTEM
from crm.db import Database
from crm.passwords import ScryptParams
from crm.service import Crm
from mediacore.codecs import get_decoder, get_encoder
from mediacore.engine import MediaEngine
from mediacore.rtp import RtpPacket
from mediacore.webrtc import WEBRTC_RATE, IceServer, WebRtcSettings
from tests.mediacore.test_webrtc_bridge import Browser, dominant_frequency, wait_until
from webui.pages import Pages
from webui.sessions import MIGRATIONS as SESSION_MIGRATIONS
from webui.sessions import SessionStore
from webui.softphone import SoftphonePages

pytestmark = pytest.mark.timeout(90)

STUN = IceServer(("stun:stun.example.net:3478",))


@dataclass
class Site:
    url: str
    origin: str
    tokens: dict[str, str]
    agents: WebRtcAgents


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    conn = await open_database(tmp_path / "callcenter.db")
    base = 20000 + 2 * random.randrange(0, 4900)  # below the ephemeral ports; busy pairs are skipped
    engine = MediaEngine("127.0.0.1", base, base + 99)
    server: uvicorn.Server | None = None
    task: asyncio.Task[None] | None = None
    agents: WebRtcAgents | None = None
    try:
        await apply_migrations(conn, "crm", schema.MIGRATIONS)
        await apply_migrations(conn, "webui", SESSION_MIGRATIONS)
        crm = Crm.build(Database(conn), password_params=ScryptParams(log2_n=4, r=8, p=1))
        sessions = SessionStore(conn)
        tokens = {}
        for username, extension in (("agent1", "2001"), ("agent2", "2002"), ("clerk", None)):
            user = await crm.org.create_user(SYSTEM, username, f"坐席{username[-1]}", "secret-pass", roles=["agent"],
                                             extension=extension)
            tokens[username], _ = await sessions.create(user.id, "en")
        await engine.start()
        agents = WebRtcAgents(engine, WebRtcSettings(ice_servers=(STUN,)))
        pages = Pages(crm, sessions)
        app = Starlette(routes=pages.routes() + SoftphonePages(pages, agents).routes())
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(app, loop="none", lifespan="off", log_level="warning",
                                               ws="websockets-sansio"))
        server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
        await wait_until(lambda: server.started or task.done(), 10)
        yield Site(f"ws://127.0.0.1:{port}/ws/agent", f"http://127.0.0.1:{port}", tokens, agents)
    finally:
        if agents is not None:
            await agents.close()
        if server is not None and task is not None:
            server.should_exit = True
            await asyncio.wait_for(task, 10)
        engine.close()
        await conn.close()


class Agent:
    """A browser's signalling: JSON messages in and out, with waits for a given type."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.seen: list[dict[str, Any]] = []

    async def send(self, **message: Any) -> None:
        await self.ws.send(json.dumps(message))

    async def expect(self, kind: str, timeout: float = 10.0, **fields: Any) -> dict[str, Any]:
        async def scan() -> dict[str, Any]:
            while True:
                message = json.loads(await self.ws.recv())
                self.seen.append(message)
                assert message["v"] == 1
                if message["type"] == kind and all(message.get(k) == v for k, v in fields.items()):
                    return message

        return await asyncio.wait_for(scan(), timeout)

    async def register(self) -> dict[str, Any]:
        await self.send(type="hello", v=1)
        await self.expect("welcome")
        await self.send(type="register")
        return await self.expect("registered")


def open_socket(site: Site, who: str | None, origin: str | None = None):
    headers = {"Cookie": f"cc_session={site.tokens[who]}"} if who else {}
    return connect(site.url, additional_headers=headers, origin=origin or site.origin)  # type: ignore[arg-type]


async def closed_with(ws: ClientConnection) -> int | None:
    with pytest.raises(ConnectionClosed):
        for _ in range(20):
            await asyncio.wait_for(ws.recv(), 10)
    return ws.close_code


async def media_for(agent: Agent, call_id: str, browser: Browser) -> None:
    """The browser's side of offer/answer: offer, take the answer, trickle nothing more."""
    await agent.send(type="offer", call_id=call_id, sdp=await browser.offer())
    answer = await agent.expect("answer", call_id=call_id)
    await browser.accept(answer["sdp"])
    await agent.expect("media", call_id=call_id, state="connected")


# -- who may connect -----------------------------------------------------------------------


async def test_only_a_signed_in_user_on_our_own_origin_gets_a_socket(site: Site) -> None:
    # Refused at the handshake (403), before any message: no cookie, or a foreign page's origin.
    for who, origin in ((None, None), ("agent1", "http://evil.example"), ("agent1", "null")):
        with pytest.raises(InvalidStatus) as refused:
            async with open_socket(site, who, origin=origin):
                pass
        assert refused.value.response.status_code == 403
    async with open_socket(site, "clerk") as ws:  # signed in, but no extension to register
        clerk = Agent(ws)
        await clerk.send(type="hello", v=1)
        assert (await clerk.expect("welcome"))["extension"] is None
        await clerk.send(type="register", ref=1)
        assert (await clerk.expect("error"))["code"] == "no_extension"
        assert await closed_with(ws) == 4001


async def test_hello_states_the_version_and_bad_messages_get_errors_not_a_dropped_socket(site: Site) -> None:
    async with open_socket(site, "agent1") as ws:
        agent = Agent(ws)
        await agent.send(type="register", ref="r0")
        assert (await agent.expect("error", ref="r0"))["code"] == "hello_first"
        await ws.send("{not json")
        assert (await agent.expect("error"))["code"] == "bad_json"
        await ws.send("[1, 2]")
        assert (await agent.expect("error"))["code"] == "bad_message"
        await agent.send(type="hello", v=1, ref="h")
        welcome = await agent.expect("welcome", ref="h")
        assert welcome["extension"] == "2001" and welcome["ice_servers"] == [{"urls": ["stun:stun.example.net:3478"]}]
        await agent.send(type="dial", number="9196", ref="d")
        assert (await agent.expect("error", ref="d"))["code"] == "register_first"
        registered = await agent.register()
        assert registered["extension"] == "2001" and registered["calls"] == []
        assert site.agents.registered == ["2001"]
        for bad, code in (({"type": "frobnicate"}, "unknown_type"), ({"type": "dial"}, "bad_message"),
                          ({"type": "dial", "number": "12<script>"}, "bad_number"),
                          ({"type": "dial", "number": "4444"}, "unreachable"),
                          ({"type": "hangup", "call_id": "nope"}, "no_call"),
                          ({"type": "mute", "call_id": "nope", "muted": "yes"}, "bad_message")):
            await agent.send(**bad, ref=code)
            assert (await agent.expect("error", ref=code))["code"] == code
        await ws.send("x" * 200_000)
        assert await closed_with(ws) == 1009
    await wait_until(lambda: site.agents.registered == [])


async def test_another_protocol_version_is_refused_with_the_supported_one(site: Site) -> None:
    async with open_socket(site, "agent1") as ws:
        agent = Agent(ws)
        await agent.send(type="hello", v=2)
        error = await agent.expect("error")
        assert error["code"] == "unsupported_version" and error["supported"] == [1]
        assert await closed_with(ws) == 4000


# -- calls ---------------------------------------------------------------------------------


async def test_dialling_the_echo_test_the_agent_hears_themself_and_uses_the_call_controls(site: Site) -> None:
    browser = Browser(frequency=1000)
    try:
        async with open_socket(site, "agent1") as ws:
            agent = Agent(ws)
            await agent.register()
            await agent.send(type="dial", number="9196", ref=1)
            call = await agent.expect("call", ref=1)
            assert call["direction"] == "outbound" and call["peer"] == "9196" and call["state"] == "answered"
            call_id = call["call_id"]
            await media_for(agent, call_id, browser)
            await wait_until(lambda: len(browser.heard) >= 100)
            heard = browser.last(0.5)
            assert abs(dominant_frequency(heard, WEBRTC_RATE) - 1000) < 10  # our own tone, back
            assert np.sqrt(np.mean(heard.astype(float) ** 2)) > 2000

            for command, extra in (("mute", {"muted": True}), ("mute", {"muted": False}), ("hold", {}),
                                   ("unhold", {}), ("dtmf", {"digits": "12#"})):
                await agent.send(type=command, call_id=call_id, ref=command, **extra)
                await agent.expect("ok", ref=command)
            assert any(m["type"] == "state" and m["held"] for m in agent.seen)
            await agent.send(type="dtmf", call_id=call_id, digits="x", ref="bad")
            assert (await agent.expect("error", ref="bad"))["code"] == "bad_digits"
            await agent.send(type="hangup", call_id=call_id)
            ended = await agent.expect("state", call_id=call_id, state="ended")
            assert ended["reason"] == "hangup"
            assert site.agents.calls_of("2001") == []
    finally:
        await browser.close()


async def test_one_browser_agent_calls_another_who_sees_the_caller_and_answers(site: Site) -> None:
    phone1, phone2 = Browser(frequency=700), Browser(frequency=1200)
    try:
        async with open_socket(site, "agent1") as ws1, open_socket(site, "agent2") as ws2:
            agent1, agent2 = Agent(ws1), Agent(ws2)
            await agent1.register()
            await agent2.register()
            await agent1.send(type="dial", number="2002", ref=1)
            outgoing = await agent1.expect("call", ref=1)
            assert outgoing["state"] == "ringing" and outgoing["peer_name"] == "坐席2"
            incoming = await agent2.expect("incoming")
            assert incoming["peer"] == "2001" and incoming["peer_name"] == "坐席1"  # caller ID
            await media_for(agent1, outgoing["call_id"], phone1)
            await media_for(agent2, incoming["call_id"], phone2)
            await agent2.send(type="answer", call_id=incoming["call_id"], ref="a")
            await agent2.expect("ok", ref="a")
            await agent1.expect("state", call_id=outgoing["call_id"], state="answered")
            # Each hears the other's tone through the engine.
            await wait_until(lambda: len(phone1.heard) >= 100 and len(phone2.heard) >= 100)
            await asyncio.sleep(0.6)
            assert abs(dominant_frequency(phone1.last(0.5), WEBRTC_RATE) - 1200) < 10
            assert abs(dominant_frequency(phone2.last(0.5), WEBRTC_RATE) - 700) < 10
            await agent1.send(type="hangup", call_id=outgoing["call_id"])
            ended = await agent2.expect("state", call_id=incoming["call_id"], state="ended")
            assert ended["reason"] == "remote_hangup"
    finally:
        await phone1.close()
        await phone2.close()


async def test_a_rejected_call_ends_for_the_caller_too(site: Site) -> None:
    async with open_socket(site, "agent1") as ws1, open_socket(site, "agent2") as ws2:
        agent1, agent2 = Agent(ws1), Agent(ws2)
        await agent1.register()
        await agent2.register()
        await agent1.send(type="dial", number="2002", ref=1)
        outgoing = await agent1.expect("call", ref=1)
        incoming = await agent2.expect("incoming")
        await agent2.send(type="reject", call_id=incoming["call_id"])
        ended = await agent1.expect("state", call_id=outgoing["call_id"], state="ended")
        assert ended["reason"] == "remote_rejected"


async def test_a_call_survives_a_reconnect_and_a_second_tab_takes_over(site: Site) -> None:
    async with open_socket(site, "agent1") as ws:
        agent = Agent(ws)
        await agent.register()
        await agent.send(type="dial", number="9196", ref=1)
        call_id = (await agent.expect("call", ref=1))["call_id"]
    # The socket dropped (a page reload, a network blip): the call waits for the agent.
    await wait_until(lambda: not site.agents.is_registered("2001"))
    assert [c.id for c in site.agents.calls_of("2001")] == [call_id]
    browser = Browser(frequency=1000)
    try:
        async with open_socket(site, "agent1") as ws:
            agent = Agent(ws)
            registered = await agent.register()
            assert [c["call_id"] for c in registered["calls"]] == [call_id]
            await media_for(agent, call_id, browser)  # new media path for the same call
            async with open_socket(site, "agent1") as other_tab:
                newer = Agent(other_tab)
                assert [c["call_id"] for c in (await newer.register())["calls"]] == [call_id]
                await agent.expect("replaced")
                assert await closed_with(ws) == 4002
                assert site.agents.is_registered("2001")
                await newer.send(type="hangup", call_id=call_id, ref="h")
                await newer.expect("ok", ref="h")
    finally:
        await browser.close()


# -- a SIP caller rings a browser agent ----------------------------------------------------


class SipCaller:
    """The SIP side as the B2BUA's Call sets it up (acd.calls.Call implements acd.browser_ringing.RingingCall):
    an engine RTP endpoint whose far end is a real UDP socket sending a PCMU tone."""

    def __init__(self, engine: MediaEngine, frequency: float) -> None:
        self.id = "sip-call-1"
        self.caller = "13912345678"
        self.engine = engine
        self.endpoint = engine.create_endpoint("PCMU", 0, telephone_event_pt=101)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        engine.set_remote(self.endpoint, "127.0.0.1", self.sock.getsockname()[1])
        self.frequency = frequency
        self.received: list[RtpPacket] = []
        self.events: list[tuple] = []
        self.task = asyncio.get_running_loop().create_task(self._media())

    async def _media(self) -> None:
        encoder = get_encoder("PCMU")
        loop = asyncio.get_running_loop()
        start, n = loop.time(), 0
        while True:
            t = (np.arange(160) + n * 160) / 8000
            pcm = np.round(8000 * np.sin(2 * np.pi * self.frequency * t)).astype(np.int16)
            packet = RtpPacket(0, n & 0xFFFF, n * 160, 0x1234, encoder.encode(pcm))
            self.sock.sendto(packet.serialize(), ("127.0.0.1", self.endpoint.local_port))
            n += 1
            while True:
                try:
                    self.received.append(RtpPacket.parse(self.sock.recv(2048)))
                except BlockingIOError:
                    break
            await asyncio.sleep(max(0.0, start + n * 0.02 - loop.time()))

    # RingingCall
    def connect_browser(self, port, extension: str) -> None:
        self.events.append(("answered", extension))
        self.engine.connect(self.endpoint, port)

    def browser_failed(self, status: int, busy: bool) -> None:
        self.events.append(("failed", status, busy))

    def send_dtmf_to_caller(self, digits: str) -> None:
        self.engine.send_dtmf(self.endpoint, digits)

    def hangup(self, reason: str, *, side: str) -> None:
        self.events.append(("hangup", reason, side))

    def hold_for_browser(self, port, held: bool) -> None:
        self.events.append(("hold", held))

    def close(self) -> None:
        self.task.cancel()
        self.sock.close()


async def test_a_sip_caller_rings_the_browser_agent_and_both_hear_each_other(site: Site) -> None:
    ringing = SipRinging(site.agents)
    caller = SipCaller(site.agents.engine, frequency=500)
    phone = Browser(frequency=1000)
    try:
        assert not ringing.ring(caller, "2001", "王女士")  # nobody registered yet
        async with open_socket(site, "agent1") as ws:
            agent = Agent(ws)
            await agent.register()
            assert ringing.ring(caller, "2001", "王女士")
            incoming = await agent.expect("incoming")
            assert incoming["peer"] == "13912345678" and incoming["peer_name"] == "王女士"
            await media_for(agent, incoming["call_id"], phone)
            await agent.send(type="answer", call_id=incoming["call_id"], ref="a")
            await agent.expect("ok", ref="a")
            assert caller.events == [("answered", "2001")]
            await wait_until(lambda: len(phone.heard) >= 100 and len(caller.received) >= 100)
            await asyncio.sleep(0.5)
            # The caller's 500 Hz G.711 reaches the browser; the browser's 1 kHz reaches the caller.
            assert abs(dominant_frequency(phone.last(0.5), WEBRTC_RATE) - 500) < 10
            decoder = get_decoder("PCMU")
            to_caller = np.concatenate([decoder.decode(p.payload) for p in caller.received[-25:] if p.payload_type == 0])
            assert abs(dominant_frequency(to_caller, 8000) - 1000) < 10
            # The agent's keypad reaches the caller as RFC 4733 events.
            await agent.send(type="dtmf", call_id=incoming["call_id"], digits="5", ref="k")
            await agent.expect("ok", ref="k")
            await wait_until(lambda: any(p.payload_type == 101 for p in caller.received[-50:]), 5)
            # The caller hangs up: the B2BUA publishes CallEnded, the browser call ends.
            ringing.on_event(CallEnded(caller.id, "ANSWERED", "caller", "normal", 3.0, 2.0, 0.0))
            ended = await agent.expect("state", call_id=incoming["call_id"], state="ended")
            assert ended["reason"] == "remote_hangup"
            assert ("hangup", "agent remote_hangup", "callee") not in caller.events  # no echo back
    finally:
        caller.close()
        await phone.close()


async def test_a_browser_agent_declining_a_sip_call_fails_the_ring_step_busy(site: Site) -> None:
    ringing = SipRinging(site.agents)
    caller = SipCaller(site.agents.engine, frequency=500)
    try:
        async with open_socket(site, "agent1") as ws:
            agent = Agent(ws)
            await agent.register()
            assert ringing.ring(caller, "2001", "")
            incoming = await agent.expect("incoming")
            await agent.send(type="reject", call_id=incoming["call_id"])
            await agent.expect("state", call_id=incoming["call_id"], state="ended")
            assert caller.events == [("failed", 486, True)]
    finally:
        caller.close()
