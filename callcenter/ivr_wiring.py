"""Wiring of the IVR into the running server: flows from the database, prompts from the data
dir then the shipped set, look-ups through the CRM bridge, messages into `<data>/recordings`,
and the calls the dialplan sends to `ivr:NAME`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite

from acd.calls import Call, CallManager
from acd.conference_rooms import ConferenceRooms, RoomConfig
from acd.demo_flows import DEMO_FLOWS
from acd.dialplan import Dialplan
from acd.events import CallEnded
from acd.ivr import Transfer
from acd.ivr_calls import IvrRunner
from acd.ivr_flow import NodeType
from acd.ivr_store import FlowStore
from acd.lookups import CrmLookups
from acd.prompt_catalogue import SOUNDS
from callcenter.bus import EventBus
from mediacore.engine import MediaEngine
from mediacore.events import MediaEvent

log = logging.getLogger(__name__)


def with_demo_numbers(configured: Dialplan) -> Dialplan:
    """The demo's numbers added to whatever the configuration has (it wins where both have
    them): 5000 the main IVR and 7000 the conference room (ARCHITECTURE.md), and the stores'
    hours as the time condition `office` that the IVR asks about."""
    demo = Dialplan.from_config(
        {"timezone": "Asia/Shanghai", "rules": [{"match": "5000", "destination": "ivr:main"},
                                                {"match": "7000", "destination": "conference:7000"}]},
        time_conditions=[{"name": "office", "hours": ["mon-sun 09:00-21:00"], "open": "5000",
                          "closed": "5000"}])
    merged = dataclasses.replace(configured, rules=list(configured.rules), conditions=dict(configured.conditions))
    for rule, number in zip(demo.rules, ("5000", "7000"), strict=True):
        if not any(r.takes(number, "") for r in merged.rules):
            merged.rules.append(rule)
    merged.conditions.setdefault("office", demo.conditions["office"])
    return merged


async def wire_ivr(*, db: aiosqlite.Connection, engine: MediaEngine, calls: CallManager, bus: EventBus,
                   lookups: CrmLookups | None, data_dir: Path, demo: bool) -> IvrRunner:
    """Create the IVR runner, seed the shipped flows on a demo, and hook it to calls and media."""
    flows = FlowStore(db)
    if demo:
        for body in DEMO_FLOWS:
            await flows.seed(body)

    def route(call_id: str, transfer: Transfer) -> None:
        call = calls.calls.get(call_id)
        if call is None:
            return
        call.language = runner.language_of(call_id) or call.language   # the queue or mailbox speaks it too
        if transfer.kind is NodeType.QUEUE:
            if calls.queues is not None:
                calls.queues.require_skills(call_id, transfer.skills)  # the queue node's skills
            call.route(f"queue:{transfer.target}")
        elif transfer.kind is NodeType.EXTENSION:
            call.route(f"extension:{transfer.target}")
        else:   # voicemail: the message is left in that mailbox (404 if there is no such one)
            call.route(f"voicemail:{transfer.target}")

    def is_open(name: str) -> bool:
        try:
            return calls.dialplan.is_open(name, datetime.now(UTC))
        except KeyError:
            log.warning("IVR asks about time condition %r, which is not configured: taken as open", name)
            return True

    def book_callback(call_id: str, queue: str, number: str) -> None:
        """The flow's callback node: the caller is called back from `queue` when an agent is free."""
        if calls.queues is None or not calls.queues.book_callback(queue, number, time.time()):
            log.warning("call %s: IVR callback to %r from queue %r not booked", call_id, number, queue)

    runner = IvrRunner(engine, flows, lookups, route=route, hangup=_hangup_in(calls), is_open=is_open,
                       book_callback=book_callback,
                       recordings=data_dir / "recordings", sound_dirs=(data_dir / "sounds", SOUNDS))

    def start(call: Call, flow: str) -> None:
        task = asyncio.get_running_loop().create_task(runner.start(call.id, call.endpoint_a, call.caller, flow,
                                                                       language=call.language or None))
        task.add_done_callback(_log_failure)

    calls.ivr = start
    bus.subscribe(CallEnded, lambda event: runner.ended(event.call_id))
    return runner


def wire_conferences(*, engine: MediaEngine, calls: CallManager, bus: EventBus, rooms: list[RoomConfig],
                     data_dir: Path) -> ConferenceRooms:
    """Conference rooms reachable through `conference:NUMBER` destinations."""
    conferences = ConferenceRooms(engine, rooms, hangup=_hangup_in(calls), sound_dirs=(data_dir / "sounds", SOUNDS))
    calls.conference = lambda call, number: conferences.start(call.id, call.endpoint_a, call.caller, number)
    bus.subscribe(CallEnded, lambda event: conferences.ended(event.call_id))
    return conferences


def media_dispatcher(*consumers: Callable[[MediaEvent], bool | None]) -> Callable[[MediaEvent], None]:
    """One engine event handler: each consumer in turn until one says the event was its own."""
    def on_media_event(event: MediaEvent) -> None:
        for consumer in consumers:
            if consumer(event):
                return

    return on_media_event


def _hangup_in(calls: CallManager) -> Callable[[str, str], None]:
    """End a call by id from inside (an IVR or a room decided so), if it is still up."""
    def hangup(call_id: str, cause: str) -> None:
        call = calls.calls.get(call_id)
        if call is not None:
            call.hangup(cause, side="system")

    return hangup


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("starting an IVR failed", exc_info=task.exception())


#: The demo's conference room: PIN 1234, moderator PIN 4321.
DEMO_ROOMS = [RoomConfig("7000", "会议室 / meeting room", pin="1234", moderator_pin="4321")]
