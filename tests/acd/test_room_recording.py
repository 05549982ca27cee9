"""A conference room configured with `record = true` is recorded while it is open (issue #8's
room recording): one file from the first member in to the last one out, the room's mix on both
channels, indexed in a real SQLite file with its size and SHA-256."""

from __future__ import annotations

import asyncio
import hashlib

import numpy as np
import pytest
import soundfile

from acd.call_recording import CallRecorder, RecordingReady
from acd.cdr import MIGRATIONS_CDR
from acd.conference_rooms import ConferenceRooms, RoomConfig, RoomConfigError
from acd.recording_index import MIGRATIONS_RECORDINGS, BadRef, RecordingIndex
from acd.recording_rules import RecordingPolicy
from callcenter.database import open_database
from tests.acd.test_conference_rooms import level

TONES = {"a": 500.0, "b": 700.0}


@pytest.fixture
async def index(tmp_path):
    conn = await open_database(tmp_path / "cc.db")
    await conn.executescript(MIGRATIONS_CDR + MIGRATIONS_RECORDINGS)
    try:
        yield RecordingIndex(conn, tmp_path / "recordings")
    finally:
        await conn.close()


def test_record_is_a_yes_or_no_key_of_a_room() -> None:
    assert RoomConfig.from_table({"number": "7100", "record": True}).record is True
    assert RoomConfig.from_table({"number": "7100"}).record is False
    with pytest.raises(RoomConfigError, match="record is true or false"):
        RoomConfig.from_table({"number": "7100", "record": "yes"})


async def test_a_recorded_room_leaves_one_indexed_file_with_its_members(engine, sounds, make_caller, index):
    ready: list[object] = []
    rooms = ConferenceRooms(engine, [RoomConfig("7100", record=True), RoomConfig("7200")],
                            hangup=lambda call, cause: None, sound_dirs=(sounds,))
    recorder = CallRecorder(engine, RecordingPolicy(), index.directory, index, ready.append)
    rooms.recording = recorder
    callers = {n: make_caller() for n in TONES}
    legs = {}
    for name, caller in callers.items():
        legs[name] = engine.create_endpoint("PCMU", 0, telephone_event_pt=101)
        engine.set_remote(legs[name], "127.0.0.1", caller.port)
        rooms.start(name, legs[name], f"1390000000{len(legs)}", "7100")
    # A room without `record` is not recorded.
    other = engine.create_endpoint("PCMU", 0)
    rooms.start("c", other, "13900000009", "7200")
    await asyncio.sleep(0.5)                      # announcements over
    await asyncio.gather(*(callers[n].speak(legs[n].local_port, 1.2, TONES[n]) for n in callers))
    for name in ("a", "b", "c"):
        rooms.ended(name)
    await recorder.drain()

    [event] = ready
    assert isinstance(event, RecordingReady) and event.kind == "room" and event.error is None
    assert event.ref.startswith("rooms/") and event.call_id.startswith("7100-")
    [entry] = await index.listing()
    path = index.path_of(entry.ref)
    assert entry.ref == event.ref and entry.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert entry.size_bytes == path.stat().st_size and entry.kind == "room" and entry.ended_at is not None
    audio, rate = soundfile.read(path, dtype="int16")
    assert rate == 8000 and np.array_equal(audio[:, 0], audio[:, 1])
    assert level(audio[:, 0].astype(float), TONES["a"]) > 1000 and level(audio[:, 0].astype(float), TONES["b"]) > 1000
    assert [p.name for p in index.directory.rglob("*.wav")] == [path.name]


async def test_a_reference_names_a_file_inside_the_recordings_directory_only(index, tmp_path) -> None:
    day = index.directory / "2026" / "11" / "23"
    day.mkdir(parents=True)
    (tmp_path / "secret.wav").write_bytes(b"x")
    (day / "link.wav").symlink_to(tmp_path / "secret.wav")
    assert index.path_of("2026/11/23/abc.wav") == (day / "abc.wav").resolve()
    assert index.path_of("rooms/2026/11/23/7000-ab.wav").is_relative_to(index.directory.resolve())
    for ref in ("2026/11/23/link.wav", "../secret.wav", "2026/11/23/../../../../secret.wav", "/etc/x.wav",
                "abc.wav", "2026/11/23/.wav", "2026/11/23/abc.db", "2026\\11\\abc.wav", "2026/11/23/a b.wav"):
        with pytest.raises(BadRef):
            index.path_of(ref)
    with pytest.raises(BadRef):
        await index.get("../secret.wav")
