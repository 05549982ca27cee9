"""/api/members, /api/caller-id: members, their notes and timeline, points."""

from __future__ import annotations

from crm.common import Page
from crm.errors import NotFound, ValidationError
from crm.members import Gender, Member, MemberCard
from crm.points import PointsEntry
from crm.timeline import TimelineItem, TimelineKind
from webui.api.params import FILTER_FIELDS, LIMIT, OFFSET, PAGING, member_query, paging
from webui.api.registry import Call, Section, q
from webui.api.schema import array, boolean, date_string, enum_of, identifier, integer, obj, string

api = Section("members", "会员管理: members, caller-ID card, notes, timeline, points")

_FIELDS = {
    "name": string(64, min_length=1),
    "phones": array(string(64), 10, min_items=1),
    "gender": enum_of(Gender),
    "email": string(254, nullable=True),
    "birthday": date_string(nullable=True),
    "level": string(48, nullable=True),
    "tags": array(string(32), 50),
    "customer_type": string(48, nullable=True),
    "relationship_level": string(48, nullable=True),
    "source_channel": string(48, nullable=True),
    "notes": string(4000),
    "owner_id": identifier(nullable=True),
    "card_no": string(32, nullable=True),
}


@api.get("/members", Page[Member], summary="Search members (newest first)", query=[
    q("q", FILTER_FIELDS["text"]), *(q(k, v) for k, v in FILTER_FIELDS.items() if k != "text"), *PAGING])  # fmt: skip
async def search_members(call: Call) -> Page[Member]:
    filters = {k: v for k, v in call.query.items() if k in FILTER_FIELDS}
    if "q" in call.query:
        filters["text"] = call.query["q"]
    return await call.crm.members.search(call.me, member_query(filters), **paging(call))


@api.post("/members", Member, status=201, summary="Create a member", body=obj(_FIELDS, "name", "phones"))
async def create_member(call: Call) -> Member:
    body = dict(call.body)
    return await call.crm.members.create(call.me, body.pop("name"), phones=body.pop("phones"), **body)


@api.get("/members/{member_id}", Member, summary="One member")
async def get_member(call: Call) -> Member:
    return await call.crm.members.get(call.me, call.path["member_id"])


@api.patch("/members/{member_id}", Member, summary="Change a member's fields (phones and tags replace the lists)",
           body=obj(_FIELDS))  # fmt: skip
async def update_member(call: Call) -> Member:
    return await call.crm.members.update(call.me, call.path["member_id"], **call.body)


@api.put("/members/{member_id}/blacklist", Member, summary="Put a member on the blacklist or take them off",
         body=obj({"blacklisted": boolean(), "reason": string(500, nullable=True)}, "blacklisted"))  # fmt: skip
async def set_blacklist(call: Call) -> Member:
    return await call.crm.members.set_blacklist(call.me, call.path["member_id"], call.body["blacklisted"],
                                                call.body.get("reason"))  # fmt: skip


@api.get("/caller-id", MemberCard, summary="The caller-ID card of the member calling from a number",
         query=[q("number", string(128, min_length=1), required=True), q("recent", integer(1, 50))])  # fmt: skip
async def caller_id(call: Call) -> MemberCard:
    """Any form of the number (`013800138000`, `+86 138...`, `sip:138...@trunk`); 404 when nobody has it."""
    card = await call.crm.members.lookup_by_caller_id(call.me, call.query["number"], recent=call.query.get("recent", 5))
    if card is None:
        raise NotFound("no member has this number", code="member.not_found")
    return card


@api.get("/members/{member_id}/timeline", list[TimelineItem], summary="Everything that happened with a member",
         query=[q("kind", enum_of(TimelineKind)), OFFSET, LIMIT])  # fmt: skip
async def member_timeline(call: Call) -> list[TimelineItem]:
    kinds = [call.query["kind"]] if "kind" in call.query else None
    return await call.crm.timeline.member_timeline(call.me, call.path["member_id"], kinds=kinds, **paging(call))


@api.post("/members/{member_id}/notes", TimelineItem, status=201, summary="Write a note (小记) about a member",
          body=obj({"body": string(4000, min_length=1)}, "body"))  # fmt: skip
async def add_note(call: Call) -> TimelineItem:
    return await call.crm.timeline.add_note(call.me, call.path["member_id"], call.body["body"])


@api.get("/members/{member_id}/points", Page[PointsEntry], summary="The member's points ledger, newest first",
         query=PAGING)  # fmt: skip
async def points_ledger(call: Call) -> Page[PointsEntry]:
    return await call.crm.points.ledger(call.me, call.path["member_id"], **paging(call))


@api.post("/members/{member_id}/points", PointsEntry, status=201, summary="Earn, spend or adjust points",
          body=obj({"kind": string(8, enum=["earn", "spend", "adjust"]), "points": integer(-10_000_000, 10_000_000),
                    "reason": string(200, min_length=1), "reference": string(64, nullable=True),
                    "allow_negative": boolean()}, "kind", "points", "reason"))  # fmt: skip
async def change_points(call: Call) -> PointsEntry:
    """`earn` and `spend` take a positive number; `adjust` a signed one (allow_negative to go below zero)."""
    b, member_id, points = call.body, call.path["member_id"], call.body["points"]
    if b["kind"] == "adjust":
        return await call.crm.points.adjust(call.me, member_id, points, b["reason"], reference=b.get("reference"),
                                            allow_negative=b.get("allow_negative", False))  # fmt: skip
    if "allow_negative" in b:
        raise ValidationError("allow_negative", "applies to adjustments only")
    operation = call.crm.points.earn if b["kind"] == "earn" else call.crm.points.spend
    return await operation(call.me, member_id, points, b["reason"], reference=b.get("reference"))
