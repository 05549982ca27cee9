"""Browser agents' calls are first-class (issues #4, #7, #8), against a real server (`callcenter
serve` on free ports of 127.0.0.1) with SIP phones (SIPp) and aiortc standing in for browsers.

The stories: a customer (SIP 1001, 440 Hz) calls browser agent 2001 (700 Hz), and
- the call is recorded, and after a blind transfer to browser agent 2002 (1200 Hz) the same
  file goes on with 2002 on the agent's channel;
- the customer's phone holds the call (re-INVITE a=sendonly): the agent hears music on hold and
  not the customer; it resumes (a=sendrecv): the two hear each other again;
- supervisor 1010 (1600 Hz) whispers (only the agent hears them), barges (everyone hears
  everyone) and takes the call over (the customer talks to the supervisor, the agent's call
  ends `taken_over`), from the desk phone codes *56, *57 and *58;
- the agent holds the customer, dials desk phone 1003 (1000 Hz) from the softphone and completes
  the transfer (the customer and 1003 talk), or makes it a three-way call (everyone hears both
  others).
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile

from bench.server import ServerProcess
from bench.sipp import read_result, sipp_command
from mediacore.webrtc import WEBRTC_RATE
from tests.mediacore.test_webrtc_bridge import Browser
from tests.peers.test_calls import RtpPeer
from tests.webui.test_softphone_transfer import (
    AGENT1_HZ,
    AGENT2_HZ,
    CALLER,
    CALLER_HZ,
    PASSWORD,
    TARGET,
    TARGET_HZ,
    CustomerCall,
    Site,
    Talker,
    _phones_hung_up,  # noqa: F401  (autouse: the desk phones a test started are ended)
    agent_online,
    answer_customer,
    peaks,
    phone_rtp_when_rung,
    sdp_port_after,
    seen,
    sign_in,
    tones_in,
    until,
)
from tests.webui.test_softphone_ws import Agent, media_for

pytestmark = [pytest.mark.peers, pytest.mark.timeout(120)]

SUPERVISOR, SUPERVISOR_HZ = "1010", 1600
USERS = {"agent1": ("2001", "agent"), "agent2": ("2002", "agent"), "super1": (SUPERVISOR, "supervisor")}
HOLD_SCENARIO = Path(__file__).parents[1] / "peers" / "scenarios" / "uac_hold_resume.xml"
#: The notes of the music on hold (sounds/moh/default.wav, a C major chord).
MOH_HZ = (131, 262, 330, 392, 523)


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
        for number in (CALLER, TARGET, *(extension for extension, _ in USERS.values())):
            await directory.upsert(Extension(number, f"分机 {number}", f"demo{number}"))
        crm = Crm.build(Database(conn), password_params=ScryptParams(log2_n=4, r=8, p=1))
        for user, (extension, role) in USERS.items():
            await crm.org.create_user(SYSTEM, user, f"用户{user[-1]}", PASSWORD, roles=[role], extension=extension)
    finally:
        await conn.close()


@contextlib.contextmanager
def serve(tmp: Path, workers: int) -> Iterator[Site]:
    """The server with the agents signed in, ended with its phones however it goes."""
    (tmp / "data").mkdir()
    asyncio.run(seed(tmp / "data" / "callcenter.db"))
    config = tmp / "callcenter.toml"
    config.write_text(f'[calls]\nring_timeout = 5\n[webrtc]\nworkers = {workers}\n[recording]\ndefault = "always"\n')
    server = ServerProcess(tmp / "data", demo=False, extra_args=["--sip-trace", "--config", str(config)])
    server.start()
    served = Site(server, tmp, {}, {})
    try:
        served.cookies = {user: sign_in(server.http_url, user) for user in ("agent1", "agent2")}
        yield served
    finally:
        for proc, _ in served.phones.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        server.stop()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    # One WebRTC worker: the browser legs are engine RTP endpoints, as in production.
    with serve(tmp_path_factory.mktemp("browser-calls"), workers=1) as served:
        yield served


@contextlib.asynccontextmanager
async def browsers(*frequencies: float) -> AsyncIterator[list[Browser]]:
    made = [Browser(frequency) for frequency in frequencies]
    try:
        yield made
    finally:
        for browser in made:
            await browser.close()


@contextlib.contextmanager
def closing(*things: object) -> Iterator[list[object]]:
    """Talkers and customer calls to stop however the test ends (more may be appended)."""
    held = list(things)
    try:
        yield held
    finally:
        for thing in held:
            thing.close()  # type: ignore[attr-defined]


def level(pcm: np.ndarray, rate: int, hz: float) -> float:
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64) * np.hanning(len(pcm)))) / (len(pcm) / 4)
    freqs = np.fft.rfftfreq(len(pcm), 1 / rate)
    return float(spectrum[(freqs > hz - 15) & (freqs < hz + 15)].max())


def who_speaks(channel: np.ndarray, rate: int, tones: dict[str, float]) -> list[str]:
    """Per 0.2 s block of a recording's channel, the party whose tone dominates ('' for none)."""
    block = rate // 5
    found = []
    for start in range(0, len(channel) - block + 1, block):
        levels = {name: level(channel[start:start + block], rate, hz) for name, hz in tones.items()}
        best = max(levels, key=lambda name: levels[name])
        found.append(best if levels[best] > 300 else "")
    return found


