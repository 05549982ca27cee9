"""Supervisors on agents' calls: listen (heard by nobody), whisper (heard by the agent only),
barge (a three-way call) and take over (抢接: the caller is the supervisor's from then on, the
agent is released as after a transfer — acd.takeover).

From a desk phone: dial `*55` (listen), `*56` (whisper), `*57` (barge) or `*58` (take over)
followed by the agent's extension. From the wallboard: the server rings the supervisor's own
phone first (acd.supervisor_dial) and does the same on the line once answered. On the call,
the keys 5, 6, 7 and 8 switch to listen, whisper, barge or take over, so a supervisor who
listened can step in without hanging up: the take-over keeps the supervisor's leg.

Only a supervisor may: a desk phone's extension must belong to a CRM user with the
supervisor's permissions (the web checks its signed-in user itself), and every action is
written to the audit log (who, which agent, which call, what). The agent's call moves from a
plain relay into an engine room (N-1 mixing) with the supervisors' routes; when a supervisor
hangs up the call stays in the room, and when the call ends the supervisors' lines end with it.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import re
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from acd.lookups import CrmLookups
from acd.supervisor_dial import NoPhone, RungLine, SupervisorDialer
from acd.takeover import take_over
from mediacore.conference import SupervisorMode
from mediacore.engine import Endpoint, MediaEngine
from mediacore.errors import MediaError
from mediacore.events import DtmfDigit, MediaEvent, RtpTimeout
from sipstack.session import Leg

if TYPE_CHECKING:
    from acd.calls import Call, CallManager

log = logging.getLogger(__name__)


class Action(enum.Enum):
    LISTEN = "listen"
    WHISPER = "whisper"
    BARGE = "barge"
    TAKEOVER = "takeover"


#: `*55`..`*58` + the agent's extension; the same digits alone as keys on the call.
FEATURE = re.compile(r"\*5([5678])([0-9]{2,10})")
CODES = {"5": Action.LISTEN, "6": Action.WHISPER, "7": Action.BARGE, "8": Action.TAKEOVER}
ROOM_MODES = {Action.LISTEN: SupervisorMode.LISTEN, Action.WHISPER: SupervisorMode.WHISPER,
              Action.BARGE: SupervisorMode.BARGE}
CHECK_TIMEOUT_S = 1.0
#: What the supervisor's phone shows when the wallboard rings it (the call is for this).
DISPLAY = {Action.LISTEN: "监听", Action.WHISPER: "密语", Action.BARGE: "强插", Action.TAKEOVER: "抢接"}


def parse_supervision(dialled: str) -> tuple[Action, str] | None:
    """(action, agent extension) for `*55EXT` .. `*58EXT`; None for anything else."""
    found = FEATURE.fullmatch(dialled)
    return (CODES[found.group(1)], found.group(2)) if found else None


class SupervisionError(Exception):
    """Why a supervisor's request cannot be carried out; `reason` is a stable code
    ("not_on_call", "no_phone", "busy", "media")."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class SeatLine(Protocol):
    """The supervisor's own line: a desk phone's supervision call, or a phone the server rang."""

    endpoint: Endpoint

    def hangup(self, reason: str) -> None: ...

    def hand_over(self) -> tuple[Leg, Endpoint, list[int] | None]: ...


class _DeskLine:
    """A supervisor's call to `*5x` + extension (acd.calls.Call) as a seat's line."""

    def __init__(self, call: Call) -> None:
        self.call = call
        self.endpoint = call.endpoint_a

    def hangup(self, reason: str) -> None:
        self.call.hangup(reason, side="system")

    def hand_over(self) -> tuple[Leg, Endpoint, list[int] | None]:
        leg, endpoint, _ = self.call.detach_party("a")
        origin = self.call.origin_of(endpoint)
        # The supervision call ends (its CDR is the supervisor's *58 call); its leg lives on.
        self.call.hangup("taken_over", side="system")
        return leg, endpoint, origin


@dataclass(eq=False)
class Seat:
    """A supervisor on (or being rung for) an agent's call."""

    id: str
    "The supervisor's own call id (desk phone) or a new id (wallboard)."
    username: str
    extension: str
    agent: str
    action: Action
    via: str
    "desk_phone or wallboard."
    target_id: str = ""
    "The agent's call."
    line: SeatLine | None = None
    "None while the supervisor's phone rings."


@dataclass
class _Watched:
    """An agent's call moved into a room, and the seats on it."""

    call_id: str
    room: int
    seats: set[str] = field(default_factory=set)


