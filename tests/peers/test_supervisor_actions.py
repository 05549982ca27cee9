"""Supervisors' actions with real phones (SIPp) and real audio (tones checked by frequency): the
desk phone's take-over (*58 + extension, or the key 8 while listening) leaves the caller
talking to the supervisor and the agent released; the wallboard's listen (REST) rings the
supervisor's phone, which then hears the call without being heard, and its take-over acts on
that same line; the conference page's mute silences a member and its kick hangs the member up.
All audited; REST refusals say why."""

from __future__ import annotations

import asyncio
import json
import random
import re
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from bench.server import ServerProcess
from bench.sipp import free_port, read_result, run_sipp, sipp_command
from callcenter.app import schemas
from callcenter.database import apply_all, open_database
from crm.access import SYSTEM
from crm.db import Database
from crm.passwords import ScryptParams
from crm.service import Crm
from tests.peers.test_calls import RtpPeer, dominant_frequency, tone

pytestmark = pytest.mark.peers

HERE = Path(__file__).parent / "scenarios"
ADMIN_PASSWORD = "takeover-admin-pw"
PASSWORDS = {"admin": ADMIN_PASSWORD}
QUEUES = """
# The CRM's users are made by the test (seeding the whole demo CRM would take seconds).
demo_crm = false

[[queues]]
number = "8101"
name = "抢接测试"
strategy = "ringall"
members = ["1001"]
wrapuptime = 30

[[queues]]
number = "8102"
name = "监听测试"
strategy = "ringall"
members = ["1002"]
wrapuptime = 0

[[queues]]
number = "8103"
name = "按键抢接"
strategy = "ringall"
members = ["1003"]
wrapuptime = 0

[[conferences]]
number = "7000"
name = "测试会议"
"""


#: user name -> (role, extension): the demo's supervisor1 and two agents, and an administrator
#: who has no extension.
USERS = {"supervisor1": ("supervisor", "1010"), "agent2": ("agent", "1002"), "agent3": ("agent", "1003"),
         "admin": ("admin", None)}


async def make_users(data: Path) -> None:
    data.mkdir(parents=True, exist_ok=True)
    conn = await open_database(data / "callcenter.db")
    try:
        await apply_all(conn, schemas())
        crm = Crm.build(Database(conn), password_params=ScryptParams(log2_n=4, r=8, p=1))
        hq = await crm.org.create_department(SYSTEM, "客服中心")
        for username, (role, extension) in USERS.items():
            await crm.org.create_user(SYSTEM, username, username, PASSWORDS.get(username, "demo1234"), roles=[role],
                                      department_id=hq.id, extension=extension)
    finally:
        await conn.close()


