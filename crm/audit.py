"""日志管理: every write leaves an audit entry (who, when, which record, what changed).

`record` is called by each service inside the transaction of the write it describes, so an entry
exists exactly when the write committed. Secrets never enter the log: keys listed in
`REDACTED_KEYS` are replaced before serialising.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from datetime import date, datetime
from enum import Enum
from typing import Any

from crm import access
from crm.access import Actor
from crm.clock import Clock, to_iso
from crm.db import Database, Transaction
from crm.errors import ValidationError

REDACTED_KEYS = frozenset({"password", "password_hash"})

#: Upper bound of one page of the audit log: the log grows without limit and a UI asking for
#: "everything" must page.
MAX_PAGE = 500


@dataclass(frozen=True)
class AuditEntry:
    id: int
    created_at: str
    user_id: int | None
    username: str
    entity: str
    entity_id: int | None
    action: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): ("***" if k in REDACTED_KEYS else _plain(v)) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [_plain(v) for v in value]
        return sorted(items, key=str) if isinstance(value, set | frozenset) else items
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return to_iso(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


def to_json(value: Any) -> str | None:
    if value is None:
        return None
    return json.dumps(_plain(value), ensure_ascii=False, sort_keys=True)


async def record(
    tx: Transaction,
    clock: Clock,
    actor: Actor,
    entity: str,
    entity_id: int | None,
    action: str,
    *,
    before: Any = None,
    after: Any = None,
) -> None:
    """Append one audit entry inside the caller's transaction."""
    await tx.execute(
        "INSERT INTO audit_log (created_at, user_id, username, entity, entity_id, action, before_json, after_json)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (to_iso(clock.now()), actor.user_id, actor.username, entity, entity_id, action,
         to_json(before), to_json(after)),
    )  # fmt: skip


async def list_entries(
    db: Database,
    actor: Actor,
    *,
    entity: str | None = None,
    entity_id: int | None = None,
    user_id: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
    before_id: int | None = None,
) -> list[AuditEntry]:
    """Newest first; page backwards with `before_id` (the smallest id of the previous page)."""
    actor.require(access.AUDIT_READ)
    if not 1 <= limit <= MAX_PAGE:
        raise ValidationError("limit", f"must be between 1 and {MAX_PAGE}")
    where: list[str] = []
    params: list[Any] = []
    for column, value in (("entity", entity), ("entity_id", entity_id), ("user_id", user_id)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if since is not None:
        where.append("created_at >= ?")
        params.append(to_iso(since))
    if until is not None:
        where.append("created_at < ?")
        params.append(to_iso(until))
    if before_id is not None:
        where.append("id < ?")
        params.append(before_id)
    sql = "SELECT * FROM audit_log"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY id DESC LIMIT ?"
    rows = await db.fetch_all(sql, [*params, limit])
    return [
        AuditEntry(
            id=r["id"], created_at=r["created_at"], user_id=r["user_id"], username=r["username"],
            entity=r["entity"], entity_id=r["entity_id"], action=r["action"],
            before=json.loads(r["before_json"]) if r["before_json"] else None,
            after=json.loads(r["after_json"]) if r["after_json"] else None,
        )
        for r in rows
    ]  # fmt: skip
