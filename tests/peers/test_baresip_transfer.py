"""Hold and transfers with real phones (issue #4). baresip phones, each sending its own tone
and dumping what it hears: two hear each other through the server; a phone that holds
(re-INVITE a=sendonly) leaves the other with music on hold until it resumes; a blind transfer
(REFER, after a hold as desk phones do) hands the caller to a third phone, the recording goes on
in one file with the two who remain and the CDR segments are linked; a transfer the target
refuses bridges the transferor back. baresip 1.0.0 has no attended transfer of its own (and
hangs up on any final NOTIFY), so SIPp is the transferor there, with baresip phones as the
parties. SIPp phones show blind transfers to another queue (the queue log's TRANSFER), out
through a trunk, to the IVR, and a feature code refused.

One server serves the module; each test uses extensions of its own."""

from __future__ import annotations

import asyncio
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
import soundfile as sf

from bench.baresip import Baresip, BaresipControl
from bench.sipp import SCENARIOS, SippResult, free_port, read_result, sipp_command
from tests.peers.test_calls import RtpPeer, dominant_frequency, sdp_port_sent, tone
from tests.peers.test_dialplan import Site, rows
from tests.peers.test_transfer import answered_dialog, sent_messages
from tests.peers.test_trunks import outbound_route, trunk_toml

pytestmark = pytest.mark.peers

CONFIG = """
[recording]
default = "always"

[[queues]]
number = "8400"
members = ["1012"]
wrapuptime = 0
ring_timeout = 5

[[queues]]
number = "8401"
members = ["1013"]
wrapuptime = 0
ring_timeout = 5
"""
BLOCK = 1600   # 0.2 s at 8 kHz
#: Each phone's tone: far from each other and from the notes of the hold music (C, E, G).
TONES = {"1001": 1000.0, "1002": 1400.0, "1004": 1000.0, "1005": 1400.0, "1006": 2000.0,
         "1008": 1400.0, "1009": 2000.0, "1018": 1000.0, "1019": 1400.0}


class TransferSite(Site):
    provider_port: int


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TransferSite]:
    provider_port = free_port("127.0.0.1")   # the SIPp provider of test (e) listens here
    site = TransferSite(tmp_path_factory.mktemp("site"),
                        CONFIG + trunk_toml("carrier", provider_port, qualify="0") + outbound_route("carrier"))
    site.provider_port = provider_port
    try:
        yield site
    finally:
        site.close()


class Phone:
    """A baresip phone registered as `extension`: auto-answer, its tone as microphone, what it
    hears dumped to WAV (one file per call), driven through ctrl_tcp."""

    def __init__(self, site: Site, extension: str) -> None:
        self.extension = extension
        directory = site.workdir(f"baresip{extension}")
        directory.mkdir()
        t = np.arange(8000 * 40) / 8000
        source = directory / "tone.wav"
        sf.write(source, (0.3 * np.sin(2 * np.pi * TONES[extension] * t)).astype("float32"), 8000, subtype="PCM_16")
        port = free_port("127.0.0.1")
        self.baresip = Baresip(directory, f"<sip:{extension}@{site.target};transport=udp>;auth_pass=demo{extension}"
                               ";answermode=auto", source=source, ctrl_port=port)
        self.baresip.start(quit_after=90)
        self.ctrl = BaresipControl(port)

    def registered(self) -> None:
        deadline = time.monotonic() + 10
        while "OK" not in self.ctrl.command("reginfo")["data"]:
            assert time.monotonic() < deadline, f"{self.extension} did not register"
            time.sleep(0.1)

    def heard(self, *others: str) -> list[str]:
        """Per 0.2 s block of the (last) call, which of `others` this phone heard, by their
        tones; "music" for loud audio that is none of theirs, "" for quiet."""
        dumps = sorted(self.baresip.dir.glob("dump-*-dec.wav"))
        assert dumps, f"{self.extension} recorded nothing"
        audio, _ = sf.read(dumps[-1], dtype="float64")
        return who_speaks(audio, {ext: TONES[ext] for ext in others})

    def close(self) -> str:
        self.ctrl.close()
        self.baresip.stop()
        return self.baresip.wait(5)


@pytest.fixture
def phones(site: Site) -> Iterator[dict[str, Phone]]:
    started: dict[str, Phone] = {}
    try:
        yield started
    finally:
        for phone in started.values():
            phone.close()
        site.hang_up_phones()


