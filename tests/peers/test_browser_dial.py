"""Calls from the browser softphone to SIP: a browser agent (an aiortc peer signed in over
/ws/agent like the page) dials a desk phone, a busy or absent extension, an unknown number, a
feature code and an outside number through a trunk — each routed by the real server as the
same number dialled from a desk phone, with SIPp as the phones and the provider.

The stories: the agent's call to a desk phone rings, is answered, both hear each other, keys and
hold reach the phone, and the agent's hang-up reaches it as a BYE, with a CDR naming the agent
as caller; the agent hears ringback, and hanging up before the answer CANCELs; a busy, an
unregistered and an unknown number each end the browser's call with the reason the page shows;
*61 from the softphone logs the agent in to its queue, and the next queue call rings the browser;
a key pressed in the softphone reaches a queue that answered the call (its callback key);
a call out goes through the trunk with the route's caller ID, and the agent's hang-up ends it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription

from bench.server import ServerProcess
from bench.sipp import free_port
from bench.webrtc_clients import ToneTrack
from tests.peers.seeded_server import rows, seeded_server
from tests.peers.test_queue_browser_agents import (
    BROWSER_HZ,
    SIP_HZ,
    BrowserAgent,
    finished,
    queue_log,
    sip_tone,
    sipp,
    start_sipp,
    tone_of,
    until,
)
from tests.peers.test_queue_callback import Media, RtpPeer

pytestmark = [pytest.mark.peers, pytest.mark.timeout(120)]

ACCOUNT = "02161234567"   # the trunk account bench/scenarios/trunk_provider.xml expects


class Softphone(BrowserAgent):
    """A browser agent that also dials: `dial` sends the page's `dial`, then offers the
    microphone's tone for the call's media, as softphone.js does on the `call` reply."""

    def __init__(self, server: ServerProcess, username: str, extension: str, policy: str = "answer") -> None:
        super().__init__(server, username, extension, policy)
        #: Every state a call went through, in order ("ringing", "answered", "ended").
        self.states: dict[str, list[str]] = {}
        self._replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._ref = 100

    async def dial(self, number: str) -> str:
        self._ref += 1
        reply: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[self._ref] = reply
        await self._send(type="dial", number=number, ref=self._ref)
        message = await asyncio.wait_for(reply, 10)
        assert message["type"] == "call", message
        self.states.setdefault(message["call_id"], []).append(message["state"])
        self._spawn(self._media(message["call_id"]))
        return message["call_id"]

    def state(self, call_id: str) -> str:
        return (self.states.get(call_id) or [""])[-1]

    async def _media(self, call_id: str) -> None:
        pc = self._pcs[call_id] = RTCPeerConnection()
        pc.addTrack(ToneTrack(BROWSER_HZ))
        pc.on("track", lambda track: self._spawn(self._listen(track)))
        await pc.setLocalDescription(await pc.createOffer())
        answer: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._answers[call_id] = answer
        await self._send(type="offer", call_id=call_id, sdp=pc.localDescription.sdp)
        with contextlib.suppress(TimeoutError):   # a call refused at once has no media to set up
            sdp = await asyncio.wait_for(answer, 20)
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))

    async def _read(self, registered: asyncio.Future[None]) -> None:
        assert self.ws is not None
        async for raw in self.ws:
            message = json.loads(raw)
            kind = message.get("type")
            future = self._replies.pop(message.get("ref"), None) if kind in ("call", "error") else None
            if future is not None and not future.done():
                future.set_result(message)
            if kind == "registered" and not registered.done():
                registered.set_result(None)
            elif kind == "incoming":
                self.incoming.append(message)
                if self.policy == "answer":
                    self._spawn(self._take(message["call_id"]))
            elif kind == "answer":
                waiting = self._answers.pop(message["call_id"], None)
                if waiting is not None and not waiting.done():
                    waiting.set_result(message["sdp"])
            elif kind == "state":
                self.states.setdefault(message["call_id"], []).append(message["state"])
                if message["state"] == "ended":
                    self.ended[message["call_id"]] = message.get("reason", "")
                    pc = self._pcs.pop(message["call_id"], None)
                    if pc is not None:
                        self._spawn(pc.close())
            elif kind == "error":
                self.errors.append(message)


@pytest.fixture(scope="module")
def provider_port() -> int:
    return free_port("127.0.0.1")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, provider_port: int) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("browser-dial")
    config = "\n".join([
        # agent3's queue: logged in by *61 from the softphone.
        "[[queues]]", 'number = "8111"', 'members = ["1003"]', "wrapuptime = 0", "ring_timeout = 10",
        # Nobody logged in: answered, music, and key 1 books a callback.
        "[[queues]]", 'number = "8112"', 'members = ["1002"]', "joinempty = true", "answer = true",
        'callback_key = "1"', 'language = "en"',
        # The provider: SIPp on `provider_port` (started by the trunk story), no OPTIONS probes.
        "[[trunks]]", 'name = "carrier"', 'host = "127.0.0.1"', f"port = {provider_port}",
        f'username = "{ACCOUNT}"', 'password = "s3cret"', f'ip_auth = ["127.0.0.1:{provider_port}"]',
        "qualify = 0",
        "[[outbound_routes]]", 'name = "long distance"', "pattern = '^0(1[3-9]\\d{9})$'", "replace = '\\1'",
        'trunks = ["carrier"]', f"caller_id = '\"Acme Ltd\" <{ACCOUNT}>'", ""])
    with seeded_server(root, config) as server:
        yield server




async def signed_in(server: ServerProcess, browsers: list[Softphone], username: str, extension: str) -> Softphone:
    phone = Softphone(server, username, extension)
    browsers.append(phone)
    await phone.register()
    return phone


async def desk_phone(server: ServerProcess, tmp_path: Path, procs: list, extension: str,  # type: ignore[type-arg]
                     scenario: str, rtp_port: int) -> subprocess.Popen[bytes]:
    """A SIPp uas registered as `extension`'s desk phone."""
    port = free_port("127.0.0.1")
    uas = start_sipp(procs, server, tmp_path / f"desk{extension}", scenario, local_port=port, timeout=60,
                     keys={"rtp_port": str(rtp_port)})
    await sipp(server, "register_contact.xml", tmp_path / f"reg{extension}", service=extension,
               auth=(extension, f"demo{extension}"), keys={"contact_port": str(port)}, timeout=20)
    return uas


