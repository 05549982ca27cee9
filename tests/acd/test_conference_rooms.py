"""Conference rooms on a real media engine: callers key their PIN as RFC 4733 events, then
each hears the others (checked by the level of every member's tone in what it receives)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from acd.conference_rooms import ConferenceRooms, RoomConfig, RoomConfigError

TONES = {"a": 500.0, "b": 700.0, "c": 1100.0}


def level(samples: np.ndarray, frequency: float) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples)))) / (len(samples) / 4)
    freqs = np.fft.rfftfreq(len(samples), 1 / 8000)
    return float(spectrum[(freqs > frequency - 15) & (freqs < frequency + 15)].max())


async def until(predicate, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


@pytest.fixture
def room(engine, sounds):
    ended: list[tuple[str, str]] = []
    rooms = ConferenceRooms(engine, [RoomConfig("7000", pin="1234", moderator_pin="4321")],
                            hangup=lambda call, cause: ended.append((call, cause)), sound_dirs=(sounds,))
    engine.set_event_handler(rooms.on_media_event)
    rooms.hung_up = ended
    return rooms


async def enter(engine, rooms, caller, name: str, pin: str):
    leg = engine.create_endpoint("PCMU", 0, telephone_event_pt=101)
    engine.set_remote(leg, "127.0.0.1", caller.port)
    rooms.start(name, leg, f"1380013800{len(rooms.members('7000'))}", "7000")
    for key in pin + "#":
        caller.press(key, leg.local_port)
        await asyncio.sleep(0.03)
    return leg


async def talk_and_listen(legs, callers, seconds: float = 1.5) -> dict[str, np.ndarray]:
    await asyncio.sleep(0.5)                        # announcements and join tones are over
    for caller in callers.values():
        caller.heard()
    await asyncio.gather(*(callers[n].speak(legs[n].local_port, seconds, TONES[n]) for n in callers))
    await asyncio.sleep(0.2)
    return {n: c.heard() for n, c in callers.items()}


async def test_pin_entry_then_each_member_hears_exactly_the_others(engine, room, make_caller):
    callers = {n: make_caller() for n in TONES}
    legs = {}
    legs["a"] = await enter(engine, room, callers["a"], "a", "1111")   # wrong first
    await until(lambda: room._members["a"].tries == 1)
    for key in "1234#":
        callers["a"].press(key, legs["a"].local_port)
        await asyncio.sleep(0.03)
    legs["b"] = await enter(engine, room, callers["b"], "b", "4321")
    legs["c"] = await enter(engine, room, callers["c"], "c", "1234")
    await until(lambda: len(room.members("7000")) == 3)
    assert [m.moderator for m in room.members("7000")] == [False, True, False]

    heard = await talk_and_listen(legs, callers)
    for listener, audio in heard.items():
        for speaker, frequency in TONES.items():
            assert (level(audio, frequency) > 1000) == (speaker != listener), (listener, speaker)

    callers["a"].press("1", legs["a"].local_port)                     # a mutes itself
    await until(lambda: room._members["a"].muted)
    heard = await talk_and_listen(legs, callers)
    assert level(heard["b"], TONES["a"]) < 100 and level(heard["b"], TONES["c"]) > 1000
    assert level(heard["a"], TONES["b"]) > 1000                        # muted, not deaf

    callers["b"].press("9", legs["b"].local_port)                     # the moderator mutes the others
    await until(lambda: room._members["c"].muted)
    heard = await talk_and_listen(legs, callers)
    assert level(heard["a"], TONES["c"]) < 100 and level(heard["a"], TONES["b"]) > 1000

    for name in "abc":
        room.ended(name)
    assert room.members("7000") == [] and not engine.taps._rooms


async def test_three_wrong_pins_hang_up(engine, room, make_caller):
    caller = make_caller()
    leg = await enter(engine, room, caller, "x", "0000")
    for _ in range(2):
        for key in "9999#":
            caller.press(key, leg.local_port)
            await asyncio.sleep(0.03)
    await until(lambda: room.hung_up == [("x", "conference_pin")])
    assert room.members("7000") == []


def test_room_configuration_is_checked():
    assert RoomConfig.from_table({"number": "7000", "pin": "1234"}).pin == "1234"
    for bad in ({"number": "x"}, {"number": "7000", "pin": "12a"}, {"number": "7000", "pin": "1", "moderator_pin": "1"},
                {"number": "7000", "max_members": 99}, {"number": "7000", "colour": "red"}):
        with pytest.raises(RoomConfigError):
            RoomConfig.from_table(bad)
