"""Conference routes in plain terms: who hears whom, and the supervisor modes built on them.

The native mixer (`native.mixer`) mixes each member's frame from everybody it hears, N-1 and
saturated; this module says what "hears" means, checks a set of routes before it reaches the
engine, and pushes it into a mixer. The trade's supervisor features are routes in one conference
of caller, agent and supervisor (Asterisk ChanSpy / FreeSWITCH eavesdrop modes):

- listen ("spy"): the supervisor hears caller and agent, and nobody hears the supervisor;
- whisper ("coach"): the supervisor hears both and is heard by the agent only;
- barge: the supervisor is an ordinary member, heard by both.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

from native.mixer import Mixer

from mediacore.errors import MediaError

# Issue #3: conferences of up to 50 members (slots 0..49), the size of the native member table.
MAX_MEMBERS = 50


@dataclass(frozen=True)
class MemberRoute:
    """How one member's voice travels and whether it hears the others."""

    muted: bool = False
    "Heard by nobody (wins over `whisper_to`)."
    deaf: bool = False
    "Hears nothing."
    whisper_to: int | None = None
    "Heard by this slot only (None: heard by every other member)."


class SupervisorMode(Enum):
    LISTEN = "listen"
    "Hears caller and agent, heard by nobody."
    WHISPER = "whisper"
    "Hears caller and agent, heard by the agent only."
    BARGE = "barge"
    "An ordinary member: hears and is heard by both."


def supervisor_route(mode: SupervisorMode, agent_slot: int) -> MemberRoute:
    """The route that puts a supervisor in `mode` on the call whose agent sits in `agent_slot`."""
    if mode is SupervisorMode.LISTEN:
        return MemberRoute(muted=True)
    if mode is SupervisorMode.WHISPER:
        return MemberRoute(whisper_to=agent_slot)
    return MemberRoute()


def validate_routes(routes: Mapping[int, MemberRoute]) -> None:
    """Raise MediaError unless every slot is 0..49 and every whisper goes to another member."""
    for slot, route in routes.items():
        if not isinstance(slot, int) or not 0 <= slot < MAX_MEMBERS:
            raise MediaError(f"conference slot must be 0..{MAX_MEMBERS - 1}, got {slot!r}")
        if route.whisper_to is None:
            continue
        if route.whisper_to == slot:
            raise MediaError(f"slot {slot} cannot whisper to itself")
        if route.whisper_to not in routes:
            raise MediaError(f"slot {slot} whispers to slot {route.whisper_to}, which is not a member")


def hears(routes: Mapping[int, MemberRoute], listener: int) -> frozenset[int]:
    """The members whose voice reaches `listener` (never itself: N-1 mixing)."""
    if listener not in routes:
        raise MediaError(f"slot {listener} is not a member")
    if routes[listener].deaf:
        return frozenset()
    heard = set()
    for slot, route in routes.items():
        if slot == listener or route.muted:
            continue
        if route.whisper_to is None or route.whisper_to == listener:
            heard.add(slot)
    return frozenset(heard)


def apply_routes(mixer: Mixer, routes: Mapping[int, MemberRoute]) -> None:
    """Make `mixer`'s members and their routes exactly `routes` (members not listed leave)."""
    validate_routes(routes)
    for slot in mixer.members:
        if slot not in routes:
            mixer.leave(slot)
    present = set(mixer.members)
    # Everybody joins first: a whisper can only be routed to a member already there.
    for slot in routes:
        if slot not in present:
            mixer.join(slot)
    for slot, route in routes.items():
        mixer.set_muted(slot, route.muted)
        mixer.set_deaf(slot, route.deaf)
        mixer.set_whisper(slot, route.whisper_to)
