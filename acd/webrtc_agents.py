"""Browser agents: extensions whose phone is a web page (the softphone) instead of a SIP phone.

An agent's browser registers over the agent WebSocket (`webui.softphone`) under its extension,
e.g. agent1 at 2001. From then on it can place calls (`dial`) and be rung (`ring`), and each of
its calls has an engine leg (`BrowserCall.port`) bridged to the browser. With a worker pool
(`[webrtc] workers`, the default) the leg is an RTP endpoint of the engine talking L16 with a
`RemoteBridge` in a worker process, so aiortc's per-packet Python never runs on this loop;
without one it is a PCM port bridged by a `WebRtcBridge` in this process. What the leg is
connected to is the call's far side:

- the echo test (the dialplan's echo number, 9196 in the demo): the engine echoes the port;
- another browser agent: the two ports are connected in the engine;
- a SIP call (a desk phone, a trunk, a queue): the B2BUA (`acd.calls.Call`) rings the agent
  through `ring` and connects its SIP leg's endpoint to the port when the agent answers.

Transfers and three-way calls (acd.browser_transfer) hand an answered call's far party on: to a
number (blind), to the far party of the agent's other call (attended), or into an ad-hoc room.

Calls outlive a dropped WebSocket for `RECONNECT_GRACE` seconds: the browser that registers
again under the same extension gets its calls back and offers new media for them (an ICE restart,
so a Wi-Fi change does not drop the call).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np

from acd.browser_transfer import AdHocRoom, AgentCallError, BrowserTransfers
from acd.dialplan import Destination, Dialplan, Kind
from mediacore.engine import AnyEndpoint, MediaEngine
from mediacore.errors import MediaError
from mediacore.prompts import BUS_RATE
from mediacore.webrtc import EnginePortLink, WebRtcBridge, WebRtcSettings
from mediacore.webrtc_workers import RemoteBridge, WebRtcWorkerPool

log = logging.getLogger(__name__)

#: Seconds a call waits for its agent's browser to come back after the WebSocket dropped
#: (a page reload, a network blip) before it is hung up.
RECONNECT_GRACE = 20.0
#: Seconds a browser agent may ring before the caller gets "no answer" (Asterisk's Dial timeout
#: default for queue members is shorter; the B2BUA's own ring timer applies on SIP calls).
RING_TIMEOUT = 60.0
#: Calls one browser may hold at once: one talking, one on hold, one ringing in.
MAX_CALLS_PER_AGENT = 3
#: ITU-T Q.23 keypad frequencies (Hz): row tone, column tone.
_DTMF_FREQUENCIES = {
    "1": (697, 1209), "2": (697, 1336), "3": (697, 1477), "A": (697, 1633),
    "4": (770, 1209), "5": (770, 1336), "6": (770, 1477), "B": (770, 1633),
    "7": (852, 1209), "8": (852, 1336), "9": (852, 1477), "C": (852, 1633),
    "*": (941, 1209), "0": (941, 1336), "#": (941, 1477), "D": (941, 1633),
}  # fmt: skip
MAX_DTMF_DIGITS = 32
#: The RTP between a worker and the engine: (codec, payload type, clock rate). L16 rather than
#: the callers' G.711: the engine then decodes the worker's packets through its jitter buffer
#: and sends the far end its own, natively clocked stream, so a worker's scheduling hiccups
#: never reach a caller as jitter (measured with bench webrtc, 10 agents on a loaded machine:
#: jitter p99 0.1 ms, against 23 ms and more when the engine relayed PCMU as it came). The
#: transcoding is native; the audio is quantised to µ-law once, toward the caller, not twice.
#: 96: any dynamic payload type (RFC 3551 §3); this link has no SDP.
WORKER_LINK_CODEC = ("L16", 96, 8000)


__all__ = ["AgentCallError", "BrowserCall", "CallState", "SipSide", "WebRtcAgents", "dtmf_tones"]


class AgentClient(Protocol):
    """The browser's end of the signalling (one WebSocket)."""

    def send(self, message: dict[str, Any]) -> None:
        """Queue one JSON message to the browser; never blocks."""


