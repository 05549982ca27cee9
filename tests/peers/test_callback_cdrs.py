"""CDRs and recordings of the calls the system places itself (issues #4 and #8), with real
phones (SIPp) and audio checked by frequency: a queued callback the customer answers has a CDR
of its own on the queue call's id (the customer its callee, the agent its answered_by) and is
recorded by the queue's rule — the customer on the left, the agent on the right — in a file the
CDR names and the recordings index lists with the call's segments; a supervisor's wallboard
listen rings their phone, whose line gets a CDR naming the supervisor, the action and the
agent's call, and no recording."""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile

from acd.recording_index import RecordingIndex
from bench.server import ServerProcess
from bench.sipp import free_port
from callcenter.database import open_database
from tests.peers.test_calls import tone
from tests.peers.test_queue_callback import (
    HERE,
    Media,
    RtpPeer,
    feature,
    finished,
    register,
    rows,
    start_sipp,
    wait_for,
)
from tests.peers.test_supervisor_actions import make_users

pytestmark = pytest.mark.peers

CONFIG = "\n".join([
    "demo_crm = false",
    # Press 1 to be called back; callbacks recorded.
    "[[queues]]", 'number = "8500"', 'members = ["1001"]', "joinempty = true", "wrapuptime = 0",
    "ring_timeout = 10", "answer = true", 'callback_key = "1"', 'language = "en"', 'recording = "always"',
    # An agent a supervisor listens to (1002 is agent2 of the CRM users; 1010 is supervisor1's).
    "[[queues]]", 'number = "8502"', 'members = ["1002"]', "wrapuptime = 0", ""])

CUSTOMER, AGENT = "1006", "1001"
#: 20 ms of each party's tone: whole cycles, so the frame repeated is one steady tone.
CUSTOMER_HZ, AGENT_HZ = 1000.0, 700.0
BLOCK = 1600   # 0.2 s at 8 kHz


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("callback-cdrs")
    asyncio.run(make_users(root / "data"))
    config = root / "cdrs.toml"
    config.write_text(CONFIG)
    server = ServerProcess(root / "data", extra_args=["--config", str(config)])
    server.start()
    try:
        yield server
    finally:
        server.stop()



def level(samples: np.ndarray, frequency: float) -> float:
    """Amplitude of `frequency` (a windowed DFT bin ±15 Hz)."""
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples)))) / (len(samples) / 4)
    freqs = np.fft.rfftfreq(len(samples), 1 / 8000)
    return float(spectrum[(freqs > frequency - 15) & (freqs < frequency + 15)].max())


def who_speaks(channel: np.ndarray) -> list[str]:
    """Per 0.2 s block: 'customer', 'agent' or '' (no tone)."""
    found = []
    for start in range(0, len(channel) - BLOCK + 1, BLOCK):
        block = channel[start:start + BLOCK].astype(float)
        levels = {"customer": level(block, CUSTOMER_HZ), "agent": level(block, AGENT_HZ)}
        best = max(levels, key=lambda name: levels[name])
        found.append(best if levels[best] > 1000 else "")
    return found


async def listing(data: Path, party: str) -> list:  # type: ignore[type-arg]
    conn = await open_database(data / "callcenter.db")
    try:
        return await RecordingIndex(conn, data / "recordings").listing(party=party)
    finally:
        await conn.close()