class Site:
    """One server (with the CRM users of USERS: supervisor1 has extension 1010), its SIPp
    phones, and reads of its log and database."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        (tmp / "callcenter.toml").write_text(QUEUES)
        asyncio.run(make_users(tmp / "data"))
        # RTP ports of its own below the ephemeral range: a stray stream another test on this
        # machine still sends to a port of the default range must not latch our legs (RFC 4961).
        base = 20000 + 200 * random.randrange(50)
        self.server = ServerProcess(tmp / "data", extra_args=["--sip-trace", "--config", str(tmp / "callcenter.toml"),
                                                              "--rtp-ports", f"{base}-{base + 199}"])
        self.server.start()
        self.target = f"127.0.0.1:{self.server.sip_port}"
        self.procs: list[subprocess.Popen[bytes]] = []

    def log(self) -> str:
        return self.server.log_path.read_text(errors="replace")

    def wait_for(self, text: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log():
            assert time.monotonic() < deadline, f"no {text!r} in the log:\n{self.log()[-4000:]}"
            time.sleep(0.05)

    def start(self, name: str, scenario: str, **options: object) -> tuple[subprocess.Popen[bytes], Path]:
        workdir = self.tmp / name
        workdir.mkdir()
        proc = subprocess.Popen(sipp_command(scenario, self.target, timeout=40, **options),  # type: ignore[arg-type]
                                cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc, workdir

    def phone(self, extension: str, rtp_port: int, scenario: str = "uas_answer.xml",
              extra: list[str] | None = None) -> tuple[subprocess.Popen[bytes], Path]:
        """A registered SIPp phone that answers one call and waits for the BYE (or plays
        `scenario`)."""
        port = free_port("127.0.0.1")
        phone = self.start(f"phone{extension}", scenario, local_port=port, keys={"rtp_port": str(rtp_port)},
                           extra=extra)
        reg = run_sipp("register_contact.xml", self.target, self.tmp / f"reg{extension}", service=extension,
                       auth=(extension, f"demo{extension}"), keys={"contact_port": str(port)}, timeout=20)
        assert reg.successful == 1, reg.output
        return phone

    def log_in(self, extension: str) -> None:
        login = run_sipp("uac_feature.xml", self.target, self.tmp / f"login{extension}", service="*61",
                         auth=(extension, f"demo{extension}"),
                         keys={"caller": extension, "rtp_port": str(free_port("127.0.0.1"))}, timeout=20)
        assert login.successful == 1, login.output

    def call_queue(self, caller: str, queue: str, rtp_port: int) -> tuple[subprocess.Popen[bytes], Path]:
        """A caller who waits in `queue` until the server hangs up."""
        return self.start(f"caller{caller}", str(HERE / "queue_caller_wait_bye.xml"), service=queue,
                          auth=(caller, f"demo{caller}"), keys={"caller": caller, "rtp_port": str(rtp_port)})

    def engine_port(self, first_line: str, *, containing: str = "", timeout: float = 15.0) -> int:
        """The m=audio port of the first SDP the server sent in a message starting with
        `first_line` that contains `containing`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for block in self.log().split("sipstack.trace: send ")[1:]:
                block = re.split(r"^\d{4}-\d\d-\d\d \d\d:", block, maxsplit=1, flags=re.M)[0]
                body = block.split("\n", 1)[1] if "\n" in block else ""
                if body.startswith(first_line) and containing in body:
                    found = re.search(r"^m=audio (\d+) ", body, re.M)
                    if found:
                        return int(found.group(1))
            time.sleep(0.05)
        raise AssertionError(f"no {first_line!r} with {containing!r} sent:\n{self.log()[-4000:]}")

    def rows(self, sql: str) -> list[dict]:
        async def read() -> list[dict]:
            conn = await open_database(self.tmp / "data" / "callcenter.db")
            try:
                async with conn.execute(sql) as cur:
                    return [dict(r) for r in await cur.fetchall()]
            finally:
                await conn.close()
        return asyncio.run(read())

    def wait_rows(self, sql: str, count: int) -> list[dict]:
        deadline = time.monotonic() + 10
        while len(found := self.rows(sql)) < count:
            assert time.monotonic() < deadline, found
            time.sleep(0.05)
        return found

    def token(self, username: str, password: str = "demo1234") -> str:
        response = httpx.post(f"{self.server.http_url}/api/auth/token",
                              json={"username": username, "password": password}, timeout=10)
        assert response.status_code == 201, response.text
        return response.json()["token"]

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self.server.stop()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    site = Site(tmp_path_factory.mktemp("takeover"))
    try:
        yield site
    finally:
        site.close()


def finished(proc_dir: tuple[subprocess.Popen[bytes], Path]) -> int:
    proc, workdir = proc_dir
    out, _ = proc.communicate(timeout=40)
    return read_result(workdir, proc.returncode, out).successful


def talk(pairs: list[tuple[RtpPeer, int, float]], frames: int = 75) -> None:
    """Each peer sends a tone to its engine port at once, for `frames` x 20 ms."""
    stop = threading.Event()
    threads = [threading.Thread(target=peer.talk, args=(("127.0.0.1", port), tone(freq, frames), stop))
               for peer, port, freq in pairs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=15)


def level(payloads: list[bytes], freq: float) -> float:
    """The share of the signal's energy within 20 Hz of `freq` (0..1)."""
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import audioop
    pcm = np.frombuffer(audioop.ulaw2lin(b"".join(payloads), 2), dtype="<i2").astype(float)
    power = np.abs(np.fft.rfft(pcm * np.hanning(len(pcm)))) ** 2
    freqs = np.fft.rfftfreq(len(pcm), 1 / 8000)
    return float(power[np.abs(freqs - freq) < 20].sum() / max(power.sum(), 1e-9))