def cdrs(server: ServerProcess, where: str) -> list[dict[str, Any]]:
    return rows(server.data_dir / "callcenter.db",
                "SELECT caller, caller_name, callee, answered_by, disposition, hangup_side, sip_status, trunk"
                f" FROM cdr WHERE {where} ORDER BY id")


async def test_the_agent_calls_a_desk_phone_both_hear_each_other_and_the_hang_up_sends_bye(
        server: ServerProcess, tmp_path: Path, browsers: list[Softphone], procs: list) -> None:  # type: ignore[type-arg]
    agent = await signed_in(server, browsers, "agent1", "1001")
    desk = RtpPeer()
    media = Media(desk)
    try:
        uas = await desk_phone(server, tmp_path, procs, "1006", "uas_answer.xml", desk.port)
        call_id = await agent.dial("1006")
        await until(lambda: agent.state(call_id) == "answered", "the desk phone to answer", server)
        desk.talk = sip_tone()
        await until(lambda: abs(agent.heard_hz() - SIP_HZ) < 15, "the desk phone's tone in the browser", server)
        await until(lambda: abs(tone_of(desk.payloads()[-25:]) - BROWSER_HZ) < 15,
                    "the browser's tone at the desk phone", server)
        # The keypad reaches the phone as RFC 4733 events (payload type 101 of its answer).
        await agent._send(type="dtmf", call_id=call_id, digits="5")
        await until(lambda: any(p[0] == 5 for p in desk.payloads(101)), "key 5 at the desk phone", server)
        # Hold: the phone hears music instead of the agent, until the agent resumes.
        await agent._send(type="hold", call_id=call_id)
        await until(lambda: len(desk.payloads()) > 25 and abs(tone_of(desk.payloads()[-25:]) - BROWSER_HZ) > 50,
                    "music on hold at the desk phone", server)
        await agent._send(type="unhold", call_id=call_id)
        await until(lambda: abs(tone_of(desk.payloads()[-25:]) - BROWSER_HZ) < 15,
                    "the agent back at the desk phone", server)
        await agent.hangup(call_id)
        await finished(uas, tmp_path / "desk1006")   # the desk phone got its BYE (and said 200)
    finally:
        media.close()
    assert agent.states[call_id][0] == "ringing" and agent.ended[call_id] == "hangup"
    await until(lambda: cdrs(server, "callee = '1006'"), "the CDR", server)
    [cdr] = cdrs(server, "callee = '1006'")
    [ext] = rows(server.data_dir / "callcenter.db", "SELECT display_name FROM extensions WHERE number = '1001'")
    assert cdr == {"caller": "1001", "caller_name": ext["display_name"], "callee": "1006", "answered_by": "1006",
                   "disposition": "ANSWERED", "hangup_side": "caller", "sip_status": 0, "trunk": ""}