class CallState(enum.Enum):
    RINGING = "ringing"      # inbound: the browser rings; outbound: the far end rings
    ANSWERED = "answered"
    ENDED = "ended"


class SipSide(Protocol):
    """What a SIP call (acd.calls.Call) offers a browser leg once connected."""

    def send_dtmf(self, digits: str) -> None:
        """RFC 4733 events toward the SIP party."""

    def hangup(self, reason: str) -> None:
        """The agent hung up: end the SIP side too."""

    def hold(self, held: bool) -> None:
        """The agent held (True) or resumed the call: the SIP party hears music on hold meanwhile."""

    @property
    def number(self) -> str:
        """The SIP party's number (the caller's)."""

    @property
    def movable(self) -> bool:
        """Whether the SIP party can be transferred or moved into a room (a B2BUA call)."""

    def blind_transfer(self, call: BrowserCall, target: str) -> None:
        """Route the SIP party to `target` as a blind transfer by the agent of `call`."""

    def move_to(self, call: BrowserCall) -> SipSide:
        """Attended transfer: the SIP party goes on with another browser call; its SIP side."""

    def join(self, other: SipSide) -> None:
        """Attended transfer: the SIP party goes on with the SIP party of `other`."""

    def enter_room(self, member_id: str, room_id: int | None = None) -> AnyEndpoint:
        """Three-way call: the SIP party leaves the agent for a room (`room_id`, the engine's
        room the agent's ad-hoc call mixes in); its endpoint to join. When its call ends,
        `WebRtcAgents.end_call(member_id, ...)` says so."""


@dataclass(eq=False)
class BrowserCall:
    """One call of a browser agent: its engine leg, its bridge, and what the leg meets."""

    id: str
    agent: str
    "The agent's extension."
    direction: str
    "outbound (the agent dialled) or inbound (the agent is rung)."
    peer: str
    "The other party's number."
    peer_name: str
    port: AnyEndpoint
    "The call's engine leg: an RTP endpoint toward a worker, or a PCM port (in-process bridge)."
    bridge: WebRtcBridge | RemoteBridge
    state: CallState = CallState.RINGING
    started_at: float = field(default_factory=time.time)
    answered_at: float | None = None
    held: bool = False
    muted: bool = False
    reason: str = ""
    echo: bool = False
    "The far side is the echo test."
    other: BrowserCall | None = None
    "The far side is this other browser agent's call."
    sip: SipSide | None = None
    "The far side is a SIP call (set by the B2BUA when the agent answers)."
    on_answer: Callable[[AnyEndpoint], SipSide] | None = None
    on_end: Callable[[str], None] | None = None
    timer: asyncio.TimerHandle | None = None
    transferring: bool = False
    "A blind transfer of the far party is under way (the agent waits for its outcome)."
    room: AdHocRoom | None = None
    "The call is a member of a three-way call's room."

    def summary(self) -> dict[str, Any]:
        """The call as the browser shows it (on register and after every change)."""
        return {"call_id": self.id, "direction": self.direction, "peer": self.peer, "peer_name": self.peer_name,
                "state": self.state.value, "held": self.held, "muted": self.muted,
                "answered_at": self.answered_at, "reason": self.reason,
                "room": self.room.name if self.room is not None else ""}


@dataclass
class _Agent:
    extension: str
    name: str
    client: AgentClient | None
    calls: dict[str, BrowserCall] = field(default_factory=dict)
    grace: asyncio.TimerHandle | None = None