async def answered(agent: Agent, call_id: str) -> None:
    """The agent's outgoing call is answered (the message may have come while the media was
    being set up, and been read past already)."""
    if not any(m["type"] == "state" and m.get("call_id") == call_id and m.get("state") == "answered"
               for m in agent.seen):
        await agent.expect("state", call_id=call_id, state="answered", timeout=15)


def log_has(site: Site, text: str, since: int) -> bool:
    return text in site.log()[since:]


# -- issue #4: the recording follows a transfer to a browser agent ------------------------------


async def test_a_recording_follows_a_blind_transfer_to_a_browser_agent_in_one_file(site: Site) -> None:
    started = time.time()
    async with browsers(AGENT1_HZ, AGENT2_HZ) as (browser1, browser2), \
            agent_online(site, "agent1") as agent1, agent_online(site, "agent2") as agent2:
        customer = CustomerCall(site, "2001", talk_ms=30000)
        with closing(customer):
            call_id, talker = await answer_customer(agent1, browser1, customer)
            await asyncio.sleep(1.5)    # agent 1 on the agent's channel for a while
            await agent1.send(type="transfer", call_id=call_id, target="2002", ref="t")
            incoming = await agent2.expect("incoming")
            await media_for(agent2, incoming["call_id"], browser2)
            await agent2.send(type="answer", call_id=incoming["call_id"], ref="a")
            await agent2.expect("ok", ref="a")
            assert (await agent1.expect("state", call_id=call_id, state="ended"))["reason"] == "transferred"
            await until(lambda: tones_in(talker.heard(), 8000, (AGENT2_HZ,), (AGENT1_HZ,)),
                        show=lambda: peaks(talker.heard(), 8000))
            await asyncio.sleep(1.5)    # agent 2 on the agent's channel for a while
            await agent2.send(type="hangup", call_id=incoming["call_id"])
            await agent2.expect("state", call_id=incoming["call_id"], state="ended")
    first, second = await asyncio.to_thread(site.cdrs, CALLER, 2, started)
    assert (first["answered_by"], second["answered_by"]) == ("2001", "2002")
    ref = first["recording_ref"]
    assert ref and ref == second["recording_ref"]
    path = site.tmp / "data" / "recordings" / ref
    await until(lambda: path.exists() and path.stat().st_size > 44, 10)
    audio, rate = await asyncio.to_thread(soundfile.read, path, dtype="int16")
    assert audio.ndim == 2 and audio.shape[1] == 2
    parties = {"caller": CALLER_HZ, "agent1": AGENT1_HZ, "agent2": AGENT2_HZ}
    left, right = who_speaks(audio[:, 0], rate, parties), who_speaks(audio[:, 1], rate, parties)
    assert left.count("caller") >= 10 and set(left) <= {"caller", ""}, left
    spoken = [p for p in right if p]
    # Agent 1, then agent 2 after the transfer (the channel did not go silent), never back.
    assert spoken.count("agent1") >= 5 and spoken.count("agent2") >= 5, right
    assert set(spoken) <= {"agent1", "agent2"} and "agent1" not in spoken[spoken.index("agent2"):], right


