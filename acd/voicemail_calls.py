"""Voicemail on live calls: a caller leaving a message (`voicemail:MAILBOX`, an extension's
fallback, a queue's overflow, the IVR's voicemail node) and an extension listening to its
mailbox (*97, *98; `acd.voicemail_menu` decides, this carries it out on the engine).

Leaving a message: the mailbox's own greeting (`<data>/voicemail/<mailbox>/greeting.wav`) or
the catalogue's `vm/leave-message`, a beep, then the caller's audio is recorded until `#`, the
time limit or the hang-up. `#` during the greeting skips to the beep. A recording under a
second is discarded (a hang-up at the beep); otherwise the file is indexed with the engine's
size and SHA-256, and a caller still on the line hears that it was saved before the hang-up.

Prompts are in the caller's language when they chose one (in an IVR: acd.calls.Call.language),
else in the site's `[voicemail] language`.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import soundfile

from acd.ivr_calls import BEEP
from acd.prompt_catalogue import SOUNDS, prompt_audio
from acd.say import LANGUAGES
from acd.voicemail import VoicemailError, VoicemailStore, check_mailbox, keep_message
from acd.voicemail_menu import (
    Action,
    DeleteMessage,
    Hangup,
    LoadMessages,
    MailboxMenu,
    MarkHeard,
    PlayMessage,
    Say,
    StartTimer,
)
from mediacore.engine import Endpoint, MediaEngine
from mediacore.errors import MediaError
from mediacore.events import DtmfDigit, MediaEvent, PromptDone
from mediacore.prompts import BUS_RATE, resample

if TYPE_CHECKING:
    from acd.calls import Call
    from acd.directory import ExtensionDirectory

log = logging.getLogger(__name__)


class Stage(enum.Enum):
    GREETING = "greeting"
    RECORDING = "recording"
    SAVING = "saving"
    CLOSING = "closing"     # "saved, goodbye" plays; then hang up


@dataclass
class _Leaving:
    call: Call
    endpoint: Endpoint
    mailbox: str
    stage: Stage = Stage.GREETING
    play_id: int | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    hung_up: bool = False


@dataclass
class _Listening:
    call: Call
    endpoint: Endpoint
    menu: MailboxMenu
    play_id: int | None = None
    #: The buffer the engine reads: kept alive until its PromptDone.
    playing: np.ndarray | None = None
    timer: asyncio.TimerHandle | None = None
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    #: Counts what was asked to play: a message still loading is dropped if a key moved on.
    generation: int = 0


class VoicemailCalls:
    """Every call leaving a message or listening to a mailbox."""

    def __init__(self, engine: MediaEngine, store: VoicemailStore, directory: ExtensionDirectory, *,
                 sound_dirs: tuple[Path, ...] = (SOUNDS,)) -> None:
        self._engine = engine
        self.store = store
        self._directory = directory
        self._sound_dirs = sound_dirs
        self._leaving: dict[str, _Leaving] = {}
        self._listening: dict[str, _Listening] = {}
        self._by_endpoint: dict[int, _Leaving | _Listening] = {}
        self._saves: set[asyncio.Task[Any]] = set()

    @property
    def language(self) -> str:
        return self.store.config.language

    def language_for(self, call: Call) -> str:
        """What `call` hears: the language its caller chose, else the site's."""
        chosen = getattr(call, "language", "")   # a stand-in call (tests, tools) may have none
        return chosen if chosen in LANGUAGES else self.language

    def has_mailbox(self, mailbox: str) -> bool:
        """Every enabled extension has a mailbox of its number."""
        extension = self._directory.get(mailbox)
        return extension is not None and extension.enabled

    def has_fallback(self, extension: str) -> bool:
        """Does a call `extension` does not take go to its mailbox?"""
        return self.has_mailbox(extension) and self.store.fallback(extension)

    # ------------------------------------------------------------- leaving a message

    def leave(self, call: Call, mailbox: str) -> None:
        """An answered call leaves a message in `mailbox` (checked with `has_mailbox`)."""
        run = _Leaving(call, call.endpoint_a, check_mailbox(mailbox))
        self._leaving[call.id] = run
        self._by_endpoint[run.endpoint.id] = run
        log.info("call %s: %s leaves a message for mailbox %s", call.id, call.caller, mailbox)
        greeting = self.store.greeting(mailbox)
        try:
            if greeting is not None:
                run.play_id = self._engine.play_file(run.endpoint, greeting)
                return
        except MediaError as exc:
            log.warning("mailbox %s: greeting %s cannot be played (%s): the standard one instead",
                        mailbox, greeting, exc)
        pcm = prompt_audio(self._engine.prompts, ["vm/leave-message"], self.language_for(call), self._sound_dirs)
        if pcm is None:
            self._record(run)
            return
        try:
            run.play_id = self._engine.play(run.endpoint, pcm)
        except MediaError as exc:
            log.warning("call %s: no greeting: %s", call.id, exc)
            self._record(run)

    def _record(self, run: _Leaving) -> None:
        run.stage = Stage.RECORDING
        run.play_id = None
        task = asyncio.get_running_loop().create_task(self._take_message(run))
        # Not cancelled by a hang-up: the hang-up ends the recording, the message is still saved.
        self._saves.add(task)
        task.add_done_callback(self._saves.discard)

    async def _take_message(self, run: _Leaving) -> None:
        call = run.call
        received_at = time.time()
        path = self.store.new_message_path(run.mailbox, call.id, received_at)
        try:
            self._engine.play(run.endpoint, BEEP)
            recording = self._engine.start_recording(path, run.endpoint)
        except (MediaError, OSError) as exc:
            log.error("call %s: cannot record a message for %s: %s", call.id, run.mailbox, exc)
            self._close(run, saved=False)
            return
        try:
            await asyncio.wait_for(run.done.wait(), self.store.config.max_seconds)
        except TimeoutError:
            log.info("call %s: message for %s reached %.0f s", call.id, run.mailbox, self.store.config.max_seconds)
        run.stage = Stage.SAVING
        info = await self._engine.stop_recording(recording)
        saved = False
        if not keep_message(info.duration_s):
            log.info("call %s: %.1f s is no message for %s: discarded", call.id, info.duration_s, run.mailbox)
            await asyncio.to_thread(path.unlink, True)
        else:
            try:
                message = await self.store.add(run.mailbox, caller=call.caller, caller_name=self._caller_name(call),
                                               call_id=call.id, received_at=received_at, recording=info)
                saved = True
                log.info("call %s: voicemail %d for %s from %s (%.1f s, sha256 %s)", call.id, message.id,
                         run.mailbox, call.caller, info.duration_s, info.sha256[:12])
            except Exception:
                log.exception("call %s: the message for %s could not be stored", call.id, run.mailbox)
        self._close(run, saved=saved)

    def _close(self, run: _Leaving, *, saved: bool) -> None:
        """After the message: "saved, goodbye" to a caller still on the line, then hang up."""
        if run.hung_up:
            self._forget(run.call.id)
            return
        run.stage = Stage.CLOSING
        names = ["vm/saved", "vm/goodbye"] if saved else ["vm/goodbye"]
        pcm = prompt_audio(self._engine.prompts, names, self.language_for(run.call), self._sound_dirs)
        try:
            if pcm is not None:
                run.play_id = self._engine.play(run.endpoint, pcm)
                return
        except MediaError:
            pass
        self._hang_up(run.call, "voicemail_saved" if saved else "voicemail_failed")

    def _caller_name(self, call: Call) -> str:
        if call.from_trunk is None:
            extension = self._directory.get(call.caller)
            if extension is not None:
                return extension.display_name
        return call.caller_name

    # ------------------------------------------------------------- listening

    def listen(self, call: Call, mailbox: str) -> None:
        """An answered call listens to `mailbox` ("" asks for the number). Only the mailbox's
        own extension gets in without the PIN."""
        trusted = call.from_trunk is None and bool(mailbox) and call.caller == mailbox
        menu = MailboxMenu(mailbox, trusted=trusted, language=self.language_for(call), opens=self._opens)
        run = _Listening(call, call.endpoint_a, menu)
        self._listening[call.id] = run
        self._by_endpoint[run.endpoint.id] = run
        log.info("call %s: %s opens voicemail %s", call.id, call.caller, mailbox or "(asks which)")
        self._do(run, menu.start())

    def _opens(self, mailbox: str, pin: str) -> bool:
        return self.has_mailbox(mailbox) and self.store.pin_matches(mailbox, pin)

    def _do(self, run: _Listening, actions: list[Action]) -> None:
        for action in actions:
            if self._listening.get(run.call.id) is not run:
                return
            try:
                self._act(run, action)
            except MediaError as exc:       # the endpoint went away under us
                log.warning("call %s: voicemail menu %s: %s", run.call.id, type(action).__name__, exc)
                self._hang_up(run.call, "media_error")
                return

    def _act(self, run: _Listening, action: Action) -> None:
        if isinstance(action, Say):
            run.generation += 1
            self._play(run, prompt_audio(self._engine.prompts, action.prompts, self.language_for(run.call),
                                           self._sound_dirs))
        elif isinstance(action, PlayMessage):
            run.generation += 1
            self._spawn(run, self._play_message(run, action, run.generation))
        elif isinstance(action, LoadMessages):
            self._spawn(run, self._load(run, action.mailbox))
        elif isinstance(action, MarkHeard):
            self._spawn(run, self._write(self.store.mark_heard(action.message_id)))
        elif isinstance(action, DeleteMessage):
            log.info("call %s: %s deletes voicemail %d", run.call.id, run.call.caller, action.message_id)
            self._spawn(run, self._write(self.store.delete(action.message_id, by=f"phone:{run.call.caller}")))
        elif isinstance(action, StartTimer):
            if run.timer is not None:
                run.timer.cancel()
            run.timer = asyncio.get_running_loop().call_later(action.seconds, self._timeout, run, action.token)
        elif isinstance(action, Hangup):
            self._hang_up(run.call, action.reason)

    def _play(self, run: _Listening, pcm: np.ndarray | None) -> None:
        if pcm is None:
            # Nothing to play: carry on as if it had played, on the next loop turn.
            asyncio.get_running_loop().call_soon(self._played_nothing, run)
            return
        run.playing = pcm
        run.play_id = self._engine.play(run.endpoint, pcm)

    def _played_nothing(self, run: _Listening) -> None:
        if self._listening.get(run.call.id) is run:
            self._do(run, run.menu.prompt_done())

    async def _load(self, run: _Listening, mailbox: str) -> None:
        messages = await self.store.messages(mailbox)
        new = sum(1 for m in messages if not m.heard)
        log.info("call %s: mailbox %s has %d new and %d old messages", run.call.id, mailbox, new, len(messages) - new)
        if self._listening.get(run.call.id) is run:
            self._do(run, run.menu.messages_loaded(messages))

    async def _play_message(self, run: _Listening, action: PlayMessage, generation: int) -> None:
        intro = prompt_audio(self._engine.prompts, action.intro, self.language_for(run.call), self._sound_dirs) \
            if action.intro else None
        try:
            audio = await asyncio.to_thread(load_message, self.store.audio_path(action.message))
        except (VoicemailError, MediaError) as exc:
            log.error("voicemail %d cannot be played: %s", action.message.id, exc)
            audio = None
        if self._listening.get(run.call.id) is not run or run.generation != generation:
            return
        pieces = [p for p in (intro, audio) if p is not None]
        try:
            self._play(run, np.concatenate(pieces) if pieces else None)
        except MediaError as exc:
            log.warning("call %s: %s", run.call.id, exc)
            self._hang_up(run.call, "media_error")

    @staticmethod
    async def _write(change: Coroutine[Any, Any, bool]) -> None:
        await change

    def _timeout(self, run: _Listening, token: int) -> None:
        run.timer = None
        if self._listening.get(run.call.id) is run:
            self._do(run, run.menu.timeout(token))

    def _spawn(self, run: _Listening, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        run.tasks.add(task)
        task.add_done_callback(_finished)
        task.add_done_callback(run.tasks.discard)

    # ------------------------------------------------------------- engine and call events

    def on_media_event(self, event: MediaEvent) -> bool:
        """Feed an engine event; True if it belonged to a call in voicemail."""
        run = self._by_endpoint.get(getattr(event, "endpoint_id", -1))
        if run is None:
            return False
        if isinstance(run, _Leaving):
            self._leaving_event(run, event)
        elif isinstance(event, DtmfDigit):
            self._do(run, run.menu.digit(event.digit))
        elif isinstance(event, PromptDone) and event.play_id == run.play_id:
            run.play_id = None
            run.playing = None
            if event.completed:
                self._do(run, run.menu.prompt_done())
        return isinstance(event, (DtmfDigit, PromptDone))

    def _leaving_event(self, run: _Leaving, event: MediaEvent) -> None:
        if isinstance(event, DtmfDigit):
            if run.stage is Stage.GREETING and event.digit == "#":
                self._engine.stop_playback(run.endpoint)     # its PromptDone is no news now
                self._record(run)
            elif run.stage is Stage.RECORDING and event.digit == "#":
                run.done.set()
        elif isinstance(event, PromptDone) and event.play_id == run.play_id:
            run.play_id = None
            if run.stage is Stage.GREETING:
                self._record(run)
            elif run.stage is Stage.CLOSING:
                self._hang_up(run.call, "voicemail_saved")

    def ended(self, call_id: str) -> None:
        """The call is over: a message being recorded ends (and is kept); a menu stops."""
        leaving = self._leaving.get(call_id)
        if leaving is not None:
            leaving.hung_up = True
            leaving.done.set()
            if leaving.stage in (Stage.GREETING, Stage.CLOSING):
                self._forget(call_id)
        listening = self._listening.pop(call_id, None)
        if listening is not None:
            self._by_endpoint.pop(listening.endpoint.id, None)
            if listening.timer is not None:
                listening.timer.cancel()
            for task in listening.tasks:
                task.cancel()

    def _forget(self, call_id: str) -> None:
        run = self._leaving.pop(call_id, None)
        if run is not None:
            self._by_endpoint.pop(run.endpoint.id, None)

    def _hang_up(self, call: Call, reason: str) -> None:
        self._forget(call.id)
        call.hangup(reason, side="system")

    async def drain(self) -> None:
        """Wait for messages still being saved (shutdown)."""
        if self._saves:
            await asyncio.gather(*self._saves, return_exceptions=True)


def load_message(path: Path) -> np.ndarray:
    """A message's audio as the engine plays it: the caller's channel (left) at the bus rate.
    Blocking: run it in a thread."""
    try:
        data, rate = soundfile.read(str(path), dtype="int16", always_2d=True)
    except (OSError, RuntimeError, soundfile.LibsndfileError) as exc:
        raise MediaError(f"cannot read {path.name}: {exc}") from None
    if data.shape[0] == 0:
        raise MediaError(f"{path.name} holds no audio")
    left = np.ascontiguousarray(data[:, 0])
    pcm = left if int(rate) == BUS_RATE else resample(left, int(rate), BUS_RATE)
    pcm.flags.writeable = False
    return pcm


def _finished(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("voicemail task failed", exc_info=task.exception())