def start_phones(site: Site, phones: dict[str, Phone], *extensions: str) -> list[Phone]:
    for extension in extensions:
        phones[extension] = Phone(site, extension)
    for extension in extensions:
        phones[extension].registered()
    return [phones[e] for e in extensions]


def level(block: np.ndarray, frequency: float) -> float:
    """Amplitude of `frequency` in `block` (a windowed DFT, ±15 Hz)."""
    spectrum = np.abs(np.fft.rfft(block * np.hanning(len(block)))) / (len(block) / 4)
    freqs = np.fft.rfftfreq(len(block), 1 / 8000)
    return float(spectrum[(freqs > frequency - 15) & (freqs < frequency + 15)].max())


def who_speaks(audio: np.ndarray, tones: dict[str, float]) -> list[str]:
    found = []
    for start in range(0, len(audio) - BLOCK + 1, BLOCK):
        block = audio[start:start + BLOCK]
        if np.sqrt(np.mean(block ** 2)) < 0.03:
            found.append("")
            continue
        levels = {name: level(block, f) for name, f in tones.items()}
        best = max(levels, key=lambda name: levels[name])
        found.append(best if levels[best] > 0.15 else "music")
    return found


def runs(labels: list[str], shortest: int = 3) -> list[tuple[str, int]]:
    """Consecutive runs of the same label (quiet left out), only those of `shortest` blocks or
    more: the outline of what a phone heard."""
    out: list[tuple[str, int]] = []
    for label in labels:
        if not label:
            continue
        if out and out[-1][0] == label:
            out[-1] = (label, out[-1][1] + 1)
        else:
            out.append((label, 1))
    return [(label, n) for label, n in out if n >= shortest]


def db_rows(site: Site, sql: str, args: tuple, until) -> list[dict]:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 10
    while True:
        found = asyncio.run(rows(site.tmp / "data" / "callcenter.db", sql, args))
        if until(found) or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_two_phones_hear_each_other_and_hold_plays_music_until_resumed(site: Site,
                                                                         phones: dict[str, Phone]) -> None:
    caller, callee = start_phones(site, phones, "1001", "1002")
    since = len(site.log())
    caller.ctrl.command("dial", f"sip:1002@{site.target}")
    callee.ctrl.wait_event("CALL_ESTABLISHED")
    time.sleep(2)
    callee.ctrl.command("hold")      # re-INVITE a=sendonly: 1001 is held
    time.sleep(2.5)
    callee.ctrl.command("resume")    # re-INVITE a=sendrecv
    time.sleep(2)
    caller.ctrl.command("hangup")
    callee.ctrl.wait_event("CALL_CLOSED")
    [cdr] = site.cdrs("1001", 1)   # written after the engine's counters are logged
    # The B2BUA answered the hold itself (RFC 3264 §6.1) and did not pass it on to 1001.
    log = site.log()[since:]
    [answer] = [m for m in sent_messages(log, "SIP/2.0 200 OK") if "a=recvonly" in m]
    assert re.search(r"^From: [^\n]*1002@", answer, re.M) and re.search(r"^CSeq: \d+ INVITE", answer, re.M)
    assert not [m for m in sent_messages(log, "INVITE sip:1001") if "a=sendonly" in m]
    # 1001 heard 1002, then the music while held, then 1002 again; 1002 only ever heard 1001.
    outline = runs(caller.heard("1002"))
    assert [label for label, _ in outline] == ["1002", "music", "1002"], outline
    assert outline[1][1] >= 8, outline    # most of the 2.5 s of hold (0.2 s blocks)
    # baresip 1.0.0 stops decoding what it receives once it has held a call, even after it
    # resumes (so with a plain relay too): its dump shows 1001 up to the hold, and the engine's
    # counters show that nothing went to 1002 while it held, and that audio went again after.
    assert set(callee.heard("1001")) <= {"1001", ""} and callee.heard("1001").count("1001") >= 8
    [(from_1001, _), (from_1002, to_1002)] = [
        (int(m.group(1)), int(m.group(2))) for m in re.finditer(r"leg port \d+: in (\d+) out (\d+)", log)]
    assert from_1001 - to_1002 >= 60 and to_1002 >= 150, (from_1001, to_1002)
    assert (cdr["caller"], cdr["callee"], cdr["disposition"], cdr["hangup_side"]) == (
        "1001", "1002", "ANSWERED", "caller")


