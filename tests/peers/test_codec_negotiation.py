"""Codec negotiation on SIP legs (issues #3, #4): callers are answered in the first codec of their
offer that we have (G.711, Opus, L16), refused with 488 only when there is none, and when the
callee takes another codec than the caller the engine transcodes between the two legs."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from bench.baresip import Baresip
from bench.server import ServerProcess
from bench.sipp import SCENARIOS, run_sipp
from sipstack.sdp import SessionDescription, parse
from tests.peers.test_baresip_call import dominant, write_tone
from tests.peers.test_calls import cdr_rows

pytestmark = pytest.mark.peers
_RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ ", re.M)


def traced(log: str, direction: str, first_line: str) -> list[SessionDescription]:
    """The SDP bodies of the SIP messages the server's trace shows it `direction` ("send" or
    "recv") whose first line starts with `first_line`."""
    found = []
    for record in _RECORD.split(log):
        head, _, message = record.partition("\n")
        if f"sipstack.trace: {direction} " not in head or not message.startswith(first_line):
            continue
        _, _, body = message.replace("\r\n", "\n").partition("\n\n")
        if body.startswith("v=0"):
            found.append(parse(body))
    return found


def codecs_of(sdp: SessionDescription) -> list[str]:
    audio = sdp.media[0]
    return [str(audio.rtpmap[int(f)]) for f in audio.formats]


def cdrs_since(server: ServerProcess, since: float, count: int) -> list[dict]:
    """The CDRs of calls started at `since` or later, once there are `count` of them (a CDR is
    written just after its call ends)."""
    after = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(since)) + f".{int((since % 1) * 1000):03d}Z"
    deadline = time.monotonic() + 10
    while True:
        # started_at is ISO 8601 UTC with milliseconds (acd.cdr): it sorts as text.
        rows = [r for r in asyncio.run(cdr_rows(server.data_dir / "callcenter.db")) if r["started_at"] >= after]
        if len(rows) >= count or time.monotonic() > deadline:
            return sorted(rows, key=lambda r: r["started_at"])
        time.sleep(0.1)


@pytest.fixture(scope="module")
def traced_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One demo server with a SIP trace for every test of this module (each reads the trace
    and the CDRs from where it began)."""
    server = ServerProcess(tmp_path_factory.mktemp("codecs") / "data", extra_args=["--sip-trace"])
    server.start()
    try:
        yield server
    finally:
        server.stop()


def stereo_tone(path: Path, freq: float, seconds: float = 6.0) -> Path:
    """baresip's aufile source must match the codec's rate and channels: Opus is 48 kHz, 2 ch."""
    t = np.arange(int(48000 * seconds)) / 48000
    mono = (0.3 * np.sin(2 * np.pi * freq * t)).astype("float32")
    sf.write(path, np.stack([mono, mono], axis=1), 48000, subtype="PCM_16")
    return path


