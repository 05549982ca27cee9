"""What an answered caller hears while waiting in a queue: music on hold, interrupted now and
then by announcements (their place and the estimated wait, the queue's periodic prompt, the
key that books a callback); the music starts again after each. All of it plays in the media
engine (`play`, `PromptDone`): Python acts once per announcement, never per packet.

Asterisk's habits: the position is announced on joining and every `announce_frequency`
seconds, never to the caller at the head of the line (nobody is ahead); the estimate is left
out while it is unknown (acd.wait_estimate); the periodic announcement has its own clock.

Everything is said in the caller's language when they chose one (in an IVR before the queue:
acd.calls.Call.language), else in the queue's `language`.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from acd.distributor import Acd
from acd.prompt_catalogue import SOUNDS, prompt_audio
from acd.queues import QueueConfig, dialable
from acd.say import LANGUAGES, SayError, say_digits, say_number
from mediacore.engine import Endpoint, MediaEngine
from mediacore.errors import MediaError
from mediacore.events import DtmfDigit, MediaEvent, PromptDone

log = logging.getLogger(__name__)

HOLD_MUSIC = SOUNDS / "moh" / "default.wav"

#: The shortest gap between two announcements of one kind: a `announce_frequency` of 1 s
#: would leave no music at all (Asterisk's minimum announce-frequency is also in seconds; the
#: prompts themselves take 3-5 s).
MIN_FREQUENCY = 15.0


@dataclass
class _Listener:
    call_id: str
    endpoint: Endpoint
    queue: QueueConfig
    #: What the caller hears everything in: their own choice, else the queue's language.
    language: str
    #: The engine's play id of what is playing now (music or an announcement), and its buffer.
    play_id: int | None = None
    playing: np.ndarray | None = None
    music: bool = False
    #: Announcements still to play, each a list of prompt names played as one.
    pending: list[list[str]] = field(default_factory=list)
    next_position: float | None = None
    next_periodic: float | None = None
    timer: asyncio.TimerHandle | None = None
    #: Set for a caller hearing a last prompt before the system hangs up (a booked callback).
    then: Callable[[], None] | None = None


class QueueTreatment:
    """Every answered caller waiting in a queue, by call id."""

    def __init__(self, engine: MediaEngine, acd: Acd, *, on_callback_key: Callable[[str], None],
                 sound_dirs: tuple[Path, ...] = (SOUNDS,), min_frequency: float = MIN_FREQUENCY) -> None:
        self._engine = engine
        self._acd = acd
        self._on_callback_key = on_callback_key
        self._sound_dirs = sound_dirs
        self._listeners: dict[str, _Listener] = {}
        self._by_endpoint: dict[int, _Listener] = {}
        self._min_frequency = min_frequency

    def __contains__(self, call_id: str) -> bool:
        return call_id in self._listeners

    # ------------------------------------------------------------- callers

    def start(self, call_id: str, endpoint: Endpoint, queue: QueueConfig, *, language: str = "") -> None:
        """The answered caller joined `queue`: the first announcements, then music; in
        `language` (the caller's own, "zh-CN" or "en"), else in the queue's."""
        self.stop(call_id)
        listener = _Listener(call_id, endpoint, queue, _language(language, queue.treatment.language))
        self._listeners[call_id] = listener
        self._by_endpoint[endpoint.id] = listener
        now = asyncio.get_running_loop().time()
        t = queue.treatment
        if t.announce_position:
            listener.pending.append(self._position_prompts(listener))
            if t.announce_frequency:
                listener.next_position = now + max(self._min_frequency, t.announce_frequency)
        if t.periodic_announce:
            listener.next_periodic = now + max(self._min_frequency, t.periodic_announce_frequency)
        entry = self._acd.waiting.get(call_id)
        if t.callback_key and entry is not None and dialable(entry.caller):   # someone to call back
            listener.pending.append(self._callback_offer(listener))
        listener.pending = [p for p in listener.pending if p]
        self._next(listener)
        self._arm(listener)

    def say_then(self, call_id: str, endpoint: Endpoint, prompts: list[str], language: str,
                 then: Callable[[], None]) -> None:
        """Play `prompts` once (no music) in `language` and call `then` when they end or
        cannot play: the confirmation before a caller who booked a callback is hung up."""
        self.stop(call_id)
        listener = _Listener(call_id, endpoint, QueueConfig(call_id, ""), _language(language, "zh-CN"), then=then)
        self._listeners[call_id] = listener
        self._by_endpoint[endpoint.id] = listener
        if not self._play(listener, prompts):
            self._finish(listener)

    def stop(self, call_id: str) -> None:
        """The caller left the queue (an agent answered, hung up, overflowed): forget them.
        Nothing is stopped in the engine: whoever takes the call next replaces the audio."""
        listener = self._listeners.pop(call_id, None)
        if listener is None:
            return
        self._by_endpoint.pop(listener.endpoint.id, None)
        if listener.timer is not None:
            listener.timer.cancel()

    def on_media_event(self, event: MediaEvent) -> bool:
        """Feed an engine event; True if it belonged to a waiting caller."""
        listener = self._by_endpoint.get(getattr(event, "endpoint_id", -1))
        if listener is None:
            return False
        if isinstance(event, DtmfDigit):
            key = listener.queue.treatment.callback_key
            if listener.then is None and key and event.digit == key:
                log.info("call %s: key %s in queue %s: callback", listener.call_id, key, listener.queue.id)
                self._on_callback_key(listener.call_id)
            return True
        if isinstance(event, PromptDone):
            if event.play_id == listener.play_id:
                listener.play_id = None
                listener.playing = None
                if listener.then is not None:
                    self._finish(listener)
                elif event.completed and not listener.music:
                    self._next(listener)
            return True
        return False

    # ------------------------------------------------------------- announcements

    def _position_prompts(self, listener: _Listener) -> list[str]:
        """"Callers ahead of you: N. Estimated wait: M minutes." — nothing at the head of the
        line; the wait left out while it is unknown."""
        if listener.call_id not in self._acd.waiting:
            return []
        language = listener.language
        ahead = self._acd.position(listener.call_id) - 1
        if ahead < 1:
            return []
        prompts = ["queue/position", *say_number(ahead, language), "queue/callers"]
        wait = self._acd.estimated_wait(listener.call_id)
        if wait is not None:
            minutes = max(1, math.ceil(wait / 60))
            prompts += ["queue/wait", *say_number(minutes, language), "queue/minutes"]
        return prompts

    def _callback_offer(self, listener: _Listener) -> list[str]:
        key = listener.queue.treatment.callback_key
        if key == "1":
            return ["queue/press-callback"]
        try:
            return ["queue/callback-press", *say_digits(key, listener.language)]
        except SayError:
            return ["queue/callback-press"]

    def _due(self, listener: _Listener) -> None:
        """The announcement clock: queue what is due, play it if the music is on."""
        listener.timer = None
        if listener.call_id not in self._listeners:
            return
        now = asyncio.get_running_loop().time()
        t = listener.queue.treatment
        if listener.next_position is not None and listener.next_position <= now:
            listener.next_position = now + max(self._min_frequency, t.announce_frequency)
            listener.pending.append(self._position_prompts(listener))
        if listener.next_periodic is not None and listener.next_periodic <= now:
            listener.next_periodic = now + max(self._min_frequency, t.periodic_announce_frequency)
            listener.pending.append([t.periodic_announce])
            entry = self._acd.waiting.get(listener.call_id)
            if t.callback_key and entry is not None and dialable(entry.caller):
                listener.pending.append(self._callback_offer(listener))
        listener.pending = [p for p in listener.pending if p]
        if listener.music or listener.play_id is None:
            self._next(listener)   # an announcement already playing takes these after it
        self._arm(listener)

    def _arm(self, listener: _Listener) -> None:
        due = [t for t in (listener.next_position, listener.next_periodic) if t is not None]
        if not due:
            return
        delay = max(0.0, min(due) - asyncio.get_running_loop().time())
        listener.timer = asyncio.get_running_loop().call_later(delay, self._due, listener)

    def _next(self, listener: _Listener) -> None:
        """The next pending announcement (it interrupts the music), else the music again."""
        while listener.pending:
            if self._play(listener, listener.pending.pop(0)):
                return
        self._music(listener)

    def _play(self, listener: _Listener, prompts: list[str]) -> bool:
        pcm = prompt_audio(self._engine.prompts, prompts, listener.language, self._sound_dirs)
        if pcm is None:
            return False
        try:
            play_id = self._engine.play(listener.endpoint, pcm)
        except MediaError as exc:
            log.warning("call %s: announcement not played: %s", listener.call_id, exc)
            return False
        listener.play_id, listener.playing, listener.music = play_id, pcm, False
        return True

    def _music(self, listener: _Listener) -> None:
        path = Path(listener.queue.treatment.moh) if listener.queue.treatment.moh else HOLD_MUSIC
        try:
            pcm = self._engine.prompts.load(path)
            listener.play_id = self._engine.play(listener.endpoint, pcm, loop=True)
        except MediaError as exc:
            log.warning("call %s: no music on hold from %s: %s", listener.call_id, path, exc)
            listener.play_id = None
            return
        listener.playing, listener.music = pcm, True

    def _finish(self, listener: _Listener) -> None:
        then = listener.then
        self.stop(listener.call_id)
        if then is not None:
            then()


def _language(chosen: str, default: str) -> str:
    """The caller's own language if it is one we speak, else `default`."""
    return chosen if chosen in LANGUAGES else default
