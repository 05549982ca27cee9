"""Two real phones (baresip) call each other through the server: each one's microphone (a
WAV tone) is heard by the other, checked by frequency in what each phone decoded."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from bench.baresip import Baresip
from bench.server import ServerProcess

pytestmark = pytest.mark.peers


def write_tone(path: Path, freq: float, seconds: float = 6.0) -> Path:
    t = np.arange(int(8000 * seconds)) / 8000
    sf.write(path, (0.3 * np.sin(2 * np.pi * freq * t)).astype("float32"), 8000, subtype="PCM_16")
    return path


def dominant(path: Path) -> tuple[float, float]:
    """(frequency, RMS) of the loudest part of a recording: the call's audio, not its silence."""
    audio, rate = sf.read(path, dtype="float64")
    if audio.ndim > 1:
        audio = audio[:, 0]
    active = np.flatnonzero(np.abs(audio) > 0.05)
    if len(active) < rate // 2:
        return 0.0, 0.0
    loud = audio[active[0]:active[-1] + 1]  # one contiguous stretch, so the spectrum stays true
    spectrum = np.abs(np.fft.rfft(loud * np.hanning(len(loud))))
    return float(np.fft.rfftfreq(len(loud), 1 / rate)[int(np.argmax(spectrum))]), float(np.sqrt(np.mean(loud**2)))


def test_two_baresip_phones_hear_each_other(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data")
    server.start()
    port = server.sip_port
    callee = Baresip(tmp_path / "b", f"<sip:1002@127.0.0.1:{port};transport=udp>;auth_pass=demo1002;answermode=auto",
                     source=write_tone(tmp_path / "600.wav", 600))
    caller = Baresip(tmp_path / "a", f"<sip:1001@127.0.0.1:{port};transport=udp>;auth_pass=demo1001;regint=0",
                     source=write_tone(tmp_path / "1000.wav", 1000))
    try:
        callee.start(quit_after=25)
        deadline = time.monotonic() + 10
        while server.metric("callcenter_sip_registrations") < 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert server.metric("callcenter_sip_registrations") == 1, callee.wait(1)
        # The caller hangs up when its WAV ends (6 s), which ends the call on both sides.
        caller.start(quit_after=15, commands=[f"/dial sip:1002@127.0.0.1:{port}"])
        caller_log = caller.wait(30)
    finally:
        caller.stop()
        callee.stop()
        server.stop()
    assert "Call established" in caller_log, caller_log[-3000:]
    heard_by_callee, heard_by_caller = callee.received_audio(), caller.received_audio()
    assert heard_by_callee is not None and heard_by_caller is not None
    freq_b, level_b = dominant(heard_by_callee)
    freq_a, level_a = dominant(heard_by_caller)
    assert abs(freq_b - 1000) < 10 and abs(freq_a - 600) < 10, (freq_b, freq_a)
    assert level_a > 0.1 and level_b > 0.1  # a 0.3-amplitude tone survives G.711 at full level
