"""Take over (抢接): a supervisor takes an agent's call. The other party (the caller, for a queue
call) is bridged to the supervisor's line and the agent's leg is released, as if the agent had
transferred the call to the supervisor: the CDR segment closes and a new one opens with the
supervisor as the answering party, and a queue call's agent goes to wrap-up with the queue
log's TRANSFER naming the supervisor.

It works through the same `Parties` operations as an attended transfer (acd.transfer): the
supervisor's leg is installed on the agent's side in place of the agent's.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from acd.hold import release_hold
from mediacore.engine import Endpoint
from mediacore.errors import MediaError
from sipstack.session import Leg

if TYPE_CHECKING:
    from acd.calls import Call

log = logging.getLogger(__name__)

#: The CDR's hang-up cause of the segment a take-over closes.
CAUSE = "supervisor takeover"


def take_over(call: Call, side: str, leg: Leg, endpoint: Endpoint, number: str, origin: list[int] | None) -> None:
    """Put the supervisor's `leg` (with its `endpoint`, reachable as `number`) on `side` of the
    bridged `call` — "b" when the agent answered it, "a" when the agent placed it — and hang up
    the agent's leg. `origin` is the [session id, version] of the SDP we send `leg` (RFC 4566
    §5.2: they carry on across the move), None to start afresh."""
    m = call.manager
    old_leg = call.inbound if side == "a" else call.answered_leg
    old_endpoint = call.endpoint_of(side)
    # A browser agent who answered has no SIP leg here: their softphone call is ended below.
    browser = call.browser_port if side == "b" else None
    keep = call.endpoint_of(side, other=True)
    agent = call.party_number(side)
    call.close_segment("caller" if side == "a" else "callee", CAUSE)
    if side == "b" and call.queue_id is not None and m.queues is not None:
        # The ACD ends the agent's part as after a transfer: wrap-up, TRANSFER in the queue log.
        m.queues.transferred(call, number, time.time())
    release_hold(call)   # music the agent put the caller on must not play on to the supervisor
    call.install_party(side, leg, endpoint, number)
    if origin is not None:
        call.set_origin(endpoint, origin[0], origin[1])
    else:
        call.set_origin(endpoint, m.next_session_id())
    try:
        m.engine.connect(keep, endpoint)
        m.engine.set_rtp_timeout(keep, m.policy.rtp_timeout)
        m.engine.set_rtp_timeout(endpoint, m.policy.rtp_timeout)
    except MediaError as exc:
        log.warning("call %s: take-over by %s lost its media: %s", call.id, number, exc)
        call.hangup("takeover_failed", side="system")
        return
    if m.recording is not None:
        m.recording.retarget(call)   # the one recording goes on with the supervisor's side
    if old_leg is not None:
        if old_leg in call.outbound:
            call.outbound.remove(old_leg)
        old_leg.listener = None
        old_leg.hangup()
    if browser is not None and m.browser_agents is not None:
        m.browser_agents.stop(call.id, "taken_over")   # the agent's softphone says why
    if any(e.id == old_endpoint.id for e in call.endpoints):
        # (Not a browser's leg that placed the call: acd.webrtc_agents owns and destroys it.)
        call.drop_endpoint(old_endpoint)
    log.info("call %s: supervisor %s took the call over from agent %s", call.id, number, agent)
