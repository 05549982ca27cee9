"""Parameters several endpoint modules share: paging and the member filter."""

from __future__ import annotations

from typing import Any

from crm.members import MemberQuery
from webui.api.registry import Call, q
from webui.api.schema import boolean, identifier, integer, obj, string

OFFSET = q("offset", integer(0, 10_000_000))
LIMIT = q("limit", integer(1, 200), description="page size, 20 by default")
PAGING = [OFFSET, LIMIT]


def paging(call: Call) -> dict[str, int]:
    return {k: call.query[k] for k in ("offset", "limit") if k in call.query}


#: The member filter of member search, bulk messaging and survey campaigns (crm.members.MemberQuery).
FILTER_FIELDS: dict[str, dict[str, Any]] = {
    "text": string(64, description="the one search box: name part, phone, card number or e-mail"),
    "name": string(64),
    "phone": string(64),
    "email": string(254),
    "tag": string(32),
    "level": string(48),
    "owner_id": identifier(),
    "blacklisted": boolean(),
}
MEMBER_FILTER = obj(FILTER_FIELDS)


def member_query(values: dict[str, Any]) -> MemberQuery:
    return MemberQuery(**{k: v for k, v in values.items() if k in FILTER_FIELDS})