def test_an_opus_only_phone_and_a_pcmu_only_phone_hear_each_other(tmp_path: Path,
                                                                   traced_server: ServerProcess) -> None:
    server = traced_server
    since, offset = time.time(), len(server.log_path.read_text(errors="replace"))
    port = server.sip_port
    # Each phone speaks one codec: the callee G.711 µ-law, the caller Opus (its module loaded).
    callee = Baresip(tmp_path / "b", f"<sip:1002@127.0.0.1:{port};transport=udp>;auth_pass=demo1002;"
                     "answermode=auto;audio_codecs=PCMU/8000/1", source=write_tone(tmp_path / "600.wav", 600, seconds=3.0))
    caller = Baresip(tmp_path / "a", f"<sip:1001@127.0.0.1:{port};transport=udp>;auth_pass=demo1001;regint=0;"
                     "audio_codecs=opus/48000/2", source=stereo_tone(tmp_path / "1000.wav", 1000, seconds=3.0))
    with open(caller.dir / "config", "a") as config:
        config.write("module\topus.so\n")
    try:
        callee.start(quit_after=25)
        deadline = time.monotonic() + 10
        while server.metric("callcenter_sip_registrations") < 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert server.metric("callcenter_sip_registrations") == 1, callee.wait(1)
        # The caller hangs up when its WAV ends (3 s), which ends the call on both sides.
        caller.start(quit_after=12, commands=[f"/dial sip:1002@127.0.0.1:{port}"])
        caller_log = caller.wait(30)
    finally:
        caller.stop()
        callee.stop()
    assert "Call established" in caller_log, caller_log[-3000:]
    assert "Set audio encoder: opus" in caller_log
    rows = cdrs_since(server, since, 1)
    log = server.log_path.read_text(errors="replace")[offset:]
    [to_caller] = traced(log, "send", "SIP/2.0 200")
    assert codecs_of(to_caller)[0] == "opus/48000/2"
    [to_callee] = traced(log, "send", "INVITE")
    assert codecs_of(to_callee)[:2] == ["opus/48000/2", "PCMU/8000"]      # the caller's codec first
    [from_callee] = traced(log, "recv", "SIP/2.0 200")
    assert codecs_of(from_callee)[0] == "PCMU/8000"
    # Transcoded both ways: each phone hears the other's tone.
    heard_by_callee, heard_by_caller = callee.received_audio(), caller.received_audio()
    assert heard_by_callee is not None and heard_by_caller is not None
    freq_b, level_b = dominant(heard_by_callee)
    freq_a, level_a = dominant(heard_by_caller)
    assert abs(freq_b - 1000) < 10 and abs(freq_a - 600) < 10, (freq_b, freq_a)
    assert level_a > 0.1 and level_b > 0.1
    assert [(r["disposition"], r["codec"]) for r in rows] == [("ANSWERED", "opus")]


# A caller's INVITE with a hand-written offer: the echo test (9196) answers it, or 488.
_OFFER = """v=0
      o=sipp 1 {version} IN IP4 [local_ip]
      s=-
      c=IN IP4 [local_ip]
      t=0 0
      m=audio [rtp_port] RTP/AVP {formats}
{lines}"""


def _scenario(path: Path, formats: str, lines: list[str], expected: int) -> Path:
    """uac_call.xml (407, credentials, 200, ACK, BYE) with our offer, or ending at `expected`."""
    text = (SCENARIOS / "uac_call.xml").read_text()
    for version in (1, 2):
        old = re.search(rf"      v=0\n      o=sipp 1 {version} .*?a=fmtp:101 0-15\n", text, re.S)
        assert old is not None
        offer = _OFFER.format(version=version, formats=formats, lines="".join(f"      {line}\n" for line in lines))
        text = text[:old.start()] + offer + text[old.end():]
    if expected != 200:
        # A final failure: ACK it (RFC 3261 §17.1.1.3) and stop there.
        tail = text.index('  <recv response="180" optional="true"/>')
        text = text[:tail] + f'''  <recv response="{expected}"/>
  <send>
    <![CDATA[
      ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      CSeq: 2 ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
</scenario>
'''
    path.write_text(text)
    return path


CASES = [
    # (name, m= formats, rtpmap lines, expected status, expected answered codec)
    ("l16_wideband", "98 99", ["a=rtpmap:98 L16/16000", "a=rtpmap:99 telephone-event/16000"], 200, "L16/16000"),
    ("opus_then_pcmu", "111 0 101", ["a=rtpmap:111 opus/48000/2", "a=rtpmap:101 telephone-event/48000"], 200,
     "opus/48000/2"),
    ("pcmu_then_opus", "0 111", ["a=rtpmap:111 opus/48000/2"], 200, "PCMU/8000"),
    ("g729_only", "18", ["a=rtpmap:18 G729/8000"], 488, None),
    ("l16_cd_rate", "11", [], 488, None),   # RFC 3551 §6: L16/44100, which the engine does not run
]