def test_blind_transfer_between_three_phones_keeps_one_call_and_one_recording(
        site: Site, phones: dict[str, Phone]) -> None:
    caller, transferor, target = start_phones(site, phones, "1004", "1005", "1006")
    caller.ctrl.command("dial", f"sip:1005@{site.target}")
    transferor.ctrl.wait_event("CALL_ESTABLISHED")
    time.sleep(2)
    transferor.ctrl.command("hold")       # as desk phones do before a transfer
    time.sleep(1.5)
    transferor.ctrl.command("transfer", f"sip:1006@{site.target}")   # REFER, Refer-To: 1006
    target.ctrl.wait_event("CALL_ESTABLISHED")
    transferor.ctrl.wait_event("CALL_CLOSED")    # our BYE after the NOTIFY "200 OK"
    time.sleep(3)
    caller.ctrl.command("hangup")
    target.ctrl.wait_event("CALL_CLOSED")
    # The caller heard 1005, the music while held, then 1006 (no more music); 1006 heard the caller.
    outline = runs(caller.heard("1005", "1006"))
    assert [label for label, _ in outline] == ["1005", "music", "1006"] and outline[-1][1] >= 10, outline
    assert runs(target.heard("1004"))[-1][0] == "1004" and target.heard("1004").count("1004") >= 10
    # One call, two linked segments, each with its own parties and times.
    first, second = site.cdrs("1004", 2)
    assert first["call_id"] == second["call_id"] and (first["segment"], second["segment"]) == (1, 2)
    assert (first["caller"], first["callee"], first["answered_by"], first["hangup_side"], first["hangup_cause"]) == (
        "1004", "1005", "1005", "callee", "blind transfer")
    assert (second["caller"], second["callee"], second["answered_by"], second["hangup_side"]) == (
        "1004", "1006", "1006", "caller")
    assert first["ended_at"] == second["started_at"] <= second["answered_at"] < second["ended_at"]
    assert second["billsec"] > 2.5
    # The recording goes on in one file: the caller on the left, 1005 then 1006 on the right.
    assert first["recording_ref"] and first["recording_ref"] == second["recording_ref"]
    [indexed] = db_rows(site, "SELECT * FROM recordings WHERE ref = ?", (first["recording_ref"],),
                        lambda found: found and found[0]["sha256"] is not None)
    audio, rate = sf.read(site.tmp / "data" / "recordings" / first["recording_ref"], dtype="float64")
    assert rate == 8000 and audio.shape[1] == 2 and indexed["error"] is None
    tones = {"1004": 1000.0, "1005": 1400.0, "1006": 2000.0}
    assert [label for label, _ in runs(who_speaks(audio[:, 0], tones))] == ["1004"]
    assert [label for label, _ in runs(who_speaks(audio[:, 1], tones))] == ["1005", "1006"]


def test_a_transfer_the_target_refuses_brings_the_transferor_back(site: Site, phones: dict[str, Phone],
                                                                    tmp_path: Path) -> None:
    # baresip hangs up on the final NOTIFY even when it tells of a failure, so here SIPp (1019)
    # is the transferor, talking from an RtpPeer, and baresip 1018 the caller who stays.
    scenario = tmp_path / "refer_refused_uas.xml"
    scenario.write_text((SCENARIOS / "refer_blind_uas.xml").read_text()
                        .replace("SIP/2.0 (180|200)", "SIP/2.0 (180|486)")
                        .replace('regexp="SIP/2.0 200"', 'regexp="SIP/2.0 486"'))
    transferor_rtp, stop = RtpPeer(), threading.Event()
    site.phone("1020", "uas_busy.xml")   # the target: 486 Busy Here
    site.phone("1019", str(scenario), transferor_rtp.port, extra=["-d", "1500", "-key", "target", "1020"])
    [caller] = start_phones(site, phones, "1018")
    since = len(site.log())
    caller.ctrl.command("dial", f"sip:1019@{site.target}")
    deadline = time.monotonic() + 10
    while (port := sdp_port_sent(site.log()[since:], "INVITE sip:1019@")) is None:
        assert time.monotonic() < deadline, site.log()[since:]
        time.sleep(0.02)
    talker = threading.Thread(target=transferor_rtp.talk, args=(("127.0.0.1", port), tone(1400, 250), stop))
    talker.start()
    try:
        talker.join(timeout=20)   # 5 s of 1019's tone; the REFER comes 1.5 s after the answer
    finally:
        stop.set()
        talker.join()
    caller.ctrl.command("hangup")
    caller.ctrl.wait_event("CALL_CLOSED")
    # 202, NOTIFY 100, NOTIFY "486 Busy Here" (RFC 3515 §2.4.5), then our BYE once 1018 hung up.
    assert site.phone_result("1019").successful == 1
    assert site.phone_result("1020").successful == 1
    # The two were bridged again: 1018 heard 1019 for most of the 5 s (at most 1.5 s of it came
    # before the transfer), and 1019 heard 1018 to the end.
    heard = caller.heard("1019")
    assert heard.count("1019") >= 15 and runs(heard)[-1][0] == "1019", heard
    assert abs(dominant_frequency(transferor_rtp.received[-40:]) - TONES["1018"]) < 10
    [cdr] = site.cdrs("1018", 1)   # no new segment: the call went on
    assert (cdr["caller"], cdr["callee"], cdr["answered_by"], cdr["hangup_side"], cdr["hangup_cause"]) == (
        "1018", "1019", "1019", "caller", "normal")