async def test_the_agent_hears_ringback_and_hanging_up_before_the_answer_cancels_the_call(
        server: ServerProcess, tmp_path: Path, browsers: list[Softphone], procs: list) -> None:  # type: ignore[type-arg]
    agent = await signed_in(server, browsers, "agent5", "1005")
    uas = await desk_phone(server, tmp_path, procs, "1009", "uas_ring.xml", free_port("127.0.0.1"))
    call_id = await agent.dial("1009")
    # The phone rings (180): the engine's ringback (China's plan: 450 Hz, 1 s on, 4 s off).
    await until(lambda: abs(agent.heard_hz() - 450) < 15, "ringback in the browser", server)
    assert agent.state(call_id) == "ringing"
    await agent.hangup(call_id)
    await finished(uas, tmp_path / "desk1009")   # CANCEL, 200, 487, ACK
    await until(lambda: cdrs(server, "caller = '1005'"), "the CDR", server)
    [cdr] = cdrs(server, "caller = '1005'")
    assert (cdr["callee"], cdr["disposition"], cdr["hangup_side"]) == ("1009", "CANCELLED", "caller")


async def test_busy_unregistered_and_unknown_numbers_end_the_browser_call_with_the_reason(
        server: ServerProcess, tmp_path: Path, browsers: list[Softphone], procs: list) -> None:  # type: ignore[type-arg]
    agent = await signed_in(server, browsers, "agent2", "1002")
    busy = await desk_phone(server, tmp_path, procs, "1007", "uas_busy.xml", free_port("127.0.0.1"))
    reasons = {}
    for number in ("1007", "1010", "4999"):   # 486 from the phone; no phone registered; no such number
        call_id = await agent.dial(number)
        await until(lambda dialled=call_id: dialled in agent.ended, f"the call to {number} to end", server)
        reasons[number] = agent.ended[call_id]
    assert reasons == {"1007": "busy", "1010": "no_answer", "4999": "unreachable"}
    await finished(busy, tmp_path / "desk1007")
    await until(lambda: len(cdrs(server, "caller = '1002'")) == 3, "three CDRs", server)
    assert [(c["callee"], c["disposition"], c["sip_status"]) for c in cdrs(server, "caller = '1002'")] == [
        ("1007", "BUSY", 486), ("1010", "FAILED", 480), ("4999", "FAILED", 404)]


