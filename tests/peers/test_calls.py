"""A real call through the B2BUA: SIPp extension 1001 calls SIPp extension 1002; RTP flows
through the media engine both ways (tones checked by frequency), and the call gets a CDR."""

from __future__ import annotations

import asyncio
import re
import socket
import struct
import subprocess
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from bench.server import ServerProcess
from bench.sipp import SCENARIOS, SippResult, free_port, read_result, run_sipp, sipp_command
from callcenter.database import open_database

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop  # an independent G.711 reference (Python 3.11)

pytestmark = pytest.mark.peers
RATE = 8000
FRAME = 160  # 20 ms of G.711


def tone(freq: float, frames: int) -> list[bytes]:
    t = np.arange(frames * FRAME) / RATE
    pcm = (8000 * np.sin(2 * np.pi * freq * t)).astype("<i2").tobytes()
    ulaw = audioop.lin2ulaw(pcm, 2)
    return [ulaw[i * FRAME:(i + 1) * FRAME] for i in range(frames)]


def dominant_frequency(payloads: list[bytes]) -> float:
    pcm = np.frombuffer(audioop.ulaw2lin(b"".join(payloads), 2), dtype="<i2").astype(float)
    spectrum = np.abs(np.fft.rfft(pcm * np.hanning(len(pcm))))
    return float(np.fft.rfftfreq(len(pcm), 1 / RATE)[int(np.argmax(spectrum))])


