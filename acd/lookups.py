"""What call routing may ask of the CRM, as one narrow interface (ARCHITECTURE: `acd` reads `crm`
only through this); the composition root implements it over `crm` (callcenter/crm_bridge.py).

Every method answers quickly from indexes (they run while a caller waits) and returns None for
"nothing found"; none raises for a caller's bad input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class CallerInfo:
    """Who is calling, as far as the CRM knows."""

    member_id: int
    name: str
    #: Rank of the member's level (0 = none/lowest); queues serve higher ranks first.
    vip_rank: int
    blacklisted: bool
    points: int


class CrmLookups(Protocol):
    async def caller(self, number: str) -> CallerInfo | None:
        """The member calling from `number` (any form of it)."""

    async def ivr_lookup(self, query: str, key: str) -> dict[str, str] | None:
        """An IVR look-up (`acd.ivr_flow.LOOKUPS`): `key` is what the caller keyed in or their
        number. Answers variables for the flow (e.g. {"points": "1200", "name": "王芳"})."""

    async def voice_message(self, *, caller: str, ticket_type: str, recording: str, call_uuid: str) -> int:
        """A caller's recorded message becomes a ticket with the recording attached; its id."""

    async def supervisor(self, extension: str) -> str | None:
        """The user name of the supervisor whose desk phone this extension is (someone allowed
        to listen in on agents' calls), else None."""

    async def audit(self, username: str, action: str, details: dict[str, Any]) -> None:
        """Write a supervisor's action on calls to the audit log."""
