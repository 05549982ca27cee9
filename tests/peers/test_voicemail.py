"""Voicemail with real phones (SIPp signalling, RTP from a socket here): a call to an extension
whose desk phone rings unanswered, with voicemail fallback on, hears the greeting and the beep,
speaks a tone for three seconds and presses # (RFC 4733); the message is indexed, its WAV holds
the tone, and the desk phone's message lamp is lit by a NOTIFY (RFC 3842). The extension then
dials *97, hears how many new messages it has, and deletes the message with 7; the lamp goes
out."""

from __future__ import annotations

import asyncio
import re
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile

from bench.sipp import SippResult, run_sipp
from callcenter.app import schemas
from callcenter.database import apply_all, open_database
from mediacore.codecs import get_decoder, get_encoder
from tests.peers.test_calls import sdp_port_sent
from tests.peers.test_dialplan import Site, rows

pytestmark = pytest.mark.peers

RATE = 8000
FRAME = 160
TONE_HZ = 600.0
EVENT_PT = 101
KEYS = {str(d): d for d in range(10)} | {"*": 10, "#": 11}


class Phone:
    """The caller's audio: µ-law RTP at 20 ms pace to the server's port, RFC 4733 keys, and
    what the server sends back, frame by frame."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.01)
        self.port = self.sock.getsockname()[1]
        self.frames: list[np.ndarray] = []
        self.seq, self.ts, self.ssrc = 1, 8000, 0x5EED0000 | (self.port & 0xFFFF)
        self._decoder = get_decoder("PCMU")

    def _receive(self) -> None:
        try:
            data = self.sock.recv(2048)
        except TimeoutError:
            return
        if len(data) > 12 and data[1] & 0x7F == 0:
            self.frames.append(self._decoder.decode(data[12:]))

    def listen_until(self, done: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                return False
            self._receive()
        return True

    def speak(self, remote: tuple[str, int], seconds: float) -> None:
        encoder = get_encoder("PCMU")
        start = time.monotonic()
        for i in range(int(seconds * 50)):
            t = (np.arange(FRAME) + FRAME * i) / RATE
            pcm = np.round(8000 * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.int16)
            self._send(remote, 0, encoder.encode(pcm), FRAME)
            while time.monotonic() < start + (i + 1) * 0.02:
                self._receive()

    def press(self, remote: tuple[str, int], key: str) -> None:
        """One key as RFC 4733 §2.5 sends it: updates of one event, then three end packets."""
        for i, duration in enumerate((160, 320, 480, 640, 640, 640)):
            end = 0x80 if i >= 3 else 0
            payload = struct.pack("!BBH", KEYS[key], end | 10, duration)
            self._send(remote, EVENT_PT, payload, 0, marker=i == 0)
            time.sleep(0.02)
        self.ts += 640

    def _send(self, remote: tuple[str, int], pt: int, payload: bytes, step: int, marker: bool = False) -> None:
        header = struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | pt, self.seq & 0xFFFF, self.ts, self.ssrc)
        self.sock.sendto(header + payload, remote)
        self.seq += 1
        self.ts += step

    def heard_beep(self) -> bool:
        """The last frames hold the 1 kHz beep (a pure tone: nearly all energy in one bin)."""
        recent = self.frames[-5:]
        return len(recent) == 5 and all(_pure_tone_at(f, 1000.0) for f in recent)

    def loud_frames(self) -> int:
        return sum(1 for f in self.frames if np.abs(f.astype(np.int32)).max() > 500)

    def close(self) -> None:
        self.sock.close()


def _pure_tone_at(frame: np.ndarray, hz: float) -> bool:
    spectrum = np.abs(np.fft.rfft(frame.astype(float))) ** 2
    peak = int(np.argmax(spectrum))
    freqs = np.fft.rfftfreq(len(frame), 1 / RATE)
    return abs(freqs[peak] - hz) <= 50 and spectrum[max(0, peak - 1):peak + 2].sum() > 0.8 * spectrum.sum()


def dominant_frequency(samples: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(float) * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / RATE)[int(np.argmax(spectrum))])


class DeskPhone:
    """A phone registered for an extension that rings and never answers (180, then 487 once
    CANCELled), and takes the NOTIFYs it is sent (200): a few lines of SIP on a UDP socket."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.requests: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            text = data.decode("utf-8", "replace")
            method = text.split(" ", 1)[0]
            if text.startswith("SIP/2.0"):
                continue
            self.requests.append(text)
            if method == "INVITE":
                self._answer(text, "180 Ringing", peer)
            elif method == "CANCEL":
                self._answer(text, "200 OK", peer)
                invite = next(r for r in self.requests if r.startswith("INVITE"))
                self._answer(invite, "487 Request Terminated", peer)
            elif method != "ACK":
                self._answer(text, "200 OK", peer)

    def _answer(self, request: str, status: str, peer: tuple[str, int]) -> None:
        head = request.split("\r\n\r\n", 1)[0].split("\r\n")[1:]
        keep = [h for h in head if h.split(":", 1)[0].lower() in ("via", "from", "to", "call-id", "cseq")]
        keep = [h + ";tag=desk" if h.lower().startswith("to:") and "tag=" not in h else h for h in keep]
        self.sock.sendto(("\r\n".join([f"SIP/2.0 {status}", *keep, "Content-Length: 0", "", ""])).encode(), peer)

    def summaries(self) -> list[str]:
        """The Voice-Message counts of the message-summary NOTIFYs received, in order."""
        return [m.group(1) for r in self.requests if r.startswith("NOTIFY") and "Event: message-summary" in r
                for m in [re.search(r"Voice-Message: (\S+)", r)] if m]

    def close(self) -> None:
        if not self._stop.is_set():
            self._stop.set()
            self._thread.join(timeout=5)
            self.sock.close()