def test_a_supervisor_takes_over_a_queue_call_from_the_desk_phone(site: Site) -> None:
    caller_rtp, agent_rtp, supervisor_rtp = RtpPeer(), RtpPeer(), RtpPeer()
    agent = site.phone("1001", agent_rtp.port)
    site.log_in("1001")
    caller = site.call_queue("1005", "8101", caller_rtp.port)
    caller_port = site.engine_port("SIP/2.0 200 OK", containing="To: <sip:8101@")   # the agent answered
    results: dict[str, int] = {}
    supervisor = threading.Thread(target=lambda: results.setdefault("supervisor", run_sipp(
        "uac_call.xml", site.target, site.tmp / "sup1010", service="*581001", auth=("1010", "demo1010"),
        timeout=30, keys={"caller": "1010", "rtp_port": str(supervisor_rtp.port)}, extra=["-d", "4000"]).successful))
    supervisor.start()
    supervisor_port = site.engine_port("SIP/2.0 200 OK", containing="To: <sip:*581001@")
    site.wait_for("supervisor 1010 took the call over from agent 1001")
    talk([(caller_rtp, caller_port, 440), (supervisor_rtp, supervisor_port, 1000)])
    supervisor.join(30)
    # The supervisor hung up (the scenario's BYE after 4 s): the call ended, the caller got BYE.
    assert results["supervisor"] == 1, site.log()[-4000:]
    assert finished(caller) == 1
    # The agent's leg was released with a BYE of ours when the supervisor took over.
    assert finished(agent) == 1
    # The caller and the supervisor heard each other.
    assert len(caller_rtp.received) >= 40 and len(supervisor_rtp.received) >= 40
    assert abs(dominant_frequency(caller_rtp.received) - 1000) < 10
    assert abs(dominant_frequency(supervisor_rtp.received) - 440) < 10
    assert not agent_rtp.received or level(agent_rtp.received, 1000) < 0.05
    # One call, two CDR segments: the agent's, then the supervisor's.
    first, second = site.wait_rows("SELECT * FROM cdr WHERE callee = '8101' OR (caller = '1005' AND segment = 2) "
                                   "ORDER BY segment", 2)
    assert first["call_id"] == second["call_id"] and (first["segment"], second["segment"]) == (1, 2)
    assert (first["caller"], first["answered_by"], first["hangup_side"], first["hangup_cause"]) == (
        "1005", "1001", "callee", "supervisor takeover")
    assert (second["caller"], second["callee"], second["answered_by"], second["hangup_side"]) == (
        "1005", "1010", "1010", "callee")
    # The queue log shows a transfer to the supervisor, and the agent is in wrap-up.
    log = site.wait_rows("SELECT agent, data FROM queue_log WHERE queue = '8101' AND event = 'TRANSFER'", 1)
    assert log[0]["agent"] == "1001" and log[0]["data"].split("|")[0] == "1010"
    audit = site.wait_rows("SELECT username, after_json FROM audit_log WHERE action = 'supervise_takeover'", 1)
    after = json.loads(audit[0]["after_json"])
    assert audit[0]["username"] == "supervisor1"
    assert (after["agent"], after["mode"], after["via"], after["call_id"]) == (
        "1001", "takeover", "desk_phone", first["call_id"])


def press(peer: RtpPeer, remote: tuple[str, int], key: int) -> None:
    """One RFC 4733 key press (§2.3): start, updates, three end packets, one timestamp."""
    ssrc, ts = 0x1234ABCD ^ peer.port, 900000
    for i, duration in enumerate((160, 320, 640, 800, 800, 800)):
        end = 0x80 if i >= 3 else 0
        header = struct.pack("!BBHII", 0x80, (0x80 if i == 0 else 0) | 101, 5000 + i, ts, ssrc)
        peer.sock.sendto(header + struct.pack("!BBH", key, end | 10, duration), remote)
        time.sleep(0.02)


def test_a_listening_supervisor_keys_8_and_takes_over_on_the_same_line(site: Site) -> None:
    caller_rtp, agent_rtp, supervisor_rtp = RtpPeer(), RtpPeer(), RtpPeer()
    agent = site.phone("1003", agent_rtp.port)
    site.log_in("1003")
    caller = site.call_queue("1009", "8103", caller_rtp.port)
    caller_port = site.engine_port("SIP/2.0 200 OK", containing="To: <sip:8103@")
    results: dict[str, int] = {}
    supervisor = threading.Thread(target=lambda: results.setdefault("supervisor", run_sipp(
        "uac_call.xml", site.target, site.tmp / "sup-keys", service="*551003", auth=("1010", "demo1010"),
        timeout=30, keys={"caller": "1010", "rtp_port": str(supervisor_rtp.port)}, extra=["-d", "5000"]).successful))
    supervisor.start()
    supervisor_port = site.engine_port("SIP/2.0 200 OK", containing="To: <sip:*551003@")
    site.wait_for("supervisor supervisor1 (1010) listen on agent 1003")
    press(supervisor_rtp, ("127.0.0.1", supervisor_port), 8)
    site.wait_for("supervisor 1010 took the call over from agent 1003")
    talk([(caller_rtp, caller_port, 440), (supervisor_rtp, supervisor_port, 1000)])
    supervisor.join(30)
    # The supervisor's own call went on (no BYE of ours) until the supervisor hung up.
    assert results["supervisor"] == 1, site.log()[-4000:]
    assert finished(caller) == 1 and finished(agent) == 1
    assert abs(dominant_frequency(caller_rtp.received) - 1000) < 10
    assert abs(dominant_frequency(supervisor_rtp.received) - 440) < 10
    audit = site.wait_rows("SELECT action, after_json FROM audit_log WHERE action LIKE 'supervise_%' "
                           "AND after_json LIKE '%\"agent\": \"1003\"%' ORDER BY id", 2)
    assert [(a["action"], json.loads(a["after_json"])["via"]) for a in audit] == [
        ("supervise_listen", "desk_phone"), ("supervise_takeover", "desk_phone")]