class Supervision:
    def __init__(self, engine: MediaEngine, calls: CallManager, lookups: CrmLookups | None) -> None:
        self._engine = engine
        self._calls = calls
        self._lookups = lookups
        self.dialer = SupervisorDialer(calls)
        self._watched: dict[str, _Watched] = {}         # agent call id -> its room
        self._seats: dict[str, Seat] = {}               # seat id -> seat
        self._by_endpoint: dict[int, Seat] = {}         # a seat's line endpoint -> seat

    @property
    def seats(self) -> list[Seat]:
        return list(self._seats.values())

    # ------------------------------------------------------------- desk phone

    def start(self, supervisor: Call, dialled: str) -> None:
        """An answered call that dialled a supervision code."""
        parsed = parse_supervision(dialled)
        assert parsed is not None
        task = asyncio.get_running_loop().create_task(self._start(supervisor, *parsed))
        task.add_done_callback(lambda t: t.cancelled() or t.exception() is None
                               or log.error("supervision failed", exc_info=t.exception()))

    async def _start(self, supervisor: Call, action: Action, agent: str) -> None:
        who = await self._allowed(supervisor.caller)
        if who is None:
            log.warning("security: extension %s tried to %s on %s without a supervisor's rights",
                        supervisor.caller, action.value, agent)
            supervisor.hangup("supervision_refused", side="system")
            return
        if supervisor.id not in self._calls.calls:
            return                                    # hung up while we looked
        seat = Seat(supervisor.id, who, supervisor.caller, agent, action, "desk_phone", line=_DeskLine(supervisor))
        try:
            seat.target_id = self._target(agent).id
            self._add(seat)
            self._apply(seat, action)
        except SupervisionError as exc:
            log.info("supervision by %s of %s refused: %s", supervisor.caller, agent, exc)
            self._forget(seat)
            supervisor.hangup(f"supervision_{exc.reason}", side="system")

    # ------------------------------------------------------------- the wallboard

    def request(self, username: str, extension: str, agent: str, action: Action) -> Seat:
        """The wallboard's button: `username` (a supervisor, checked by the caller) wants to
        `action` on `agent`'s call from their extension. A line of theirs already on that call
        is used at once (a take-over keeps it); else their phone is rung and the action done
        when it answers. Raises SupervisionError when there is no call or no phone."""
        target = self._target(agent)
        for seat in self._seats.values():
            if seat.target_id == target.id and seat.extension == extension:
                if seat.line is None:
                    raise SupervisionError("busy", f"the phone of {extension} is ringing for this call already")
                self._apply(seat, action, username)
                return seat
        seat = Seat(uuid.uuid4().hex, username, extension, agent, action, "wallboard", target.id)
        try:
            self.dialer.ring(seat.id, extension, f"{DISPLAY[action]} {agent}",
                             on_answer=lambda line: self._line_answered(seat, line),
                             on_end=lambda reason: self._line_failed(seat, reason))
        except NoPhone as exc:
            raise SupervisionError("no_phone", str(exc)) from None
        self._add(seat)
        log.info("supervisor %s rings %s to %s on agent %s, call %s", username, extension, action.value,
                 agent, target.id)
        return seat

    def _line_answered(self, seat: Seat, line: RungLine) -> None:
        seat.line = line
        self._by_endpoint[line.endpoint.id] = seat
        try:
            self._apply(seat, seat.action)
        except SupervisionError as exc:
            log.info("supervision by %s of %s ends: %s", seat.extension, seat.agent, exc)
            self._end_seat(seat, f"supervision_{exc.reason}")

    def _line_failed(self, seat: Seat, reason: str) -> None:
        """The rung phone did not answer, or hung up."""
        log.info("supervisor line of %s on agent %s: %s", seat.extension, seat.agent, reason)
        self._forget(seat)

    # ------------------------------------------------------------- keys on the line

    def on_media_event(self, event: MediaEvent) -> bool:
        seat = self._by_endpoint.get(getattr(event, "endpoint_id", -1))
        if seat is None:
            return False
        if isinstance(event, RtpTimeout) and seat.via == "wallboard":
            self._end_seat(seat, "rtp_timeout")     # a desk phone's call hears its own timeout
            return True
        if not isinstance(event, DtmfDigit):
            return False
        action = CODES.get(event.digit)
        if action is not None and action is not seat.action:
            try:
                self._apply(seat, action)
            except SupervisionError as exc:
                log.info("supervisor %s key %s: %s", seat.extension, event.digit, exc)
        return True

    # ------------------------------------------------------------- ending

    def ended(self, call_id: str) -> None:
        """A call ended: a supervisor's own call leaves its seat; an agent's call takes its
        seats (and the phones still ringing for it) along."""
        seat = self._seats.get(call_id)
        if seat is not None:
            self._forget(seat)
            return
        watched = self._watched.pop(call_id, None)
        for other in [s for s in self._seats.values() if s.target_id == call_id]:
            self._end_seat(other, "supervised_call_ended")
        if watched is not None:
            self._close_room(watched)

    # ------------------------------------------------------------- actions

    def _apply(self, seat: Seat, action: Action, username: str | None = None) -> None:
        target = self._calls.calls.get(seat.target_id)
        if target is None or target.ended or target.answered_at is None:
            raise SupervisionError("not_on_call", f"agent {seat.agent}'s call has ended")
        side = self._agent_side(target, seat.agent)
        if side is None:
            raise SupervisionError("not_on_call", f"agent {seat.agent} is no longer on call {target.id}")
        assert seat.line is not None
        if username is not None:
            seat.username = username
        if action is Action.TAKEOVER:
            self._take_over(seat, target, side)
        else:
            self._join(seat, target, side, action)
        seat.action = action
        log.info("supervisor %s (%s) %s on agent %s, call %s", seat.username, seat.extension, action.value,
                 seat.agent, target.id)
        if self._lookups is not None:
            self._calls.spawn(self._lookups.audit(seat.username, f"supervise_{action.value}", {
                "agent": seat.agent, "call_id": target.id, "extension": seat.extension, "mode": action.value,
                "via": seat.via}), f"the audit of {seat.username}'s {action.value}")

    def _join(self, seat: Seat, target: Call, side: str, action: Action) -> None:
        assert seat.line is not None
        # Whoever is bridged on each side: a SIP endpoint, or a browser agent's engine leg.
        agent_leg, caller_leg = target.party_port(side), target.party_port(side, other=True)
        watched = self._watched.get(target.id)
        mode = ROOM_MODES[action]
        try:
            if watched is None:
                room = self._engine.create_room()
                self._engine.disconnect(caller_leg)
                self._engine.disconnect(agent_leg)
                self._engine.join_room(room, caller_leg)
                self._engine.join_room(room, agent_leg)
                watched = self._watched[target.id] = _Watched(target.id, room)
            self._engine.join_room(watched.room, seat.line.endpoint, muted=mode is SupervisorMode.LISTEN,
                                   whisper_to=agent_leg if mode is SupervisorMode.WHISPER else None)
        except MediaError as exc:
            log.warning("supervision of %s failed: %s", seat.agent, exc)
            raise SupervisionError("media", f"the media engine refused: {exc}") from None
        watched.seats.add(seat.id)

    def _take_over(self, seat: Seat, target: Call, side: str) -> None:
        assert seat.line is not None
        watched = self._watched.pop(target.id, None)
        if watched is not None:
            # The room's job is done: the two who talk now are bridged directly, and anyone
            # else who listened leaves with the agent.
            for other_id in watched.seats - {seat.id}:
                other = self._seats.get(other_id)
                if other is not None:
                    self._end_seat(other, "supervised_call_taken_over")
            self._close_room(watched)
        self._forget(seat)
        leg, endpoint, origin = seat.line.hand_over()
        take_over(target, side, leg, endpoint, seat.extension, origin)

    # ------------------------------------------------------------- plumbing

    def _target(self, agent: str) -> Call:
        """The agent's connected call (taken from a queue, dialled to them, or made by them;
        on a desk phone or in the browser softphone)."""
        for call in self._calls.calls.values():
            if call.id in self._seats or call.ended or call.answered_at is None:
                continue
            if self._agent_side(call, agent) is not None:
                return call
        raise SupervisionError("not_on_call", f"agent {agent} is not on a call")

    @staticmethod
    def _agent_side(call: Call, agent: str) -> str | None:
        """The agent's side of a bridged call: "b" when they answered it (on a desk phone or
        in the browser), "a" when they placed it; None when they are not (or no longer, after a
        transfer) on it, or the call is answered by no person (an IVR, a queue's music)."""
        if call.answered_leg is None and call.browser_port is None:
            return None
        if call.party_number("b") == agent:
            return "b"
        if call.party_number("a") == agent:
            return "a"
        return None

    def _add(self, seat: Seat) -> None:
        self._seats[seat.id] = seat
        if seat.line is not None:
            self._by_endpoint[seat.line.endpoint.id] = seat

    def _forget(self, seat: Seat) -> None:
        self._seats.pop(seat.id, None)
        if seat.line is not None:
            self._by_endpoint.pop(seat.line.endpoint.id, None)
        watched = self._watched.get(seat.target_id)
        if watched is not None:
            watched.seats.discard(seat.id)

    def _end_seat(self, seat: Seat, reason: str) -> None:
        self._forget(seat)
        if seat.line is not None:
            seat.line.hangup(reason)
        else:
            line = self.dialer.lines.get(seat.id)
            if line is not None:
                line.hangup(reason)

    def _close_room(self, watched: _Watched) -> None:
        try:
            self._engine.close_room(watched.room)
        except MediaError:
            pass

    async def _allowed(self, extension: str) -> str | None:
        if self._lookups is None:
            return None
        try:
            return await asyncio.wait_for(self._lookups.supervisor(extension), CHECK_TIMEOUT_S)
        except Exception:
            log.exception("checking supervisor rights of %s failed", extension)
            return None
