"""Browser agents as queue members, with real peers: SIPp callers dial queues of a real server
whose members are browser agents (aiortc peers that sign in and register over /ws/agent like the
softphone page) and desk phones (SIPp uas, registered and logged in with *61).

The stories: a browser agent answers a queue call, both hear each other, and the agent's hang-up
ends the call (COMPLETEAGENT, CDR answered by the agent); a browser agent who declines an offer,
or lets it ring out, loses it to the next agent and is paused after the queue's max_missed; a
queued callback rings the browser agent, who hears the whisper before the customer is dialled
and then talks to the customer. Every check reads what the server recorded (queue log, CDRs,
callbacks) or what the peers heard.

One server for the module (the demo: web users agent1..agent5 have extensions 1001..1005); each
story has its own queue and agents."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError
from websockets.asyncio.client import ClientConnection, connect

from bench.server import ServerProcess
from bench.sipp import free_port, read_result, run_sipp, sipp_command
from bench.webrtc_clients import AgentSpec, BenchAgent, ToneTrack, dominant_frequency
from mediacore.codecs import get_decoder, get_encoder
from mediacore.webrtc import WEBRTC_RATE
from tests.peers.seeded_server import rows, seeded_server
from tests.peers.test_queue_callback import HERE, Media, RtpPeer

pytestmark = [pytest.mark.peers, pytest.mark.timeout(120)]

PASSWORD = "demo1234"   # the demo's web users (callcenter.app.DEMO_USER_PASSWORD)
#: What each side sends: the browser's microphone, and the SIP side's 400 Hz (a whole number of
#: cycles in 160 samples, so one G.711 payload repeated is a seamless tone).
BROWSER_HZ, SIP_HZ = 1000.0, 400.0

CONFIG = "\n".join([
    # A browser agent alone: answers, talks, hangs up (the caller hears music until then).
    "[[queues]]", 'number = "8101"', 'members = ["1001"]', "wrapuptime = 1", "ring_timeout = 10", "answer = true",
    'recording = "always"',
    # Linear: the browser agent first, a desk phone after it; paused after two missed offers.
    "[[queues]]", 'number = "8102"', 'strategy = "linear"', 'members = ["1002", "1006"]', "wrapuptime = 0",
    "ring_timeout = 2", "max_missed = 2",
    # Waited too long: called back, by the browser agent.
    "[[queues]]", 'number = "8103"', 'members = ["1004"]', "wrapuptime = 0", "answer = true", "max_wait = 1",
    "joinempty = true",
    'overflow = "callback"', "callback_attempts = 1", 'language = "en"',
    # Ringall: the browser agent and desk phones ring together; whoever answers first takes it.
    "[[queues]]", 'number = "8104"', 'strategy = "ringall"', 'members = ["1003", "1011", "1012"]',
    "wrapuptime = 0", "ring_timeout = 10", "max_missed = 0", ""])


def sip_tone() -> bytes:
    t = np.arange(160) / 8000
    return get_encoder("PCMU").encode(np.round(8000 * np.sin(2 * np.pi * SIP_HZ * t)).astype(np.int16))


def tone_of(payloads: list[bytes]) -> float:
    decoder = get_decoder("PCMU")
    return dominant_frequency(np.concatenate([decoder.decode(p) for p in payloads]), 8000) if payloads else 0.0


class BrowserAgent:
    """One agent's browser: signs in, registers, and handles what rings it as `policy` says —
    "answer" (offer the microphone's tone, then answer), "reject", or "ignore" (let it ring)."""

    def __init__(self, server: ServerProcess, username: str, extension: str, policy: str = "answer") -> None:
        self.server = server
        self.username = username
        self.extension = extension
        self.policy = policy
        self.ws: ClientConnection | None = None
        self.incoming: list[dict[str, Any]] = []
        self.ended: dict[str, str] = {}
        self.answered: list[str] = []
        self.errors: list[dict[str, Any]] = []
        self.heard: deque[np.ndarray] = deque(maxlen=50)   # the last second
        #: When each frame heard that was not silence arrived (monotonic seconds).
        self.loud_at: list[float] = []
        self._pcs: dict[str, RTCPeerConnection] = {}
        self._answers: dict[str, asyncio.Future[str]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    async def register(self) -> None:
        spec = AgentSpec(self.username, PASSWORD, self.extension, BROWSER_HZ, SIP_HZ)
        cookie = await BenchAgent(spec, self.server.http_url).sign_in()
        url = self.server.http_url.replace("http://", "ws://", 1) + "/ws/agent"
        self.ws = await connect(url, additional_headers={"Cookie": f"cc_session={cookie}"},
                                origin=self.server.http_url)  # type: ignore[arg-type]
        await self._send(type="hello", v=1)
        await self._send(type="register")
        registered = asyncio.get_running_loop().create_future()
        self._spawn(self._read(registered))
        await asyncio.wait_for(registered, 20)

    async def hangup(self, call_id: str) -> None:
        await self._send(type="hangup", call_id=call_id)

    def heard_hz(self) -> float:
        if len(self.heard) < 25:
            return 0.0
        return dominant_frequency(np.concatenate(list(self.heard))[-WEBRTC_RATE // 2:], WEBRTC_RATE)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for pc in self._pcs.values():
            with contextlib.suppress(Exception):
                await pc.close()
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await self.ws.close()

    async def _send(self, **message: Any) -> None:
        assert self.ws is not None
        await self.ws.send(json.dumps(message))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _read(self, registered: asyncio.Future[None]) -> None:
        assert self.ws is not None
        async for raw in self.ws:
            message = json.loads(raw)
            kind = message.get("type")
            if kind == "registered" and not registered.done():
                registered.set_result(None)
            elif kind == "incoming":
                self.incoming.append(message)
                if self.policy == "answer":
                    self._spawn(self._take(message["call_id"]))
                elif self.policy == "reject":
                    await self._send(type="reject", call_id=message["call_id"])
            elif kind == "answer":
                future = self._answers.pop(message["call_id"], None)
                if future is not None and not future.done():
                    future.set_result(message["sdp"])
            elif kind == "state" and message.get("state") == "ended":
                self.ended[message["call_id"]] = message.get("reason", "")
                pc = self._pcs.pop(message["call_id"], None)
                if pc is not None:
                    self._spawn(pc.close())
            elif kind == "error":
                self.errors.append(message)

    async def _take(self, call_id: str) -> None:
        pc = self._pcs[call_id] = RTCPeerConnection()
        pc.addTrack(ToneTrack(BROWSER_HZ))
        pc.on("track", lambda track: self._spawn(self._listen(track)))
        await pc.setLocalDescription(await pc.createOffer())
        answer: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._answers[call_id] = answer
        await self._send(type="offer", call_id=call_id, sdp=pc.localDescription.sdp)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=await asyncio.wait_for(answer, 20), type="answer"))
        await self._send(type="answer", call_id=call_id)
        self.answered.append(call_id)

    async def _listen(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            samples = frame.to_ndarray().reshape(-1)
            samples = samples[0::2] if frame.layout.name == "stereo" else samples
            self.heard.append(samples)
            if len(samples) and np.sqrt(np.mean(samples.astype(np.float64) ** 2)) > 300:
                self.loud_at.append(time.monotonic())


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("browser-queues")
    with seeded_server(root, CONFIG) as server:
        yield server




async def until(condition: Callable[[], object], what: str, server: ServerProcess, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{server.log()[-4000:]}")
        await asyncio.sleep(0.05)


async def sipp(server: ServerProcess, scenario: str, workdir: Path, **options: Any) -> None:
    """Run a SIPp scenario to completion off the loop (the browser agents live on it)."""
    result = await asyncio.to_thread(run_sipp, scenario, f"127.0.0.1:{server.sip_port}", workdir, **options)
    assert result.successful == options.get("calls", 1), result.output


async def feature(server: ServerProcess, workdir: Path, extension: str, code: str) -> None:
    await sipp(server, "uac_feature.xml", workdir / f"feature{extension}{code[1:]}", service=code,
               auth=(extension, f"demo{extension}"), keys={"caller": extension, "rtp_port": str(free_port("127.0.0.1"))},
               timeout=20)


def start_sipp(procs: list, server: ServerProcess, workdir: Path, scenario: str,  # type: ignore[type-arg]
               **options: Any) -> subprocess.Popen[bytes]:
    workdir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(sipp_command(scenario, f"127.0.0.1:{server.sip_port}", **options), cwd=workdir,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    procs.append(proc)
    return proc


async def finished(proc: subprocess.Popen[bytes], workdir: Path, calls: int = 1, timeout: float = 30) -> None:
    out, _ = await asyncio.to_thread(proc.communicate, timeout=timeout)
    result = read_result(workdir, proc.returncode, out)
    assert result.successful == calls, result.output


def queue_log(server: ServerProcess, queue: str) -> list[dict]:
    return rows(server.data_dir / "callcenter.db",
                f"SELECT call_id, agent, event, data FROM queue_log WHERE queue = '{queue}' ORDER BY id")


def agent_log(server: ServerProcess, agent: str) -> list[str]:
    return [r["event"] for r in rows(server.data_dir / "callcenter.db",
                                     f"SELECT event FROM queue_log WHERE agent = '{agent}' ORDER BY id")]


async def test_a_browser_agent_answers_a_queue_call_both_hear_each_other_and_the_agent_hangs_up(
        server: ServerProcess, tmp_path: Path, browsers: list[BrowserAgent], procs: list) -> None:  # type: ignore[type-arg]
    agent = BrowserAgent(server, "agent1", "1001")
    browsers.append(agent)
    await agent.register()
    await feature(server, tmp_path, "1001", "*61")   # logged in to the queue (no desk phone registered)
    caller = RtpPeer()
    media = Media(caller)
    try:
        waiting = start_sipp(procs, server, tmp_path / "caller", str(HERE / "queue_caller_wait_bye.xml"),
                             service="8101", auth=("1007", "demo1007"), timeout=40,
                             keys={"caller": "1007", "rtp_port": str(caller.port)})
        await until(lambda: agent.answered, "the browser agent to answer", server)
        assert agent.incoming[0]["peer"] == "1007"
        caller.talk = sip_tone()
        await until(lambda: len(caller.payloads()) >= 100 and abs(agent.heard_hz() - SIP_HZ) < 15,
                    "the caller's tone in the browser", server)
        await until(lambda: abs(tone_of(caller.payloads()[-25:]) - BROWSER_HZ) < 15,
                    "the browser's tone at the caller", server)
        talked = len(caller.payloads())
        await until(lambda: len(caller.payloads()) >= talked + 50, "another second of talk", server)
        await agent.hangup(agent.answered[0])    # the agent ends the call: the caller gets a BYE
        await finished(waiting, tmp_path / "caller")
    finally:
        media.close()
    await until(lambda: len(queue_log(server, "8101")) >= 3, "the end of the talk in the queue log", server)
    log = queue_log(server, "8101")
    assert [(r["event"], r["agent"]) for r in log] == [("ENTERQUEUE", "NONE"), ("CONNECT", "1001"),
                                                       ("COMPLETEAGENT", "1001")]
    [cdr] = rows(server.data_dir / "callcenter.db",
                 "SELECT caller, answered_by, disposition, hangup_side, recording_ref FROM cdr WHERE callee = '8101'")
    ref = cdr.pop("recording_ref")
    assert cdr == {"caller": "1007", "answered_by": "1001", "disposition": "ANSWERED", "hangup_side": "callee"}
    # The queue records its calls: the caller on the left, the browser agent on the right.
    await until(lambda: rows(server.data_dir / "callcenter.db", f"SELECT 1 FROM recordings WHERE ref = '{ref}'"),
                "the recording indexed", server)
    audio, rate = soundfile.read(server.data_dir / "recordings" / ref, dtype="int16")
    assert audio.ndim == 2 and len(audio) > rate   # over a second of talk
    assert abs(dominant_frequency(audio[-rate // 2:, 0], rate) - SIP_HZ) < 15
    assert abs(dominant_frequency(audio[-rate // 2:, 1], rate) - BROWSER_HZ) < 15


async def test_a_browser_agent_who_declines_or_lets_it_ring_loses_the_call_to_the_next_and_is_paused(
        server: ServerProcess, tmp_path: Path, browsers: list[BrowserAgent], procs: list) -> None:  # type: ignore[type-arg]
    declining = BrowserAgent(server, "agent2", "1002", policy="reject")
    browsers.append(declining)
    await declining.register()
    desk = RtpPeer()
    media = Media(desk)
    try:
        desk_port = free_port("127.0.0.1")
        desk_uas = start_sipp(procs, server, tmp_path / "desk", "uas_answer.xml", local_port=desk_port, calls=2,
                              timeout=60, keys={"rtp_port": str(desk.port)})
        await sipp(server, "register_contact.xml", tmp_path / "reg1006", service="1006", auth=("1006", "demo1006"),
                   keys={"contact_port": str(desk_port)}, timeout=20)
        for extension in ("1002", "1006"):
            await feature(server, tmp_path, extension, "*61")
        # First call: the browser agent (first in line) declines; the desk phone takes it.
        await sipp(server, "uac_call.xml", tmp_path / "caller1", service="8102", auth=("1008", "demo1008"),
                   keys={"caller": "1008", "rtp_port": str(free_port("127.0.0.1"))}, timeout=30, extra=["-d", "500"])
        assert len(declining.incoming) == 1 and declining.ended[declining.incoming[0]["call_id"]] == "rejected"
        # Second call: the agent lets it ring; the queue's ring timeout takes it away.
        declining.policy = "ignore"
        await sipp(server, "uac_call.xml", tmp_path / "caller2", service="8102", auth=("1008", "demo1008"),
                   keys={"caller": "1008", "rtp_port": str(free_port("127.0.0.1"))}, timeout=30, extra=["-d", "500"])
        await finished(desk_uas, tmp_path / "desk", calls=2)
    finally:
        media.close()
    assert len(declining.incoming) == 2
    assert declining.ended[declining.incoming[1]["call_id"]] == "no_answer"   # the browser stopped ringing
    await until(lambda: sum(r["event"].startswith("COMPLETE") for r in queue_log(server, "8102")) == 2,
                "both calls completed", server)
    calls: dict[str, list[tuple[str, str]]] = {}
    for r in queue_log(server, "8102"):
        calls.setdefault(r["call_id"], []).append((r["event"], r["agent"]))
    for events in calls.values():
        assert events[0] == ("ENTERQUEUE", "NONE")
        assert events[1][0] == "RINGNOANSWER" and events[1][1] == "1002"
        assert events[2] == ("CONNECT", "1006")
    # Two missed offers in a row (max_missed = 2): the browser agent is paused, not offered more.
    assert agent_log(server, "1002")[-2:] == ["RINGNOANSWER", "PAUSE"]
    cdrs = rows(server.data_dir / "callcenter.db", "SELECT answered_by FROM cdr WHERE callee = '8102'")
    assert [r["answered_by"] for r in cdrs] == ["1006", "1006"]


async def test_a_queued_callback_rings_the_browser_agent_who_hears_the_whisper_then_the_customer(
        server: ServerProcess, tmp_path: Path, browsers: list[BrowserAgent], procs: list) -> None:  # type: ignore[type-arg]
    caller, customer = RtpPeer(), RtpPeer()
    media = Media(caller, customer)
    agent = BrowserAgent(server, "agent4", "1004")
    browsers.append(agent)
    try:
        # The customer's phone (1009) answers the callback and hangs up after 3 s.
        customer_port = free_port("127.0.0.1")
        customer_uas = start_sipp(procs, server, tmp_path / "customer", "refer_target_bye.xml",
                                  local_port=customer_port, timeout=60, keys={"rtp_port": str(customer.port)},
                                  extra=["-d", "3000"])
        await sipp(server, "register_contact.xml", tmp_path / "reg1009", service="1009", auth=("1009", "demo1009"),
                   keys={"contact_port": str(customer_port)}, timeout=20)
        # Nobody is logged in to 8103: the caller waits out max_wait and is promised a callback.
        await sipp(server, str(HERE / "queue_caller_wait_bye.xml"), tmp_path / "caller", service="8103",
                   auth=("1009", "demo1009"), timeout=40, keys={"caller": "1009", "rtp_port": str(caller.port)})
        await until(lambda: rows(server.data_dir / "callcenter.db",
                                 "SELECT 1 FROM queue_callbacks WHERE queue = '8103' AND status = 'pending'"),
                    "the callback booked", server)

        # The browser agent registers and logs in: the callback rings the browser first.
        await agent.register()
        await feature(server, tmp_path, "1004", "*61")
        await until(lambda: agent.answered, "the browser agent to answer the callback", server)
        assert agent.incoming[0]["peer"] == "1009" and agent.incoming[0]["peer_name"] == "callback"
        await until(lambda: customer.source is not None, "the customer's phone answering", server)
        # Before the customer's phone rang (then answered 200 ms later) the agent heard the
        # whisper: "a callback", the number read out — seconds of speech, not a short ringback.
        answered = time.monotonic()
        assert sum(1 for t in agent.loud_at if t < answered) >= 50, len(agent.loud_at)
        customer.talk = sip_tone()
        await until(lambda: abs(agent.heard_hz() - SIP_HZ) < 15, "the customer's tone in the browser", server)
        await until(lambda: abs(tone_of(customer.payloads()[-25:]) - BROWSER_HZ) < 15,
                    "the browser's tone at the customer", server)
        await finished(customer_uas, tmp_path / "customer")   # the customer hangs up after 3 s
        await until(lambda: agent.ended.get(agent.answered[0]), "the browser call to end", server)
    finally:
        media.close()
    await until(lambda: rows(server.data_dir / "callcenter.db",
                             "SELECT 1 FROM queue_callbacks WHERE queue = '8103' AND status = 'done'"),
                "the callback done", server)
    await until(lambda: queue_log(server, "8103")[-1:] and queue_log(server, "8103")[-1]["event"] == "COMPLETECALLER",
                "the end of the talk in the queue log", server)
    log = queue_log(server, "8103")
    assert [r["event"] for r in log] == ["ENTERQUEUE", "EXITWITHTIMEOUT", "CALLBACKREQ", "CONNECT", "CALLBACKDIAL",
                                         "CALLBACKDONE", "COMPLETECALLER"]
    assert {r["agent"] for r in log[3:]} == {"1004"}
    cdrs = rows(server.data_dir / "callcenter.db",
                "SELECT segment, caller, callee, answered_by, disposition FROM cdr WHERE callee = '1009'")
    assert {"segment": 101, "caller": "8103", "callee": "1009", "answered_by": "1004", "disposition": "ANSWERED"} in cdrs


async def test_in_a_ringall_the_browser_and_desk_phones_ring_together_and_the_first_answer_wins(
        server: ServerProcess, tmp_path: Path, browsers: list[BrowserAgent], procs: list) -> None:  # type: ignore[type-arg]
    agent = BrowserAgent(server, "agent3", "1003")
    browsers.append(agent)
    await agent.register()
    # 1011's phone only rings (until cancelled); 1012's answers at once — but only for the second call.
    ringing_port = free_port("127.0.0.1")
    ringing_uas = start_sipp(procs, server, tmp_path / "ringing", "uas_ring.xml", local_port=ringing_port, calls=2,
                             timeout=60)
    await sipp(server, "register_contact.xml", tmp_path / "reg1011", service="1011", auth=("1011", "demo1011"),
               keys={"contact_port": str(ringing_port)}, timeout=20)
    for extension in ("1003", "1011"):
        await feature(server, tmp_path, extension, "*61")
    # First call: the browser agent answers; the desk phone still ringing is cancelled.
    await sipp(server, "uac_call.xml", tmp_path / "caller1", service="8104", auth=("1013", "demo1013"),
               keys={"caller": "1013", "rtp_port": str(free_port("127.0.0.1"))}, timeout=30, extra=["-d", "500"])
    assert len(agent.answered) == 1
    # Second call: the browser rings, unanswered; 1012's phone answers first and the browser stops.
    agent.policy = "ignore"
    answering_port = free_port("127.0.0.1")
    answering_uas = start_sipp(procs, server, tmp_path / "answering", "uas_answer.xml", local_port=answering_port,
                               timeout=60, keys={"rtp_port": str(free_port("127.0.0.1"))})
    await sipp(server, "register_contact.xml", tmp_path / "reg1012", service="1012", auth=("1012", "demo1012"),
               keys={"contact_port": str(answering_port)}, timeout=20)
    await feature(server, tmp_path, "1012", "*61")
    await sipp(server, "uac_call.xml", tmp_path / "caller2", service="8104", auth=("1013", "demo1013"),
               keys={"caller": "1013", "rtp_port": str(free_port("127.0.0.1"))}, timeout=30, extra=["-d", "500"])
    await finished(ringing_uas, tmp_path / "ringing", calls=2)     # cancelled twice
    await finished(answering_uas, tmp_path / "answering")
    second = agent.incoming[1]["call_id"]
    await until(lambda: second in agent.ended, "the browser to stop ringing", server)
    assert agent.ended[second] == "answered_elsewhere"
    await until(lambda: sum(r["event"].startswith("COMPLETE") for r in queue_log(server, "8104")) == 2,
                "both calls completed", server)
    connects = [r["agent"] for r in queue_log(server, "8104") if r["event"] == "CONNECT"]
    assert connects == ["1003", "1012"]
    cancelled = [r["agent"] for r in queue_log(server, "8104") if r["event"] == "RINGCANCELED"]
    assert sorted(cancelled) == ["1003", "1011", "1011"]
    cdrs = rows(server.data_dir / "callcenter.db", "SELECT answered_by FROM cdr WHERE callee = '8104' ORDER BY id")
    assert [r["answered_by"] for r in cdrs] == ["1003", "1012"]