def test_callers_offers_are_answered_in_their_first_codec_we_have_or_refused(
        tmp_path: Path, traced_server: ServerProcess) -> None:
    since, offset = time.time(), len(traced_server.log_path.read_text(errors="replace"))
    target = f"127.0.0.1:{traced_server.sip_port}"
    for name, formats, lines, expected, _ in CASES:
        scenario = _scenario(tmp_path / f"{name}.xml", formats, lines, expected)
        result = run_sipp(str(scenario), target, tmp_path / name, service="9196", auth=("1001", "demo1001"),
                          keys={"caller": "1001", "rtp_port": "4000"}, timeout=20, extra=["-d", "200"])
        assert result.successful == 1, (name, result.output)
    rows = cdrs_since(traced_server, since, len(CASES))
    answers = traced(traced_server.log_path.read_text(errors="replace")[offset:], "send", "SIP/2.0 200")
    accepted = [(name, codec) for name, _, _, expected, codec in CASES if expected == 200]
    assert [codecs_of(answer) for answer in answers] == [
        [codec, "telephone-event/16000"] if name == "l16_wideband" else
        [codec, "telephone-event/48000"] if name == "opus_then_pcmu" else [codec]
        for name, codec in accepted]
    assert [(r["sip_status"], r["codec"]) for r in rows] == [
        (0 if expected == 200 else 488, codec.split("/")[0] if codec else "") for *_, expected, codec in CASES]


def test_a_reinvite_keeps_the_running_codec_until_the_offer_drops_it(tmp_path: Path,
                                                                     traced_server: ServerProcess) -> None:
    since, offset = time.time(), len(traced_server.log_path.read_text(errors="replace"))
    scenario = Path(__file__).parent / "scenarios" / "codec_reinvite.xml"
    result = run_sipp(str(scenario), f"127.0.0.1:{traced_server.sip_port}", tmp_path / "uac", service="9196",
                      auth=("1001", "demo1001"), keys={"caller": "1001", "rtp_port": "4000"}, timeout=20,
                      extra=["-d", "200"])
    assert result.successful == 1, result.output
    answers = traced(traced_server.log_path.read_text(errors="replace")[offset:], "send", "SIP/2.0 200")
    assert [codecs_of(a)[0] for a in answers] == ["PCMU/8000", "PCMU/8000", "opus/48000/2"]
    # RFC 8866 §5.2: one session, its version up by one with each new answer.
    assert len({a.origin.sess_id for a in answers}) == 1
    assert [a.origin.sess_version for a in answers] == [1, 2, 3]
    rows = cdrs_since(traced_server, since, 1)
    assert [r["codec"] for r in rows] == ["opus"]   # the caller's leg runs Opus at the end


def test_the_configured_codec_list_is_all_a_caller_can_get(tmp_path: Path) -> None:
    config = tmp_path / "callcenter.toml"
    config.write_text('[media]\ncodecs = ["PCMA", "opus"]\n')
    server = ServerProcess(tmp_path / "data", extra_args=["--sip-trace", "--config", str(config)])
    server.start()
    try:
        target = f"127.0.0.1:{server.sip_port}"
        for name, formats, expected in (("pcmu_pcma", "0 8", 200), ("pcmu_only", "0", 488)):
            scenario = _scenario(tmp_path / f"{name}.xml", formats, [], expected)
            result = run_sipp(str(scenario), target, tmp_path / name, service="9196", auth=("1001", "demo1001"),
                              keys={"caller": "1001", "rtp_port": "4000"}, timeout=20, extra=["-d", "200"])
            assert result.successful == 1, (name, result.output)
    finally:
        server.stop()
    [answer] = traced(server.log_path.read_text(errors="replace"), "send", "SIP/2.0 200")
    assert codecs_of(answer) == ["PCMA/8000"]