def test_a_callback_has_its_own_cdr_and_a_stereo_recording_customer_left_agent_right(
        server: ServerProcess, tmp_path: Path, procs: list) -> None:  # type: ignore[type-arg]
    target = f"127.0.0.1:{server.sip_port}"
    db = server.data_dir / "callcenter.db"
    caller, agent, customer = RtpPeer(), RtpPeer(), RtpPeer()
    media = Media(caller, agent, customer)
    try:
        customer_port, agent_port = free_port("127.0.0.1"), free_port("127.0.0.1")
        # The customer's phone answers the callback and hangs up 3 s later; the agent's answers.
        customer_uas = start_sipp(procs, tmp_path / "customer", "refer_target_bye.xml", target,
                                  local_port=customer_port, timeout=60, keys={"rtp_port": str(customer.port)},
                                  extra=["-d", "3000"])
        agent_uas = start_sipp(procs, tmp_path / "agent", "uas_answer.xml", target, local_port=agent_port,
                               timeout=60, keys={"rtp_port": str(agent.port)})
        register(server, tmp_path, CUSTOMER, customer_port)
        register(server, tmp_path, AGENT, agent_port)

        # The customer calls the queue, nobody is logged in: they press 1 and are hung up.
        waiting = start_sipp(procs, tmp_path / "caller", str(HERE / "queue_caller_wait_bye.xml"), target,
                             service="8500", auth=(CUSTOMER, f"demo{CUSTOMER}"), timeout=40,
                             keys={"caller": CUSTOMER, "rtp_port": str(caller.port)})
        wait_for(lambda: len(caller.payloads()) >= 20, "the callback offer", server)
        caller.press(1)
        finished(waiting, tmp_path / "caller")
        [booked] = rows(db, "SELECT call_id FROM queue_callbacks WHERE queue = '8500'")

        # Each side talks its tone as soon as it hears the engine: the agent from the whisper,
        # the customer from the bridge.
        agent.talk, customer.talk = tone(AGENT_HZ, 1)[0], tone(CUSTOMER_HZ, 1)[0]
        feature(server, tmp_path, AGENT, "*61")
        finished(customer_uas, tmp_path / "customer", timeout=40)   # the customer hangs up after 3 s
        finished(agent_uas, tmp_path / "agent")
        wait_for(lambda: rows(db, "SELECT * FROM cdr WHERE segment = 101 AND callee = '1006'"),
                 "the callback's CDR", server)
        [cdr] = rows(db, "SELECT * FROM cdr WHERE segment = 101 AND callee = '1006'")
        ref = cdr["recording_ref"]
        wait_for(lambda: rows(db, f"SELECT * FROM recordings WHERE ref = '{ref}' AND sha256 IS NOT NULL"),
                 "the recording closed and indexed", server)
    finally:
        media.close()

    # The callback's CDR: on the queue call's id, the customer called, the agent answered.
    assert cdr["call_id"] == booked["call_id"]
    assert (cdr["caller"], cdr["callee"], cdr["answered_by"], cdr["disposition"], cdr["caller_name"]) == (
        "8500", CUSTOMER, AGENT, "ANSWERED", "callback")
    assert cdr["billsec"] >= 2.5 and cdr["hangup_side"] == "caller"
    assert re.fullmatch(rf"20\d\d/[01]\d/[0-3]\d/{cdr['call_id']}-callback1\.wav", ref), ref

    # The file: whole, as the index says, stereo, the customer left and the agent right.
    [indexed] = rows(db, f"SELECT * FROM recordings WHERE ref = '{ref}'")
    path = server.data_dir / "recordings" / ref
    data = path.read_bytes()
    assert indexed["sha256"] == hashlib.sha256(data).hexdigest() and indexed["size_bytes"] == len(data)
    assert (indexed["call_id"], indexed["kind"], indexed["rule"], indexed["error"]) == (
        cdr["call_id"], "call", "always", None)
    audio, rate = soundfile.read(path, dtype="int16")
    assert rate == 8000 and audio.shape[1] == 2 and len(audio) / rate >= 2.5
    left, right = who_speaks(audio[:, 0]), who_speaks(audio[:, 1])
    assert left.count("customer") >= 10 and set(left) <= {"customer", ""}, left
    assert right.count("agent") >= 10 and set(right) <= {"agent", ""}, right

    # The agent's recordings list it, with the call's segments (the queue call and the callback).
    [entry] = [e for e in asyncio.run(listing(server.data_dir, AGENT)) if e.ref == ref]
    assert [s.segment for s in entry.segments] == [1, 101]
    assert entry.segments[1].callee == CUSTOMER and entry.segments[1].answered_by == AGENT


def test_a_supervisors_wallboard_listen_line_has_a_cdr_on_the_agents_call(
        server: ServerProcess, tmp_path: Path, procs: list) -> None:  # type: ignore[type-arg]
    target = f"127.0.0.1:{server.sip_port}"
    db = server.data_dir / "callcenter.db"
    caller, agent, supervisor = RtpPeer(), RtpPeer(), RtpPeer()
    media = Media(caller, agent, supervisor)
    try:
        agent_port, supervisor_port = free_port("127.0.0.1"), free_port("127.0.0.1")
        agent_uas = start_sipp(procs, tmp_path / "agent", "uas_answer.xml", target, local_port=agent_port,
                               timeout=60, keys={"rtp_port": str(agent.port)})
        # The supervisor's phone answers, listens 1.5 s and hangs up.
        supervisor_uas = start_sipp(procs, tmp_path / "supervisor", "refer_target_bye.xml", target,
                                    local_port=supervisor_port, timeout=60,
                                    keys={"rtp_port": str(supervisor.port)}, extra=["-d", "1500"])
        register(server, tmp_path, "1002", agent_port)
        register(server, tmp_path, "1010", supervisor_port)
        feature(server, tmp_path, "1002", "*61")
        # 1007 calls the queue and talks with the agent for 4 s.
        calling = start_sipp(procs, tmp_path / "caller", "uac_call.xml", target, service="8502",
                             auth=("1007", "demo1007"), timeout=40,
                             keys={"caller": "1007", "rtp_port": str(caller.port)}, extra=["-d", "4000"])
        token = httpx.post(f"{server.http_url}/api/auth/token",
                           json={"username": "supervisor1", "password": "demo1234"}, timeout=10).json()["token"]
        listen: dict = {}  # type: ignore[type-arg]

        def listening() -> bool:
            response = httpx.post(f"{server.http_url}/api/supervisor/agents/1002/listen",
                                  headers={"Authorization": f"Bearer {token}"}, timeout=10)
            listen.update(response.json())
            return response.status_code == 202   # 409 until the agent has answered

        wait_for(listening, "the agent on the call", server)
        finished(supervisor_uas, tmp_path / "supervisor")
        finished(calling, tmp_path / "caller")
        finished(agent_uas, tmp_path / "agent")
        sql = f"SELECT * FROM cdr WHERE call_id = '{listen['call_id']}' ORDER BY segment"
        wait_for(lambda: len(rows(db, sql)) >= 2, "the CDRs of the call and of the line", server)
    finally:
        media.close()

    call, line = rows(db, sql)
    assert (call["segment"], call["caller"], call["answered_by"]) == (1, "1007", "1002")
    # The supervisor's line: who, which action on which agent, answered by their phone, which
    # hung up after listening; never recorded.
    assert (line["segment"], line["caller"], line["caller_name"], line["callee"]) == (
        201, "1010", "supervisor1", "*551002")
    assert (line["answered_by"], line["disposition"], line["hangup_side"], line["hangup_cause"]) == (
        "1010", "ANSWERED", "caller", "hangup")
    assert 1.0 <= line["billsec"] <= 3.5 and line["recording_ref"] == ""
    assert not rows(db, f"SELECT * FROM recordings WHERE call_id = '{listen['call_id']}'")
