"""`acd.lookups.CrmLookups` over the CRM: the composition root is the one place that knows both.

Look-ups run as the CRM's SYSTEM actor (the caller is not a signed-in user); their answers
only go back to the caller who proved they hold the number or the member/order number.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from acd.cdr import CdrRecord
from acd.lookups import CallerInfo
from crm import access, audit
from crm.access import SYSTEM
from crm.appointments import AppointmentQuery, AppointmentStatus
from crm.errors import CrmError
from crm.members import Member, MemberQuery
from crm.service import Crm

log = logging.getLogger(__name__)


class CrmBridge:
    def __init__(self, crm: Crm) -> None:
        self._crm = crm

    async def caller(self, number: str) -> CallerInfo | None:
        try:
            card = await self._crm.members.lookup_by_caller_id(SYSTEM, number, recent=1)
        except CrmError as exc:
            log.info("caller look-up of %r: %s", number, exc)
            return None
        if card is None:
            return None
        m = card.member
        return CallerInfo(m.id, m.name, card.level_rank or 0, m.blacklisted, m.points_balance)

    async def ivr_lookup(self, query: str, key: str) -> dict[str, str] | None:
        key = key.strip()
        if not key:
            return None
        try:
            if query in ("member_points", "caller_member"):
                member = await self._member(key)
                if member is None:
                    return None
                info = await self.caller(member.primary_phone.e164 if member.primary_phone else key)
                return {"member_id": str(member.id), "name": member.name, "points": str(member.points_balance),
                        "vip_level": str(info.vip_rank if info else 0), "blacklisted": "1" if member.blacklisted else "0"}
            if query == "workorder_status" and key.isdigit():
                order = await self._crm.work_orders.get(SYSTEM, int(key))
                return {"status": order.status.value, "appointment_at": order.appointment_at or ""}
            if query == "order_status" and key.isdigit():
                sale = await self._crm.orders.get(SYSTEM, int(key))
                return {"status": sale.status.value, "amount": f"{sale.total_cents / 100:.2f}"}
            if query == "next_appointment":
                member = await self._member(key)
                if member is None:
                    return None
                page = await self._crm.appointments.search(SYSTEM, AppointmentQuery(
                    member_id=member.id, status=AppointmentStatus.BOOKED, starts_from=self._crm.clock.now()), limit=1)
                if not page.items:
                    return None
                return {"when": datetime.fromisoformat(page.items[0].starts_at).isoformat(), "name": member.name}
        except CrmError as exc:       # not found, not visible: the caller hears "not found"
            log.info("IVR look-up %s %r: %s", query, key, exc)
            return None
        return None

    async def voice_message(self, *, caller: str, ticket_type: str, recording: str, call_uuid: str) -> int:
        now = self._crm.clock.now()
        record = await self._crm.timeline.record_call(
            SYSTEM, direction="inbound", caller=caller, callee="ivr", started_at=now, disposition="ANSWERED",
            recording_ref=recording, call_uuid=f"{call_uuid}:message")
        ticket = await self._crm.tickets.create(
            SYSTEM, ticket_type=ticket_type, subject=f"语音留言 / voice message {caller}",
            description=f"IVR voice message, recording {recording}", member_id=record.member_id,
            channel="ivr", contact_phone=caller, call_id=record.id)
        return ticket.id

    async def call_finished(self, record: CdrRecord) -> int | None:
        """A trunk call's CDR onto the CRM's interaction timeline (the member the outside
        number belongs to, the agent who answered, the recording): what the agent sees on the
        member's card. Calls between extensions are staff talking to staff, not interactions,
        and stay in the CDR only. Returns the CRM call id, None when not recorded."""
        if not record.trunk:
            return None
        direction = "inbound" if record.did else "outbound"
        # The CRM keeps Asterisk's dispositions, where a caller who gave up is NO ANSWER.
        disposition = "NO ANSWER" if str(record.disposition) == "CANCELLED" else str(record.disposition)
        duration = int(record.duration)
        agent_id: int | None = None
        if record.answered_by:
            async with self._crm.db.reading() as r:
                agent_id = await r.fetch_value("SELECT id FROM users WHERE extension = ? AND active = 1",
                                               (record.answered_by,))
        try:
            call = await self._crm.timeline.record_call(
                SYSTEM, direction=direction, caller=record.caller or "-",
                callee=record.callee or record.did or "-",
                started_at=datetime.fromtimestamp(record.started_at, UTC), disposition=disposition,
                duration=duration, billsec=min(duration, int(record.billsec)),
                answered_at=datetime.fromtimestamp(record.answered_at, UTC) if record.answered_at else None,
                agent_id=agent_id, recording_ref=record.recording_ref or None,
                call_uuid=f"{record.call_id}:{record.segment}")
        except CrmError as exc:
            log.warning("call %s not put on the CRM timeline: %s", record.call_id, exc)
            return None
        return call.id

    async def supervisor(self, extension: str) -> str | None:
        async with self._crm.db.reading() as r:
            row = await r.fetch_one("SELECT id, username FROM users WHERE extension = ? AND active = 1", (extension,))
        if row is None:
            return None
        try:
            actor = await self._crm.org.actor_for_user(row["id"])
        except CrmError:
            return None
        # The supervisor and admin roles: those who may see reports and direct others' work.
        return str(row["username"]) if actor.can(access.REPORT_READ) and actor.can(access.TICKET_ASSIGN) else None

    async def audit(self, username: str, action: str, details: dict[str, Any]) -> None:
        async with self._crm.db.reading() as r:
            row = await r.fetch_one("SELECT id FROM users WHERE username = ?", (username,))
        try:
            actor = await self._crm.org.actor_for_user(row["id"]) if row is not None else SYSTEM
            async with self._crm.db.transaction() as tx:
                await audit.record(tx, self._crm.clock, actor, "call", None, action, after=details)
        except Exception:
            log.exception("could not audit %s by %s", action, username)

    async def _member(self, key: str) -> Member | None:
        card = await self._crm.members.lookup_by_caller_id(SYSTEM, key, recent=1)
        if card is not None:
            return card.member
        page = await self._crm.members.search(SYSTEM, MemberQuery(text=key), limit=2)
        exact = [m for m in page.items if m.card_no == key]
        return exact[0] if exact else None
