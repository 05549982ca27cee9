"""What a waiting caller hears and can do, with real peers: a SIPp caller waits in a queue that
answers, hears the offer of a callback and the music on hold (RTP the test receives itself),
presses 1 (RFC 4733) and is hung up; the callback is in the database; when the agent (a SIPp
uas registered as 1001) logs in, the agent's phone rings first, then the system calls the
caller's extension back (another SIPp uas, registered as 1005) and bridges them: audio flows
both ways. A second caller in line hears "callers ahead of you: 1" before the music. A caller
who waits too long is called back instead, and a number that stays busy is tried again after
the delay, then given up.

One server for the module; each story has its own queue and extensions."""

from __future__ import annotations

import asyncio
import select
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from acd.prompt_catalogue import SOUNDS, prompt_audio
from acd.say import say_number
from bench.server import ServerProcess
from bench.sipp import free_port, read_result, run_sipp, sipp_command
from callcenter.database import open_database
from mediacore.codecs import get_encoder
from mediacore.prompts import PromptCache

pytestmark = pytest.mark.peers

HERE = Path(__file__).parent / "scenarios"
CALLER, AGENT = "1005", "1001"


@dataclass
class RtpPeer:
    """One side's media, played by the test: a UDP socket that records what arrives and,
    when told, answers the source of it (symmetric RTP) with a payload of its own."""

    sock: socket.socket = field(default_factory=lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    received: list[bytes] = field(default_factory=list)
    source: tuple[str, int] | None = None
    talk: bytes | None = None
    seq: int = 0

    def __post_init__(self) -> None:
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)

    @property
    def port(self) -> int:
        return self.sock.getsockname()[1]

    def payloads(self, pt: int = 0) -> list[bytes]:
        return [p[12:] for p in list(self.received) if len(p) > 12 and p[1] & 0x7F == pt]

    def send(self, pt: int, payload: bytes, marker: bool = False, ts: int | None = None) -> None:
        assert self.source is not None
        self.seq += 1
        header = struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | pt, self.seq & 0xFFFF,
                             ts if ts is not None else self.seq * 160, 0x5EED0000 + self.port)
        self.sock.sendto(header + payload, self.source)

    def press(self, key: int) -> None:
        """One RFC 4733 key press (§2.3): start, updates, three end packets, one timestamp."""
        ts = self.seq * 160 + 8000
        for i, duration in enumerate((160, 320, 640, 800, 800, 800)):
            end = 0x80 if i >= 3 else 0
            self.send(101, struct.pack("!BBH", key, end | 10, duration), marker=i == 0, ts=ts)
            time.sleep(0.02)


class Media:
    """A thread pumping the test's RTP sockets every 20 ms while the peers talk."""

    def __init__(self, *peers: RtpPeer) -> None:
        self.peers = peers
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        by_fd = {p.sock.fileno(): p for p in self.peers}
        next_send = time.monotonic()
        while not self._stop.is_set():
            ready, _, _ = select.select(list(by_fd), [], [], 0.005)
            for fd in ready:
                peer = by_fd[fd]
                while True:
                    try:
                        data, source = peer.sock.recvfrom(2048)
                    except BlockingIOError:
                        break
                    peer.received.append(data)
                    peer.source = source
            if time.monotonic() >= next_send:
                next_send += 0.02
                for peer in self.peers:
                    if peer.talk is not None and peer.source is not None:
                        peer.send(0, peer.talk)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for peer in self.peers:
            peer.sock.close()


def encoded(pcm) -> list[bytes]:  # type: ignore[no-untyped-def]
    """What the engine sends for `pcm`: G.711 µ-law, 20 ms a packet."""
    encoder = get_encoder("PCMU")
    return [encoder.encode(pcm[i:i + 160]) for i in range(0, len(pcm) - 159, 160)]


def find(received: list[bytes], expected: list[bytes], frames: int = 10) -> int:
    """Where `expected`'s first frames arrived, in order; -1 if they did not."""
    want = expected[:frames]
    return next((i for i in range(len(received) - frames + 1) if received[i:i + frames] == want), -1)


def starts_with(received: list[bytes], expected: list[bytes], frames: int = 10) -> bool:
    """`expected`'s first frames arrived in order (wherever the stream started)."""
    return find(received, expected, frames) >= 0