async def fallback_on(db: Path, mailbox: str) -> None:
    """The data dir as a fresh server would make it, with `mailbox`'s voicemail fallback on."""
    conn = await open_database(db)
    try:
        await apply_all(conn, schemas())
        await conn.execute("INSERT INTO voicemail_boxes (mailbox, fallback) VALUES (?, 1)", (mailbox,))
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("voicemail")
    (tmp / "data").mkdir()
    asyncio.run(fallback_on(tmp / "data" / "callcenter.db", "1001"))
    # The desk phone rings for 2 s before the mailbox takes the call.
    site = Site(tmp, "[calls]\nring_timeout = 2\n")
    try:
        yield site
    finally:
        site.close()


def call(site: Site, caller: str, number: str, phone: Phone,
         act: Callable[[tuple[str, int]], None]) -> SippResult:
    """`caller` dials `number` (SIPp waits for the server to hang up); `act` works the call's
    media once the server's 200 OK names its RTP port."""
    results: dict[str, SippResult] = {}
    uac = threading.Thread(target=lambda: results.setdefault(
        "uac", site.dial(caller, number, "uac_feature.xml", rtp_port=phone.port)))
    uac.start()
    try:
        port = None
        deadline = time.monotonic() + 15
        while port is None and time.monotonic() < deadline:
            _, invite, since = site.log().rpartition(f"INVITE sip:{number}@")   # this call only
            port = sdp_port_sent(since, "SIP/2.0 200 OK") if invite else None
            time.sleep(0.05)
        assert port, site.log()[-3000:]
        act(("127.0.0.1", port))
    finally:
        uac.join(timeout=60)
    return results["uac"]


@pytest.fixture
def desk() -> Iterator[DeskPhone]:
    phone = DeskPhone()
    try:
        yield phone
    finally:
        phone.close()


def test_an_unanswered_extension_takes_a_message_and_its_owner_deletes_it_with_star_97(site: Site,
                                                                                      desk: DeskPhone) -> None:
    db = site.tmp / "data" / "callcenter.db"
    caller = Phone()
    try:
        reg = run_sipp("register_contact.xml", site.target, site.workdir("reg1001"), service="1001",
                       auth=("1001", "demo1001"), keys={"contact_port": str(desk.port)}, timeout=20)
        assert reg.successful == 1, reg.output

        def leave_message(server: tuple[str, int]) -> None:
            assert caller.listen_until(caller.heard_beep, 20), f"no beep after {len(caller.frames)} frames"
            caller.listen_until(lambda: False, 0.3)          # the rest of the beep
            caller.speak(server, 3.0)
            caller.press(server, "#")
            caller.listen_until(lambda: False, 1.0)

        result = call(site, "1002", "1001", caller, leave_message)
        assert result.successful == 1, result.output
        greeting = caller.loud_frames()
        assert greeting > 100, greeting                     # the greeting (~6 s) and the beep reached the caller
        assert [r.split(" ", 1)[0] for r in desk.requests[:2]] == ["INVITE", "CANCEL"]   # it rang, unanswered
        deadline = time.monotonic() + 5
        while not desk.summaries() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert desk.summaries() == ["1/0"]                  # the lamp: one new message
    finally:
        caller.close()

    [message] = asyncio.run(rows(db, "SELECT * FROM voicemail_messages"))
    assert (message["mailbox"], message["caller"], message["caller_name"], message["heard"],
            message["deleted"]) == ("1001", "1002", "分机 1002", 0, 0)
    path = site.tmp / "data" / "voicemail" / message["path"]
    audio, rate = soundfile.read(path, dtype="int16", always_2d=True)
    assert rate == RATE and path.stat().st_size == message["size_bytes"]
    assert 2.7 <= len(audio) / rate <= 4.5 and message["duration"] == pytest.approx(len(audio) / rate, abs=0.05)
    assert abs(dominant_frequency(audio[:, 0]) - TONE_HZ) < 20           # the caller's side is the tone
    [cdr] = site.cdrs("1002", 1)
    assert (cdr["callee"], cdr["answered_by"], cdr["disposition"]) == ("1001", "voicemail:1001", "ANSWERED")

    owner = Phone()
    try:
        def delete_it(server: tuple[str, int]) -> None:
            # "You have one new message" is under way: 7 deletes the message it introduces.
            assert owner.listen_until(lambda: owner.loud_frames() >= 25, 15)
            owner.press(server, "7")
            owner.listen_until(lambda: False, 1.0)

        result = call(site, "1001", "*97", owner, delete_it)
        assert result.successful == 1, result.output
    finally:
        owner.close()
    assert "mailbox 1001 has 1 new and 0 old messages" in site.log()
    site.wait_for_rows("SELECT heard, deleted, deleted_by FROM voicemail_messages",
                       [{"heard": 1, "deleted": 1, "deleted_by": "phone:1001"}])
    deadline = time.monotonic() + 5
    while len(desk.summaries()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert desk.summaries()[0] == "1/0" and desk.summaries()[1] in ("0/1", "0/0")   # the lamp goes out
    notify = next(r for r in desk.requests if r.startswith("NOTIFY"))
    assert "Messages-Waiting: yes" in notify and "Content-Type: application/simple-message-summary" in notify