# -- issue #7: the SIP caller holds a call a browser agent answered ------------------------------


class HoldingCustomer(CustomerCall):
    """A customer whose phone talks `talk_ms`, holds 3 s, resumes, talks 3 s and hangs up."""

    def __init__(self, site: Site, number: str, talk_ms: int = 4000) -> None:
        self.site, self.frequency, self.rtp = site, CALLER_HZ, RtpPeer()
        self.workdir = site.tmp / f"holder-{time.monotonic_ns()}"
        self.workdir.mkdir()
        self.log_mark = len(site.log())
        self.proc = subprocess.Popen(
            sipp_command(str(HOLD_SCENARIO), site.target, service=number, auth=(CALLER, f"demo{CALLER}"),
                         timeout=60, keys={"caller": CALLER, "rtp_port": str(self.rtp.port)}, extra=["-d", str(talk_ms)]),
            cwd=self.workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.talker = None


async def test_the_customer_holds_and_resumes_a_call_a_browser_agent_answered(site: Site) -> None:
    await hold_and_resume(site)


@pytest.fixture
def pcm_site(tmp_path: Path) -> Iterator[Site]:
    # No worker: the browser legs are bridged in process, on PCM ports.
    with serve(tmp_path, workers=0) as served:
        yield served


async def test_the_same_with_browser_legs_bridged_in_process(pcm_site: Site) -> None:
    """`[webrtc] workers = 0`: the agent's leg is a PCM port, which has no RTP timeout to set."""
    await hold_and_resume(pcm_site)


async def hold_and_resume(site: Site) -> None:
    """The customer's phone holds 4 s into the call, resumes 3 s later, hangs up 3 s after."""
    customer = HoldingCustomer(site, "2001")
    mark, rtp = customer.log_mark, customer.rtp
    async with browsers(AGENT1_HZ) as (browser,), agent_online(site, "agent1") as agent:
        with closing(customer):
            call_id, talker = await answer_customer(agent, browser, customer)
            await until(lambda: log_has(site, f"{CALLER} holds the call", mark), 10)
            # On hold: the agent hears the music, not the customer (who still sends its tone);
            # the customer is sent nothing of the agent.
            await asyncio.sleep(0.6)
            sent = len(rtp.received)
            await until(lambda: (np.abs(browser.last(0.5)).mean() > 100
                                 and tones_in(browser.last(0.5), WEBRTC_RATE, (), (CALLER_HZ,))
                                 and max(level(browser.last(0.5), WEBRTC_RATE, hz) for hz in MOH_HZ) > 100),
                        show=lambda: peaks(browser.last(0.5), WEBRTC_RATE))
            await asyncio.sleep(0.5)
            during = rtp.received[sent:]
            assert not during or not tones_in(talker.heard(len(during)), 8000, (AGENT1_HZ,))
            assert not log_has(site, f"{CALLER} resumes the call", mark)
            await until(lambda: log_has(site, f"{CALLER} resumes the call", mark), 10)
            # Resumed: tones both ways again, no music.
            browser.heard.clear()
            await until(lambda: tones_in(browser.last(0.5), WEBRTC_RATE, (CALLER_HZ,)),
                        show=lambda: peaks(browser.last(0.5), WEBRTC_RATE))
            rtp.received.clear()
            await until(lambda: len(rtp.received) > 25 and tones_in(talker.heard(), 8000, (AGENT1_HZ,)),
                        show=lambda: peaks(talker.heard(), 8000))
            assert await customer.finished() == 1   # both re-INVITEs answered as the RFC says
    log = site.log()[mark:]
    assert "X-Held: a=recvonly" in log and "X-Resumed: a=sendrecv" in log


# -- issue #8: a supervisor on a browser agent's call --------------------------------------------


def supervisor_dials(site: Site, code: str, talk_ms: int) -> tuple[subprocess.Popen[bytes], Path, RtpPeer]:
    rtp = RtpPeer()
    workdir = site.tmp / f"supervisor-{time.monotonic_ns()}"
    workdir.mkdir()
    proc = subprocess.Popen(
        sipp_command("uac_call.xml", site.target, service=code, auth=(SUPERVISOR, f"demo{SUPERVISOR}"), timeout=60,
                     keys={"caller": SUPERVISOR, "rtp_port": str(rtp.port)}, extra=["-d", str(talk_ms)]),
        cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return proc, workdir, rtp


async def supervisor_talks(site: Site, mark: int, rtp: RtpPeer) -> Talker:
    await until(lambda: sdp_port_after(site.log()[mark:], "SIP/2.0 200") is not None, 15)
    port = sdp_port_after(site.log()[mark:], "SIP/2.0 200")
    assert port is not None
    return Talker(rtp, port, SUPERVISOR_HZ)


async def supervisor_done(proc: subprocess.Popen[bytes], workdir: Path) -> int:
    out, _ = await asyncio.to_thread(proc.communicate, timeout=60)
    return read_result(workdir, proc.returncode, out).successful


async def test_a_supervisor_whispers_barges_and_takes_over_a_browser_agents_call(site: Site) -> None:
    started = time.time()
    async with browsers(AGENT1_HZ) as (browser,), agent_online(site, "agent1") as agent:
        customer = CustomerCall(site, "2001", talk_ms=40000)
        with closing(customer) as cleanup:
            call_id, talker = await answer_customer(agent, browser, customer)

            # Whisper: the agent hears the supervisor, the customer does not; the supervisor
            # hears both.
            mark = len(site.log())
            proc, workdir, rtp = supervisor_dials(site, "*562001", 4000)
            sup = await supervisor_talks(site, mark, rtp)
            cleanup.append(sup)
            await until(lambda: log_has(site, "whisper on agent 2001", mark), 10)
            await until(lambda: tones_in(browser.last(0.5), WEBRTC_RATE, (CALLER_HZ, SUPERVISOR_HZ)),
                        show=lambda: peaks(browser.last(0.5), WEBRTC_RATE))
            await until(lambda: len(rtp.received) > 25 and tones_in(sup.heard(), 8000, (CALLER_HZ, AGENT1_HZ)),
                        show=lambda: peaks(sup.heard(), 8000))
            talker.peer.received.clear()
            await until(lambda: len(talker.peer.received) > 25
                        and tones_in(talker.heard(), 8000, (AGENT1_HZ,), (SUPERVISOR_HZ,)),
                        show=lambda: peaks(talker.heard(), 8000))
            assert await supervisor_done(proc, workdir) == 1
            sup.close()

            # Barge: a three-way call, the customer hears the supervisor too.
            mark = len(site.log())
            proc, workdir, rtp = supervisor_dials(site, "*572001", 4000)
            sup = await supervisor_talks(site, mark, rtp)
            cleanup.append(sup)
            await until(lambda: log_has(site, "barge on agent 2001", mark), 10)
            await until(lambda: tones_in(talker.heard(), 8000, (AGENT1_HZ, SUPERVISOR_HZ)),
                        show=lambda: peaks(talker.heard(), 8000))
            await until(lambda: tones_in(browser.last(0.5), WEBRTC_RATE, (CALLER_HZ, SUPERVISOR_HZ)),
                        show=lambda: peaks(browser.last(0.5), WEBRTC_RATE))
            assert await supervisor_done(proc, workdir) == 1
            sup.close()

            # Take over: the customer talks to the supervisor; the agent's call ends.
            mark = len(site.log())
            proc, workdir, rtp = supervisor_dials(site, "*582001", 3000)
            sup = await supervisor_talks(site, mark, rtp)
            cleanup.append(sup)
            ended = await agent.expect("state", call_id=call_id, state="ended")
            assert ended["reason"] == "taken_over"
            talker.peer.received.clear()
            await until(lambda: len(talker.peer.received) > 25
                        and tones_in(talker.heard(), 8000, (SUPERVISOR_HZ,), (AGENT1_HZ,)),
                        show=lambda: peaks(talker.heard(), 8000))
            await until(lambda: len(rtp.received) > 25 and tones_in(sup.heard(), 8000, (CALLER_HZ,), (AGENT1_HZ,)),
                        show=lambda: peaks(sup.heard(), 8000))
            # The supervisor hangs up after 3 s: the customer's call ends with it.
            assert await supervisor_done(proc, workdir) == 1
    first, second = await asyncio.to_thread(site.cdrs, CALLER, 2, started)
    assert (first["answered_by"], first["hangup_cause"]) == ("2001", "supervisor takeover")
    assert second["answered_by"] == SUPERVISOR


# -- issue #7: a consultation the agent dialled to a desk phone ----------------------------------


async def consult_desk_phone(agent: Agent, line2: Browser, site: Site, call_id: str,
                             rtp: RtpPeer) -> tuple[str, Talker]:
    """Agent 1 holds the customer and dials desk phone 1003 from a second line of the page;
    1003 answers and talks: (the consultation call, 1003's audio)."""
    await agent.send(type="hold", call_id=call_id, ref="hold")
    await agent.expect("ok", ref="hold")
    mark = len(site.log())
    await agent.send(type="dial", number=TARGET, ref="dial")
    consultation = (await agent.expect("call", ref="dial"))["call_id"]
    await media_for(agent, consultation, line2)
    await answered(agent, consultation)
    phone = phone_rtp_when_rung(site, mark, TARGET, rtp, TARGET_HZ)
    # The consultation: the agent and 1003 hear each other; the customer hears neither.
    await until(lambda: tones_in(line2.last(0.5), WEBRTC_RATE, (TARGET_HZ,)),
                show=lambda: peaks(line2.last(0.5), WEBRTC_RATE))
    return consultation, phone


async def test_a_consultation_dialled_to_a_desk_phone_completes_the_transfer(site: Site) -> None:
    target_rtp = RtpPeer()
    started = time.time()
    await asyncio.to_thread(site.phone, TARGET, "uas_answer.xml", target_rtp.port)
    async with browsers(AGENT1_HZ, AGENT1_HZ) as (browser, line2), agent_online(site, "agent1") as agent:
        customer = CustomerCall(site, "2001", talk_ms=10000)
        with closing(customer) as cleanup:
            call_id, talker = await answer_customer(agent, browser, customer)
            consultation, phone = await consult_desk_phone(agent, line2, site, call_id, target_rtp)
            cleanup.append(phone)
            await agent.send(type="transfer", call_id=call_id, to_call=consultation, ref="x")
            await agent.expect("ok", ref="x")
            for each in (call_id, consultation):
                assert seen(agent, "state", call_id=each, state="ended")["reason"] == "transferred"
            # The customer and 1003 hear each other; the agent is out of it.
            talker.peer.received.clear()
            await until(lambda: len(talker.peer.received) > 25
                        and tones_in(talker.heard(), 8000, (TARGET_HZ,), (AGENT1_HZ,)),
                        show=lambda: peaks(talker.heard(), 8000))
            target_rtp.received.clear()
            await until(lambda: len(target_rtp.received) > 25
                        and tones_in(phone.heard(), 8000, (CALLER_HZ,), (AGENT1_HZ,)),
                        show=lambda: peaks(phone.heard(), 8000))
            # The customer hangs up: its BYE ends 1003's leg too.
            assert await customer.finished() == 1
            assert await asyncio.to_thread(site.phone_done, TARGET) == 1
    segments = await asyncio.to_thread(site.cdrs, CALLER, 1, started)
    assert (segments[0]["callee"], segments[0]["hangup_cause"]) == ("2001", "attended transfer")
    consulted = await asyncio.to_thread(site.cdrs, "2001", 1, started)
    assert (consulted[0]["callee"], consulted[0]["hangup_cause"]) == (TARGET, "transferred")


async def test_a_consultation_dialled_to_a_desk_phone_becomes_a_three_way_call(site: Site) -> None:
    target_rtp = RtpPeer()
    await asyncio.to_thread(site.phone, TARGET, "uas_answer.xml", target_rtp.port)
    async with browsers(AGENT1_HZ, AGENT1_HZ) as (browser, line2), agent_online(site, "agent1") as agent:
        customer = CustomerCall(site, "2001", talk_ms=10000)
        with closing(customer) as cleanup:
            call_id, talker = await answer_customer(agent, browser, customer)
            consultation, phone = await consult_desk_phone(agent, line2, site, call_id, target_rtp)
            cleanup.append(phone)
            await agent.send(type="conference", call_id=call_id, with_call=consultation, ref="c")
            assert (await agent.expect("ok", ref="c"))["room"].startswith("adhoc-")
            assert seen(agent, "state", call_id=consultation, state="ended")["reason"] == "conference"
            # Everyone hears both others.
            browser.heard.clear()
            await until(lambda: tones_in(browser.last(0.5), WEBRTC_RATE, (CALLER_HZ, TARGET_HZ)),
                        show=lambda: peaks(browser.last(0.5), WEBRTC_RATE))
            await until(lambda: tones_in(talker.heard(), 8000, (AGENT1_HZ, TARGET_HZ)),
                        show=lambda: peaks(talker.heard(), 8000))
            target_rtp.received.clear()
            await until(lambda: len(target_rtp.received) > 25 and tones_in(phone.heard(), 8000, (CALLER_HZ, AGENT1_HZ)),
                        show=lambda: peaks(phone.heard(), 8000))
            # The agent leaves: the customer and 1003 go on talking.
            await agent.send(type="hangup", call_id=call_id)
            await agent.expect("state", call_id=call_id, state="ended")
            talker.peer.received.clear()
            await until(lambda: len(talker.peer.received) > 25
                        and tones_in(talker.heard(), 8000, (TARGET_HZ,), (AGENT1_HZ,)),
                        show=lambda: peaks(talker.heard(), 8000))
            # The customer hangs up: 1003, alone in the room, is hung up too.
            assert await customer.finished() == 1
            assert await asyncio.to_thread(site.phone_done, TARGET) == 1


async def test_a_desk_phone_the_agent_dialled_is_handed_to_another_browser_agent(site: Site) -> None:
    """Agent 1 calls 1003 from the softphone, holds it, consults agent 2 and completes the
    transfer: 1003 talks with agent 2, whose hang-up ends 1003's call."""
    target_rtp = RtpPeer()
    started = time.time()
    await asyncio.to_thread(site.phone, TARGET, "uas_answer.xml", target_rtp.port)
    async with browsers(AGENT1_HZ, AGENT1_HZ, AGENT2_HZ) as (browser1, line2, browser2), \
            agent_online(site, "agent1") as agent1, agent_online(site, "agent2") as agent2:
        mark = len(site.log())
        await agent1.send(type="dial", number=TARGET, ref="dial")
        placed = (await agent1.expect("call", ref="dial"))["call_id"]
        await media_for(agent1, placed, browser1)
        await answered(agent1, placed)
        phone = phone_rtp_when_rung(site, mark, TARGET, target_rtp, TARGET_HZ)
        with closing(phone):
            await until(lambda: len(target_rtp.received) > 25 and tones_in(phone.heard(), 8000, (AGENT1_HZ,)),
                        show=lambda: peaks(phone.heard(), 8000))
            await agent1.send(type="hold", call_id=placed, ref="hold")
            await agent1.expect("ok", ref="hold")
            await agent1.send(type="dial", number="2002", ref="dial2")
            consultation = (await agent1.expect("call", ref="dial2"))["call_id"]
            await media_for(agent1, consultation, line2)
            incoming = await agent2.expect("incoming")
            await media_for(agent2, incoming["call_id"], browser2)
            await agent2.send(type="answer", call_id=incoming["call_id"], ref="a2")
            await agent2.expect("ok", ref="a2")
            await answered(agent1, consultation)
            # On hold meanwhile, 1003 hears music, not the agents.
            await until(lambda: tones_in(phone.heard(), 8000, (), (AGENT1_HZ, AGENT2_HZ))
                        and max(level(phone.heard(), 8000, hz) for hz in MOH_HZ) > 100,
                        show=lambda: peaks(phone.heard(), 8000))
            await agent1.send(type="transfer", call_id=placed, to_call=consultation, ref="x")
            await agent1.expect("ok", ref="x")
            for each in (placed, consultation):
                assert seen(agent1, "state", call_id=each, state="ended")["reason"] == "transferred"
            now = await agent2.expect("state", call_id=incoming["call_id"], state="answered")
            assert now["peer"] == TARGET   # agent 2 sees who they talk to now
            browser2.heard.clear()
            await until(lambda: tones_in(browser2.last(0.5), WEBRTC_RATE, (TARGET_HZ,)),
                        show=lambda: peaks(browser2.last(0.5), WEBRTC_RATE))
            target_rtp.received.clear()
            await until(lambda: len(target_rtp.received) > 25
                        and tones_in(phone.heard(), 8000, (AGENT2_HZ,), (AGENT1_HZ,)),
                        show=lambda: peaks(phone.heard(), 8000))
            await agent2.send(type="hangup", call_id=incoming["call_id"])
            await agent2.expect("state", call_id=incoming["call_id"], state="ended")
            assert await asyncio.to_thread(site.phone_done, TARGET) == 1   # the BYE reached 1003
    first, second = await asyncio.to_thread(site.cdrs, "2001", 2, started)
    assert (first["caller"], first["callee"], first["hangup_cause"]) == ("2001", TARGET, "attended transfer")
    assert (second["segment"], second["caller"], second["callee"]) == (2, "2002", TARGET)


async def test_a_customer_in_a_three_way_call_holds_and_resumes(site: Site) -> None:
    """On hold the customer leaves the room's mix (the agent and 1003 talk on without them) and
    comes back when it resumes."""
    target_rtp = RtpPeer()
    await asyncio.to_thread(site.phone, TARGET, "uas_answer.xml", target_rtp.port)
    customer = HoldingCustomer(site, "2001", talk_ms=9000)
    async with browsers(AGENT1_HZ, AGENT1_HZ) as (browser, line2), agent_online(site, "agent1") as agent:
        with closing(customer) as cleanup:
            call_id, talker = await answer_customer(agent, browser, customer)
            consultation, phone = await consult_desk_phone(agent, line2, site, call_id, target_rtp)
            cleanup.append(phone)
            await agent.send(type="conference", call_id=call_id, with_call=consultation, ref="c")
            await agent.expect("ok", ref="c")
            await until(lambda: tones_in(browser.last(0.5), WEBRTC_RATE, (CALLER_HZ, TARGET_HZ)),
                        show=lambda: peaks(browser.last(0.5), WEBRTC_RATE))
            assert not log_has(site, f"{CALLER} holds the call", customer.log_mark)   # in the room first
            await until(lambda: log_has(site, f"{CALLER} holds the call", customer.log_mark), 15)
            # The customer's tone (still sent) reaches nobody; the other two still hear each other.
            browser.heard.clear()
            await until(lambda: tones_in(browser.last(0.5), WEBRTC_RATE, (TARGET_HZ,), (CALLER_HZ,)),
                        show=lambda: peaks(browser.last(0.5), WEBRTC_RATE))
            target_rtp.received.clear()
            await until(lambda: len(target_rtp.received) > 25
                        and tones_in(phone.heard(), 8000, (AGENT1_HZ,), (CALLER_HZ,)),
                        show=lambda: peaks(phone.heard(), 8000))
            await until(lambda: log_has(site, f"{CALLER} resumes the call", customer.log_mark), 10)
            browser.heard.clear()
            await until(lambda: tones_in(browser.last(0.5), WEBRTC_RATE, (CALLER_HZ, TARGET_HZ)),
                        show=lambda: peaks(browser.last(0.5), WEBRTC_RATE))
            talker.peer.received.clear()
            await until(lambda: len(talker.peer.received) > 25
                        and tones_in(talker.heard(), 8000, (AGENT1_HZ, TARGET_HZ)),
                        show=lambda: peaks(talker.heard(), 8000))
            assert await customer.finished() == 1