def wait_for(condition: Callable[[], object], what: str, server: ServerProcess, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{server.log()[-4000:]}")
        time.sleep(0.05)


async def _query(db: Path, sql: str) -> list[dict]:
    conn = await open_database(db)
    try:
        async with conn.execute(sql) as cur:
            return [dict(r) for r in await cur.fetchall()]
    finally:
        await conn.close()


def rows(db: Path, sql: str) -> list[dict]:
    return asyncio.run(_query(db, sql))


CONFIG = "\n".join([
    "demo_crm = false",
    # Press 1 to be called back.
    "[[queues]]", 'number = "8100"', 'name = "售后热线"', 'members = ["1001"]', "joinempty = true",
    "wrapuptime = 0", "ring_timeout = 10", "answer = true", 'callback_key = "1"', 'language = "en"',
    # Callers ahead of you.
    "[[queues]]", 'number = "8200"', 'members = ["1002"]', "joinempty = true", "answer = true",
    "announce_position = true", 'language = "en"',
    # Waited too long: called back; busy: tried twice, a second apart.
    "[[queues]]", 'number = "8300"', 'members = ["1003"]', "wrapuptime = 0", "answer = true", "max_wait = 1",
    'overflow = "callback"', "callback_attempts = 2", "callback_retry_delay = 1", 'language = "en"', ""])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("queues")
    config = root / "queues.toml"
    config.write_text(CONFIG)
    server = ServerProcess(root / "data", extra_args=["--config", str(config)])
    server.start()
    try:
        yield server
    finally:
        server.stop()


def queue_log(server: ServerProcess, queue: str) -> list[dict]:
    return rows(server.data_dir / "callcenter.db",
                f"SELECT call_id, agent, event, data FROM queue_log WHERE queue = '{queue}' ORDER BY id")


def register(server: ServerProcess, workdir: Path, extension: str, port: int) -> None:
    reg = run_sipp("register_contact.xml", f"127.0.0.1:{server.sip_port}", workdir / f"reg{extension}",
                   service=extension, auth=(extension, f"demo{extension}"), keys={"contact_port": str(port)},
                   timeout=20)
    assert reg.successful == 1, reg.output


def feature(server: ServerProcess, workdir: Path, extension: str, code: str) -> None:
    result = run_sipp("uac_feature.xml", f"127.0.0.1:{server.sip_port}", workdir / f"feature{code[1:]}",
                      service=code, auth=(extension, f"demo{extension}"),
                      keys={"caller": extension, "rtp_port": str(free_port("127.0.0.1"))}, timeout=20)
    assert result.successful == 1, result.output



def start_sipp(procs: list, workdir: Path, scenario: str, target: str, **options) -> subprocess.Popen[bytes]:  # type: ignore[no-untyped-def,type-arg]
    workdir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(sipp_command(scenario, target, **options), cwd=workdir, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    procs.append(proc)
    return proc


def finished(proc: subprocess.Popen[bytes], workdir: Path, timeout: float = 30, calls: int = 1) -> int:
    out, _ = proc.communicate(timeout=timeout)
    result = read_result(workdir, proc.returncode, out)
    assert result.successful == calls, result.output
    return result.successful


def test_a_caller_presses_1_hangs_up_and_is_called_back_when_an_agent_logs_in(
        server: ServerProcess, tmp_path: Path, procs: list) -> None:  # type: ignore[type-arg]
    target = f"127.0.0.1:{server.sip_port}"
    caller, agent, customer = RtpPeer(), RtpPeer(), RtpPeer()
    media = Media(caller, agent, customer)
    try:
        # The phones: 1005's (it will be called back) and the agent's, both auto-answering.
        customer_port, agent_port = free_port("127.0.0.1"), free_port("127.0.0.1")
        customer_uas = start_sipp(procs, tmp_path / "customer", "refer_target_bye.xml", target,
                                  local_port=customer_port, timeout=60, keys={"rtp_port": str(customer.port)},
                                  extra=["-d", "3000"])
        agent_uas = start_sipp(procs, tmp_path / "agent", "uas_answer.xml", target, local_port=agent_port,
                               timeout=60, keys={"rtp_port": str(agent.port)})
        register(server, tmp_path, CALLER, customer_port)
        register(server, tmp_path, AGENT, agent_port)

        # 1005 calls the queue; nobody is logged in: answered, the callback offered, then music.
        waiting = start_sipp(procs, tmp_path / "caller", str(HERE / "queue_caller_wait_bye.xml"), target,
                             service="8100", auth=(CALLER, f"demo{CALLER}"), timeout=40,
                             keys={"caller": CALLER, "rtp_port": str(caller.port)})
        cache = PromptCache()
        offer = encoded(prompt_audio(cache, ["queue/press-callback"], "en", (SOUNDS,)))
        music = encoded(cache.load(SOUNDS / "moh" / "default.wav"))
        wait_for(lambda: len(caller.payloads()) >= len(offer) + 60, "the offer and then music", server)
        received = caller.payloads()
        assert 0 <= find(received, offer) < 5, "the callback offer is not what the caller heard first"
        assert find(received, music) >= find(received, offer) + len(offer) - 5, "no music on hold after the offer"

        caller.press(1)
        finished(waiting, tmp_path / "caller")          # confirmed, then the server hung up
        [booked] = rows(server.data_dir / "callcenter.db", "SELECT * FROM queue_callbacks WHERE queue = '8100'")
        assert (booked["number"], booked["status"], booked["attempts"]) == (CALLER, "pending", 0)

        # The agent logs in: the agent's phone rings first, hears the whisper, then 1005 rings.
        feature(server, tmp_path, AGENT, "*61")
        wait_for(lambda: agent.source is not None, "the whisper to the agent", server)
        agent.talk = b"\x55" * 160                      # the agent speaks ...
        wait_for(lambda: any(p == agent.talk for p in customer.payloads()), "the agent's voice at 1005", server)
        customer.talk = b"\x2a" * 160                   # ... and 1005 answers
        wait_for(lambda: any(p == customer.talk for p in agent.payloads()), "1005's voice at the agent", server)
        finished(customer_uas, tmp_path / "customer")   # 1005 hangs up after 3 s
        finished(agent_uas, tmp_path / "agent")         # and the agent's leg with it
        whisper = encoded(prompt_audio(cache, ["queue/callback-whisper"], "en", (SOUNDS,)))
        assert starts_with(agent.payloads(), whisper), "the agent did not hear the whisper"
        wait_for(lambda: rows(server.data_dir / "callcenter.db",
                              "SELECT status FROM queue_callbacks WHERE queue = '8100' AND status = 'done'"),
                 "the callback done", server)
        wait_for(lambda: len(queue_log(server, "8100")) >= 6, "the end of the talk in the queue log", server)
    finally:
        media.close()

    log = queue_log(server, "8100")
    assert [r["event"] for r in log] == ["ENTERQUEUE", "CALLBACKREQ", "CONNECT", "CALLBACKDIAL", "CALLBACKDONE",
                                         "COMPLETECALLER"]
    assert len({r["call_id"] for r in log}) == 1
    assert [r["data"] for r in log if r["event"].startswith("CALLBACK")] == [f"{CALLER}|key", f"{CALLER}|1",
                                                                            f"{CALLER}|1"]
    assert {r["agent"] for r in log[2:]} == {AGENT}
    cdrs = rows(server.data_dir / "callcenter.db",
                "SELECT segment, caller, callee, answered_by, disposition FROM cdr ORDER BY id")
    assert {"segment": 101, "caller": "8100", "callee": CALLER, "answered_by": AGENT,
            "disposition": "ANSWERED"} in cdrs


def test_the_second_caller_in_line_hears_how_many_are_ahead_before_the_music(
        server: ServerProcess, tmp_path: Path, procs: list) -> None:  # type: ignore[type-arg]
    target = f"127.0.0.1:{server.sip_port}"
    first, second = RtpPeer(), RtpPeer()
    media = Media(first, second)
    try:
        callers = []
        for i, peer in enumerate((first, second)):
            extension = f"100{6 + i}"
            callers.append((start_sipp(procs, tmp_path / f"caller{i}", "uac_call.xml", target, service="8200",
                                       auth=(extension, f"demo{extension}"), timeout=30,
                                       keys={"caller": extension, "rtp_port": str(peer.port)},
                                       extra=["-d", "4000"]), tmp_path / f"caller{i}"))
            wait_for(lambda peer=peer: len(peer.payloads()) >= 10, f"audio to caller {i + 1}", server)
        cache = PromptCache()
        music = encoded(cache.load(SOUNDS / "moh" / "default.wav"))
        ahead = encoded(prompt_audio(cache, ["queue/position", *say_number(1, "en"), "queue/callers"], "en",
                                     (SOUNDS,)))
        wait_for(lambda: len(second.payloads()) >= len(ahead) + 30, "the announcement and the music", server)
        assert first.payloads()[:10] == music[:10]           # at the head of the line: music alone
        assert starts_with(second.payloads(), ahead)          # "Callers ahead of you: one."
        assert starts_with(second.payloads()[len(ahead) - 5:], music)   # then the music from its start
        for proc, workdir in callers:
            finished(proc, workdir)
    finally:
        media.close()


def test_a_caller_who_waits_too_long_is_called_back_and_a_busy_number_is_tried_again(
        server: ServerProcess, tmp_path: Path, procs: list) -> None:  # type: ignore[type-arg]
    target = f"127.0.0.1:{server.sip_port}"
    caller, agent = RtpPeer(), RtpPeer()
    media = Media(caller, agent)
    try:
        # The agent is logged in but on a break; the caller's own phone will be busy.
        agent_port, busy_port = free_port("127.0.0.1"), free_port("127.0.0.1")
        agent_uas = start_sipp(procs, tmp_path / "agent", "uas_answer.xml", target, local_port=agent_port,
                               calls=2, timeout=60, keys={"rtp_port": str(agent.port)})
        busy_uas = start_sipp(procs, tmp_path / "busy", "uas_busy.xml", target, local_port=busy_port, calls=2,
                              timeout=60)
        register(server, tmp_path, "1003", agent_port)
        register(server, tmp_path, "1008", busy_port)
        feature(server, tmp_path, "1003", "*61")
        feature(server, tmp_path, "1003", "*63")

        waiting = start_sipp(procs, tmp_path / "caller", str(HERE / "queue_caller_wait_bye.xml"), target,
                             service="8300", auth=("1008", "demo1008"), timeout=40,
                             keys={"caller": "1008", "rtp_port": str(caller.port)})
        finished(waiting, tmp_path / "caller")          # max_wait: "we will call you back", hung up
        booked = PromptCache()
        confirmation = encoded(prompt_audio(booked, ["queue/callback-booked"], "en", (SOUNDS,)))
        assert starts_with(caller.payloads(), confirmation)

        feature(server, tmp_path, "1003", "*64")        # ready: the callback is offered, 1008 is busy
        finished(agent_uas, tmp_path / "agent", timeout=40, calls=2)   # twice: a try, the delay, the last try
        finished(busy_uas, tmp_path / "busy", timeout=10, calls=2)
        wait_for(lambda: rows(server.data_dir / "callcenter.db",
                              "SELECT status FROM queue_callbacks WHERE queue = '8300' AND status = 'failed'"),
                 "the callback given up", server)
    finally:
        media.close()

    log = queue_log(server, "8300")
    assert [r["event"] for r in log if r["call_id"] != "NONE"] == [
        "ENTERQUEUE", "EXITWITHTIMEOUT", "CALLBACKREQ", "CONNECT", "CALLBACKDIAL", "CALLBACKRETRY",
        "CONNECT", "CALLBACKDIAL", "CALLBACKFAIL"]
    callbacks = [r["data"] for r in log if r["event"].startswith("CALLBACK")]
    assert callbacks == ["1008|overflow", "1008|1", "1008|1|busy", "1008|2", "1008|2|busy"]
    cdrs = rows(server.data_dir / "callcenter.db",
                "SELECT segment, disposition, sip_status FROM cdr WHERE callee = '1008' ORDER BY id")
    assert cdrs == [{"segment": 101, "disposition": "BUSY", "sip_status": 486},
                    {"segment": 102, "disposition": "BUSY", "sip_status": 486}]
