"""退订: members who asked not to receive bulk SMS or e-mail any more.

An opt-out is per channel (a member may keep the birthday e-mail but stop the SMS). Bulk sends
and greetings skip opted-out members (`crm.messaging`); a message an agent sends one member by
hand (an appointment confirmation) still goes, as it answers that member's own business.
"""

from __future__ import annotations

from dataclasses import dataclass

from crm import access, audit, common, scopes
from crm.access import Actor
from crm.clock import Clock, to_iso
from crm.db import Database, Transaction
from crm.errors import NotFound
from crm.providers import Channel


@dataclass(frozen=True)
class OptOut:
    member_id: int
    member_name: str
    channel: Channel
    reason: str
    created_at: str


class OptOutService:
    def __init__(self, db: Database, clock: Clock | None = None) -> None:
        self.db = db
        self.clock = clock or Clock()

    async def opt_out(self, actor: Actor, member_id: int, channel: Channel | str, reason: str = "") -> OptOut:
        """Record the opt-out (again is harmless: the first one stands)."""
        actor.require(access.MEMBER_WRITE)
        kind = common.enum_value("channel", Channel, channel)
        reason = common.text("reason", reason, max_length=200, required=False)
        async with self.db.transaction() as tx:
            await scopes.require_member(tx, actor, member_id)
            added = await tx.execute(
                "INSERT INTO message_opt_outs (member_id, channel, reason, created_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (member_id, channel) DO NOTHING",
                (member_id, kind.value, reason, to_iso(self.clock.now())),
            )
            out = await self._load(tx, member_id, kind)
            if added:
                await audit.record(tx, self.clock, actor, "member", member_id, "opt_out", after=out)
        return out

    async def opt_in(self, actor: Actor, member_id: int, channel: Channel | str) -> None:
        actor.require(access.MEMBER_WRITE)
        kind = common.enum_value("channel", Channel, channel)
        async with self.db.transaction() as tx:
            await scopes.require_member(tx, actor, member_id)
            before = await self._load(tx, member_id, kind)
            await tx.execute("DELETE FROM message_opt_outs WHERE member_id = ? AND channel = ?", (member_id, kind.value))
            await audit.record(tx, self.clock, actor, "member", member_id, "opt_in", before=before)

    async def list(self, actor: Actor, *, limit: int = common.DEFAULT_PAGE_SIZE) -> list[OptOut]:
        """The latest opt-outs among the members this actor may see."""
        actor.require(access.MEMBER_READ)
        common.page_bounds(0, limit)
        condition, params = scopes.member_condition(actor, "m")
        rows = await self.db.fetch_all(
            "SELECT o.*, m.name FROM message_opt_outs o JOIN members m ON m.id = o.member_id"
            f" WHERE {condition} ORDER BY o.created_at DESC, o.member_id LIMIT ?", [*params, limit])  # fmt: skip
        return [OptOut(r["member_id"], r["name"], Channel(r["channel"]), r["reason"], r["created_at"]) for r in rows]

    @staticmethod
    async def _load(tx: Transaction, member_id: int, channel: Channel) -> OptOut:
        row = await tx.fetch_one(
            "SELECT o.*, m.name FROM message_opt_outs o JOIN members m ON m.id = o.member_id"
            " WHERE o.member_id = ? AND o.channel = ?", (member_id, channel.value))  # fmt: skip
        if row is None:
            raise NotFound(f"member {member_id} has not opted out of {channel.value}", code="opt_out.not_found")
        return OptOut(row["member_id"], row["name"], Channel(row["channel"]), row["reason"], row["created_at"])