def test_the_wallboard_listen_rings_the_supervisor_who_hears_the_call_unheard(site: Site) -> None:
    caller_rtp, agent_rtp, supervisor_rtp = RtpPeer(), RtpPeer(), RtpPeer()
    api = f"{site.server.http_url}/api/supervisor/agents"
    boss = {"Authorization": f"Bearer {site.token('supervisor1')}"}
    agent_only = {"Authorization": f"Bearer {site.token('agent2')}"}
    # Nobody is on a call yet: 409 with the reason.
    response = httpx.post(f"{api}/1002/listen", headers=boss, timeout=10)
    assert response.status_code == 409 and response.json()["error"]["code"] == "supervisor.not_on_call"
    agent = site.phone("1002", agent_rtp.port)
    site.log_in("1002")
    caller = site.call_queue("1006", "8102", caller_rtp.port)
    caller_port = site.engine_port("SIP/2.0 200 OK", containing="To: <sip:8102@")
    agent_port = site.engine_port("INVITE sip:1002@")
    # An agent may not; an administrator without an extension cannot be rung; the supervisor's
    # extension has no phone registered yet.
    response = httpx.post(f"{api}/1002/listen", headers=agent_only, timeout=10)
    assert response.status_code == 403
    admin = {"Authorization": f"Bearer {site.token('admin', ADMIN_PASSWORD)}"}
    response = httpx.post(f"{api}/1002/takeover", headers=admin, timeout=10)
    assert response.status_code == 422 and response.json()["error"]["code"] == "supervisor.no_extension"
    response = httpx.post(f"{api}/1002/listen", headers=boss, timeout=10)
    assert response.status_code == 409 and response.json()["error"]["code"] == "supervisor.no_phone"
    # The supervisor's phone answers, and hangs up 7 s later.
    supervisor = site.phone("1010", supervisor_rtp.port, "refer_target_bye.xml", extra=["-d", "7000"])
    response = httpx.post(f"{api}/1002/listen", headers=boss, timeout=10)
    assert response.status_code == 202, response.text
    assert response.json()["state"] == "ringing" and response.json()["extension"] == "1010"
    supervisor_port = site.engine_port("INVITE sip:1010@")
    site.wait_for("supervisor supervisor1 (1010) listen on agent 1002")
    talk([(caller_rtp, caller_port, 440), (agent_rtp, agent_port, 700), (supervisor_rtp, supervisor_port, 1000)])
    # The supervisor heard both; neither caller nor agent heard the supervisor.
    assert len(supervisor_rtp.received) >= 40
    assert level(supervisor_rtp.received, 440) > 0.2 and level(supervisor_rtp.received, 700) > 0.2
    assert abs(dominant_frequency(caller_rtp.received) - 700) < 10
    assert abs(dominant_frequency(agent_rtp.received) - 440) < 10
    assert level(caller_rtp.received, 1000) < 0.02 and level(agent_rtp.received, 1000) < 0.02
    # Take over from the wallboard while listening: the same line, at once; the agent is released.
    call_id = response.json()["call_id"]
    taken = httpx.post(f"{api}/1002/takeover", headers=boss, timeout=10)
    assert taken.status_code == 200, taken.text
    assert (taken.json()["state"], taken.json()["call_id"]) == ("connected", call_id)
    assert finished(agent) == 1
    caller_rtp.received.clear()
    supervisor_rtp.received.clear()
    talk([(caller_rtp, caller_port, 440), (supervisor_rtp, supervisor_port, 1000)])
    assert abs(dominant_frequency(caller_rtp.received) - 1000) < 10
    assert abs(dominant_frequency(supervisor_rtp.received) - 440) < 10
    # The supervisor hangs up: the call ends, the caller gets our BYE.
    assert finished(supervisor) == 1 and finished(caller) == 1
    taken_over = site.wait_rows("SELECT username, after_json FROM audit_log WHERE action = 'supervise_takeover' "
                                "AND after_json LIKE '%wallboard%'", 1)
    assert json.loads(taken_over[0]["after_json"])["call_id"] == call_id
    segments = site.wait_rows(f"SELECT segment, answered_by, hangup_cause FROM cdr WHERE call_id = '{call_id}' "
                              "ORDER BY segment", 2)
    assert [(c["segment"], c["answered_by"]) for c in segments] == [(1, "1002"), (2, "1010")]
    audit = site.wait_rows("SELECT username, after_json FROM audit_log WHERE action = 'supervise_listen' "
                           "AND after_json LIKE '%wallboard%'", 1)
    after = json.loads(audit[0]["after_json"])
    assert audit[0]["username"] == "supervisor1"
    assert (after["agent"], after["mode"], after["via"], after["call_id"]) == ("1002", "listen", "wallboard", call_id)


