"""Recordings and conference rooms of the media engine, as Python sees them.

The engine thread does the per-tick work (native/taps.pyx: it hands each recorded leg's frame to
the recorder kernel and runs each room's N-1 mixer); this side opens and closes the files,
numbers recordings and rooms, and turns the engine's RECORDING_DONE event into the end of
`stop_recording`, after which the file is closed (flush, header, fsync) in a worker thread —
never on the event loop, never on the engine's tick.

    rec = engine.start_recording(path, caller_leg, agent_leg)    # caller left, agent right
    engine.taps.retarget_recording(rec, caller_leg, new_agent)     # a transfer: the file goes on
    info = await engine.stop_recording(rec)                        # size, SHA-256, duration
    room = engine.create_room()
    engine.join_room(room, leg_a); engine.join_room(room, leg_b)
    engine.join_room(room, supervisor_leg, whisper_to=agent_leg)   # heard by the agent only
    whole = engine.taps.start_room_recording(path, room)           # the mix a listener hears
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from mediacore.errors import MediaError
from mediacore.recording import RecordingFile, RecordingInfo
from native import engine as _native
from native import taps as _native_taps

if TYPE_CHECKING:
    from mediacore.engine import AnyEndpoint, MediaEngine

log = logging.getLogger(__name__)

# mixer.pxd MIXER_MAX_MEMBERS: the conferences of up to 50 members.
ROOM_CAPACITY = 50
# A room recording names its room in the command's 32-bit `arg2` (taps.pxd TAP_RECORD_ROOM).
_ROOM_ID_MAX = 2**31 - 1


@dataclass
class _Recording:
    file: RecordingFile
    done: asyncio.Future[int]
    room: int = 0
    "The room whose mix it records (start_room_recording); 0 for a recording of legs."


@dataclass
class _Room:
    members: set[int] = field(default_factory=set)


class Taps:
    """The recordings and rooms of one MediaEngine (its `taps` attribute)."""

    def __init__(self, engine: MediaEngine) -> None:
        self._engine = engine
        self._ids = itertools.count(1)
        self._recordings: dict[int, _Recording] = {}
        self._rooms: dict[int, _Room] = {}

    # -- recordings ----------------------------------------------------------------------------

    def start_recording(self, path: str | Path, caller: AnyEndpoint | None,
                        agent: AnyEndpoint | None = None) -> int:
        """Record `caller`'s received audio on the left channel and `agent`'s on the right into a
        new WAV file at `path` (never overwritten). Returns the recording id."""
        if caller is None and agent is None:
            raise MediaError("a recording needs at least one leg")
        native = self._engine._running()
        left = self._engine._known(caller).id if caller is not None else 0
        right = self._engine._known(agent).id if agent is not None else 0
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        file = RecordingFile.create(target)
        recording_id = next(self._ids)
        try:
            native.tap(_native.TAPS["record_start"], recording_id, left, right, 0, file.kernel)
        except BaseException:
            file.close()
            raise
        self._recordings[recording_id] = _Recording(file, asyncio.get_running_loop().create_future())
        return recording_id

    def retarget_recording(self, recording_id: int, caller: AnyEndpoint | None,
                           agent: AnyEndpoint | None = None) -> None:
        """From the next 20 ms tick on, record `caller` on the left and `agent` on the right into
        the same file (a transfer replaced a party). Applied on the engine thread in order with
        the other commands: retarget, then destroy the leg that left, and no frame is lost."""
        if recording_id not in self._recordings:
            raise MediaError(f"no recording {recording_id}")
        if self._recordings[recording_id].room:
            raise MediaError(f"recording {recording_id} records a room, not legs")
        native = self._engine._running()
        left = self._engine._known(caller).id if caller is not None else 0
        right = self._engine._known(agent).id if agent is not None else 0
        native.tap(_native_taps.RECORD_RETARGET, recording_id, left, right)

    def start_room_recording(self, path: str | Path, room_id: int) -> int:
        """Record a room's mix — every member heard by all; muted listeners and whispers are
        not in it — on both channels of a new WAV file. Returns the recording id (stop it with
        `stop_recording`); after the room closes, it records silence."""
        self._room(room_id)
        if room_id > _ROOM_ID_MAX:
            raise MediaError(f"room id {room_id} does not fit a tap command")
        native = self._engine._running()
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        file = RecordingFile.create(target)
        recording_id = next(self._ids)
        try:
            native.tap(_native_taps.RECORD_ROOM, recording_id, 0, 0, room_id, file.kernel)
        except BaseException:
            file.close()
            raise
        self._recordings[recording_id] = _Recording(file, asyncio.get_running_loop().create_future(), room_id)
        return recording_id

    async def stop_recording(self, recording_id: int) -> RecordingInfo:
        """Stop writing, then close the file off the loop; its size, SHA-256 and duration."""
        recording = self._recordings.get(recording_id)
        if recording is None:
            raise MediaError(f"no recording {recording_id}")
        if not recording.done.done():
            self._engine._running().tap(_native.TAPS["record_stop"], recording_id)
        await asyncio.shield(recording.done)
        del self._recordings[recording_id]
        return await asyncio.get_running_loop().run_in_executor(None, recording.file.close)

    def recording_done(self, recording_id: int, error: int) -> None:
        """The engine let go of the recording (RECORDING_DONE)."""
        recording = self._recordings.get(recording_id)
        if recording is not None and not recording.done.done():
            recording.done.set_result(error)

    # -- rooms ---------------------------------------------------------------------------------

    def create_room(self) -> int:
        room_id = next(self._ids)
        self._engine._running().tap(_native.TAPS["room_new"], room_id)
        self._rooms[room_id] = _Room()
        return room_id

    def join_room(self, room_id: int, member: AnyEndpoint, *, muted: bool = False, deaf: bool = False,
                  whisper_to: AnyEndpoint | None = None) -> None:
        """Add a leg (or change its routes if it is a member): `muted` — the others do not hear
        it; `deaf` — it hears nothing; `whisper_to` — only that member hears it (a supervisor's
        whisper to the agent). A leg in a room hears the room, not any connected peer."""
        room = self._room(room_id)
        leg = self._engine._known(member)
        target = self._engine._known(whisper_to).id if whisper_to is not None else 0
        if target and target not in room.members and target != leg.id:
            raise MediaError("a whisper goes to a member of the same room")
        joining = leg.id not in room.members
        if joining and len(room.members) >= ROOM_CAPACITY:
            raise MediaError(f"a room holds at most {ROOM_CAPACITY} members")
        flags = (_native.TAP_FLAG_MUTED if muted else 0) | (_native.TAP_FLAG_DEAF if deaf else 0)
        op = _native.TAPS["room_join" if joining else "room_set"]
        self._engine._running().tap(op, room_id, leg.id, target, flags)
        room.members.add(leg.id)

    def leave_room(self, room_id: int, member: AnyEndpoint) -> None:
        room = self._room(room_id)
        leg = self._engine._known(member)
        if leg.id in room.members:
            self._engine._running().tap(_native.TAPS["room_leave"], room_id, leg.id)
            room.members.discard(leg.id)

    def close_room(self, room_id: int) -> None:
        self._room(room_id)
        self._engine._running().tap(_native.TAPS["room_free"], room_id)
        del self._rooms[room_id]

    def room_members(self, room_id: int) -> frozenset[int]:
        return frozenset(self._room(room_id).members)

    def forget_endpoint(self, endpoint_id: int) -> None:
        """The engine dropped a destroyed leg from its rooms; keep the bookkeeping in step."""
        for room in self._rooms.values():
            room.members.discard(endpoint_id)

    # -- shutdown --------------------------------------------------------------------------------

    def close(self) -> None:
        """After the engine thread stopped (it flushed every recording): close the files here."""
        for recording_id, recording in list(self._recordings.items()):
            try:
                info = recording.file.close()
                log.info("recording %d closed at shutdown: %s (%d bytes)", recording_id, info.path, info.size_bytes)
            except Exception:
                log.exception("closing recording %d at shutdown failed", recording_id)
            if not recording.done.done():
                recording.done.set_result(0)
        self._rooms.clear()

    def _room(self, room_id: int) -> _Room:
        room = self._rooms.get(room_id)
        if room is None:
            raise MediaError(f"no conference room {room_id}")
        return room
