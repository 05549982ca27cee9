"""Transfers and three-way calls from the softphone, against a real server (`callcenter serve` on
free ports of 127.0.0.1) with real SIP phones (SIPp) and aiortc standing in for agents' browsers.

The stories: a customer (SIP 1001, a 440 Hz tone) calls browser agent 2001 (700 Hz), who
- transfers them blind to desk phone 1003 (1000 Hz): the two hear each other, the agent's call
  ends `transferred`, and the call's CDR has two linked segments;
- tries a busy phone, a number that does not exist and a feature code: each failure is reported
  and the customer is back with the agent;
- consults agent 2002 (1200 Hz) and completes the transfer: customer and 2002 talk;
- makes it a three-way call: everyone hears both others; the agent leaves and the other two
  go on talking.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from websockets.asyncio.client import connect

from bench.server import ServerProcess
from bench.sipp import free_port, read_result, run_sipp, sipp_command
from mediacore.webrtc import WEBRTC_RATE
from tests.mediacore.test_webrtc_bridge import Browser, wait_until
from tests.peers.test_calls import RtpPeer, tone
from tests.peers.test_dialplan import rows
from tests.webui.test_softphone_ws import Agent, media_for

pytestmark = [pytest.mark.peers, pytest.mark.timeout(120)]

CALLER, TARGET, BUSY = "1001", "1003", "1004"
AGENTS = {"agent1": "2001", "agent2": "2002"}
PASSWORD = "agent-pass-1"
CALLER_HZ, AGENT1_HZ, AGENT2_HZ, TARGET_HZ = 440, 700, 1200, 1000


async def seed(db: Path) -> None:
    from acd.directory import Extension, ExtensionDirectory
    from callcenter.app import schemas
    from callcenter.database import apply_all, open_database
    from crm.access import SYSTEM
    from crm.db import Database
    from crm.passwords import ScryptParams
    from crm.service import Crm

    conn = await open_database(db)
    try:
        await apply_all(conn, schemas())
        directory = ExtensionDirectory(conn)
        for number in (CALLER, TARGET, BUSY, *AGENTS.values()):
            await directory.upsert(Extension(number, f"分机 {number}", f"demo{number}"))
        crm = Crm.build(Database(conn), password_params=ScryptParams(log2_n=4, r=8, p=1))
        for user, extension in AGENTS.items():
            await crm.org.create_user(SYSTEM, user, f"坐席{user[-1]}", PASSWORD, roles=["agent"], extension=extension)
    finally:
        await conn.close()


@dataclass
class Site:
    server: ServerProcess
    tmp: Path
    cookies: dict[str, str]
    phones: dict[str, tuple[subprocess.Popen[bytes], Path]]

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.server.sip_port}"

    def log(self) -> str:
        return self.server.log_path.read_text(errors="replace")

    def phone(self, extension: str, scenario: str, rtp_port: int) -> None:
        """A SIPp phone registered as `extension`, playing `scenario` once."""
        port = free_port("127.0.0.1")
        workdir = self.tmp / f"phone{extension}-{time.monotonic_ns()}"
        workdir.mkdir()
        proc = subprocess.Popen(sipp_command(scenario, self.target, local_port=port, timeout=60,
                                             keys={"rtp_port": str(rtp_port)}),
                                cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.phones[extension] = (proc, workdir)
        reg = run_sipp("register_contact.xml", self.target, self.tmp / f"reg{extension}-{time.monotonic_ns()}",
                       service=extension, auth=(extension, f"demo{extension}"), keys={"contact_port": str(port)},
                       timeout=20)
        assert reg.successful == 1, reg.output

    def phone_done(self, extension: str) -> int:
        proc, workdir = self.phones.pop(extension)
        out, _ = proc.communicate(timeout=30)
        return read_result(workdir, proc.returncode, out).successful

    def cdrs(self, caller: str, count: int, since: float) -> list[dict]:
        """The CDR segments of `caller`'s latest call that started after `since`, once `count`
        of them are written (just after the call or segment ends)."""
        db = self.tmp / "data" / "callcenter.db"
        sql = ("SELECT * FROM cdr WHERE call_id = (SELECT call_id FROM cdr WHERE caller = ? AND started_at > ?"
               " ORDER BY id DESC LIMIT 1) ORDER BY segment")
        deadline = time.monotonic() + 10
        found: list[dict] = []
        while time.monotonic() < deadline:
            found = asyncio.run(rows(db, sql, (caller, since)))
            if len(found) >= count:
                break
            time.sleep(0.1)
        return found


def sign_in(http_url: str, user: str) -> str:
    with httpx.Client(base_url=http_url, timeout=30) as client:
        form = client.get("/login")
        token = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert token is not None
        done = client.post("/login", data={"username": user, "password": PASSWORD, "csrf": token.group(1)})
        assert done.status_code == 303, done.text
        return str(client.cookies["cc_session"])


@contextlib.contextmanager
def serve(tmp: Path) -> Iterator[Site]:
    """The server with the agents signed in (cookies), ended with its phones however it goes."""
    (tmp / "data").mkdir()
    asyncio.run(seed(tmp / "data" / "callcenter.db"))
    config = tmp / "callcenter.toml"
    # One WebRTC worker: the browser legs are engine RTP endpoints, as in production.
    config.write_text("[calls]\nring_timeout = 5\n[webrtc]\nworkers = 1\n")
    server = ServerProcess(tmp / "data", demo=False, extra_args=["--sip-trace", "--config", str(config)])
    server.start()
    site = Site(server, tmp, {}, {})
    try:
        site.cookies = {user: sign_in(server.http_url, user) for user in AGENTS}
        yield site
    finally:
        for proc, _ in site.phones.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        server.stop()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with serve(tmp_path_factory.mktemp("transfer")) as served:
        yield served


@pytest.fixture(autouse=True)
def _phones_hung_up(site: Site) -> Iterator[None]:
    yield
    for proc, _ in site.phones.values():
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    site.phones.clear()


@contextlib.asynccontextmanager
async def agent_online(site: Site, user: str) -> AsyncIterator[Agent]:
    url = site.server.http_url.replace("http://", "ws://") + "/ws/agent"
    async with connect(url, additional_headers={"Cookie": f"cc_session={site.cookies[user]}"},
                       origin=site.server.http_url) as ws:  # type: ignore[arg-type]
        agent = Agent(ws)
        await agent.register()
        yield agent


def sdp_port_after(log: str, first_line: str) -> int | None:
    """The m=audio port of the last SDP the server sent in a message starting with `first_line`."""
    found = None
    for block in log.split("sipstack.trace: send ")[1:]:
        block = re.split(r"^\d{4}-\d\d-\d\d \d\d:", block, maxsplit=1, flags=re.M)[0]
        body = block.split("\n", 1)[1] if "\n" in block else ""
        if body.startswith(first_line):
            match = re.search(r"^m=audio (\d+) ", body, re.M)
            if match:
                found = int(match.group(1))
    return found


class Talker:
    """A SIP party's audio: an RtpPeer sending a tone from a thread until stopped."""

    def __init__(self, peer: RtpPeer, remote: int, frequency: float) -> None:
        self.peer = peer
        self.stop = threading.Event()
        self.thread = threading.Thread(target=peer.talk, args=(("127.0.0.1", remote), tone(frequency, 3000), self.stop))
        self.thread.start()

    def heard(self, frames: int = 25) -> np.ndarray:
        import audioop

        return np.frombuffer(audioop.ulaw2lin(b"".join(self.peer.received[-frames:]), 2), dtype="<i2")

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)