def test_the_conference_page_mutes_and_kicks_members(site: Site) -> None:
    first_rtp, second_rtp = RtpPeer(), RtpPeer()
    boss = {"Authorization": f"Bearer {site.token('supervisor1')}"}
    agent_only = {"Authorization": f"Bearer {site.token('agent3')}"}
    api = f"{site.server.http_url}/api/conferences"
    first = site.call_queue("1007", "7000", first_rtp.port)        # no PIN: straight in
    first_port = site.engine_port("SIP/2.0 200 OK", containing="To: <sip:7000@")
    site.wait_for("conference 7000: 1007 joined")
    second = site.call_queue("1008", "7000", second_rtp.port)
    site.wait_for("conference 7000: 1008 joined")
    second_port = site.engine_port("SIP/2.0 200 OK", containing="From: <sip:1008@")
    assert httpx.get(api, headers=agent_only, timeout=10).status_code == 403
    [room] = httpx.get(api, headers=boss, timeout=10).json()["rooms"]
    assert (room["number"], room["name"]) == ("7000", "测试会议")
    members = {m["caller"]: m for m in room["members"]}
    assert set(members) == {"1007", "1008"}
    assert members["1008"]["name"] == "分机 1008" and members["1008"]["joined_at"]
    assert not members["1008"]["muted"] and not members["1008"]["moderator"]
    second_id = members["1008"]["call_id"]
    member_api = f"{api}/7000/members/{second_id}"
    assert httpx.post(f"{member_api}/mute", headers=agent_only, timeout=10).status_code == 403
    muted = httpx.post(f"{member_api}/mute", headers=boss, timeout=10)
    assert muted.status_code == 200 and muted.json()["muted"] is True
    [room] = httpx.get(api, headers=boss, timeout=10).json()["rooms"]
    assert {m["caller"]: m["muted"] for m in room["members"]} == {"1007": False, "1008": True}
    # Muted: the other member does not hear 1008's tone (1008 itself hears its welcome prompt).
    talk([(first_rtp, first_port, 440), (second_rtp, second_port, 1000)])
    assert len(first_rtp.received) >= 40 and level(first_rtp.received, 1000) < 0.05
    assert httpx.post(f"{member_api}/unmute", headers=boss, timeout=10).json()["muted"] is False
    first_rtp.received.clear()
    talk([(first_rtp, first_port, 440), (second_rtp, second_port, 1000)])
    assert abs(dominant_frequency(first_rtp.received) - 1000) < 10
    # Kicked: the member's leg gets our BYE; the room keeps the other one.
    assert httpx.post(f"{member_api}/kick", headers=boss, timeout=10).status_code == 200
    assert finished(second) == 1
    deadline = time.monotonic() + 5
    while [m["caller"] for m in httpx.get(api, headers=boss, timeout=10).json()["rooms"][0]["members"]] != ["1007"]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    gone = httpx.post(f"{member_api}/kick", headers=boss, timeout=10)
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "conference.no_member"
    [remaining] = httpx.get(api, headers=boss, timeout=10).json()["rooms"][0]["members"]
    assert httpx.post(f"{api}/7000/members/{remaining['call_id']}/kick", headers=boss, timeout=10).status_code == 200
    assert finished(first) == 1
    audit = site.wait_rows("SELECT username, action, after_json FROM audit_log WHERE entity = 'conference' "
                           "ORDER BY id", 4)
    assert [a["action"] for a in audit] == ["conference_mute", "conference_unmute", "conference_kick",
                                            "conference_kick"]
    assert {a["username"] for a in audit} == {"supervisor1"}
    assert json.loads(audit[2]["after_json"])["caller"] == "1008"