class WebRtcAgents(BrowserTransfers):
    """The browser agents of this node and their calls."""

    def __init__(self, engine: MediaEngine, settings: WebRtcSettings | None = None, *,
                 dialplan: Dialplan | None = None, workers: WebRtcWorkerPool | None = None) -> None:
        self.engine = engine
        self.settings = settings or WebRtcSettings()
        self.dialplan = dialplan or Dialplan()
        self.workers = workers
        "Where calls' WebRTC media runs; None: in this process (the loop pays for aiortc)."
        #: Set by the composition root: how a number no browser agent holds is reached (the
        #: B2BUA placing a SIP call for the agent). None: such numbers are refused.
        self.dial_sip: Callable[[BrowserCall], None] | None = None
        self._agents: dict[str, _Agent] = {}
        self._calls: dict[str, BrowserCall] = {}
        self._room_members: dict[str, AdHocRoom] = {}

    # -- registration ----------------------------------------------------------------------

    def register(self, extension: str, name: str, client: AgentClient) -> list[BrowserCall]:
        """The browser of `extension` is online. A second browser (another tab, or the same one
        after a reconnect) takes over: the previous one is told and its calls move over.
        Returns the extension's live calls, for which the new browser should offer media."""
        if self.workers is not None and not self.workers.closing:
            self.workers.start()   # a worker is ready before the agent's first call
        agent = self._agents.get(extension)
        if agent is None:
            agent = self._agents[extension] = _Agent(extension, name, client)
        else:
            if agent.client is not None and agent.client is not client:
                agent.client.send({"type": "replaced"})
            agent.client, agent.name = client, name
            if agent.grace is not None:
                agent.grace.cancel()
                agent.grace = None
        return list(agent.calls.values())

    def unregister(self, extension: str, client: AgentClient) -> None:
        """The WebSocket of `client` closed. Its calls wait RECONNECT_GRACE for it to return."""
        agent = self._agents.get(extension)
        if agent is None or agent.client is not client:
            return  # already replaced by a newer browser
        agent.client = None
        if not agent.calls:
            del self._agents[extension]
            return
        loop = asyncio.get_running_loop()
        agent.grace = loop.call_later(RECONNECT_GRACE, self._grace_over, extension)

    def is_registered(self, extension: str) -> bool:
        agent = self._agents.get(extension)
        return agent is not None and agent.client is not None

    @property
    def registered(self) -> list[str]:
        return sorted(ext for ext, agent in self._agents.items() if agent.client is not None)

    def call_by_id(self, call_id: str) -> BrowserCall | None:
        return self._calls.get(call_id)

    def calls_of(self, extension: str) -> list[BrowserCall]:
        agent = self._agents.get(extension)
        return list(agent.calls.values()) if agent else []

    # -- calls the agent makes --------------------------------------------------------------

    def dial(self, extension: str, number: str) -> BrowserCall:
        """The agent dials `number`: routed by the dialplan like a desk phone's call."""
        agent = self._online(extension)
        number = number.strip()
        if not number or len(number) > 32 or not all(c.isdigit() or c in "*#+" for c in number):
            raise AgentCallError("bad_number", "a number is 1-32 of 0-9 * # +")
        if len(agent.calls) >= MAX_CALLS_PER_AGENT:
            raise AgentCallError("busy", f"at most {MAX_CALLS_PER_AGENT} calls at once")
        destination = self._route(number, extension)
        if destination.kind is Kind.ECHO:
            call = self._new_call(agent, "outbound", number, "")
            self.engine.echo(call.port)
            call.echo = True
            self._answered(call)
            return call
        callee = self._agents.get(destination.target) if destination.kind is Kind.EXTENSION else None
        if callee is not None and callee.client is not None:
            if callee.extension == extension:
                raise AgentCallError("busy", "an agent cannot call itself")
            call = self._new_call(agent, "outbound", number, callee.name)
            try:
                inbound = self.ring(callee.extension, extension, agent.name)
            except AgentCallError:
                self._end(call, "busy")
                raise
            call.other, inbound.other = inbound, call
            return call
        if self.dial_sip is not None and destination.kind is not Kind.HANGUP:
            call = self._new_call(agent, "outbound", number, "")
            self.dial_sip(call)
            return call
        raise AgentCallError("unreachable", f"{number} cannot be reached from the browser")

    # -- calls to the agent ------------------------------------------------------------------

    def ring(self, extension: str, caller: str, caller_name: str, *,
             on_answer: Callable[[AnyEndpoint], SipSide] | None = None,
             on_end: Callable[[str], None] | None = None) -> BrowserCall:
        """Ring the agent's browser: it shows the caller and rings until `answer`, `reject`,
        the ring timeout, or the caller's `end_call`. For a SIP caller, `on_answer(leg)`
        connects the caller's endpoint to the call's engine leg and returns the SIP side; `on_end(reason)`
        hears the agent's hang-up or refusal."""
        agent = self._online(extension)
        if len(agent.calls) >= MAX_CALLS_PER_AGENT:
            raise AgentCallError("busy", f"{extension} has {len(agent.calls)} calls")
        call = self._new_call(agent, "inbound", caller, caller_name)
        call.on_answer, call.on_end = on_answer, on_end
        call.timer = asyncio.get_running_loop().call_later(RING_TIMEOUT, self._ring_timeout, call.id)
        self._send(call, {"type": "incoming", **call.summary()})
        return call

    def answer(self, extension: str, call_id: str) -> BrowserCall:
        call = self._call(extension, call_id)
        if call.direction != "inbound" or call.state is not CallState.RINGING:
            raise AgentCallError("bad_state", "only a ringing incoming call can be answered")
        if call.timer is not None:
            call.timer.cancel()
        if call.other is not None:
            self.engine.connect(call.port, call.other.port)
            self._answered(call.other)
        elif call.on_answer is not None:
            call.sip = call.on_answer(call.port)
        self._answered(call)
        return call

    def reject(self, extension: str, call_id: str) -> None:
        call = self._call(extension, call_id)
        if call.state is not CallState.RINGING or call.direction != "inbound":
            raise AgentCallError("bad_state", "only a ringing incoming call can be rejected")
        self._end(call, "rejected")

    def hangup(self, extension: str, call_id: str) -> None:
        self._end(self._call(extension, call_id), "hangup")

    def end_call(self, call_id: str, reason: str) -> None:
        """The far side ended the call (the SIP caller hung up or cancelled)."""
        room = self._room_members.pop(call_id, None)
        if room is not None:   # a SIP party of a three-way call
            room.left(call_id)
            return
        call = self._calls.get(call_id)
        if call is not None:
            call.on_end, call.sip = None, None  # the far side knows
            self._end(call, reason)

    def connected(self, call_id: str, sip: SipSide) -> None:
        """An outbound call the B2BUA placed (`dial_sip`) was answered by the far end."""
        call = self._calls.get(call_id)
        if call is not None and call.state is CallState.RINGING:
            call.sip = sip
            self._answered(call)

    def inform(self, call_id: str, message: dict[str, Any]) -> bool:
        """Send the agent of a live call a follow-up about it (e.g. `caller_info` from
        acd.caller_info); False when the call has ended meanwhile."""
        call = self._calls.get(call_id)
        if call is None:
            return False
        self._send(call, message)
        return True

    # -- in-call controls ---------------------------------------------------------------------

    def hold(self, extension: str, call_id: str, held: bool) -> None:
        call = self._answered_call(extension, call_id)
        if call.transferring or call.room is not None:
            raise AgentCallError("bad_state", "a call being transferred or in a three-way call is not held")
        call.held = held
        call.bridge.set_held(held)
        if call.sip is not None:
            call.sip.hold(held)
        self._send(call, {"type": "state", **call.summary()})

    def mute(self, extension: str, call_id: str, muted: bool) -> None:
        call = self._answered_call(extension, call_id)
        call.muted = muted
        call.bridge.set_muted(muted)
        self._send(call, {"type": "state", **call.summary()})

    def dtmf(self, extension: str, call_id: str, digits: str) -> None:
        """Key presses: RFC 4733 events toward a SIP party; in-band tones (ITU-T Q.23) toward
        a browser party or, in the echo test, back to the agent."""
        call = self._answered_call(extension, call_id)
        if call.transferring or call.room is not None:
            raise AgentCallError("bad_state", "no keys while the call is transferred or a three-way call")
        digits = digits.upper()
        if not digits or len(digits) > MAX_DTMF_DIGITS or any(d not in _DTMF_FREQUENCIES for d in digits):
            raise AgentCallError("bad_digits", "DTMF digits are 0-9 * # A-D")
        if call.sip is not None:
            call.sip.send_dtmf(digits)
        else:
            target = call.port if call.echo else call.other.port if call.other else call.port
            self.engine.play(target, dtmf_tones(digits))

    async def offer(self, extension: str, call_id: str, sdp: str) -> str:
        """The browser's SDP offer for a call's media: our answer."""
        call = self._call(extension, call_id)
        if call.state is CallState.ENDED:
            raise AgentCallError("bad_state", "the call has ended")
        try:
            return await call.bridge.accept_offer(sdp)
        except MediaError as exc:
            raise AgentCallError("bad_offer", str(exc)) from None

    async def candidate(self, extension: str, call_id: str, candidate: str | None, sdp_mid: str | None,
                        sdp_mline_index: int | None) -> None:
        call = self._call(extension, call_id)
        try:
            await call.bridge.add_candidate(candidate, sdp_mid, sdp_mline_index)
        except MediaError as exc:
            raise AgentCallError("bad_candidate", str(exc)) from None

    async def close(self) -> None:
        """Shutdown: hang up every browser call."""
        for call in list(self._calls.values()):
            self._end(call, "shutdown")
        await asyncio.sleep(0)

    # -- internals ----------------------------------------------------------------------------

    def _route(self, number: str, caller: str) -> Destination:
        def default(dialled: str) -> Destination:
            if dialled in self._agents:
                return Destination(Kind.EXTENSION, dialled)
            return Destination(Kind.OUTBOUND, dialled) if self.dial_sip else Destination(Kind.HANGUP, status=404)

        return self.dialplan.resolve(number, caller, datetime.now(UTC), default).destination

    def _online(self, extension: str) -> _Agent:
        agent = self._agents.get(extension)
        if agent is None or agent.client is None:
            raise AgentCallError("offline", f"{extension} has no browser registered")
        return agent

    def _call(self, extension: str, call_id: str) -> BrowserCall:
        call = self._calls.get(call_id) if isinstance(call_id, str) else None
        if call is None or call.agent != extension:
            raise AgentCallError("no_call", "no such call")
        return call

    def _answered_call(self, extension: str, call_id: str) -> BrowserCall:
        call = self._call(extension, call_id)
        if call.state is not CallState.ANSWERED:
            raise AgentCallError("bad_state", "the call is not answered")
        return call

    def _new_call(self, agent: _Agent, direction: str, peer: str, peer_name: str) -> BrowserCall:
        call_id = secrets.token_hex(8)
        bridge: WebRtcBridge | RemoteBridge
        port: AnyEndpoint
        try:
            if self.workers is not None:
                port = self.engine.create_endpoint(*WORKER_LINK_CODEC[:2], clock_rate=WORKER_LINK_CODEC[2])
                try:
                    bridge = self.workers.bridge(self.engine, port,
                                                 on_state=lambda state: self._media_state(call_id, state),
                                                 on_failure=lambda reason: self._media_lost(call_id, reason))
                except MediaError:
                    self.engine.destroy(port)
                    raise
            else:
                port = self.engine.create_pcm_port()
                bridge = WebRtcBridge(EnginePortLink(self.engine, port),
                                      on_state=lambda state: self._media_state(call_id, state))
        except MediaError as exc:
            raise AgentCallError("no_media", f"no media port: {exc}") from None
        call = BrowserCall(call_id, agent.extension, direction, peer, peer_name, port, bridge)
        agent.calls[call_id] = call
        self._calls[call_id] = call
        log.info("browser call %s: %s %s %s", call_id, agent.extension, "->" if direction == "outbound" else "<-", peer)
        return call

    def _answered(self, call: BrowserCall) -> None:
        call.state = CallState.ANSWERED
        call.answered_at = time.time()
        self._send(call, {"type": "state", **call.summary()})

    def _media_state(self, call_id: str, state: str) -> None:
        call = self._calls.get(call_id)
        if call is not None:
            self._send(call, {"type": "media", "call_id": call_id, "state": state})

    def _media_lost(self, call_id: str, reason: str) -> None:
        # The worker process running the call's WebRTC side died: the browser's audio is gone
        # for good (a new offer would need a new worker-side call), so the call ends, saying why.
        call = self._calls.get(call_id)
        if call is not None:
            log.warning("browser call %s of %s: %s", call_id, call.agent, reason)
            self._end(call, reason)

    def _ring_timeout(self, call_id: str) -> None:
        call = self._calls.get(call_id)
        if call is not None and call.state is CallState.RINGING:
            self._end(call, "no_answer")

    def _grace_over(self, extension: str) -> None:
        agent = self._agents.get(extension)
        if agent is None or agent.client is not None:
            return
        for call in list(agent.calls.values()):
            self._end(call, "agent_gone")
        self._agents.pop(extension, None)

    def _end(self, call: BrowserCall, reason: str) -> None:
        if call.state is CallState.ENDED:
            return
        call.state = CallState.ENDED
        call.reason = reason
        if call.timer is not None:
            call.timer.cancel()
        self._calls.pop(call.id, None)
        agent = self._agents.get(call.agent)
        if agent is not None:
            agent.calls.pop(call.id, None)
        self._send(call, {"type": "state", **call.summary()})
        room, call.room = call.room, None
        if room is not None:
            room.left(call.id)   # before its port goes
        try:
            self.engine.destroy(call.port)
        except MediaError:
            pass  # the engine is already closed (shutdown)
        task = asyncio.get_running_loop().create_task(call.bridge.close())
        task.add_done_callback(_log_failure)
        other, call.other = call.other, None
        if other is not None:
            other.other = None
            self._end(other, "remote_" + reason if not reason.startswith("remote_") else reason)
        if call.sip is not None:
            call.sip.hangup(reason)
        elif call.on_end is not None:
            call.on_end(reason)
        if agent is not None and agent.client is None and not agent.calls:
            if agent.grace is not None:
                agent.grace.cancel()
            self._agents.pop(call.agent, None)

    def _send(self, call: BrowserCall, message: dict[str, Any]) -> None:
        agent = self._agents.get(call.agent)
        if agent is not None and agent.client is not None:
            agent.client.send(message)


def dtmf_tones(digits: str, on_ms: int = 100, off_ms: int = 60) -> np.ndarray:
    """Digits as dual tones at BUS_RATE (ITU-T Q.24: ≥ 40 ms on, ≥ 40 ms pause), each tone at
    -10 dBm0-ish so the pair stays clear of clipping."""
    on = np.arange(int(BUS_RATE * on_ms / 1000)) / BUS_RATE
    pause = np.zeros(int(BUS_RATE * off_ms / 1000))
    parts = []
    for digit in digits:
        low, high = _DTMF_FREQUENCIES[digit]
        parts += [5000 * (np.sin(2 * np.pi * low * on) + np.sin(2 * np.pi * high * on)), pause]
    return np.round(np.concatenate(parts)).astype(np.int16)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("closing a WebRTC bridge failed", exc_info=task.exception())