class RtpPeer:
    """One side's audio: sends a tone to the engine's port, keeps what comes back."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        self.ssrcs: set[int] = set()

    def talk(self, remote: tuple[str, int], payloads: list[bytes], stop: threading.Event) -> None:
        ssrc, seq, ts = 0x1234ABCD ^ self.port, 1000, 50000
        next_send = time.monotonic()
        for payload in payloads:
            if stop.is_set():
                break
            header = struct.pack("!BBHII", 0x80, 0, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc)
            self.sock.sendto(header + payload, remote)
            seq, ts = seq + 1, ts + FRAME
            next_send += 0.02
            while time.monotonic() < next_send:
                self._receive()
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            self._receive()

    def _receive(self) -> None:
        try:
            data = self.sock.recv(2048)
        except TimeoutError:
            return
        if len(data) >= 12 and data[1] & 0x7F == 0:
            self.ssrcs.add(struct.unpack("!I", data[8:12])[0])
            self.received.append(data[12:])


def sdp_port_sent(log: str, first_line: str) -> int | None:
    """The m=audio port of an SDP the server sent in a message starting with `first_line`."""
    for block in log.split("sipstack.trace: send ")[1:]:
        block = re.split(r"^\d{4}-\d\d-\d\d \d\d:", block, maxsplit=1, flags=re.M)[0]  # this record only
        body = block.split("\n", 1)[1] if "\n" in block else ""
        if body.startswith(first_line):
            match = re.search(r"^m=audio (\d+) ", body, re.M)
            if match:
                return int(match.group(1))
    return None


async def cdr_rows(db: Path) -> list[dict]:
    conn = await open_database(db)
    try:
        async with conn.execute("SELECT * FROM cdr") as cur:
            return [dict(row) for row in await cur.fetchall()]
    finally:
        await conn.close()


class Callee:
    """A server with extension 1002 registered for a SIPp uas that plays `scenario`."""

    def __init__(self, tmp_path: Path, scenario: str, rtp_port: int, config: str = "") -> None:
        self.tmp = tmp_path
        extra = ["--sip-trace"]
        if config:
            (tmp_path / "callcenter.toml").write_text(config)
            extra += ["--config", str(tmp_path / "callcenter.toml")]
        self.server = ServerProcess(tmp_path / "data", extra_args=extra)
        self.server.start()
        self.target = f"127.0.0.1:{self.server.sip_port}"
        port = free_port("127.0.0.1")
        self.dir = tmp_path / "uas"
        self.dir.mkdir()
        self.uas = subprocess.Popen(
            sipp_command(scenario, self.target, local_port=port, timeout=40, keys={"rtp_port": str(rtp_port)}),
            cwd=self.dir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        reg = run_sipp("register_contact.xml", self.target, tmp_path / "reg", service="1002",
                       auth=("1002", "demo1002"), keys={"contact_port": str(port)}, timeout=20)
        assert reg.successful == 1, reg.output

    def call(self, scenario: str, rtp_port: int, talk_ms: int = 1000) -> SippResult:
        return run_sipp(scenario, self.target, self.tmp / "uac", service="1002", auth=("1001", "demo1001"),
                        timeout=40, keys={"caller": "1001", "rtp_port": str(rtp_port)},
                        extra=["-d", str(talk_ms)])

    def callee_result(self) -> SippResult:
        out, _ = self.uas.communicate(timeout=30)
        return read_result(self.dir, self.uas.returncode, out)

    def close(self) -> list[dict]:
        if self.uas.poll() is None:
            self.uas.kill()
            self.uas.wait()
        self.server.stop()
        return asyncio.run(cdr_rows(self.tmp / "data" / "callcenter.db"))


def test_busy_callee_gives_the_caller_486_and_a_busy_cdr(tmp_path: Path) -> None:
    callee = Callee(tmp_path, "uas_busy.xml", free_port("127.0.0.1"))
    try:
        result = callee.call("uac_busy.xml", free_port("127.0.0.1"))
        assert result.successful == 1, result.output
        assert callee.callee_result().successful == 1
    finally:
        rows = callee.close()
    [cdr] = rows
    assert (cdr["disposition"], cdr["sip_status"], cdr["billsec"]) == ("BUSY", 486, 0)


def test_caller_cancelling_while_it_rings_cancels_the_callee(tmp_path: Path) -> None:
    callee = Callee(tmp_path, "uas_ring.xml", free_port("127.0.0.1"))
    try:
        result = callee.call("uac_cancel.xml", free_port("127.0.0.1"))
        assert result.successful == 1, result.output
        # The callee saw the CANCEL the B2BUA sent on (and answered 487 to its INVITE).
        assert callee.callee_result().successful == 1
    finally:
        rows = callee.close()
    [cdr] = rows
    assert (cdr["disposition"], cdr["hangup_side"], cdr["answered_at"]) == ("CANCELLED", "caller", None)


def test_hold_by_reinvite_is_answered_recvonly(tmp_path: Path) -> None:
    callee = Callee(tmp_path, "uas_answer.xml", free_port("127.0.0.1"))
    try:
        result = callee.call("uac_hold.xml", free_port("127.0.0.1"))
        assert result.successful == 1, result.output  # the scenario checks a=recvonly in the answer
    finally:
        rows = callee.close()
    assert rows[0]["disposition"] == "ANSWERED"


def test_unknown_and_unregistered_extensions_are_refused(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data")
    server.start()
    try:
        target = f"127.0.0.1:{server.sip_port}"
        for dialled, expected in (("1003", "480"), ("7777", "404")):
            # uac_busy.xml with the final response this case must get instead of 486.
            scenario = tmp_path / f"expect_{expected}.xml"
            scenario.write_text((SCENARIOS / "uac_busy.xml").read_text().replace('"486"', f'"{expected}"'))
            result = run_sipp(str(scenario), target, tmp_path / dialled, service=dialled,
                              auth=("1001", "demo1001"), keys={"caller": "1001", "rtp_port": "4000"}, timeout=15)
            assert result.successful == 1, result.output
    finally:
        server.stop()
    rows = asyncio.run(cdr_rows(tmp_path / "data" / "callcenter.db"))
    assert sorted((r["callee"], r["sip_status"], r["disposition"]) for r in rows) == [
        ("1003", 480, "FAILED"), ("7777", 404, "FAILED")]


def test_extension_calls_extension_with_audio_both_ways_and_a_cdr(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data", extra_args=["--sip-trace"])
    server.start()
    caller_rtp, callee_rtp = RtpPeer(), RtpPeer()
    uas_port = free_port("127.0.0.1")
    target = f"127.0.0.1:{server.sip_port}"
    uas_dir = tmp_path / "uas"
    uas_dir.mkdir()
    uas = subprocess.Popen(
        sipp_command("uas_answer.xml", target, local_port=uas_port, timeout=40,
                     keys={"rtp_port": str(callee_rtp.port)}),
        cwd=uas_dir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    stop = threading.Event()
    try:
        reg = run_sipp("register_contact.xml", target, tmp_path / "reg", service="1002",
                       auth=("1002", "demo1002"), keys={"contact_port": str(uas_port)}, timeout=20)
        assert reg.successful == 1, reg.output

        results: dict[str, object] = {}

        def place_call() -> None:
            results["uac"] = run_sipp("uac_call.xml", target, tmp_path / "uac", service="1002",
                                      auth=("1001", "demo1001"), timeout=40,
                                      keys={"caller": "1001", "rtp_port": str(caller_rtp.port)},
                                      extra=["-d", "3000"])

        uac = threading.Thread(target=place_call)
        uac.start()
        # Learn the engine's two ports from what the server sent: its INVITE to the callee
        # and its 200 OK to the caller.
        deadline = time.monotonic() + 15
        port_a = port_b = None
        while time.monotonic() < deadline and not (port_a and port_b):
            log = server.log()
            port_b = sdp_port_sent(log, "INVITE sip:1002@")
            port_a = sdp_port_sent(log, "SIP/2.0 200 OK")
            time.sleep(0.05)
        assert port_a and port_b, server.log()
        talkers = [
            threading.Thread(target=caller_rtp.talk, args=(("127.0.0.1", port_a), tone(1000, 100), stop)),
            threading.Thread(target=callee_rtp.talk, args=(("127.0.0.1", port_b), tone(440, 100), stop)),
        ]
        for t in talkers:
            t.start()
        for t in talkers:
            t.join(timeout=10)
        uac.join(timeout=60)
        uac_result = results["uac"]
        assert uac_result.successful == 1, uac_result.output  # type: ignore[attr-defined]
        uas_out, _ = uas.communicate(timeout=30)
        uas_result = read_result(uas_dir, uas.returncode, uas_out)
        assert uas_result.successful == 1, uas_result.output
    finally:
        stop.set()
        if uas.poll() is None:
            uas.kill()
            uas.wait()
        server.stop()

    # Audio crossed the engine both ways: each side heard the other's tone, nearly every packet,
    # under one SSRC of the engine's own (no detail of the other leg leaks through).
    assert len(callee_rtp.received) >= 95 and len(caller_rtp.received) >= 95
    assert abs(dominant_frequency(callee_rtp.received) - 1000) < 10
    assert abs(dominant_frequency(caller_rtp.received) - 440) < 10
    assert len(callee_rtp.ssrcs) == 1 and len(caller_rtp.ssrcs) == 1
    assert callee_rtp.ssrcs != {0x1234ABCD ^ caller_rtp.port}

    [cdr] = asyncio.run(cdr_rows(tmp_path / "data" / "callcenter.db"))
    assert (cdr["caller"], cdr["callee"], cdr["disposition"], cdr["hangup_side"]) == ("1001", "1002", "ANSWERED", "caller")
    assert cdr["answered_at"] is not None and 2.5 <= cdr["billsec"] <= cdr["duration"]
    assert cdr["codec"] == "PCMU"


def test_a_far_end_that_goes_silent_is_torn_down_by_rtp_timeout(tmp_path: Path) -> None:
    caller_rtp, callee_rtp = RtpPeer(), RtpPeer()
    callee = Callee(tmp_path, "uas_answer.xml", callee_rtp.port, config="[calls]\nrtp_timeout = 2\n")
    stop = threading.Event()
    try:
        results: dict[str, SippResult] = {}
        # The caller would talk for 8 s, but the media dies after one second.
        uac = threading.Thread(target=lambda: results.setdefault("uac", callee.call("uac_call.xml", caller_rtp.port,
                                                                                    talk_ms=8000)))
        uac.start()
        deadline = time.monotonic() + 15
        port_a = port_b = None
        while time.monotonic() < deadline and not (port_a and port_b):
            log = callee.server.log()
            port_b = sdp_port_sent(log, "INVITE sip:1002@")
            port_a = sdp_port_sent(log, "SIP/2.0 200 OK")
            time.sleep(0.05)
        assert port_a and port_b
        talkers = [threading.Thread(target=caller_rtp.talk, args=(("127.0.0.1", port_a), tone(1000, 50), stop)),
                   threading.Thread(target=callee_rtp.talk, args=(("127.0.0.1", port_b), tone(440, 50), stop))]
        for t in talkers:
            t.start()
        for t in talkers:
            t.join(timeout=10)
        started_silence = time.monotonic()
        # The callee (SIPp) gets the server's BYE and answers it: its scenario completes.
        assert callee.callee_result().successful == 1
        assert time.monotonic() - started_silence < 6  # well before the caller would have hung up
        uac.join(timeout=40)
    finally:
        stop.set()
        rows = callee.close()
    [cdr] = rows
    assert (cdr["disposition"], cdr["hangup_side"], cdr["hangup_cause"]) == ("ANSWERED", "system", "rtp_timeout")
