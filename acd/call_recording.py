"""Recording calls and conference rooms: the recording rules applied to live calls.

A call is decided once, when it is first bridged to a person (an agent or an extension
answered): by its queue's rule, else the parties', else the site default (acd.recording_rules).
A recorded call has one stereo WAV file for its whole life — the caller's side on the left, the
answering side on the right. A blind or attended transfer replaces a party: the recording is
retargeted to the legs bridged now, in the same file, before the leg that left is destroyed, so
nothing between is lost (the engine applies both in order on its thread). The left channel stays
the call's "a" side (the CDR's caller of each segment), the right its "b" side.

Every CDR segment of the call carries the file's reference (its path under the recordings
directory); when the call ends the file is closed and the index gets its duration, size and
SHA-256, and a `RecordingReady` event goes on the bus.

Legs bridged outside a `Call` — a queued callback's agent and customer (acd.callback_calls) —
are decided and recorded the same way through `bridged_legs` and `legs_ended`: the customer on
the left, the agent on the right, the queue's rule first. Their file is named by its own key
(the queue call's id and the try), so a callback tried twice never overwrites a file, while the
index row carries the call id that the callback's CDR rows share.

Rooms configured with `record = true` are recorded from when the first member joins until the
last leaves: the room's mix, what a listener hears (every member heard by all; a supervisor's
whisper and muted listeners are not in it).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from acd.recording_index import KIND_CALL, KIND_ROOM, RecordingIndex
from acd.recording_rules import RecordingPolicy, recording_ref
from mediacore.engine import AnyEndpoint, MediaEngine
from mediacore.errors import MediaError

if TYPE_CHECKING:
    from acd.calls import Call

log = logging.getLogger(__name__)

#: Room recordings live apart from the calls' day folders.
ROOMS_FOLDER = "rooms"


@dataclass(frozen=True)
class RecordingReady:
    """A recording was closed: its file is complete and indexed (published on the bus)."""

    call_id: str
    ref: str
    "The path under the recordings directory, as the CDR's recording_ref holds it."
    kind: str
    "'call' or 'room'."
    duration: float
    size_bytes: int
    sha256: str
    error: str | None


@dataclass
class _Live:
    recording_id: int
    ref: str
    call_id: str
    kind: str
    started: asyncio.Task[None] | None
    "The index row being written: the row that closes it waits for it."


class CallRecorder:
    """Starts, retargets and stops the recordings of calls and rooms (one per process)."""

    def __init__(self, engine: MediaEngine, policy: RecordingPolicy, directory: Path,
                 index: RecordingIndex | None, publish: Callable[[object], None]) -> None:
        self._engine = engine
        self.policy = policy
        self.directory = directory
        self._index = index
        self._publish = publish
        self._calls: dict[str, _Live] = {}
        self._decided: set[str] = set()
        self._rooms: dict[str, _Live] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    # ------------------------------------------------------------- calls

    def bridged(self, call: Call, agent: AnyEndpoint | None = None) -> None:
        """The call's two parties were just bridged (the answering side on `agent`, by default
        the call's "b" party as bridged now: its callee endpoint or a browser agent's leg):
        decide by the rules, once per call, and start recording."""
        if call.id in self._decided:
            return
        self._decided.add(call.id)
        now = time.time()
        decision = self.policy.decide(
            call.id, datetime.fromtimestamp(now, UTC), queue=call.queue_id, answered_by=call.answered_by,
            caller=call.caller if call.from_trunk is None else "", trunk=call.trunk_name)
        log.info("call %s: %s by %s (%s)", call.id, "recorded" if decision.record else "not recorded",
                 decision.source, decision.rule)
        if not decision.record:
            return
        ref = recording_ref(call.id, datetime.fromtimestamp(now, UTC))
        right = agent if agent is not None else call.party_port("b")
        try:
            recording_id = self._engine.start_recording(self.directory / ref, call.endpoint_a, right)
        except MediaError as exc:
            # A full disk or a clash must not cost the call: it goes on unrecorded, loudly.
            log.error("call %s: cannot record to %s: %s", call.id, ref, exc)
            return
        call.recording_ref = str(ref)
        self._calls[call.id] = _Live(recording_id, str(ref), call.id, KIND_CALL,
                                     self._write_started(str(ref), call.id, KIND_CALL, str(decision.rule), now))

    def bridged_legs(self, key: str, call_id: str, left: AnyEndpoint, right: AnyEndpoint, *,
                     queue: str | None, answered_by: str, caller: str = "", trunk: str = "") -> str:
        """Two legs that are no `Call` were just bridged (a callback: the customer `left`, the
        agent `right`): decide by the rules and start recording. `key` names the file (letters,
        digits, '-', '_') and ends it in `legs_ended`; `call_id` goes into the index. The
        reference for the CDR's recording_ref, "" when not recorded."""
        if key in self._calls:
            return self._calls[key].ref
        now = time.time()
        decision = self.policy.decide(key, datetime.fromtimestamp(now, UTC), queue=queue, answered_by=answered_by,
                                      caller=caller, trunk=trunk)
        log.info("call %s (%s): %s by %s (%s)", call_id, key, "recorded" if decision.record else "not recorded",
                 decision.source, decision.rule)
        if not decision.record:
            return ""
        ref = str(recording_ref(key, datetime.fromtimestamp(now, UTC)))
        try:
            recording_id = self._engine.start_recording(self.directory / ref, left, right)
        except MediaError as exc:
            log.error("call %s: cannot record to %s: %s", call_id, ref, exc)
            return ""
        self._calls[key] = _Live(recording_id, ref, call_id, KIND_CALL,
                                 self._write_started(ref, call_id, KIND_CALL, str(decision.rule), now))
        return ref

    def legs_ended(self, key: str) -> None:
        """The legs recorded under `key` are ending (before their endpoints are destroyed):
        stop; the file is closed and indexed behind."""
        live = self._calls.pop(key, None)
        if live is not None:
            self._spawn(self._stop(live), f"closing the recording {live.ref}")

    def retarget(self, call: Call) -> None:
        """A transfer put another party on one side: the same file goes on with the legs bridged
        now — a SIP endpoint, or a browser agent's leg (`Parties.party_port`). Call it after the
        new party is installed and before the old leg is destroyed."""
        live = self._calls.get(call.id)
        if live is None:
            return
        try:
            self._engine.taps.retarget_recording(live.recording_id, call.party_port("a"), call.party_port("b"))
        except MediaError as exc:
            log.error("call %s: the recording cannot follow the transfer: %s", call.id, exc)

    def ended(self, call: Call) -> None:
        """The call is ending: stop its recording; the file is closed and indexed behind."""
        self._decided.discard(call.id)
        live = self._calls.pop(call.id, None)
        if live is not None:
            self._spawn(self._stop(live), f"closing the recording of call {call.id}")

    # ------------------------------------------------------------- rooms

    def room_opened(self, number: str, room_id: int) -> str | None:
        """A room configured with `record = true` opened: record its mix; the reference."""
        if number in self._rooms:
            return self._rooms[number].ref
        now = time.time()
        session = f"{number}-{uuid.uuid4().hex}"
        day = datetime.fromtimestamp(now, UTC)
        ref = str(PurePosixPath(ROOMS_FOLDER, f"{day:%Y}", f"{day:%m}", f"{day:%d}", f"{session}.wav"))
        try:
            recording_id = self._engine.taps.start_room_recording(self.directory / ref, room_id)
        except MediaError as exc:
            log.error("conference %s: cannot record to %s: %s", number, ref, exc)
            return None
        log.info("conference %s: recording to %s", number, ref)
        self._rooms[number] = _Live(recording_id, ref, session, KIND_ROOM,
                                    self._write_started(ref, session, KIND_ROOM, "record = true", now))
        return ref

    def room_closing(self, number: str) -> None:
        """The room's last member left: stop its recording (before the room is closed)."""
        live = self._rooms.pop(number, None)
        if live is not None:
            self._spawn(self._stop(live), f"closing the recording of conference {number}")

    # ------------------------------------------------------------- shutdown

    async def drain(self) -> None:
        """Wait until every stopped recording is closed and indexed (shutdown, after the calls)."""
        for number in list(self._rooms):
            self.room_closing(number)
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # ------------------------------------------------------------- internals

    def _write_started(self, ref: str, call_id: str, kind: str, rule: str, at: float) -> asyncio.Task[None] | None:
        if self._index is None:
            return None
        return self._spawn(self._index.started(ref, call_id, kind, rule, at), f"the index row of {ref}")

    async def _stop(self, live: _Live) -> None:
        info = await self._engine.stop_recording(live.recording_id)
        if info.error:
            log.error("recording %s lost audio: %s (%d frames)", live.ref, info.error, info.dropped_frames)
        if live.started is not None and self._index is not None:
            await asyncio.gather(live.started, return_exceptions=True)
            await self._index.finished(live.ref, info, time.time())
        self._publish(RecordingReady(live.call_id, live.ref, live.kind, info.duration_s, info.size_bytes,
                                     info.sha256, info.error))

    def _spawn(self, work: Coroutine[Any, Any, None], what: str) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(_logged(work, what))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


async def _logged(work: Coroutine[Any, Any, None], what: str) -> None:
    try:
        await work
    except Exception:
        log.exception("failed: %s", what)
