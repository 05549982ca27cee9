"""Conference rooms reachable by number: PIN entry, a moderator PIN, join and leave tones, the
member count announced, mute by key — on the media engine's rooms (N-1 mixing, native).

Keys in a room: `1` mutes or unmutes yourself; a moderator's `9` mutes or unmutes everyone
else. A room exists while it has members; the engine's room is created by the first caller in
and closed when the last one leaves.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

from acd.call_recording import CallRecorder
from acd.prompt_catalogue import SOUNDS, prompt_audio
from acd.say import say_number
from mediacore.engine import Endpoint, MediaEngine
from mediacore.errors import MediaError
from mediacore.events import DtmfDigit, MediaEvent, PromptDone

log = logging.getLogger(__name__)

PIN_TRIES = 3
MAX_PIN_DIGITS = 12
ROOM_LIMIT = 50


class RoomConfigError(ValueError):
    pass


@dataclass(frozen=True)
class RoomConfig:
    number: str
    name: str = ""
    #: Digits callers key in (then #); "" lets everyone in without a PIN.
    pin: str = ""
    #: Digits that make a caller the room's moderator; "" for no moderator.
    moderator_pin: str = ""
    max_members: int = ROOM_LIMIT
    #: Record the room's mix while it is open (issue #8's room recording).
    record: bool = False

    @classmethod
    def from_table(cls, table: dict[str, Any]) -> RoomConfig:
        """One `[[conferences]]` table: number, name, pin, moderator_pin, max_members, record."""
        unknown = set(table) - {"number", "name", "pin", "moderator_pin", "max_members", "record"}
        if unknown:
            raise RoomConfigError(f"conference: unknown keys {sorted(unknown)}")
        number = str(table.get("number", ""))
        if not re.fullmatch(r"[0-9]{2,10}", number):
            raise RoomConfigError(f"conference {number!r}: number must be 2-10 digits")
        pins = [str(table.get(k, "")) for k in ("pin", "moderator_pin")]
        for pin in pins:
            if pin and not re.fullmatch(rf"[0-9]{{1,{MAX_PIN_DIGITS}}}", pin):
                raise RoomConfigError(f"conference {number}: PINs are 1-{MAX_PIN_DIGITS} digits")
        if pins[0] and pins[0] == pins[1]:
            raise RoomConfigError(f"conference {number}: the moderator PIN must differ from the PIN")
        limit = table.get("max_members", ROOM_LIMIT)
        if not isinstance(limit, int) or not 2 <= limit <= ROOM_LIMIT:
            raise RoomConfigError(f"conference {number}: max_members is 2-{ROOM_LIMIT}")
        record = table.get("record", False)
        if not isinstance(record, bool):
            raise RoomConfigError(f"conference {number}: record is true or false")
        return cls(number, str(table.get("name", "")), pins[0], pins[1], limit, record)


class Stage(Enum):
    PIN = "pin"
    IN_ROOM = "in_room"


@dataclass
class Member:
    call_id: str
    endpoint: Endpoint
    caller: str
    room: str
    stage: Stage = Stage.PIN
    digits: str = ""
    tries: int = 0
    moderator: bool = False
    muted: bool = False
    #: When the member got into the room (wall-clock seconds; 0 while still keying the PIN).
    joined_at: float = 0.0


@dataclass
class _Room:
    engine_id: int
    members: dict[str, Member] = field(default_factory=dict)
    others_muted: bool = False


class ConferenceRooms:
    def __init__(self, engine: MediaEngine, rooms: list[RoomConfig], *, hangup: Callable[[str, str], None],
                 language: str = "zh-CN", sound_dirs: tuple[Path, ...] = (SOUNDS,)) -> None:
        self._engine = engine
        self._config = {r.number: r for r in rooms}
        self._hangup = hangup
        self._language = language
        self._sound_dirs = sound_dirs
        self._members: dict[str, Member] = {}
        self._by_endpoint: dict[int, Member] = {}
        self._rooms: dict[str, _Room] = {}
        #: Records the rooms configured with `record = true`; None: no room is recorded.
        self.recording: CallRecorder | None = None

    def has_room(self, number: str) -> bool:
        return number in self._config

    def rooms(self) -> list[RoomConfig]:
        """The configured rooms, in number order (the web UI lists them, open or not)."""
        return sorted(self._config.values(), key=lambda r: r.number)

    def start(self, call_id: str, endpoint: Endpoint, caller: str, number: str) -> None:
        """An answered call to room `number`: ask for the PIN, or let it in."""
        if number not in self._config:
            log.warning("call %s: no conference room %s", call_id, number)
            self._hangup(call_id, "no_such_room")
            return
        member = Member(call_id, endpoint, caller, number)
        self._members[call_id] = member
        self._by_endpoint[endpoint.id] = member
        config = self._config[number]
        if config.pin or config.moderator_pin:
            self._say(member, ["conf/enter-pin"])
        else:
            self._join(member, moderator=False)

    def on_media_event(self, event: MediaEvent) -> bool:
        member = self._by_endpoint.get(getattr(event, "endpoint_id", -1))
        if member is None or not isinstance(event, DtmfDigit):
            return member is not None and isinstance(event, PromptDone)
        if member.stage is Stage.PIN:
            self._pin_key(member, event.digit)
        else:
            self._room_key(member, event.digit)
        return True

    def ended(self, call_id: str) -> None:
        member = self._members.pop(call_id, None)
        if member is None:
            return
        self._by_endpoint.pop(member.endpoint.id, None)
        room = self._rooms.get(member.room)
        if room is None or call_id not in room.members:
            return
        del room.members[call_id]
        if not room.members:
            if self.recording is not None:
                self.recording.room_closing(member.room)
            self._engine.close_room(room.engine_id)
            del self._rooms[member.room]
            log.info("conference %s closed", member.room)
            return
        try:
            self._engine.leave_room(room.engine_id, member.endpoint)
        except MediaError:
            pass                      # the leg is already gone: the engine dropped it
        for other in room.members.values():
            self._play(other, LEAVE_TONE)

    def members(self, number: str) -> list[Member]:
        room = self._rooms.get(number)
        return list(room.members.values()) if room else []

    def set_muted(self, number: str, call_id: str, muted: bool) -> None:
        """Mute or unmute a member (the web UI's and the moderator's action)."""
        room = self._rooms[number]
        member = room.members[call_id]
        member.muted = muted
        self._engine.join_room(room.engine_id, member.endpoint, muted=muted)

    def kick(self, number: str, call_id: str) -> None:
        if call_id in self._rooms[number].members:
            self._hangup(call_id, "conference_kick")

    # -- keys ---------------------------------------------------------------------------------

    def _pin_key(self, member: Member, key: str) -> None:
        if key != "#":
            if len(member.digits) < MAX_PIN_DIGITS:
                member.digits += key
            return
        config = self._config[member.room]
        entered, member.digits = member.digits, ""
        if config.moderator_pin and entered == config.moderator_pin:
            self._join(member, moderator=True)
        elif entered == config.pin or (not config.pin and config.moderator_pin and entered == ""):
            self._join(member, moderator=False)
        else:
            member.tries += 1
            log.info("conference %s: wrong PIN from %s (%d)", member.room, member.caller, member.tries)
            if member.tries >= PIN_TRIES:
                self._hangup(member.call_id, "conference_pin")
            else:
                self._say(member, ["conf/wrong-pin", "conf/enter-pin"])

    def _room_key(self, member: Member, key: str) -> None:
        room = self._rooms[member.room]
        if key == "1":
            self.set_muted(member.room, member.call_id, not member.muted)
            self._say(member, ["conf/muted" if member.muted else "conf/unmuted"])
        elif key == "9" and member.moderator:
            room.others_muted = not room.others_muted
            for other in room.members.values():
                if not other.moderator:
                    self.set_muted(member.room, other.call_id, room.others_muted)
                    self._say(other, ["conf/muted" if room.others_muted else "conf/unmuted"])

    def _join(self, member: Member, *, moderator: bool) -> None:
        config = self._config[member.room]
        room = self._rooms.get(member.room)
        if room is not None and len(room.members) >= config.max_members:
            log.info("conference %s is full (%d)", member.room, config.max_members)
            self._hangup(member.call_id, "conference_full")
            return
        if room is None:
            room = self._rooms[member.room] = _Room(self._engine.create_room())
            log.info("conference %s opened", member.room)
            if config.record and self.recording is not None:
                self.recording.room_opened(member.room, room.engine_id)
        member.stage = Stage.IN_ROOM
        member.moderator = moderator
        member.joined_at = time.time()
        member.muted = room.others_muted and not moderator
        self._engine.join_room(room.engine_id, member.endpoint, muted=member.muted)
        for other in room.members.values():
            self._play(other, JOIN_TONE)
        room.members[member.call_id] = member
        count = len(room.members)
        log.info("conference %s: %s joined%s (%d members)", member.room, member.caller,
                 " as moderator" if moderator else "", count)
        if count == 1:
            self._say(member, ["conf/alone"])
        else:
            self._say(member, ["conf/members", *say_number(count, self._language)])

    # -- sound ----------------------------------------------------------------------------------

    def _say(self, member: Member, names: list[str]) -> None:
        pcm = prompt_audio(self._engine.prompts, names, self._language, self._sound_dirs)
        if pcm is not None:
            self._play(member, pcm)

    def _play(self, member: Member, pcm: np.ndarray) -> None:
        try:
            self._engine.play(member.endpoint, pcm)   # the engine holds the buffer while it plays
        except MediaError as exc:
            log.info("conference %s: cannot play to %s: %s", member.room, member.caller, exc)


def _two_tones(first: float, second: float) -> np.ndarray:
    t = np.arange(1200) / 8000
    tone = np.concatenate([np.sin(2 * np.pi * first * t), np.sin(2 * np.pi * second * t)])
    pcm = np.round(6000 * tone).astype(np.int16)
    pcm.flags.writeable = False
    return pcm


# Rising for someone joining, falling for someone leaving (0.15 s each note).
JOIN_TONE = _two_tones(660.0, 880.0)
LEAVE_TONE = _two_tones(880.0, 660.0)