def tones_in(pcm: np.ndarray, rate: int, expected: tuple[float, ...], others: tuple[float, ...] = ()) -> bool:
    """Each expected tone is among the strongest (at least a fifth of the loudest, within 15 Hz);
    none of `others` is more than a trace (a fiftieth)."""
    if len(pcm) < rate // 10:
        return False
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64) * np.hanning(len(pcm))))
    freqs = np.fft.rfftfreq(len(pcm), 1 / rate)
    loudest = float(spectrum[freqs > 100].max()) + 1e-9

    def level(hz: float) -> float:
        band = (freqs > hz - 15) & (freqs < hz + 15)
        return float(spectrum[band].max()) / loudest

    return all(level(hz) > 0.2 for hz in expected) and all(level(hz) < 0.02 for hz in others)


async def until(condition: Any, timeout: float = 10.0, *, show: Any = None) -> None:
    try:
        await wait_until(condition, timeout)
    except TimeoutError:
        raise AssertionError(f"not so after {timeout} s: {show() if show else ''}") from None


def peaks(pcm: np.ndarray, rate: int) -> list[tuple[int, float]]:
    """The strongest frequencies (Hz, level over the median): what a failed check heard."""
    if len(pcm) < 64:
        return []
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64) * np.hanning(len(pcm))))
    freqs = np.fft.rfftfreq(len(pcm), 1 / rate)
    floor = float(np.median(spectrum)) + 1e-9
    top = np.argsort(spectrum)[-6:][::-1]
    return [(int(freqs[i]), round(float(spectrum[i]) / floor, 1)) for i in top]


