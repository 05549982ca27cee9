"""Recorded calls with real phones (SIPp) and audio checked by frequency (issues #4 and #8): a
call is recorded caller left, callee right; after the callee's blind transfer the same file goes
on with the target on the right; both CDR segments name the file, whose SHA-256 the index keeps;
a queue whose rule is "never" leaves no file."""

from __future__ import annotations

import asyncio
import hashlib
import re
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest
import soundfile

from bench.sipp import SippResult
from tests.peers.test_calls import RtpPeer, sdp_port_sent, tone
from tests.peers.test_dialplan import Site, rows, site_fixture
from tests.peers.test_transfer import attended_transfer

pytestmark = pytest.mark.peers

CONFIG = """
[recording]
default = "always"

[[queues]]
number = "8300"
members = ["1005"]
wrapuptime = 0
ring_timeout = 5
recording = "never"
"""

site = site_fixture(CONFIG)
CALLER_HZ, CALLEE_HZ, TARGET_HZ = 1000.0, 440.0, 1500.0
BLOCK = 1600   # 0.2 s at 8 kHz


@pytest.fixture(autouse=True)
def _phones_hung_up(site: Site) -> Iterator[None]:
    yield
    site.hang_up_phones()


def level(samples: np.ndarray, frequency: float) -> float:
    """Amplitude of `frequency` (a windowed DFT bin ±15 Hz)."""
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples)))) / (len(samples) / 4)
    freqs = np.fft.rfftfreq(len(samples), 1 / 8000)
    return float(spectrum[(freqs > frequency - 15) & (freqs < frequency + 15)].max())


def who_speaks(channel: np.ndarray, tones: dict[str, float]) -> list[str]:
    """Per 0.2 s block, the party whose tone dominates ('' for a block without any tone)."""
    found = []
    for start in range(0, len(channel) - BLOCK + 1, BLOCK):
        block = channel[start:start + BLOCK].astype(float)
        levels = {name: level(block, f) for name, f in tones.items()}
        best = max(levels, key=lambda name: levels[name])
        found.append(best if levels[best] > 1000 else "")
    return found


def talk_when_sent(site: Site, since: int, first_line: str, peer: RtpPeer, frequency: float, frames: int,
                   stop: threading.Event) -> threading.Thread:
    """Once the server has sent `first_line` with SDP (after log offset `since`), `peer` sends
    `frames` 20 ms of a tone to the engine port that SDP offered."""
    def run() -> None:
        deadline = time.monotonic() + 15
        port = None
        while port is None and time.monotonic() < deadline and not stop.is_set():
            port = sdp_port_sent(site.log()[since:], first_line)
            time.sleep(0.02)
        if port is not None:
            peer.talk(("127.0.0.1", port), tone(frequency, frames), stop)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def wait_rows(site: Site, sql: str, args: tuple, until) -> list[dict]:
    deadline = time.monotonic() + 10
    while True:
        found = asyncio.run(rows(site.tmp / "data" / "callcenter.db", sql, args))
        if until(found) or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_a_recording_follows_a_blind_transfer_in_one_file(site: Site) -> None:
    caller, callee, target = RtpPeer(), RtpPeer(), RtpPeer()
    stop = threading.Event()
    since = len(site.log())
    # 1002 answers, talks 1.5 s, then hands the caller to 1003, who stays until the caller leaves.
    site.phone("1002", "refer_blind_uas.xml", callee.port, extra=["-d", "1500", "-key", "target", "1003"])
    site.phone("1003", "uas_answer.xml", target.port)
    results: dict[str, SippResult] = {}
    dialling = threading.Thread(target=lambda: results.setdefault("caller", site.dial(
        "1001", "1002", rtp_port=caller.port, talk_ms=4000)))
    dialling.start()
    talkers = [talk_when_sent(site, since, "SIP/2.0 200 OK", caller, CALLER_HZ, 230, stop),
               talk_when_sent(site, since, "INVITE sip:1002@", callee, CALLEE_HZ, 90, stop),
               talk_when_sent(site, since, "INVITE sip:1003@", target, TARGET_HZ, 150, stop)]
    try:
        dialling.join(timeout=40)
    finally:
        stop.set()
        for t in talkers:
            t.join(timeout=10)
    assert results["caller"].successful == 1, results["caller"].output
    assert site.phone_result("1002").successful == 1
    assert site.phone_result("1003").successful == 1

    first, second = site.cdrs("1001", 2)
    assert (first["segment"], second["segment"]) == (1, 2) and first["call_id"] == second["call_id"]
    assert second["answered_by"] == "1003"
    ref = first["recording_ref"]
    assert ref == second["recording_ref"]
    assert re.fullmatch(rf"20\d\d/[01]\d/[0-3]\d/{first['call_id']}\.wav", ref), ref
    [indexed] = wait_rows(site, "SELECT * FROM recordings WHERE ref = ?", (ref,),
                          lambda found: found and found[0]["sha256"] is not None)
    path = site.tmp / "data" / "recordings" / ref
    data = path.read_bytes()
    assert indexed["sha256"] == hashlib.sha256(data).hexdigest() and indexed["size_bytes"] == len(data)
    assert indexed["kind"] == "call" and indexed["rule"] == "always" and indexed["error"] is None

    audio, rate = soundfile.read(path, dtype="int16")
    assert rate == 8000 and audio.shape[1] == 2
    assert abs(indexed["duration"] - len(audio) / 8000) < 0.01
    parties = {"callee": CALLEE_HZ, "target": TARGET_HZ, "caller": CALLER_HZ}
    left, right = who_speaks(audio[:, 0], parties), who_speaks(audio[:, 1], parties)
    # The caller on the left throughout, never anyone else.
    assert left.count("caller") >= 12 and set(left) <= {"caller", ""}, left
    # The callee on the right until the transfer, then the target, never the other way round.
    spoken = [p for p in right if p]
    assert spoken.count("callee") >= 4 and spoken.count("target") >= 4, right
    assert set(spoken) <= {"callee", "target"} and "callee" not in spoken[spoken.index("target"):], right
    # One file, no hole longer than the transfer itself (the target rings 0.2 s, answers, and
    # is bridged): the target's voice follows the callee's last within a second.
    assert right.index("target") - (len(right) - right[::-1].index("callee")) <= 5, right
    assert [p.name for p in path.parent.iterdir() if first["call_id"] in p.name] == [path.name]


