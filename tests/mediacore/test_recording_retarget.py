"""A recording that follows a transfer (retarget: the same file, other legs, no gap) and a
conference room's recording (the mix a listener hears: members heard by all, no whisper, no
muted listener), in the running engine with phones on loopback sockets."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import soundfile

from mediacore.errors import MediaError
from tests.mediacore.test_engine_taps import band_level, supervised_room, talk

RATE = 8000


def longest_silence(samples: np.ndarray) -> float:
    """Seconds of the longest run of 20 ms blocks without signal."""
    blocks = samples[: len(samples) // 160 * 160].reshape(-1, 160)
    quiet = np.abs(blocks).max(axis=1) < 200
    longest = run = 0
    for q in quiet:
        run = run + 1 if q else 0
        longest = max(longest, run)
    return longest * 0.02


async def test_a_retargeted_recording_goes_on_in_the_same_file_with_the_new_party(engine, peers, tmp_path):
    caller_leg, agent_leg, target_leg = (engine.create_endpoint("PCMU", 0) for _ in range(3))
    caller, agent, target = peers(), peers(), peers()
    for leg, phone in ((caller_leg, caller), (agent_leg, agent), (target_leg, target)):
        engine.set_remote(leg, "127.0.0.1", phone.port)
    engine.connect(caller_leg, agent_leg)
    path = tmp_path / "call.wav"
    rec = engine.start_recording(path, caller_leg, agent_leg)

    async def caller_talks() -> None:
        await talk(caller, caller_leg.local_port, 440.0, 2.4, 1)

    async def parties_on_the_right() -> None:
        await talk(agent, agent_leg.local_port, 1000.0, 1.2, 2)
        # The agent hands the caller on: the target takes the right side, the agent's leg goes.
        engine.connect(caller_leg, target_leg)
        engine.taps.retarget_recording(rec, caller_leg, target_leg)
        engine.destroy(agent_leg)
        await talk(target, target_leg.local_port, 1500.0, 1.2, 3)

    await asyncio.gather(caller_talks(), parties_on_the_right())
    info = await engine.stop_recording(rec)

    audio, rate = soundfile.read(path, dtype="int16")
    assert rate == RATE and audio.shape[1] == 2 and info.error is None
    left, right = audio[:, 0], audio[:, 1]
    half = len(audio) // 2
    first, second = right[: half - 1600], right[half + 1600:]      # ±0.2 s around the hand-over
    assert band_level(left, 440) > 2000                              # the caller throughout
    assert band_level(first, 1000) > 2000 and band_level(first, 1500) < 100
    assert band_level(second, 1500) > 2000 and band_level(second, 1000) < 100
    # No gap on the caller's side, none longer than a few frames on the right at the hand-over.
    assert longest_silence(left[800:-800]) <= 0.1
    assert longest_silence(right[800:-800]) <= 0.1


async def test_retarget_refuses_an_unknown_recording_or_a_destroyed_leg(engine, tmp_path):
    leg = engine.create_endpoint("PCMU", 0)
    gone = engine.create_endpoint("PCMU", 0)
    engine.destroy(gone)
    rec = engine.start_recording(tmp_path / "r.wav", leg)
    with pytest.raises(MediaError, match="no recording"):
        engine.taps.retarget_recording(rec + 100, leg, None)
    with pytest.raises(MediaError, match="does not exist"):
        engine.taps.retarget_recording(rec, leg, gone)
    await engine.stop_recording(rec)
    with pytest.raises(MediaError, match="no recording"):
        engine.taps.retarget_recording(rec, leg, None)


async def test_a_room_recording_has_the_members_but_not_the_whisper_nor_the_listener(engine, peers, tmp_path):
    names, tones, legs, phones, room = supervised_room(engine, peers)
    rec = engine.taps.start_room_recording(tmp_path / "room.wav", room)
    with pytest.raises(MediaError, match="records a room"):
        engine.taps.retarget_recording(rec, legs["caller"], None)
    await asyncio.gather(*(talk(phones[n], legs[n].local_port, tones[n], 1.2, 30 + i)
                           for i, n in enumerate(names)))
    engine.close_room(room)
    await asyncio.sleep(0.2)                      # the room is gone: silence from here on
    info = await engine.stop_recording(rec)

    audio, _ = soundfile.read(tmp_path / "room.wav", dtype="int16")
    assert np.array_equal(audio[:, 0], audio[:, 1]) and info.duration_s > 1.0
    mix = audio[:, 0]
    assert band_level(mix, tones["caller"]) > 1500 and band_level(mix, tones["agent"]) > 1500
    assert band_level(mix, tones["whisperer"]) < 100 and band_level(mix, tones["listener"]) < 100
    assert np.abs(audio[-400:]).max() == 0        # after the room closed
    with pytest.raises(MediaError, match="no conference room"):
        engine.taps.start_room_recording(tmp_path / "none.wav", room)
