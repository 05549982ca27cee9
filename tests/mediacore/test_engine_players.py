"""Players on the engine's 20 ms clock: prompts from files of any rate (resampled once, cached),
music on hold looping, call-progress tones, stopping, and a prompt pausing a relay."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
import soundfile

from mediacore.codecs import get_decoder, get_encoder
from mediacore.engine import MediaEngine
from mediacore.errors import MediaError
from mediacore.events import PromptDone
from mediacore.prompts import BUS_RATE, PromptCache, resample
from mediacore.rtp import RtpPacket
from mediacore.tones import render_tone, tone_spec

FRAME = 160


def dominant_frequency(samples: np.ndarray, rate: int = 8000) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[np.argmax(spectrum)])


def decode(packets: list[RtpPacket], codec: str = "PCMU") -> np.ndarray:
    decoder = get_decoder(codec)
    return np.concatenate([decoder.decode(p.payload) for p in packets])


def write_wav(path, frequency: float, seconds: float, rate: int = 44100) -> None:
    t = np.arange(int(rate * seconds)) / rate
    soundfile.write(str(path), (0.4 * np.sin(2 * np.pi * frequency * t)).astype(np.float32), rate,
                    subtype="PCM_16")


async def leg(engine: MediaEngine, peers, codec: str = "PCMU", pt: int = 0):
    endpoint = engine.create_endpoint(codec, pt)
    phone = peers()
    engine.set_remote(endpoint, "127.0.0.1", phone.port)
    return endpoint, phone


async def test_wav_at_44k1_plays_as_ulaw_at_its_frequency_then_prompt_done(engine, peers, tmp_path, next_event):
    path = tmp_path / "welcome.wav"
    write_wav(path, 1000.0, 0.5)
    a, phone = await leg(engine, peers)
    play_id = engine.play_file(a, path)
    done = await next_event(engine, lambda e: isinstance(e, PromptDone))
    assert done == PromptDone(a.id, play_id, True)
    got = await phone.recv_rtp(25)                 # 0.5 s = 25 frames of 20 ms
    assert phone.pending() == 0                    # and nothing after the prompt
    assert got[0].marker and {p.payload_type for p in got} == {0}
    assert {p.ssrc for p in got} == {engine.stats(a).ssrc_out}
    for before, after in zip(got, got[1:], strict=False):
        assert (after.sequence_number - before.sequence_number) & 0xFFFF == 1
        assert (after.timestamp - before.timestamp) & 0xFFFFFFFF == FRAME
    audio = decode(got)
    assert dominant_frequency(audio) == pytest.approx(1000.0, abs=16)
    level = np.sqrt(np.mean(audio[400:-400].astype(np.float64) ** 2))
    assert level == pytest.approx(0.4 * 32768 / np.sqrt(2), rel=0.05)
    # The file is read and resampled once, however often it is played.
    engine.play_file(a, path)
    await next_event(engine, lambda e: isinstance(e, PromptDone) and e.play_id != play_id)
    assert engine.prompts.loads == 1


async def test_music_on_hold_loops_until_stopped(engine, peers, next_event, until):
    a, phone = await leg(engine, peers, "PCMA", 8)
    moh = (8000 * np.sin(2 * np.pi * 600 * np.arange(800) / 8000)).astype(np.int16)   # 0.1 s
    play_id = engine.play(a, moh, loop=True)
    got = await phone.recv_rtp(15)                 # three times the prompt's length
    assert not any(isinstance(e, PromptDone) for e in engine.received)
    assert [p.payload_type for p in got] == [8] * 15
    # Looping is seamless: the PCM repeats every 800 samples.
    audio = decode(got, "PCMA")
    assert np.array_equal(audio[:800], audio[800:1600])
    assert dominant_frequency(audio) == pytest.approx(600.0, abs=16)
    engine.stop_playback(a)
    done = await next_event(engine, lambda e: isinstance(e, PromptDone))
    assert done == PromptDone(a.id, play_id, False)
    phone.pending()
    await asyncio.sleep(0.1)
    assert phone.pending() == 0


async def test_a_new_prompt_replaces_the_playing_one(engine, peers, next_event):
    a, _ = await leg(engine, peers)
    first = engine.play(a, np.zeros(8000, dtype=np.int16))
    second = engine.play(a, np.zeros(160, dtype=np.int16))
    assert await next_event(engine, lambda e: isinstance(e, PromptDone) and e.play_id == first) == \
        PromptDone(a.id, first, False)
    assert await next_event(engine, lambda e: isinstance(e, PromptDone) and e.play_id == second) == \
        PromptDone(a.id, second, True)


async def test_destroying_a_playing_endpoint_ends_its_prompt(engine, peers, next_event):
    a, _ = await leg(engine, peers)
    play_id = engine.play(a, np.zeros(80000, dtype=np.int16))
    engine.destroy(a)
    assert await next_event(engine, lambda e: isinstance(e, PromptDone)) == PromptDone(a.id, play_id, False)


async def test_busy_tone_us_and_ringback_cn(engine, peers, next_event):
    a, phone = await leg(engine, peers)
    engine.play_tone(a, "busy", "US")              # 480+620 Hz, 0.5 s on, 0.5 s off
    got = await phone.recv_rtp(50)
    audio = decode(got)
    on, off = audio[:4000], audio[4000:8000]
    spectrum = np.abs(np.fft.rfft(on * np.hanning(len(on))))
    freqs = np.fft.rfftfreq(len(on), 1 / 8000)
    top_two = sorted(freqs[np.argsort(spectrum)[-2:]])
    assert top_two == pytest.approx([480.0, 620.0], abs=4)
    assert np.abs(off).max() < 20                  # silence (µ-law idle)
    engine.play_tone(a, "ringback")                # China: 450 Hz, 1 s on, 4 s off
    await next_event(engine, lambda e: isinstance(e, PromptDone))
    phone.pending()
    got = await phone.recv_rtp(10)
    assert dominant_frequency(decode(got)) == pytest.approx(450.0, abs=16)
    engine.stop_playback(a)
    with pytest.raises(MediaError, match="no tone"):
        engine.play_tone(a, "howler")
    with pytest.raises(MediaError, match="country"):
        engine.play_tone(a, "busy", "XX")


async def test_prompt_on_a_relayed_leg_pauses_the_relay_and_it_resumes(engine, peers, make_tone, next_event):
    a = engine.create_endpoint("PCMU", 0)
    b, phone = await leg(engine, peers)
    trunk = peers()
    engine.set_remote(a, "127.0.0.1", trunk.port)
    engine.connect(a, b)
    encoder = get_encoder("PCMU")
    voice = make_tone(440.0, FRAME * 100)
    packets = [RtpPacket(0, i, i * FRAME, 0x77, encoder.encode(voice[i * FRAME:(i + 1) * FRAME]))
               for i in range(100)]
    prompt = (9000 * np.sin(2 * np.pi * 1500 * np.arange(2400) / 8000)).astype(np.int16)   # 0.3 s

    start = time.monotonic()
    for i, packet in enumerate(packets):           # the trunk talks on, 20 ms per packet
        if i == 25:
            play_id = engine.play(b, prompt)
        delay = start + i * 0.02 - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        trunk.send_rtp(packet, a.local_port)
    await next_event(engine, lambda e: isinstance(e, PromptDone))
    got = []
    while True:
        try:
            got.append(RtpPacket.parse((await phone.recv(0.5))[0]))
        except TimeoutError:
            break

    relayed = {p.payload for p in packets}
    kinds = ["voice" if p.payload in relayed else "prompt" for p in got]
    first_prompt = kinds.index("prompt")
    last_prompt = len(kinds) - 1 - kinds[::-1].index("prompt")
    # voice..., prompt (15 frames, nothing relayed meanwhile), voice again...
    assert kinds[first_prompt:last_prompt + 1] == ["prompt"] * 15
    assert "voice" in kinds[:first_prompt] and "voice" in kinds[last_prompt + 1:]
    assert dominant_frequency(decode(got[first_prompt:last_prompt + 1])) == pytest.approx(1500.0, abs=16)
    assert dominant_frequency(decode(got[last_prompt + 1:])) == pytest.approx(440.0, abs=16)
    # One stream throughout (RFC 3550 §5.1): our SSRC, sequence numbers without a gap, marker
    # bits where the prompt starts and where the relay takes over again.
    assert {p.ssrc for p in got} == {engine.stats(b).ssrc_out}
    for before, after in zip(got, got[1:], strict=False):
        assert (after.sequence_number - before.sequence_number) & 0xFFFF == 1
        assert (after.timestamp - before.timestamp) & 0xFFFFFFFF >= FRAME
    assert got[first_prompt].marker and got[last_prompt + 1].marker
    assert play_id > 0


def test_resampling_keeps_the_band_and_removes_what_would_alias():
    rate = 44100
    t = np.arange(rate) / rate
    inside = resample((0.5 * np.sin(2 * np.pi * 3000 * t)).astype(np.float64), rate, BUS_RATE)
    above = resample((0.5 * np.sin(2 * np.pi * 5000 * t)).astype(np.float64), rate, BUS_RATE)
    assert len(inside) == BUS_RATE
    assert dominant_frequency(inside[1000:-1000]) == pytest.approx(3000.0, abs=8)
    assert np.sqrt(np.mean(inside[1000:-1000].astype(float) ** 2)) == pytest.approx(0.5 * 32768 / np.sqrt(2), rel=0.01)
    # 5 kHz would fold to 3 kHz at 8 kHz: it must be gone (below -70 dBFS), not aliased.
    assert np.sqrt(np.mean(above[1000:-1000].astype(float) ** 2)) < 32768 * 10 ** (-70 / 20)


def test_prompt_cache_follows_file_changes(tmp_path):
    path = tmp_path / "menu.wav"
    write_wav(path, 500.0, 0.2, rate=16000)
    cache = PromptCache()
    first = cache.load(path)
    assert cache.load(path) is first and cache.loads == 1
    assert not first.flags.writeable
    write_wav(path, 700.0, 0.3, rate=22050)        # the operator uploads a new recording
    second = cache.load(path)
    assert cache.loads == 2 and len(second) == 2400 and len(cache) == 1
    with pytest.raises(MediaError, match="cannot read prompt"):
        cache.load(tmp_path / "missing.wav")
    (tmp_path / "junk.wav").write_bytes(b"not audio")
    with pytest.raises(MediaError, match="cannot read prompt"):
        cache.load(tmp_path / "junk.wav")


def test_tone_cadences_render_one_cycle():
    ringback = render_tone(tone_spec("ringback", "CN"))
    assert len(ringback) == 5 * 8000                     # 1 s on + 4 s off
    assert np.abs(ringback[8000:]).max() == 0
    busy = render_tone(tone_spec("busy", "CN"))
    assert len(busy) == 2 * 2800 and np.abs(busy[2800:]).max() == 0
    dial = render_tone(tone_spec("dial", "US"))
    assert dominant_frequency(dial) in (350.0, 440.0)