async def test_star_61_from_the_softphone_logs_the_agent_in_and_a_queue_call_then_rings_the_browser(
        server: ServerProcess, tmp_path: Path, browsers: list[Softphone]) -> None:
    agent = await signed_in(server, browsers, "agent3", "1003")
    login = await agent.dial("*61")
    await until(lambda: login in agent.ended, "the feature code's call to end", server)
    assert "answered" in agent.states[login]   # answered, applied, hung up: as on a desk phone
    await until(lambda: any(r["event"] == "ADDMEMBER" and r["agent"] == "1003"
                            for r in rows(server.data_dir / "callcenter.db",
                                          "SELECT agent, event FROM queue_log ORDER BY id")),
                "the agent logged in", server)
    await sipp(server, "uac_call.xml", tmp_path / "caller", service="8111", auth=("1008", "demo1008"),
               keys={"caller": "1008", "rtp_port": str(free_port("127.0.0.1"))}, timeout=30, extra=["-d", "1000"])
    assert [m["peer"] for m in agent.incoming] == ["1008"]
    await until(lambda: [r["event"] for r in queue_log(server, "8111")][-1:] == ["COMPLETECALLER"],
                "the queue call completed", server)
    assert [(r["event"], r["agent"]) for r in queue_log(server, "8111")][:2] == [("ENTERQUEUE", "NONE"),
                                                                                 ("CONNECT", "1003")]
    [feature] = cdrs(server, "callee = '*61'")
    assert (feature["caller"], feature["disposition"]) == ("1003", "ANSWERED")


async def test_a_key_pressed_in_the_softphone_books_a_callback_from_a_queue_that_answered(
        server: ServerProcess, browsers: list[Softphone]) -> None:
    agent = await signed_in(server, browsers, "agent1", "1001")
    call_id = await agent.dial("8112")
    await until(lambda: agent.state(call_id) == "answered", "the queue to answer", server)
    await agent._send(type="dtmf", call_id=call_id, digits="1")   # the queue's callback key
    await until(lambda: call_id in agent.ended, "the queue to hang up after booking", server)
    assert agent.ended[call_id] == "remote_hangup"
    [booked] = rows(server.data_dir / "callcenter.db", "SELECT number, status FROM queue_callbacks WHERE queue = '8112'")
    assert booked == {"number": "1001", "status": "pending"}
    assert [(r["event"], r["data"]) for r in queue_log(server, "8112")][:2] == [
        ("ENTERQUEUE", "1001|0"), ("CALLBACKREQ", "1001|key")]


async def test_a_call_out_through_the_trunk_carries_the_routes_caller_id(
        server: ServerProcess, tmp_path: Path, browsers: list[Softphone], procs: list,  # type: ignore[type-arg]
        provider_port: int) -> None:
    agent = await signed_in(server, browsers, "agent4", "1004")
    customer = RtpPeer()
    media = Media(customer)
    try:
        # The provider checks sip:13912345678@ and From "Acme Ltd" <sip:02161234567@...>, and
        # challenges the INVITE: it answers only if all of that is right.
        provider = start_sipp(procs, server, tmp_path / "provider", "trunk_provider.xml", local_port=provider_port,
                              timeout=40, keys={"rtp_port": str(customer.port)})
        call_id = await agent.dial("013912345678")
        await until(lambda: agent.state(call_id) == "answered", "the provider to answer", server)
        customer.talk = sip_tone()
        await until(lambda: abs(agent.heard_hz() - SIP_HZ) < 15, "the customer's tone in the browser", server)
        await agent.hangup(call_id)
        await finished(provider, tmp_path / "provider")
    finally:
        media.close()
    await until(lambda: cdrs(server, "caller = '1004'"), "the CDR", server)
    [cdr] = cdrs(server, "caller = '1004'")
    assert (cdr["callee"], cdr["trunk"], cdr["disposition"], cdr["hangup_side"]) == (
        "013912345678", "carrier", "ANSWERED", "caller")