def test_attended_transfer_joins_two_phones(site: Site, phones: dict[str, Phone]) -> None:
    # baresip 1.0.0 cannot send a REFER with Replaces: SIPp (1007) is the transferor, first
    # calling 1009 (the consultation), then 1008, whom it hands over to 1009.
    callee, target = start_phones(site, phones, "1008", "1009")
    results: dict[str, SippResult] = {}
    consult = threading.Thread(target=lambda: results.setdefault("consult", site.dial(
        "1007", "1009", "refer_replaced_uac.xml")))
    consult.start()
    transferor: threading.Thread | None = None
    try:
        target.ctrl.wait_event("CALL_ESTABLISHED")
        deadline = time.monotonic() + 10
        while (dialog := answered_dialog(site.log(), "1009")) is None:
            assert time.monotonic() < deadline, site.log()
            time.sleep(0.05)
        call_id, to_tag, from_tag = dialog
        replaces = quote(f"{call_id};to-tag={to_tag};from-tag={from_tag}", safe="")
        transferor = threading.Thread(target=lambda: results.setdefault("transferor", site.dial(
            "1007", "1008", "refer_attended_uac.xml", talk_ms=1000, keys={"target": "1009", "replaces": replaces})))
        transferor.start()
        callee.ctrl.wait_event("CALL_ESTABLISHED")
        transferor.join(timeout=20)
        consult.join(timeout=20)
        time.sleep(3)
        callee.ctrl.command("hangup")
        target.ctrl.wait_event("CALL_CLOSED")
    finally:
        for thread in (consult, transferor):
            if thread is not None:
                thread.join(timeout=30)
    assert results["transferor"].successful == 1, results["transferor"].output
    assert results["consult"].successful == 1, results["consult"].output
    # After the transfer 1008 and 1009 hear each other (SIPp sent no audio before).
    assert runs(callee.heard("1009"))[-1][0] == "1009" and callee.heard("1009").count("1009") >= 10
    assert runs(target.heard("1008"))[-1][0] == "1008" and target.heard("1008").count("1008") >= 10
    cdrs = site.cdrs("1007", 3)
    [consulted] = [c for c in cdrs if c["callee"] == "1009"]
    first, second = sorted((c for c in cdrs if c["call_id"] != consulted["call_id"]), key=lambda c: c["segment"])
    assert (first["caller"], first["callee"], first["hangup_cause"]) == ("1007", "1008", "attended transfer")
    assert (second["segment"], second["caller"], second["callee"], second["answered_by"], second["hangup_side"]) == (
        2, "1009", "1008", "1009", "callee")
    assert first["recording_ref"] == second["recording_ref"] != ""