class CustomerCall:
    """A customer (1001 unless said) dials an agent's extension from a SIPp phone; its RTP talks a
    tone (440 Hz unless said)."""

    def __init__(self, site: Site, number: str, talk_ms: int, caller: str = CALLER,
                 frequency: float = CALLER_HZ) -> None:
        self.site = site
        self.frequency = frequency
        self.rtp = RtpPeer()
        self.workdir = site.tmp / f"caller-{time.monotonic_ns()}"
        self.workdir.mkdir()
        self.log_mark = len(site.log())
        self.proc = subprocess.Popen(
            sipp_command("uac_call.xml", site.target, service=number, auth=(caller, f"demo{caller}"), timeout=60,
                         keys={"caller": caller, "rtp_port": str(self.rtp.port)}, extra=["-d", str(talk_ms)]),
            cwd=self.workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.talker: Talker | None = None

    async def talk(self) -> Talker:
        """Once the server answered the customer, send the tone to the port it answered with."""
        await until(lambda: sdp_port_after(self.site.log()[self.log_mark:], "SIP/2.0 200") is not None)
        port = sdp_port_after(self.site.log()[self.log_mark:], "SIP/2.0 200")
        assert port is not None
        self.talker = Talker(self.rtp, port, self.frequency)
        return self.talker

    async def finished(self) -> int:
        out, _ = await asyncio.to_thread(self.proc.communicate, timeout=60)
        return read_result(self.workdir, self.proc.returncode, out).successful

    def close(self) -> None:
        if self.talker is not None:
            self.talker.close()
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


async def answer_customer(agent: Agent, browser: Browser, customer: CustomerCall,
                          caller: str = CALLER) -> tuple[str, Talker]:
    incoming = await agent.expect("incoming", timeout=20)
    assert incoming["peer"] == caller
    await media_for(agent, incoming["call_id"], browser)
    await agent.send(type="answer", call_id=incoming["call_id"], ref="answer")
    await agent.expect("ok", ref="answer")
    talker = await customer.talk()
    # The customer and the agent hear each other.
    await until(lambda: tones_in(browser.last(0.5), WEBRTC_RATE, (customer.frequency,)))
    await until(lambda: tones_in(talker.heard(), 8000, (AGENT1_HZ,)))
    return incoming["call_id"], talker


def seen(agent: Agent, kind: str, **fields: Any) -> dict[str, Any]:
    """A message already received (the server's reply to a command comes after its effects)."""
    for message in agent.seen:
        if message["type"] == kind and all(message.get(k) == v for k, v in fields.items()):
            return message
    raise AssertionError(f"no {kind} {fields} in {agent.seen[-6:]}")


def phone_rtp_when_rung(site: Site, mark: int, extension: str, rtp: RtpPeer, frequency: float) -> Talker:
    port = sdp_port_after(site.log()[mark:], f"INVITE sip:{extension}@")
    assert port is not None
    return Talker(rtp, port, frequency)


# -- blind transfer -------------------------------------------------------------------------------


async def test_an_agent_transfers_a_customer_blind_to_a_desk_phone_and_the_cdr_has_two_segments(site: Site) -> None:
    browser = Browser(frequency=AGENT1_HZ)
    target_rtp = RtpPeer()
    customer: CustomerCall | None = None
    target: Talker | None = None
    started = time.time()
    try:
        await asyncio.to_thread(site.phone, TARGET, "uas_answer.xml", target_rtp.port)
        async with agent_online(site, "agent1") as agent:
            customer = CustomerCall(site, "2001", talk_ms=7000)
            call_id, talker = await answer_customer(agent, browser, customer)
            mark = len(site.log())
            await agent.send(type="transfer", call_id=call_id, target=TARGET, ref="t")
            await agent.expect("ok", ref="t")
            await agent.expect("transfer_state", call_id=call_id, state="trying")
            await agent.expect("transfer_state", call_id=call_id, state="ringing")
            # The agent's call ends once the phone answered: the transfer is through.
            ended = await agent.expect("state", call_id=call_id, state="ended")
            assert ended["reason"] == "transferred"
            phone = target = phone_rtp_when_rung(site, mark, TARGET, target_rtp, TARGET_HZ)
            # The customer and the desk phone hear each other; the agent is out of it.
            await until(lambda: tones_in(talker.heard(), 8000, (TARGET_HZ,), (AGENT1_HZ,)),
                        show=lambda: peaks(talker.heard(), 8000))
            await until(lambda: len(target_rtp.received) > 30 and tones_in(phone.heard(), 8000, (CALLER_HZ,)),
                        show=lambda: (len(target_rtp.received), peaks(phone.heard(), 8000)))
        assert await customer.finished() == 1     # the customer hung up as planned, after 7 s
        assert await asyncio.to_thread(site.phone_done, TARGET) == 1   # and the BYE reached the phone
        first, second = await asyncio.to_thread(site.cdrs, CALLER, 2, started)
        assert first["call_id"] == second["call_id"] and (first["segment"], second["segment"]) == (1, 2)
        assert (first["caller"], first["callee"], first["answered_by"], first["hangup_side"],
                first["hangup_cause"]) == (CALLER, "2001", "2001", "callee", "blind transfer")
        assert (second["caller"], second["callee"], second["answered_by"], second["hangup_side"]) == (
            CALLER, TARGET, TARGET, "caller")
        assert first["ended_at"] == second["started_at"] <= second["answered_at"]
    finally:
        for each in (target, customer):
            if each is not None:
                each.close()
        await browser.close()


async def test_a_failed_transfer_is_reported_and_the_customer_is_back_with_the_agent(site: Site) -> None:
    browser = Browser(frequency=AGENT1_HZ)
    customer: CustomerCall | None = None
    started = time.time()
    try:
        await asyncio.to_thread(site.phone, BUSY, "uas_busy.xml", free_port("127.0.0.1"))
        async with agent_online(site, "agent1") as agent:
            customer = CustomerCall(site, "2001", talk_ms=12000)
            call_id, talker = await answer_customer(agent, browser, customer)
            for number, status in ((BUSY, 486), ("1999", 404), ("*72", 403)):
                await agent.send(type="transfer", call_id=call_id, target=number, ref=number)
                await agent.expect("ok", ref=number)
                failed = await agent.expect("error", code="transfer_failed", call_id=call_id)
                assert (failed["status"], failed["target"]) == (status, number)
                back = await agent.expect("state", call_id=call_id)
                assert back["state"] == "answered"
                # Back with the agent: each hears the other again.
                talker.peer.received.clear()
                await until(lambda: len(talker.peer.received) > 25 and tones_in(talker.heard(), 8000, (AGENT1_HZ,)))
            assert await asyncio.to_thread(site.phone_done, BUSY) == 1
            # Not a call that can be handed on blind: a bad number is refused before anything.
            await agent.send(type="transfer", call_id=call_id, target="12a", ref="bad")
            assert (await agent.expect("error", ref="bad"))["code"] == "bad_number"
            await agent.send(type="hangup", call_id=call_id)
            await agent.expect("state", call_id=call_id, state="ended")
        rows_ = await asyncio.to_thread(site.cdrs, CALLER, 1, started)
        assert len(rows_) == 1 and rows_[0]["callee"] == "2001" and rows_[0]["hangup_side"] == "callee"
    finally:
        if customer is not None:
            customer.close()
        await browser.close()


# -- attended transfer and three-way ------------------------------------------------------------


async def consult(agent1: Agent, line2: Browser, agent2: Agent, browser2: Browser, call_id: str) -> tuple[str, str]:
    """Agent 1 holds the customer and calls agent 2 (on a second line of the page), who answers:
    (agent 1's consultation call, agent 2's call)."""
    await agent1.send(type="hold", call_id=call_id, ref="hold")
    await agent1.expect("ok", ref="hold")
    await agent1.send(type="dial", number="2002", ref="dial")
    consultation = (await agent1.expect("call", ref="dial"))["call_id"]
    await media_for(agent1, consultation, line2)
    incoming = await agent2.expect("incoming")
    assert incoming["peer"] == "2001"
    await media_for(agent2, incoming["call_id"], browser2)
    await agent2.send(type="answer", call_id=incoming["call_id"], ref="a2")
    await agent2.expect("ok", ref="a2")
    await agent1.expect("state", call_id=consultation, state="answered")
    return consultation, incoming["call_id"]


async def test_consult_then_complete_transfer_joins_the_customer_with_the_second_agent(site: Site) -> None:
    browser1, browser2, browser1b = Browser(AGENT1_HZ), Browser(AGENT2_HZ), Browser(AGENT1_HZ)
    customer: CustomerCall | None = None
    started = time.time()
    try:
        async with agent_online(site, "agent1") as agent1, agent_online(site, "agent2") as agent2:
            customer = CustomerCall(site, "2001", talk_ms=7000)
            call_id, talker = await answer_customer(agent1, browser1, customer)
            consultation, at_agent2 = await consult(agent1, browser1b, agent2, browser2, call_id)
            # The consultation: agent 2 hears agent 1, not the customer (on hold, hearing music).
            await until(lambda: tones_in(browser2.last(0.5), WEBRTC_RATE, (AGENT1_HZ,), (CALLER_HZ,)))
            await until(lambda: not tones_in(talker.heard(), 8000, (AGENT1_HZ,)))
            await agent1.send(type="transfer", call_id=call_id, to_call=consultation, ref="x")
            await agent1.expect("ok", ref="x")
            for each in (call_id, consultation):
                assert seen(agent1, "state", call_id=each, state="ended")["reason"] == "transferred"
            now = await agent2.expect("state", call_id=at_agent2, state="answered")
            assert now["peer"] == CALLER   # agent 2 sees who they talk to now
            browser2.heard.clear()
            await until(lambda: tones_in(talker.heard(), 8000, (AGENT2_HZ,), (AGENT1_HZ,)))
            await until(lambda: tones_in(browser2.last(0.5), WEBRTC_RATE, (CALLER_HZ,)))
            assert await customer.finished() == 1
            await agent2.expect("state", call_id=at_agent2, state="ended")
        first, second = await asyncio.to_thread(site.cdrs, CALLER, 2, started)
        assert (first["segment"], first["callee"], first["hangup_cause"]) == (1, "2001", "attended transfer")
        assert (second["segment"], second["caller"], second["callee"], second["answered_by"]) == (
            2, CALLER, "2002", "2002")
    finally:
        if customer is not None:
            customer.close()
        for browser in (browser1, browser2, browser1b):
            await browser.close()


async def test_a_three_way_call_where_everyone_hears_both_others_and_the_agent_may_leave(site: Site) -> None:
    browser1, browser2, browser1b = Browser(AGENT1_HZ), Browser(AGENT2_HZ), Browser(AGENT1_HZ)
    customer: CustomerCall | None = None
    started = time.time()
    try:
        async with agent_online(site, "agent1") as agent1, agent_online(site, "agent2") as agent2:
            customer = CustomerCall(site, "2001", talk_ms=15000)
            call_id, talker = await answer_customer(agent1, browser1, customer)
            consultation, at_agent2 = await consult(agent1, browser1b, agent2, browser2, call_id)
            await agent1.send(type="conference", call_id=call_id, with_call=consultation, ref="c")
            room = (await agent1.expect("ok", ref="c"))["room"]
            assert room.startswith("adhoc-")
            assert seen(agent1, "state", call_id=consultation, state="ended")["reason"] == "conference"
            # Agent 1 stays on the first call's line; each member hears the two others.
            await until(lambda: tones_in(browser1.last(0.5), WEBRTC_RATE, (CALLER_HZ, AGENT2_HZ)))
            await until(lambda: tones_in(browser2.last(0.5), WEBRTC_RATE, (CALLER_HZ, AGENT1_HZ)))
            await until(lambda: tones_in(talker.heard(), 8000, (AGENT1_HZ, AGENT2_HZ)))
            # Agent 1 leaves: the customer and agent 2 go on talking, without agent 1.
            await agent1.send(type="hangup", call_id=call_id)
            await agent1.expect("state", call_id=call_id, state="ended")
            await until(lambda: tones_in(talker.heard(), 8000, (AGENT2_HZ,), (AGENT1_HZ,)))
            await until(lambda: tones_in(browser2.last(0.5), WEBRTC_RATE, (CALLER_HZ,), (AGENT1_HZ,)))
            # Agent 2 hangs up: alone in the room, the customer is hung up too.
            await agent2.send(type="hangup", call_id=at_agent2)
            await agent2.expect("state", call_id=at_agent2, state="ended")
            # (The call's one CDR, written as it ends: by the server, not the customer's own BYE.)
            (record,) = await asyncio.to_thread(site.cdrs, CALLER, 1, started)
            assert (record["callee"], record["answered_by"], record["hangup_side"], record["hangup_cause"]) == (
                "2001", "2001", "callee", "agent conference_ended")
    finally:
        if customer is not None:
            customer.close()
        for browser in (browser1, browser2, browser1b):
            await browser.close()


async def test_what_cannot_be_handed_on_is_refused_with_a_reason_and_the_call_goes_on(site: Site) -> None:
    browser1, browser2 = Browser(AGENT1_HZ), Browser(AGENT2_HZ)
    try:
        async with agent_online(site, "agent1") as agent1, agent_online(site, "agent2") as agent2:
            await agent1.send(type="dial", number="2002", ref="dial")
            mine = (await agent1.expect("call", ref="dial"))["call_id"]
            await media_for(agent1, mine, browser1)
            incoming = await agent2.expect("incoming")
            await media_for(agent2, incoming["call_id"], browser2)
            await agent2.send(type="answer", call_id=incoming["call_id"])
            await agent1.expect("state", call_id=mine, state="answered")
            refusals = [
                ({"target": TARGET}, "not_supported"),          # browser to browser: consult instead
                ({"to_call": mine}, "bad_state"),               # a call with itself
                ({"to_call": "nosuchcall"}, "no_call"),
                ({"target": ""}, "bad_message"),
            ]
            for i, (fields, code) in enumerate(refusals):
                await agent1.send(type="transfer", call_id=mine, ref=i, **fields)
                assert (await agent1.expect("error", ref=i))["code"] == code
            await agent1.send(type="conference", call_id=mine, with_call=mine, ref="c")
            assert (await agent1.expect("error", ref="c"))["code"] == "bad_state"
            # Still talking, each hearing the other.
            browser2.heard.clear()
            await until(lambda: tones_in(browser2.last(0.5), WEBRTC_RATE, (AGENT1_HZ,)))
            await agent1.send(type="hangup", call_id=mine)
            assert (await agent2.expect("state", call_id=incoming["call_id"], state="ended"))["reason"] == "remote_hangup"
    finally:
        await browser1.close()
        await browser2.close()


async def test_two_sip_callers_of_one_agent_are_joined_by_an_attended_transfer(site: Site) -> None:
    """The agent holds customer 1001, answers a second caller (1003, 1000 Hz) on another line of
    the page and joins the two: 1003 takes the agent's place in 1001's call, as with Replaces."""
    browser1, browser2 = Browser(AGENT1_HZ), Browser(AGENT1_HZ)
    first: CustomerCall | None = None
    second: CustomerCall | None = None
    started = time.time()
    try:
        async with agent_online(site, "agent1") as agent:
            first = CustomerCall(site, "2001", talk_ms=8000)
            call1, talker1 = await answer_customer(agent, browser1, first)
            await agent.send(type="hold", call_id=call1, ref="h")
            await agent.expect("ok", ref="h")
            second = CustomerCall(site, "2001", talk_ms=5000, caller=TARGET, frequency=TARGET_HZ)
            call2, talker2 = await answer_customer(agent, browser2, second, caller=TARGET)
            await agent.send(type="transfer", call_id=call1, to_call=call2, ref="x")
            await agent.expect("ok", ref="x")
            assert {seen(agent, "state", call_id=c, state="ended")["reason"] for c in (call1, call2)} == {"transferred"}
            await until(lambda: tones_in(talker1.heard(), 8000, (TARGET_HZ,), (AGENT1_HZ,)),
                        show=lambda: peaks(talker1.heard(), 8000))
            await until(lambda: tones_in(talker2.heard(), 8000, (CALLER_HZ,), (AGENT1_HZ,)),
                        show=lambda: peaks(talker2.heard(), 8000))
            assert await second.finished() == 1     # 1003 hangs up first (5 s) ...
            # ... which ends 1001's call: 1001's SIPp, still in its pause, gets a BYE.
        segments = await asyncio.to_thread(site.cdrs, CALLER, 2, started)
        assert [(r["segment"], r["caller"], r["callee"], r["answered_by"], r["hangup_cause"]) for r in segments][:1] == [
            (1, CALLER, "2001", "2001", "attended transfer")]
        assert (segments[1]["caller"], segments[1]["callee"], segments[1]["answered_by"]) == (CALLER, TARGET, TARGET)
        (moved,) = await asyncio.to_thread(site.cdrs, TARGET, 1, started)
        assert (moved["callee"], moved["hangup_cause"]) == ("2001", "transferred")
    finally:
        for each in (first, second):
            if each is not None:
                each.close()
        await browser1.close()
        await browser2.close()


async def test_a_blind_transfer_to_a_browser_agent_who_declines_then_answers(site: Site) -> None:
    browser1, browser2 = Browser(AGENT1_HZ), Browser(AGENT2_HZ)
    customer: CustomerCall | None = None
    try:
        async with agent_online(site, "agent1") as agent1, agent_online(site, "agent2") as agent2:
            customer = CustomerCall(site, "2001", talk_ms=9000)
            call_id, talker = await answer_customer(agent1, browser1, customer)
            await agent1.send(type="transfer", call_id=call_id, target="2002")
            declined = await agent2.expect("incoming")
            assert declined["peer"] == CALLER     # the customer rings agent 2, as if they had dialled
            await agent2.send(type="reject", call_id=declined["call_id"])
            failed = await agent1.expect("error", code="transfer_failed")
            assert failed["status"] == 486        # at once, not after the ring timeout
            await agent1.expect("state", call_id=call_id, state="answered")
            await agent1.send(type="transfer", call_id=call_id, target="2002")
            incoming = await agent2.expect("incoming")
            await media_for(agent2, incoming["call_id"], browser2)
            await agent2.send(type="answer", call_id=incoming["call_id"])
            assert (await agent1.expect("state", call_id=call_id, state="ended"))["reason"] == "transferred"
            await until(lambda: tones_in(talker.heard(), 8000, (AGENT2_HZ,), (AGENT1_HZ,)),
                        show=lambda: peaks(talker.heard(), 8000))
            await until(lambda: tones_in(browser2.last(0.5), WEBRTC_RATE, (CALLER_HZ,)))
            assert await customer.finished() == 1
    finally:
        if customer is not None:
            customer.close()
        await browser1.close()
        await browser2.close()
