"""IVR flows on live calls: carries out what an `IvrSession` asks (play prompts on the caller's
media endpoint, time out, look up the CRM, record a message) and feeds back what happens (keys
from RFC 4733 events, prompt ends, look-up answers).

Prompts come from the administrator's own recordings first (`<data>/sounds/<language>/...`),
then the shipped ones; a prompt missing in the caller's language falls back to the other
language rather than leaving a silent gap. A read-out concatenates its prompts into one buffer,
played as one prompt so the numbers flow without gaps between files.

The language a caller chooses (a `language` node) outlives the flow: `language_of` answers it
until the call ends, so whatever speaks to the caller next (the queue's announcements, a
mailbox, a survey flow later in the same call) goes on in it rather than in its own default.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from acd.ivr import (
    Action,
    BookCallback,
    Hangup,
    IvrSession,
    Lookup,
    Play,
    RecordMessage,
    StartTimer,
    StopPlay,
    StoreRating,
    Transfer,
)
from acd.ivr_flow import NodeType
from acd.ivr_store import FlowNotFound, FlowStore
from acd.lookups import CrmLookups
from acd.prompt_catalogue import SOUNDS, prompt_audio
from acd.say import LANGUAGES
from mediacore.engine import Endpoint, MediaEngine
from mediacore.errors import MediaError
from mediacore.events import DtmfDigit, MediaEvent, PromptDone

log = logging.getLogger(__name__)

# A caller's look-up waits at most this long for the CRM; then the flow hears "not found".
LOOKUP_TIMEOUT_S = 2.0
CALLER_LOOKUP_TIMEOUT_S = 0.3


@dataclass
class _Running:
    call_id: str
    endpoint: Endpoint
    session: IvrSession
    play_id: int | None = None
    #: The buffer the engine is reading: kept alive until its PromptDone.
    playing: np.ndarray | None = None
    timer: asyncio.TimerHandle | None = None
    tasks: set[asyncio.Task] = field(default_factory=set)
    started_at: float = field(default_factory=time.time)
    #: Set while a voice message is recorded: '#', the time limit or a hang-up ends it.
    message_done: asyncio.Event | None = None


class IvrRunner:
    """Every call currently in an IVR flow."""

    def __init__(self, engine: MediaEngine, flows: FlowStore, lookups: CrmLookups | None, *,
                 route: Callable[[str, Transfer], None], hangup: Callable[[str, str], None],
                 is_open: Callable[[str], bool] = lambda name: True,
                 book_callback: Callable[[str, str, str], None] | None = None,
                 store_rating: Callable[[str, int], None] | None = None,
                 recordings: Path | None = None,
                 sound_dirs: tuple[Path, ...] = (SOUNDS,)) -> None:
        self._engine = engine
        self._flows = flows
        self._lookups = lookups
        self._route = route
        self._hangup = hangup
        self._is_open = is_open
        self._book_callback = book_callback
        self._store_rating = store_rating
        self._recordings = recordings
        self._messages = 0
        self._sound_dirs = sound_dirs
        self._calls: dict[str, _Running] = {}
        self._by_endpoint: dict[int, _Running] = {}
        #: The language each caller chose in a flow of this call, kept until the call ends.
        self._chosen: dict[str, str] = {}

    @property
    def flows(self) -> FlowStore:
        """The flow store calls read: edits saved through it are live for the next call."""
        return self._flows

    def __contains__(self, call_id: str) -> bool:
        return call_id in self._calls

    async def start(self, call_id: str, endpoint: Endpoint, caller: str, flow_name: str, *,
                    language: str | None = None) -> None:
        """Run the live version of `flow_name` for an answered call on its caller-side endpoint,
        in `language` (the caller's, chosen earlier in the call), else the one the caller chose
        in an earlier flow of this call, else the flow's own."""
        try:
            flow = await self._flows.live(flow_name)
        except FlowNotFound as exc:
            log.error("call %s: %s", call_id, exc)
            self._hangup(call_id, "ivr_missing")
            return
        variables = await self._caller_variables(caller)
        if language in LANGUAGES:
            self._chosen[call_id] = language
        chosen = self._chosen.get(call_id)
        session = IvrSession(flow, caller=caller, variables=variables, is_open=self._is_open, language=chosen)
        run = _Running(call_id, endpoint, session)
        self._calls[call_id] = run
        self._by_endpoint[endpoint.id] = run
        log.info("call %s: IVR %s v%d", call_id, flow.name, flow.version)
        self._do(run, session.start())

    def language_of(self, call_id: str) -> str | None:
        """The language the caller chose in a flow of this call (a `language` node, or the
        language a flow was started in for them); None if they never chose."""
        run = self._calls.get(call_id)
        if run is not None:
            self._note_language(run)
        return self._chosen.get(call_id)

    def ended(self, call_id: str) -> None:
        """The call hung up: stop everything it had running and forget its language."""
        self._stop(call_id)
        self._chosen.pop(call_id, None)

    def _note_language(self, run: _Running) -> None:
        session = run.session
        flow = session.flow
        if run.call_id in self._chosen or any(flow.nodes[node].type is NodeType.LANGUAGE for node in session.path):
            self._chosen[run.call_id] = session.language

    def _stop(self, call_id: str) -> None:
        """The call left the IVR (or hung up): stop everything it had running."""
        run = self._calls.pop(call_id, None)
        if run is None:
            return
        self._by_endpoint.pop(run.endpoint.id, None)
        run.session.hung_up()
        if run.message_done is not None:
            run.message_done.set()      # what the caller said before hanging up is kept
        if run.timer is not None:
            run.timer.cancel()
        for task in run.tasks:
            task.cancel()
        log.info("call %s: left IVR %s after %s", call_id, run.session.flow.name, " > ".join(run.session.path))

    def on_media_event(self, event: MediaEvent) -> bool:
        """Feed an engine event; True if it belonged to a call in an IVR."""
        run = self._by_endpoint.get(getattr(event, "endpoint_id", -1))
        if run is None:
            return False
        if isinstance(event, DtmfDigit):
            if run.message_done is not None:
                if event.digit == "#":
                    run.message_done.set()
            else:
                self._do(run, run.session.digit(event.digit))
        elif isinstance(event, PromptDone):
            if event.play_id == run.play_id:
                run.play_id = None
                run.playing = None
                self._do(run, run.session.prompt_done())
        else:
            return False
        return True

    # -- actions -------------------------------------------------------------------------------

    def _do(self, run: _Running, actions: list[Action]) -> None:
        for action in actions:
            if run.call_id not in self._calls:
                return
            try:
                self._act(run, action)
            except MediaError as exc:           # the endpoint went away under us
                log.warning("call %s: IVR %s: %s", run.call_id, type(action).__name__, exc)
                self._finish(run, "media_error")
                return

    def _act(self, run: _Running, action: Action) -> None:
        if isinstance(action, Play):
            self._play(run, action)
        elif isinstance(action, StopPlay):
            run.play_id = None          # its PromptDone(completed=False) is not news
            self._engine.stop_playback(run.endpoint)
        elif isinstance(action, StartTimer):
            if run.timer is not None:
                run.timer.cancel()
            loop = asyncio.get_running_loop()
            run.timer = loop.call_later(action.seconds, self._timeout, run, action.token)
        elif isinstance(action, Lookup):
            self._spawn(run, self._lookup(run, action))
        elif isinstance(action, RecordMessage):
            # Not one of run.tasks: a hang-up ends the recording, it does not cancel the saving.
            asyncio.get_running_loop().create_task(self._record(run, action))
        elif isinstance(action, BookCallback):
            if self._book_callback is not None:
                self._book_callback(run.call_id, action.queue, action.number)
        elif isinstance(action, StoreRating):
            if self._store_rating is not None:
                self._store_rating(run.call_id, action.rating)
        elif isinstance(action, Transfer):
            self._note_language(run)     # before the route: the queue or mailbox asks for it
            self._leave(run)
            self._route(run.call_id, action)
        elif isinstance(action, Hangup):
            self._finish(run, "ivr_" + ("end" if action.reason == "flow ended" else "error"))

    def _play(self, run: _Running, action: Play) -> None:
        pcm = prompt_audio(self._engine.prompts, action.prompts, action.language, self._sound_dirs)
        if pcm is None:
            # Nothing to play (all missing): behave as if it had played, on the next loop turn.
            asyncio.get_running_loop().call_soon(self._prompt_finished_empty, run)
            return
        run.playing = pcm
        run.play_id = self._engine.play(run.endpoint, pcm)

    def _prompt_finished_empty(self, run: _Running) -> None:
        if run.call_id in self._calls:
            self._do(run, run.session.prompt_done())

    def _timeout(self, run: _Running, token: int) -> None:
        run.timer = None
        if run.call_id in self._calls:
            self._do(run, run.session.timeout(token))

    async def _lookup(self, run: _Running, action: Lookup) -> None:
        values = None
        if self._lookups is not None:
            try:
                values = await asyncio.wait_for(self._lookups.ivr_lookup(action.query, action.key), LOOKUP_TIMEOUT_S)
            except TimeoutError:
                log.warning("call %s: IVR look-up %s timed out", run.call_id, action.query)
            except Exception:
                log.exception("call %s: IVR look-up %s failed", run.call_id, action.query)
        if run.call_id in self._calls:
            self._do(run, run.session.lookup_result(values))

    async def _record(self, run: _Running, action: RecordMessage) -> None:
        """A beep, then the caller's voice until '#', the time limit or a hang-up; a message of
        at least a second becomes a ticket with the recording attached."""
        saved = False
        if self._recordings is None:
            log.error("call %s: no recordings directory: the voice message is not taken", run.call_id)
        else:
            saved = await self._take_message(run, action)
        if run.call_id in self._calls:
            self._do(run, run.session.message_recorded(saved))

    async def _take_message(self, run: _Running, action: RecordMessage) -> bool:
        assert self._recordings is not None
        self._messages += 1
        relative = Path(time.strftime("%Y/%m/%d")) / f"msg-{int(time.time())}-{self._messages}.wav"
        run.message_done = asyncio.Event()
        try:
            self._engine.play(run.endpoint, BEEP)
            recording = self._engine.start_recording(self._recordings / relative, run.endpoint)
        except (MediaError, OSError) as exc:
            log.error("call %s: cannot record the voice message: %s", run.call_id, exc)
            run.message_done = None
            return False
        try:
            await asyncio.wait_for(run.message_done.wait(), action.max_seconds)
        except TimeoutError:
            pass
        finally:
            run.message_done = None
            info = await self._engine.stop_recording(recording)
        if info.duration_s < 1.0 or self._lookups is None:
            return False
        try:
            ticket = await self._lookups.voice_message(caller=run.session.caller, ticket_type=action.ticket_type,
                                                       recording=str(relative), call_uuid=run.call_id)
        except Exception:
            log.exception("call %s: the voice message could not become a ticket", run.call_id)
            return False
        log.info("call %s: voice message %s (%.1f s, sha256 %s) is ticket %d", run.call_id, relative,
                 info.duration_s, info.sha256[:12], ticket)
        return True

    async def _caller_variables(self, caller: str) -> dict[str, str]:
        if self._lookups is None or not caller:
            return {}
        try:
            info = await asyncio.wait_for(self._lookups.caller(caller), CALLER_LOOKUP_TIMEOUT_S)
        except TimeoutError:
            return {}
        except Exception:
            log.exception("caller look-up for the IVR failed")
            return {}
        if info is None:
            return {}
        return {"member_id": str(info.member_id), "name": info.name, "vip_level": str(info.vip_rank),
                "blacklisted": "1" if info.blacklisted else "0", "points": str(info.points)}

    def _spawn(self, run: _Running, work) -> None:
        task = asyncio.get_running_loop().create_task(work)
        run.tasks.add(task)
        task.add_done_callback(run.tasks.discard)

    def _leave(self, run: _Running) -> None:
        if run.play_id is not None:
            run.play_id = None
            self._engine.stop_playback(run.endpoint)
        self._stop(run.call_id)

    def _finish(self, run: _Running, cause: str) -> None:
        self._leave(run)
        self._hangup(run.call_id, cause)



def _make_beep() -> np.ndarray:
    """The tone before a voice message: 1 kHz for a quarter second (read-only, shared)."""
    t = np.arange(2000) / 8000
    beep = np.round(8000 * np.sin(2 * np.pi * 1000 * t)).astype(np.int16)
    beep.flags.writeable = False
    return beep


BEEP = _make_beep()