def test_blind_transfer_of_a_queue_call_to_another_queue(site: Site) -> None:
    # 1010 calls queue 8400; its agent 1012 answers and transfers the caller to queue 8401,
    # whose agent 1013 takes it until the caller hangs up.
    site.phone("1012", "refer_blind_uas.xml", extra=["-d", "300", "-key", "target", "8401"])
    site.phone("1013", "uas_answer.xml")
    for agent in ("1012", "1013"):
        login = site.dial(agent, "*61", "uac_feature.xml")   # the agents log in to their queues
        assert login.successful == 1, login.output
    caller = site.dial("1010", "8400", talk_ms=3000)
    assert caller.successful == 1, caller.output
    assert site.phone_result("1012").successful == 1    # 202, NOTIFY 100, NOTIFY 200, our BYE
    assert site.phone_result("1013").successful == 1
    first, second = site.cdrs("1010", 2)
    assert (first["callee"], first["answered_by"], first["hangup_side"], first["hangup_cause"]) == (
        "8400", "1012", "callee", "blind transfer")
    assert (second["segment"], second["caller"], second["callee"], second["answered_by"], second["hangup_side"]) == (
        2, "1010", "8401", "1013", "caller")
    log = db_rows(site, "SELECT queue, agent, event, data FROM queue_log WHERE call_id = ? ORDER BY id",
                  (first["call_id"],), lambda found: any(r["event"].startswith("COMPLETE") for r in found))
    events = [(r["queue"], r["agent"], r["event"]) for r in log]
    transfer = events.index(("8400", "1012", "TRANSFER"))
    assert ("8401", "1013", "CONNECT") in events[transfer:] and ("8401", "1013", "COMPLETECALLER") in events
    assert log[transfer]["data"].startswith("8401|")


def test_blind_transfer_out_through_a_trunk(site: TransferSite) -> None:
    # The provider (SIPp) takes the outbound call after its digest challenge.
    workdir = site.workdir("provider")
    workdir.mkdir()
    provider = subprocess.Popen(
        sipp_command("trunk_provider.xml", "127.0.0.1:9", local_port=site.provider_port, timeout=30,
                     keys={"rtp_port": str(free_port("127.0.0.1"))}),
        cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        site.phone("1015", "refer_blind_uas.xml", extra=["-d", "300", "-key", "target", "013912345678"])
        caller = site.dial("1014", "1015", talk_ms=3000)
        out, _ = provider.communicate(timeout=20)
    finally:
        if provider.poll() is None:
            provider.kill()
            provider.communicate()
    assert caller.successful == 1, caller.output
    assert site.phone_result("1015").successful == 1
    taken = read_result(workdir, provider.returncode, out)
    assert taken.successful == 1, taken.output    # its number, our caller ID and credentials
    first, second = site.cdrs("1014", 2)
    assert (first["callee"], first["hangup_cause"], first["trunk"]) == ("1015", "blind transfer", "")
    assert (second["caller"], second["callee"], second["trunk"], second["hangup_side"]) == (
        "1014", "013912345678", "carrier", "caller")


def test_blind_transfer_to_the_ivr(site: Site) -> None:
    # 1003 hands 1011 to the main IVR (5000): the IVR takes the call at once (NOTIFY 200).
    site.phone("1003", "refer_blind_uas.xml", extra=["-d", "300", "-key", "target", "5000"])
    caller = site.dial("1011", "1003", talk_ms=2000)
    assert caller.successful == 1, caller.output
    assert site.phone_result("1003").successful == 1
    first, second = site.cdrs("1011", 2)
    assert (first["callee"], first["hangup_cause"]) == ("1003", "blind transfer")
    assert (second["segment"], second["caller"], second["callee"], second["answered_by"], second["hangup_side"]) == (
        2, "1011", "5000", "ivr:main", "caller")


def test_a_feature_code_is_no_transfer_target(site: Site) -> None:
    site.phone("1017", "uas_answer.xml")
    caller = site.dial("1016", "1017", "refer_failed_uac.xml", talk_ms=300, keys={"target": "*76"})
    assert caller.successful == 1, caller.output
    assert site.phone_result("1017").successful == 1
    finals = [m for m in sent_messages(site.log(), "NOTIFY ") if "terminated" in m and "1016@" in m]
    assert len(finals) == 1 and finals[0].rstrip().endswith("SIP/2.0 403 Forbidden: a feature code is no transfer "
                                                             "target"), finals
    [cdr] = site.cdrs("1016", 1)   # the call went on, one segment
    assert (cdr["callee"], cdr["hangup_side"], cdr["hangup_cause"]) == ("1017", "caller", "normal")
