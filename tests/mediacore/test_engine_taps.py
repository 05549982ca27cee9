"""Recordings and conference rooms in the running engine, on loopback sockets: phones send paced
G.711 tones; recordings are read back with soundfile and rooms are checked by what each phone
hears (the level of every other member's tone in its received audio)."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
import soundfile

from mediacore.codecs import get_decoder, get_encoder
from mediacore.errors import MediaError
from mediacore.rtp import RtpPacket

FRAME = 160


def band_level(samples: np.ndarray, frequency: float, rate: int = 8000) -> float:
    """Amplitude of `frequency` in the samples (a windowed DFT bin, ±15 Hz)."""
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples)))) / (len(samples) / 4)
    freqs = np.fft.rfftfreq(len(samples), 1 / rate)
    return float(spectrum[(freqs > frequency - 15) & (freqs < frequency + 15)].max())


async def talk(peer, port: int, frequency: float, seconds: float, ssrc: int) -> None:
    """A phone sending a tone at the 20 ms pace."""
    encoder = get_encoder("PCMU")
    count = int(seconds * 50)
    t = np.arange(FRAME * count) / 8000
    audio = np.round(6000 * np.sin(2 * np.pi * frequency * t)).astype(np.int16)
    start = time.monotonic()
    for i in range(count):
        delay = start + i * 0.02 - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        packet = RtpPacket(0, 1 + i, 160 * i, ssrc, encoder.encode(audio[i * FRAME:(i + 1) * FRAME]), marker=i == 0)
        peer.send_rtp(packet, port)


async def heard(peer, seconds: float) -> np.ndarray:
    """What a phone received (decoded) for `seconds`."""
    decoder = get_decoder("PCMU")
    out = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            data, _ = await peer.recv(max(0.01, deadline - time.monotonic()))
        except TimeoutError:
            break
        out.append(decoder.decode(RtpPacket.parse(data).payload))
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int16)


async def test_a_bridged_call_is_recorded_caller_left_agent_right_while_the_relay_goes_on(engine, peers, tmp_path):
    caller_leg = engine.create_endpoint("PCMU", 0)
    agent_leg = engine.create_endpoint("PCMU", 0)
    caller, agent = peers(), peers()
    engine.set_remote(caller_leg, "127.0.0.1", caller.port)
    engine.set_remote(agent_leg, "127.0.0.1", agent.port)
    engine.connect(caller_leg, agent_leg)
    path = tmp_path / "rec" / "call.wav"
    rec = engine.start_recording(path, caller_leg, agent_leg)
    with pytest.raises(MediaError, match="already exists"):
        engine.start_recording(path, caller_leg)          # never overwritten
    listening = asyncio.ensure_future(heard(agent, 2.0))
    await asyncio.gather(talk(caller, caller_leg.local_port, 440.0, 1.6, 1),
                         talk(agent, agent_leg.local_port, 1000.0, 1.6, 2))
    info = await engine.stop_recording(rec)
    at_agent = await listening

    audio, rate = soundfile.read(path, dtype="int16")
    assert rate == 8000 and audio.shape[1] == 2
    left, right = audio[:, 0], audio[:, 1]
    assert band_level(left, 440) > 2000 and band_level(left, 1000) < 100
    assert band_level(right, 1000) > 2000 and band_level(right, 440) < 100
    assert 1.0 < info.duration_s < 2.5 and info.size_bytes == path.stat().st_size and len(info.sha256) == 64
    assert band_level(at_agent, 440) > 2000                # the relay was not disturbed


async def test_three_party_room_each_member_hears_exactly_the_other_two(engine, peers):
    tones = (500.0, 700.0, 1100.0)
    legs = [engine.create_endpoint("PCMU", 0) for _ in tones]
    phones = [peers() for _ in tones]
    room = engine.create_room()
    for leg, phone in zip(legs, phones, strict=True):
        engine.set_remote(leg, "127.0.0.1", phone.port)
        engine.join_room(room, leg)
    listening = [asyncio.ensure_future(heard(p, 2.0)) for p in phones]
    await asyncio.gather(*(talk(p, leg.local_port, f, 1.6, 10 + i)
                           for i, (p, leg, f) in enumerate(zip(phones, legs, tones, strict=True))))
    for i, got in enumerate(await asyncio.gather(*listening)):
        assert len(got) > 8000
        for j, f in enumerate(tones):
            level = band_level(got, f)
            assert (level > 1500) if j != i else (level < 100), (i, f, level)
    engine.close_room(room)


def supervised_room(engine, peers):  # type: ignore[no-untyped-def]
    """A room of caller and agent with a whisperer (heard by the agent) and a muted listener,
    each leg with a phone and its own tone: (names, tones, legs, phones, room)."""
    names = ("caller", "agent", "whisperer", "listener")
    tones = dict(zip(names, (500.0, 700.0, 1300.0, 1700.0), strict=True))
    legs = {n: engine.create_endpoint("PCMU", 0) for n in names}
    phones = {n: peers() for n in names}
    room = engine.create_room()
    for n in names:
        engine.set_remote(legs[n], "127.0.0.1", phones[n].port)
    engine.join_room(room, legs["caller"])
    engine.join_room(room, legs["agent"])
    engine.join_room(room, legs["whisperer"], whisper_to=legs["agent"])
    engine.join_room(room, legs["listener"], muted=True)
    return names, tones, legs, phones, room


async def test_whisper_reaches_the_agent_only_and_listen_is_heard_by_nobody(engine, peers):
    names, tones, legs, phones, room = supervised_room(engine, peers)
    with pytest.raises(MediaError):
        engine.join_room(room, engine.create_endpoint("PCMU", 0), whisper_to=engine.create_endpoint("PCMU", 0))
    listening = {n: asyncio.ensure_future(heard(phones[n], 2.0)) for n in names}
    await asyncio.gather(*(talk(phones[n], legs[n].local_port, tones[n], 1.6, 20 + i) for i, n in enumerate(names)))
    got = {n: await listening[n] for n in names}

    def hears(who: str, what: str) -> bool:
        return band_level(got[who], tones[what]) > 1500

    assert hears("caller", "agent") and not hears("caller", "whisperer") and not hears("caller", "listener")
    assert hears("agent", "caller") and hears("agent", "whisperer") and not hears("agent", "listener")
    assert hears("whisperer", "caller") and hears("whisperer", "agent")
    assert hears("listener", "caller") and hears("listener", "agent") and not hears("listener", "listener")


async def test_destroying_a_recorded_leg_leaves_silence_and_a_valid_file(engine, peers, tmp_path):
    leg = engine.create_endpoint("PCMU", 0)
    phone = peers()
    engine.set_remote(leg, "127.0.0.1", phone.port)
    room = engine.create_room()
    engine.join_room(room, leg)
    rec = engine.start_recording(tmp_path / "m.wav", leg)
    await talk(phone, leg.local_port, 600.0, 0.6, 5)
    engine.destroy(leg)                                     # hung up mid-recording, while in a room
    await asyncio.sleep(0.3)
    info = await engine.stop_recording(rec)
    audio, _ = soundfile.read(tmp_path / "m.wav", dtype="int16")
    assert band_level(audio[:, 0], 600) > 1500 and info.error is None
    assert engine.taps.room_members(room) == frozenset()
    with pytest.raises(MediaError):
        await engine.stop_recording(rec)


async def test_recordings_open_at_shutdown_are_closed_valid(port_range, tmp_path, peers):
    from mediacore import MediaEngine

    engine = MediaEngine("127.0.0.1", *port_range)
    await engine.start()
    leg = engine.create_endpoint("PCMU", 0)
    phone = peers()
    engine.set_remote(leg, "127.0.0.1", phone.port)
    engine.start_recording(tmp_path / "s.wav", leg)
    await talk(phone, leg.local_port, 800.0, 0.6, 6)
    engine.close()
    audio, _ = soundfile.read(tmp_path / "s.wav", dtype="int16")
    assert band_level(audio[:, 0], 800) > 1500
