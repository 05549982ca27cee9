"""Supervisors on agents' calls from a desk phone: listen (heard by nobody), whisper (heard by the
agent only), barge (a three-way call).

Dial `*55` (listen), `*56` (whisper) or `*57` (barge) followed by the agent's extension. Only a
supervisor may: the extension must belong to a CRM user with the supervisor's permissions, and
every use is written to the audit log. The agent's call moves from a plain relay into an engine
room (N-1 mixing) with the supervisor's routes; when the supervisor hangs up the call stays in
the room, and when the call ends the supervisor's call ends with it.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from acd.lookups import CrmLookups
from mediacore.conference import SupervisorMode
from mediacore.engine import Endpoint, MediaEngine
from mediacore.errors import MediaError

if TYPE_CHECKING:
    from acd.calls import Call, CallManager

log = logging.getLogger(__name__)

FEATURE = re.compile(r"\*5([567])([0-9]{2,10})")
MODES = {"5": SupervisorMode.LISTEN, "6": SupervisorMode.WHISPER, "7": SupervisorMode.BARGE}
CHECK_TIMEOUT_S = 1.0


def parse_supervision(dialled: str) -> tuple[SupervisorMode, str] | None:
    """(mode, agent extension) for `*55EXT`, `*56EXT`, `*57EXT`; None for anything else."""
    found = FEATURE.fullmatch(dialled)
    return (MODES[found.group(1)], found.group(2)) if found else None


@dataclass
class _Watched:
    """An agent's call moved into a room, and the supervisors on it."""

    call_id: str
    room: int
    supervisors: set[str] = field(default_factory=set)


class Supervision:
    def __init__(self, engine: MediaEngine, calls: CallManager, lookups: CrmLookups | None) -> None:
        self._engine = engine
        self._calls = calls
        self._lookups = lookups
        self._watched: dict[str, _Watched] = {}         # agent call id -> its room
        self._supervising: dict[str, str] = {}          # supervisor call id -> agent call id

    def start(self, supervisor: Call, dialled: str) -> None:
        """An answered call that dialled a supervision code."""
        parsed = parse_supervision(dialled)
        assert parsed is not None
        task = asyncio.get_running_loop().create_task(self._start(supervisor, *parsed))
        task.add_done_callback(lambda t: t.cancelled() or t.exception() is None
                               or log.error("supervision failed", exc_info=t.exception()))

    async def _start(self, supervisor: Call, mode: SupervisorMode, agent: str) -> None:
        who = await self._allowed(supervisor.caller)
        if who is None:
            log.warning("security: extension %s tried to %s on %s without a supervisor's rights",
                        supervisor.caller, mode.value, agent)
            supervisor.hangup("supervision_refused", side="system")
            return
        target = self._call_of(agent)
        if target is None or supervisor.id not in self._calls.calls:
            supervisor.hangup("supervision_no_call", side="system")
            return
        agent_leg, caller_leg = self._legs(target, agent)
        watched = self._watched.get(target.id)
        try:
            if watched is None:
                room = self._engine.create_room()
                self._engine.disconnect(caller_leg)
                self._engine.disconnect(agent_leg)
                self._engine.join_room(room, caller_leg)
                self._engine.join_room(room, agent_leg)
                watched = self._watched[target.id] = _Watched(target.id, room)
            own = supervisor.endpoint_a
            self._engine.join_room(watched.room, own, muted=mode is SupervisorMode.LISTEN,
                                   whisper_to=agent_leg if mode is SupervisorMode.WHISPER else None)
        except MediaError as exc:
            log.warning("supervision of %s failed: %s", agent, exc)
            supervisor.hangup("supervision_failed", side="system")
            return
        watched.supervisors.add(supervisor.id)
        self._supervising[supervisor.id] = target.id
        log.info("supervisor %s (%s) %s on agent %s, call %s", who, supervisor.caller, mode.value, agent, target.id)
        if self._lookups is not None:
            await self._lookups.audit(who, f"supervise_{mode.value}", {"agent": agent, "call_id": target.id,
                                                                       "extension": supervisor.caller})

    def ended(self, call_id: str) -> None:
        """A call ended: a supervisor leaves the room; an agent's call takes its supervisors along."""
        target_id = self._supervising.pop(call_id, None)
        if target_id is not None:
            watched = self._watched.get(target_id)
            if watched is not None:
                watched.supervisors.discard(call_id)
            return
        watched = self._watched.pop(call_id, None)
        if watched is None:
            return
        for supervisor_id in watched.supervisors:
            self._supervising.pop(supervisor_id, None)
            call = self._calls.calls.get(supervisor_id)
            if call is not None:
                call.hangup("supervised_call_ended", side="system")
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

    def _call_of(self, agent: str) -> Call | None:
        """The agent's connected call (taken from a queue, dialled to them, or made by them)."""
        for call in self._calls.calls.values():
            if call.answered_leg is None or call.id in self._supervising:
                continue
            if agent in (call.answered_by, call.caller):
                return call
        return None

    @staticmethod
    def _legs(call: Call, agent: str) -> tuple[Endpoint, Endpoint]:
        """(the agent's leg, the other party's leg): the agent is the callee unless they called."""
        if call.caller == agent and call.answered_by != agent:
            return call.endpoint_a, call.endpoint_b
        return call.endpoint_b, call.endpoint_a
