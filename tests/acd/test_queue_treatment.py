"""A waiting caller's audio on a real media engine: the announcements interrupt the music and
the music comes back after each; the position is announced on joining and again on its clock,
the periodic prompt on its own; the callback key is heard; a last prompt ends in a hang-up.

Every prompt here is a tone of its own pitch, so what the caller heard can be told apart
frame by frame (20 ms)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import soundfile

from acd.agents import Agent, Membership
from acd.distributor import Acd
from acd.queue_treatment import QueueTreatment
from acd.queues import QueueConfig, QueuedCall, Treatment

PITCH = {"queue/position": 400, "num/1": 600, "queue/callers": 800, "queue/press-callback": 1000,
         "queue/hold": 1200, "queue/callback-booked": 1400, "moh": 1800}


@pytest.fixture
def tones(tmp_path):
    root = tmp_path / "sounds"
    for name, pitch in PITCH.items():
        path = root / ("moh" if name == "moh" else "en") / f"{name}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        seconds = 1.0 if name == "moh" else 0.1
        t = np.arange(int(8000 * seconds)) / 8000
        soundfile.write(path, (8000 * np.sin(2 * np.pi * pitch * t)).astype(np.int16), 8000, subtype="PCM_16")
    return root


def heard_sequence(pcm: np.ndarray) -> list[str]:
    """The prompts heard, in order, one entry per stretch of the same pitch."""
    names = {pitch: name for name, pitch in PITCH.items()}
    out: list[str] = []
    for i in range(0, len(pcm) - 159, 160):
        frame = pcm[i:i + 160].astype(float)
        if np.abs(frame).max() < 1000:
            continue
        pitch = round(np.argmax(np.abs(np.fft.rfft(frame * np.hanning(160)))) * 50 / 200) * 200
        name = names.get(pitch, str(pitch))
        if not out or out[-1] != name:
            out.append(name)
    return out


def waiting_acd() -> Acd:
    acd = Acd()
    acd.add_queue(QueueConfig("q", "客服", joinempty=True, treatment=Treatment(
        answer=True, language="en", announce_position=True, announce_frequency=0.8,
        periodic_announce="queue/hold", periodic_announce_frequency=1.3, callback_key="1")))
    acd.add_agent(Agent("a1", "坐席", queues={"q": Membership()}))
    acd.enqueue(QueuedCall("first", "q", 1.0, caller="1004"), 1.0)
    acd.enqueue(QueuedCall("second", "q", 2.0, caller="1005"), 2.0)
    return acd


async def test_announcements_interrupt_the_music_and_the_music_resumes(engine, tones, make_caller):
    acd = waiting_acd()
    keys: list[str] = []
    treatment = QueueTreatment(engine, acd, on_callback_key=keys.append, sound_dirs=(tones,), min_frequency=0.5)
    engine.set_event_handler(treatment.on_media_event)
    caller = make_caller()
    leg = engine.create_endpoint("PCMU", 0, telephone_event_pt=101)
    engine.set_remote(leg, "127.0.0.1", caller.port)
    queue = acd.queues["q"]
    queue.treatment.moh = str(tones / "moh" / "moh.wav")
    treatment.start("second", leg, queue)
    await asyncio.sleep(2.0)
    caller.press("1", leg.local_port)
    await asyncio.sleep(0.3)
    treatment.stop("second")
    heard = heard_sequence(caller.heard())

    ahead = ["queue/position", "num/1", "queue/callers"]   # "callers ahead of you: one"
    assert heard[:5] == [*ahead, "queue/press-callback", "moh"]
    # The position again on its own clock, the periodic prompt with the callback offer on its
    # own, each between stretches of music.
    rest = heard[5:]
    assert [*ahead, "moh"] == rest[rest.index("queue/position"):][:4]
    assert rest[rest.index("queue/hold") - 1:][:4] == ["moh", "queue/hold", "queue/press-callback", "moh"]
    assert keys == ["second"]
    assert "second" not in treatment


async def test_the_head_of_the_line_hears_no_position_and_a_last_prompt_ends_in_a_hang_up(
        engine, tones, make_caller):
    acd = waiting_acd()
    acd.queues["q"].treatment = Treatment(answer=True, language="en", announce_position=True,
                                          moh=str(tones / "moh" / "moh.wav"))
    treatment = QueueTreatment(engine, acd, on_callback_key=lambda call_id: None, sound_dirs=(tones,))
    engine.set_event_handler(treatment.on_media_event)
    caller = make_caller()
    leg = engine.create_endpoint("PCMU", 0, telephone_event_pt=101)
    engine.set_remote(leg, "127.0.0.1", caller.port)
    treatment.start("first", leg, acd.queues["q"])
    await asyncio.sleep(0.5)
    hung_up = asyncio.Event()
    treatment.say_then("first", leg, ["queue/callback-booked"], "en", hung_up.set)
    await asyncio.wait_for(hung_up.wait(), 2)
    assert heard_sequence(caller.heard()) == ["moh", "queue/callback-booked"]
    assert "first" not in treatment
