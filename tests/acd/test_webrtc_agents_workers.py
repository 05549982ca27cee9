"""Browser agents with their WebRTC media in a worker process (`[webrtc] workers`): the same
stories as in-process — the echo test, a SIP caller answered by the agent — with each call's
engine leg an RTP endpoint relayed natively, and a worker's death ending its calls, saying why,
on both the browser's and the SIP caller's side."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
from typing import Any

import pytest

from acd.browser_ringing import SipRinging
from acd.webrtc_agents import WebRtcAgents
from mediacore.engine import Endpoint, MediaEngine
from mediacore.webrtc import WEBRTC_RATE
from mediacore.webrtc_workers import WORKER_FAILED, RemoteBridge, WebRtcWorkerPool
from tests.mediacore.test_webrtc_bridge import Browser, dominant_frequency, wait_until
from tests.mediacore.test_webrtc_workers import Phone

pytestmark = pytest.mark.timeout(60)


class Client:
    """The browser's signalling end: what the agent's page is sent."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    def send(self, message: dict[str, Any]) -> None:
        self.messages.append(message)

    def states(self, call_id: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m.get("call_id") == call_id and m["type"] == "state"]


class Caller:
    """acd.calls.Call as SipRinging sees it, with a real PCMU phone behind its endpoint."""

    def __init__(self, engine: MediaEngine) -> None:
        self.id = "sip-1"
        self.caller = "13800000000"
        self.engine = engine
        self.phone = Phone(engine, frequency=500)
        self.events: list[tuple] = []

    def connect_browser(self, port, extension: str) -> None:
        self.events.append(("answered", extension))
        self.engine.connect(self.phone.endpoint, port)

    def browser_failed(self, status: int, busy: bool) -> None:
        self.events.append(("failed", status))

    def send_dtmf_to_caller(self, digits: str) -> None:
        self.events.append(("dtmf", digits))

    def hangup(self, reason: str, *, side: str) -> None:
        self.events.append(("hangup", reason, side))


def free_range(size: int = 100) -> int:
    """The first port of `size` ports free right now (other test sessions share the machine)."""
    for _ in range(50):
        base = 20000 + 2 * random.randrange(0, (10000 - size) // 2)
        held: list[socket.socket] = []
        try:
            for port in range(base, base + size):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                held.append(sock)
                sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in held:
                sock.close()
    raise OSError("no free port range")


@pytest.fixture
async def agents():
    base = free_range()
    engine = MediaEngine("127.0.0.1", base, base + 99)
    await engine.start()
    pool = WebRtcWorkerPool(1, log_level="WARNING")
    registry = WebRtcAgents(engine, workers=pool)
    try:
        yield registry
    finally:
        await registry.close()
        await pool.close()
        engine.close()


async def offer(agents: WebRtcAgents, call_id: str, browser: Browser) -> None:
    await browser.accept(await agents.offer("2001", call_id, await browser.offer()))


async def test_the_echo_test_runs_through_a_worker_and_the_agent_hears_themself(agents) -> None:
    client, browser = Client(), Browser(frequency=1000)
    try:
        agents.register("2001", "林晓", client)
        call = agents.dial("2001", "9196")
        assert isinstance(call.port, Endpoint) and call.port.codec == "L16"   # an RTP leg, not a PCM port
        assert isinstance(call.bridge, RemoteBridge)
        await offer(agents, call.id, browser)
        await wait_until(lambda: len(browser.heard) >= 150, 15)
        assert abs(dominant_frequency(browser.last(0.5), WEBRTC_RATE) - 1000) < 10
        assert {"type": "media", "call_id": call.id, "state": "connected"} in client.messages
        agents.hangup("2001", call.id)
        assert agents.calls_of("2001") == []
    finally:
        await browser.close()


async def test_a_sip_caller_and_a_browser_agent_hear_each_other_and_a_dead_worker_ends_the_call(agents) -> None:
    client, browser = Client(), Browser(frequency=1000)
    caller = Caller(agents.engine)
    ringing = SipRinging(agents)
    try:
        agents.register("2001", "林晓", client)
        assert ringing.ring(caller, "2001", "王女士")
        call = agents.calls_of("2001")[0]
        await offer(agents, call.id, browser)
        agents.answer("2001", call.id)
        assert caller.events == [("answered", "2001")]
        await wait_until(lambda: len(caller.phone.received) >= 75 and len(browser.heard) >= 100, 15)
        await asyncio.sleep(0.5)
        assert abs(dominant_frequency(browser.last(0.5), WEBRTC_RATE) - 500) < 10
        assert abs(dominant_frequency(caller.phone.heard(), 8000) - 1000) < 15

        os.kill(call.bridge.worker_pid, signal.SIGKILL)
        await wait_until(lambda: bool(client.states(call.id)) and client.states(call.id)[-1]["state"] == "ended", 10)
        assert client.states(call.id)[-1]["reason"] == WORKER_FAILED
        assert caller.events[-1] == ("hangup", f"agent {WORKER_FAILED}", "callee")
        assert agents.calls_of("2001") == []
    finally:
        caller.phone.close()
        await browser.close()
