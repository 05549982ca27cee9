"""Where a call goes once the dialplan has decided: ringing an extension (with its DND and
forwards), a ring group (ringall or hunt, then its fallback), an outbound route, a queue, or
answering here (echo test, IVR, voicemail).

Ringing happens in steps: each step rings some phones for a while; when every phone of the
step refused or the time is up, the step's `on_failed` decides what follows (a forward, the
next member, the group's fallback) — or the caller is refused with the status the phones gave.
This is a part of `Call` (a mixin), kept apart so each file stays readable.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from acd.dialplan import Destination, DialplanError, Kind, RingGroup, Strategy
from acd.events import CallAnswered
from acd.features import ExtensionFeatures, ForwardChain, ForwardReason
from acd.prompt_catalogue import SOUNDS
from acd.routing import OutboundRoute, select_route
from mediacore.engine import Endpoint
from mediacore.errors import MediaError
from sipstack.offer_answer import NegotiatedMedia
from sipstack.sdp import SessionDescription
from sipstack.session import EndCause, InboundLeg, Leg, LegEvent, OutboundLeg
from sipstack.trunk_manager import Trunk
from sipstack.uri import NameAddr, SipUri

if TYPE_CHECKING:
    from acd.blind_transfer import BlindTransfer
    from acd.calls import CallManager

log = logging.getLogger(__name__)

HOLD_MUSIC = SOUNDS / "moh" / "default.wav"

#: Destinations one call may pass through (forwards, hunt fallbacks): a ring group whose
#: fallback is itself would otherwise ring for ever.
MAX_DESTINATIONS = 12

#: Destinations that take the call here, at once: a transfer to one is through when it is routed.
ANSWERED_HERE = (Kind.QUEUE, Kind.ECHO, Kind.IVR, Kind.CONFERENCE, Kind.VOICEMAIL, Kind.VOICEMAIL_MAIN)


class Dialing:
    # What this part of the call uses of the rest of `Call` (acd.calls).
    manager: CallManager
    id: str
    caller: str
    caller_name: str
    dialled: str
    from_trunk: Trunk | None
    inbound: InboundLeg
    outbound: list[OutboundLeg]
    answered_leg: OutboundLeg | None
    answered_at: float | None
    endpoint_a: Endpoint
    endpoint_b: Endpoint
    codec_a: NegotiatedMedia | None
    answer_a: SessionDescription
    queue_id: str | None
    _ended: bool
    _route: OutboundRoute | None
    _route_number: str
    _trunk_queue: list[Trunk]
    _step: asyncio.TimerHandle | None
    _on_step_failed: Callable[[int, EndCause], None] | None
    _leg_target: dict[OutboundLeg, str]
    _answered_ext: str | None
    _chain: ForwardChain | None
    _steps: int
    transfer: BlindTransfer | None
    trunk_name: str
    offer_b: SessionDescription | None

    if TYPE_CHECKING:  # defined by Call
        def _refuse(self, status: int, reason: str | None, *, cause: EndCause | None = None) -> None: ...
        def _ring(self, bindings: list, from_addr: NameAddr, to_addr: NameAddr) -> None: ...
        def _arm_max_duration(self) -> None: ...
        def hangup(self, reason: str, *, side: str) -> None: ...
        def _on_outbound(self, leg: Leg, event: LegEvent) -> None: ...

    def _dial_trunk(self) -> None:
        """Send the call to the next trunk of its route: `sip:<number>@host:port`, From the
        route's caller ID (else the trunk account, else the extension), answering the
        provider's digest challenge with the trunk's credentials."""
        m = self.manager
        trunk = self._trunk_queue.pop(0)
        assert self._route is not None and trunk.address is not None
        self.trunk_name = trunk.name
        settings = trunk.settings
        caller_id = self._route.caller_id
        if caller_id is not None:
            user, display = caller_id.number, caller_id.name
        else:
            user, display = settings.username or self.caller, None
        from_addr = NameAddr(SipUri("sip", user, None, settings.domain, None), display, {})
        to_addr = NameAddr(SipUri("sip", self._route_number, None, settings.domain, None), None, {})
        log.info("call %s: %s dials %s via trunk %s as %s", self.id, self.caller, self.dialled, trunk.name,
                 self._route_number)
        leg = OutboundLeg(m.sessions, target=trunk.address, request_uri=trunk.request_uri(self._route_number),
                          from_addr=from_addr, to_addr=to_addr, sdp=self.offer_b.to_bytes(),  # type: ignore[union-attr]
                          auth=trunk.digest())
        leg.listener = self._on_outbound
        self.outbound.append(leg)
        leg.start()

    def _go(self, destination: Destination, *, forwarded: bool = False) -> None:
        """Act on a dialplan destination (the first one, a forward, a group's fallback)."""
        m = self.manager
        self._steps += 1
        if self._steps > MAX_DESTINATIONS:
            self._refuse(482, "Loop Detected")  # RFC 3261 §21.4.20
            return
        kind, target = destination.kind, destination.target
        if self.answered_at is not None and kind in (Kind.QUEUE, Kind.EXTENSION, Kind.GROUP, Kind.OUTBOUND):
            self._while_waiting(kind)
        if kind is Kind.HANGUP:
            self._refuse(destination.status, None)
        elif kind is Kind.QUEUE:
            self.queue_id = m.queues.queue_for(target) if m.queues is not None else None
            if self.queue_id is None or m.queues is None:
                self._refuse(404, "Not Found: no such queue")
                return
            if self.answered_at is None:
                self.inbound.ring()  # the caller hears ringback while waiting (prompts and MOH come later)
            m.queues.enqueue(self, self.queue_id, time.time())
        elif kind is Kind.EXTENSION:
            self._dial_extension(target)
        elif kind is Kind.GROUP:
            group = m.dialplan.groups.get(target)
            if group is None:
                self._refuse(404, "Not Found: no such ring group")
            else:
                self._dial_group(group)
        elif kind is Kind.OUTBOUND:
            self._dial_out(target, forwarded)
        elif kind is Kind.ECHO:
            self._answer_locally("echo")
        elif kind is Kind.IVR:
            self._answer_locally(f"ivr:{target}")
            if m.ivr is not None:
                m.ivr(self, target)
        elif kind is Kind.CONFERENCE:
            if m.conference is None:
                self._refuse(404, "Not Found: no conference rooms")
                return
            self._answer_locally(f"conference:{target}")
            m.conference(self, target)
        elif kind in (Kind.VOICEMAIL, Kind.VOICEMAIL_MAIN):
            self._voicemail(kind, target)
        if kind in ANSWERED_HERE and self.transfer is not None and not self._ended:
            self.transfer.reached()   # a blind transfer's target took the call (acd.blind_transfer)

    def _voicemail(self, kind: Kind, mailbox: str) -> None:
        """Leave a message in `mailbox`, or listen to it ("" : the caller keys which). The CDR
        shows it: answered by "voicemail:MAILBOX" (or "voicemailmain:...")."""
        vm = self.manager.voicemail
        if vm is None or (mailbox and not vm.has_mailbox(mailbox)):
            log.warning("call %s: no mailbox %r", self.id, mailbox)
            if self.answered_at is None:
                self._refuse(404, "Not Found: no such mailbox")
            else:   # answered by an IVR: nothing left to refuse, so end it
                self.hangup("no_such_mailbox", side="system")
            return
        what = f"{kind.value}:{mailbox}" if mailbox else kind.value
        if self.answered_at is None:
            self._answer_locally(what)
        else:   # answered already (an IVR, a queue's announcements): only the media changes
            self.manager.engine.stop_playback(self.endpoint_a)
            self._answered_ext = what
        if kind is Kind.VOICEMAIL:
            vm.leave(self, mailbox)  # type: ignore[arg-type]
        else:
            vm.listen(self, mailbox)  # type: ignore[arg-type]

    def route(self, target: str) -> None:
        """Send the call on to `target` — a number, or a destination such as "queue:8001" —
        as the dialplan routes it: what an IVR does when the caller chose. Refused with 404
        when `target` is neither."""
        if self._ended:
            return
        try:
            destination = Destination.parse(target)
        except DialplanError:
            log.warning("call %s: cannot route to %r", self.id, target)
            destination = Destination(Kind.HANGUP, status=404)
        self._go(self._follow(destination))

    def _follow(self, destination: Destination) -> Destination:
        m = self.manager
        return m.dialplan.follow(destination, self.dialled, self.caller, datetime.now(UTC), m.default_route).destination

    def _dial_out(self, number: str, forwarded: bool) -> None:
        """Out through the outbound routes. A caller from a trunk never gets out by the dialplan
        (a trunk is no way to call out); an extension's own forward may take it out."""
        m = self.manager
        choice = select_route(m.routes, number)
        if choice is None or (self.from_trunk is not None and not forwarded):
            self._refuse(404, "Not Found")
            return
        self._route, self._route_number = choice
        self._trunk_queue = m.trunks_for(self._route)
        if not self._trunk_queue:
            log.warning("call %s: no trunk of route %r is up", self.id, self._route.name)
            self._refuse(503, "Service Unavailable: no trunk available")
            return
        self._on_step_failed = None
        self._dial_trunk()
        self._arm_step(m.policy.ring_timeout)

    def _dial_extension(self, number: str) -> None:
        """Ring an extension, honouring its do-not-disturb and forwards."""
        m = self.manager
        extension = m.directory.get(number)
        if extension is None or not extension.enabled:
            self._refuse(404, "Not Found")
            return
        if self._chain is None:
            self._chain = ForwardChain(number)
        features = m.features.get(number) if m.features is not None else ExtensionFeatures(number)
        if features.forward_always and self._forward(features, ForwardReason.ALWAYS):
            return
        # A forward for the same reason comes first; the mailbox takes what no forward does.
        voicemail = m.voicemail is not None and m.voicemail.has_fallback(number)
        if features.dnd:
            if not self._forward(features, ForwardReason.BUSY) and not self._to_voicemail(number, voicemail):
                self._refuse(486, "Busy Here: do not disturb", cause=EndCause.BUSY)
            return

        def failed(status: int, cause: EndCause) -> None:
            reason = ForwardReason.BUSY if cause is EndCause.BUSY else ForwardReason.NOANSWER
            if not self._forward(features, reason) and not self._to_voicemail(number, voicemail):
                self._refuse(status, None, cause=cause)

        # The forward (or the mailbox) takes over after its own delay, never later than the
        # site's ring timeout.
        timeout = m.policy.ring_timeout
        if features.forward_noanswer or voicemail:
            timeout = min(timeout, features.noanswer_timeout)
        if not self._ring_step([number], timeout, failed):
            failed(480, EndCause.REJECTED)  # no phone registered: unavailable (forwarded like no answer)

    def _to_voicemail(self, number: str, fallback: bool) -> bool:
        """Send a call `number` did not take to its mailbox, if its fallback is on."""
        if not fallback or self._ended:
            return False
        log.info("call %s: %s did not take the call; to its voicemail", self.id, number)
        self._go(Destination(Kind.VOICEMAIL, number))
        return True

    def _forward(self, features: ExtensionFeatures, reason: ForwardReason) -> bool:
        """Send the call where `features` forwards it for `reason`; False when there is no such
        forward, or it would loop or go past the hop limit."""
        target = features.target(reason)
        if not target or self._chain is None or not self._chain.take(target):
            if target:
                log.info("call %s: forward %s of %s to %s not followed (loop or too many hops: %s)",
                         self.id, reason.value, features.extension, target, self._chain and self._chain.visited)
            return False
        log.info("call %s: %s forwards (%s) to %s", self.id, features.extension, reason.value, target)
        m = self.manager
        destination = m.dialplan.resolve(target, features.extension, datetime.now(UTC), m.default_route).destination
        if destination.kind is Kind.HANGUP:
            return False
        self._go(destination, forwarded=True)
        return True

    def _dial_group(self, group: RingGroup) -> None:
        """A ring group: every member at once (ringall) or one after the other (hunt), members on
        do-not-disturb skipped; then the group's fallback."""
        m = self.manager
        members = [n for n in group.members if m.features is None or not m.features.get(n).dnd]

        def fallback(status: int, cause: EndCause) -> None:
            log.info("call %s: nobody of ring group %s answered; to %s", self.id, group.number, group.fallback)
            self._go(self._follow(group.fallback))

        if group.strategy is Strategy.RINGALL:
            if not self._ring_step(members, group.ring_timeout, fallback):
                fallback(480, EndCause.NO_ANSWER)
            return

        def next_member(status: int, cause: EndCause) -> None:
            while members:
                if self._ring_step([members.pop(0)], group.ring_timeout, next_member):
                    return
            fallback(status, cause)

        next_member(480, EndCause.NO_ANSWER)

    def _ring_step(self, extensions: list[str], timeout: float,
                   on_failed: Callable[[int, EndCause], None]) -> bool:
        """Ring every registered phone of `extensions` for `timeout` seconds; when all of them
        refuse or the time is up, `on_failed` decides what follows. False when none of them
        has a phone registered (nothing rings)."""
        m = self.manager
        local = m.sessions.local_host
        caller_ext = m.directory.get(self.caller) if self.from_trunk is None else None
        display = caller_ext.display_name if caller_ext else self.caller_name
        from_addr = NameAddr(SipUri("sip", self.caller, None, local, None), display or None, {})
        rung = False
        for number in extensions:
            if m.browser_agents is not None and m.browser_agents.ring(self, number, display or ""):  # type: ignore[arg-type]
                rung = True
            bindings = m.registrar.lookup(number)
            if not bindings:
                continue
            before = set(self.outbound)
            self._ring(bindings, from_addr, NameAddr(SipUri("sip", number, None, local, None), None, {}))
            for leg in self.outbound:
                if leg not in before:
                    self._leg_target[leg] = number
            rung = True
        if rung:
            self._on_step_failed = on_failed
            self._arm_step(timeout)
        return rung

    def _arm_step(self, timeout: float) -> None:
        if self._step is not None:
            self._step.cancel()
        self._step = asyncio.get_running_loop().call_later(timeout, self._step_timeout)

    def _step_timeout(self) -> None:
        self._step = None
        if self.answered_leg is not None or self._ended:
            return
        for leg in list(self.outbound):
            leg.listener = None
            leg.hangup()
        self.outbound.clear()
        if self.manager.browser_agents is not None:
            self.manager.browser_agents.stop(self.id, "no_answer")
        self._step_failed(480, EndCause.NO_ANSWER)

    def _step_failed(self, status: int, cause: EndCause) -> None:
        if self._step is not None:
            self._step.cancel()
            self._step = None
        handler, self._on_step_failed = self._on_step_failed, None
        if handler is not None:
            handler(status, cause)
        else:
            self._refuse(status, "Temporarily Unavailable: no answer" if status == 480 else None, cause=cause)

    def _while_waiting(self, kind: Kind) -> None:
        """A call answered here (an IVR) sent on: 180 means nothing after 200 OK, so the caller
        hears music on hold while queued and a ringback tone while a phone rings, in band."""
        m = self.manager
        try:
            if kind is Kind.QUEUE:
                m.engine.play_file(self.endpoint_a, HOLD_MUSIC, loop=True)
            else:
                m.engine.play_tone(self.endpoint_a, "ringback", m.tone_country)
        except MediaError as exc:
            log.warning("call %s: no in-band %s: %s", self.id, "music" if kind is Kind.QUEUE else "ringback", exc)

    def _answer_locally(self, what: str) -> None:
        """Answer here: the echo test (what the caller sends comes back to it) or an IVR."""
        m = self.manager
        assert self.codec_a is not None
        self._answered_ext = what
        # Nothing will arrive at the callee side: its silence must not end the call.
        m.engine.set_rtp_timeout(self.endpoint_b, None)
        if what == "echo":
            # What the caller sends comes back on the caller's own stream (same port, so a
            # strictly symmetric phone accepts it).
            m.engine.echo(self.endpoint_a)
        answered = self.answered_at is not None   # routed on by an IVR or a transfer
        self.answered_at = time.time()
        if not answered:
            self.inbound.answer(self.answer_a.to_bytes())
        m.publish(CallAnswered(self.id, what, self.answered_at))
        self._arm_max_duration()