def test_after_an_attended_transfer_the_target_goes_on_in_the_transferors_place(site: Site) -> None:
    callee, target = RtpPeer(), RtpPeer()
    results = attended_transfer(site, callee, target, (CALLEE_HZ, TARGET_HZ), target_hold_ms=2500)
    assert results["transferor"].successful == 1, results["transferor"].output
    assert site.phone_result("1009").successful == 1 and site.phone_result("1008").successful == 1

    cdrs = site.cdrs("1007", 3)
    [consulted] = [c for c in cdrs if c["callee"] == "1009"]
    first, second = sorted((c for c in cdrs if c["call_id"] != consulted["call_id"]), key=lambda c: c["segment"])
    assert (first["hangup_cause"], second["caller"], second["callee"]) == ("attended transfer", "1009", "1008")
    # The transferred call keeps one file for both segments; the consultation had its own.
    assert first["recording_ref"] == second["recording_ref"] != consulted["recording_ref"] != ""
    wait_rows(site, "SELECT * FROM recordings WHERE ref = ?", (first["recording_ref"],),
              lambda found: found and found[0]["sha256"] is not None)
    audio, _ = soundfile.read(site.tmp / "data" / "recordings" / first["recording_ref"], dtype="int16")
    parties = {"callee": CALLEE_HZ, "target": TARGET_HZ}
    left, right = who_speaks(audio[:, 0], parties), who_speaks(audio[:, 1], parties)
    # The transferor said nothing; the target took their side (left), the callee stayed right.
    assert left.count("target") >= 5 and set(left) <= {"target", ""}, left
    assert right.count("callee") >= 5 and set(right) <= {"callee", ""}, right


def test_a_queue_whose_rule_is_never_leaves_no_recording(site: Site) -> None:
    site.phone("1005", "uas_answer.xml")
    login = site.dial("1005", "*61", "uac_feature.xml")
    assert login.successful == 1, login.output
    call = site.dial("1006", "8300", talk_ms=1000)
    assert call.successful == 1, call.output
    assert site.phone_result("1005").successful == 1
    [cdr] = site.cdrs("1006", 1)
    assert (cdr["callee"], cdr["answered_by"], cdr["disposition"]) == ("8300", "1005", "ANSWERED")
    assert cdr["recording_ref"] == ""
    # Decided (and indexed, had it been recorded) when the agent answered, long before the CDR.
    assert asyncio.run(rows(site.tmp / "data" / "callcenter.db", "SELECT * FROM recordings WHERE call_id = ?",
                            (cdr["call_id"],))) == []
    assert not list((site.tmp / "data").rglob(f"{cdr['call_id']}*"))
    assert f"call {cdr['call_id']}: not recorded by queue 8300 (never)" in site.log()
