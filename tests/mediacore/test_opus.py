"""Opus (RFC 6716) through libopus loaded with dlopen: round trips, interoperability with PyAV's
own decoder, packet loss concealment, and clear errors for bad packets and bad requests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from mediacore import opus_library
from mediacore.errors import MediaError
from native import dtmfdetect, opus, resample

OpusEncoder, OpusDecoder, OpusError = opus.OpusEncoder, opus.OpusDecoder, opus.OpusError

ROOT = Path(__file__).parents[2]
RATE = 48000
FRAME = 960   # 20 ms at 48 kHz


@pytest.fixture(scope="module", autouse=True)
def libopus() -> str:
    return opus_library.load_libopus()


def tone(frequency: float = 1000.0, seconds: float = 1.0, rate: int = RATE, amplitude: float = 8000.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return np.round(amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.int16)


def encode_all(encoder: OpusEncoder, pcm: np.ndarray, frame: int = FRAME) -> list[bytes]:
    return [encoder.encode(pcm[i:i + frame]) for i in range(0, len(pcm) - frame + 1, frame)]


def test_libopus_is_found_in_pyavs_wheel_and_loaded(libopus):
    path = opus_library.find_libopus()
    assert Path(path).name.startswith("libopus") and Path(path).parent.name == "av.libs"
    assert libopus.startswith("libopus 1.")
    assert opus.is_loaded() and opus.loaded_from() == path
    # Loading again is harmless and answers the same.
    assert opus_library.load_libopus() == libopus


def test_before_loading_every_request_is_a_clear_error():
    # A fresh interpreter, where nobody has loaded libopus yet: the C library (a real shared
    # object without any opus_* symbol) and a missing file are refused, and refusing them leaves
    # nothing half-loaded behind.
    code = (
        "import ctypes.util\n"
        "from native import opus\n"
        "for path in (ctypes.util.find_library('c'), '/nonexistent/libopus.so'):\n"
        "    try:\n"
        "        opus.load_library(path)\n"
        "    except OSError as error:\n"
        "        print('OSError', error)\n"
        "for make in (opus.OpusEncoder, opus.OpusDecoder):\n"
        "    try:\n"
        "        make()\n"
        "    except opus.OpusError as error:\n"
        "        print(error.code, error)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 4
    assert lines[0].startswith("OSError libopus has no opus_encoder_create")
    assert lines[1].startswith("OSError cannot open libopus at /nonexistent/libopus.so")
    assert all(line.startswith("-100 ") and "not loaded" in line for line in lines[2:])


def test_no_libopus_anywhere_is_a_clear_media_error(monkeypatch):
    monkeypatch.setattr(opus_library.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(opus_library.ctypes.util, "find_library", lambda name: None)
    with pytest.raises(MediaError, match="no libopus found"):
        opus_library.find_libopus()


def test_a_1_khz_tone_survives_the_round_trip():
    encoder, decoder = OpusEncoder(RATE, 1, 32000), OpusDecoder(RATE, 1)
    original = tone()
    packets = encode_all(encoder, original)
    assert len(packets) == 50
    # 32 kbit/s is 80 bytes per 20 ms on average.
    assert 40 <= np.mean([len(p) for p in packets]) <= 120
    decoded = np.concatenate([decoder.decode(p) for p in packets])
    assert decoded.dtype == np.int16 and len(decoded) == len(original)
    # The decoder's output lags the input by the encoder's look-ahead (6.5 ms at 48 kHz), give or
    # take the few samples of phase the speech modes (SILK, hybrid) do not keep.
    assert encoder.lookahead == 312
    steady = slice(4800, 40000)
    best_correlation, best_lag = max(
        (np.corrcoef(original[steady], decoded[steady.start + lag:steady.stop + lag])[0, 1], lag)
        for lag in range(312 - 24, 312 + 25)
    )
    assert best_correlation > 0.98
    assert abs(best_lag - 312) <= 8
    level = np.sqrt(np.mean(decoded[steady].astype(np.float64) ** 2) / np.mean(original[steady].astype(np.float64) ** 2))
    assert abs(20 * np.log10(level)) < 1.0
    spectrum = np.abs(np.fft.rfft(decoded[4800:] * np.hanning(len(decoded) - 4800)))
    peak_hz = np.argmax(spectrum) * RATE / (len(decoded) - 4800)
    assert abs(peak_hz - 1000.0) < 5.0


def test_pyav_decodes_our_packets_to_the_same_samples():
    encoder, decoder = OpusEncoder(RATE, 1, 32000), OpusDecoder(RATE, 1)
    packets = encode_all(encoder, tone(440.0) // 2 + tone(1800.0) // 2)
    ours = np.concatenate([decoder.decode(p) for p in packets])
    context = av.CodecContext.create("libopus", "r")
    context.sample_rate = RATE
    context.layout = "mono"
    frames = [frame for p in packets for frame in context.decode(av.Packet(p))]
    assert all(frame.format.name == "s16" for frame in frames)
    theirs = np.concatenate([frame.to_ndarray().reshape(-1) for frame in frames])
    assert np.array_equal(ours, theirs)


def test_lost_packets_are_concealed_with_frames_of_the_last_packets_length():
    encoder, decoder = OpusEncoder(RATE, 1, 24000), OpusDecoder(RATE, 1)
    assert len(decoder.decode(None)) == FRAME   # before any packet: 20 ms
    for packet in encode_all(encoder, tone(seconds=0.2), frame=480):   # 10 ms packets
        assert len(decoder.decode(packet)) == 480
    concealed = decoder.decode(None)
    assert len(concealed) == 480 and concealed.dtype == np.int16
    assert len(decoder.decode(b"")) == 480
    # Concealment continues the tone rather than going silent at once.
    assert np.sqrt(np.mean(concealed.astype(np.float64) ** 2)) > 1000


def test_in_band_fec_recovers_a_lost_packet_from_the_next_one():
    encoder = OpusEncoder(RATE, 1, 32000, fec=True, packet_loss_pct=20)
    packets = encode_all(encoder, tone(300.0, seconds=1.0))
    decoder = OpusDecoder(RATE, 1)
    for packet in packets[:30]:
        decoder.decode(packet)
    recovered = decoder.decode_fec(packets[31])   # packet 30 lost, 31 arrived
    assert len(recovered) == FRAME
    assert np.sqrt(np.mean(recovered.astype(np.float64) ** 2)) > 1000
    assert len(decoder.decode(packets[31])) == FRAME


def test_encoder_settings_take_effect():
    loud = tone(seconds=1.0)
    low = np.mean([len(p) for p in encode_all(OpusEncoder(RATE, 1, 12000), loud)])
    high = np.mean([len(p) for p in encode_all(OpusEncoder(RATE, 1, 64000), loud)])
    assert high > 3 * low
    # With DTX, silence after a while is sent as packets of at most 2 bytes ("send nothing").
    quiet = encode_all(OpusEncoder(RATE, 1, 32000, dtx=True), np.zeros(RATE, dtype=np.int16))
    assert max(len(p) for p in quiet[-10:]) <= 2


@pytest.mark.parametrize("rate", [8000, 16000])
def test_narrowband_and_wideband_rates(rate):
    encoder, decoder = OpusEncoder(rate, 1, 24000), OpusDecoder(rate, 1)
    frame = rate // 50
    packets = encode_all(encoder, tone(700.0, rate=rate), frame=frame)
    decoded = np.concatenate([decoder.decode(p) for p in packets])
    assert len(decoded) == rate
    spectrum = np.abs(np.fft.rfft(decoded[rate // 4:]))
    assert abs(np.argmax(spectrum) * rate / (len(decoded) - rate // 4) - 700.0) < 10.0


def test_stereo_frames_are_interleaved():
    encoder, decoder = OpusEncoder(RATE, 2, 64000), OpusDecoder(RATE, 2)
    left, right = tone(500.0, 0.2), tone(2000.0, 0.2)
    stereo = np.stack([left, right], axis=1).reshape(-1)
    decoded = np.concatenate([decoder.decode(p) for p in encode_all(encoder, stereo, frame=2 * FRAME)])
    assert len(decoded) == len(stereo)
    channels = decoded.reshape(-1, 2)
    for index, frequency in enumerate((500.0, 2000.0)):
        spectrum = np.abs(np.fft.rfft(channels[2400:, index]))
        assert abs(np.argmax(spectrum) * RATE / (len(channels) - 2400) - frequency) < 10.0


def test_corrupted_packets_raise_a_clear_error_and_the_decoder_carries_on():
    decoder = OpusDecoder(RATE, 1)
    # TOC code 3 announcing 63 frames of 20 ms: more than the 120 ms a packet may hold.
    with pytest.raises(OpusError, match="corrupted") as caught:
        decoder.decode(b"\xff\xff")
    assert caught.value.code == -4   # OPUS_INVALID_PACKET
    with pytest.raises(OpusError):
        decoder.decode(b"\x00" * 5000)   # longer than any packet
    # Random garbage either decodes to whole 2.5 ms steps or is refused; it never crashes.
    rng = np.random.default_rng(9)
    for _ in range(2000):
        garbage = rng.integers(0, 256, int(rng.integers(1, 300)), dtype=np.uint8).tobytes()
        try:
            samples = decoder.decode(garbage)
        except OpusError:
            continue
        assert len(samples) % 120 == 0 and 0 < len(samples) <= 5760
    good = encode_all(OpusEncoder(RATE, 1, 32000), tone(seconds=0.1))
    assert all(len(decoder.decode(p)) == FRAME for p in good)


def test_bad_requests_are_refused_clearly():
    with pytest.raises(OpusError, match="invalid argument"):
        OpusEncoder(44100)
    with pytest.raises(OpusError, match="invalid argument"):
        OpusDecoder(RATE, 3)
    with pytest.raises(ValueError, match="application"):
        OpusEncoder(application="music")
    encoder = OpusEncoder()
    with pytest.raises(OpusError, match="invalid argument"):
        encoder.encode(np.zeros(1000, dtype=np.int16))   # not 2.5/5/10/20/40/60 ms
    with pytest.raises(TypeError):
        encoder.encode(np.zeros(FRAME, dtype=np.float32))
    with pytest.raises(ValueError):
        encoder.encode(np.zeros(0, dtype=np.int16))
    with pytest.raises(OpusError):
        OpusDecoder().decode_fec(b"")


def test_dtmf_digits_survive_8k_to_opus_and_back():
    # A trunk's in-band digits bridged to a WebRTC agent and back: 8 kHz -> 48 kHz -> Opus ->
    # 48 kHz -> 8 kHz, 20 ms at a time, then the in-band detector.
    keys = "0123456789*#ABCD"
    t = np.arange(int(8000 * 0.06)) / 8000
    rows, cols = (697, 770, 852, 941), (1209, 1336, 1477, 1633)
    parts = [np.zeros(800)]
    for key in keys:
        index = "123A456B789C*0#D".index(key)
        parts += [4000 * np.sin(2 * np.pi * rows[index // 4] * t) + 4000 * np.sin(2 * np.pi * cols[index % 4] * t),
                  np.zeros(480)]
    signal = np.round(np.concatenate(parts + [np.zeros(800)])).astype(np.int16)
    signal = signal[: len(signal) // 160 * 160]
    up, down = resample.Resampler(8000, 48000), resample.Resampler(48000, 8000)
    encoder, decoder = OpusEncoder(RATE, 1, 32000), OpusDecoder(RATE, 1)
    detector = dtmfdetect.InbandDtmfDetector(8000)
    digits = []
    for start in range(0, len(signal), 160):
        wide = decoder.decode(encoder.encode(up.process(signal[start:start + 160])))
        digits += detector.feed(down.process(wide))
    assert "".join(digits) == keys
