"""站内消息: internal messages between staff — to one colleague or to a whole department.

A message to a department reaches the active users of that department and of every department
below it (but not the sender, who is often one of them), as they are when it is sent (someone who joins later does not inherit old mail). Each
recipient has their own read mark. Every signed-in user may write to anyone: asking the
supervisor for help or telling the after-sales team about a visit needs no special right, so
the directory of names this needs is readable by all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from crm import audit, common
from crm.access import Actor
from crm.clock import Clock, to_iso
from crm.db import Database
from crm.errors import Forbidden, NotFound, ValidationError

MAX_SUBJECT = 200
MAX_BODY = 5000
#: Recipients of one department message: a bigger audience is what notices are for.
MAX_RECIPIENTS = 2000


@dataclass(frozen=True)
class StaffMessage:
    id: int
    sender_id: int | None
    sender_name: str
    subject: str
    body: str
    to_user_id: int | None
    to_department_id: int | None
    #: The recipient's name, or the department's.
    to_name: str
    created_at: str
    #: For a received message, when the reader read it (None: unread).
    read_at: str | None = None
    recipients: int = 0


@dataclass(frozen=True)
class Colleague:
    id: int
    display_name: str
    department_id: int | None


@dataclass(frozen=True)
class DepartmentName:
    id: int
    name: str


def _user_id(actor: Actor) -> int:
    if actor.user_id is None:
        raise Forbidden("messages are between signed-in users", code="auth.permission_denied")
    return actor.user_id


_SELECT = (
    "SELECT s.*, COALESCE(su.display_name, 'system') AS sender_name,"
    " COALESCE(tu.display_name, td.name, '') AS to_name,"
    " (SELECT COUNT(*) FROM staff_message_recipients c WHERE c.message_id = s.id) AS recipients"
    " FROM staff_messages s LEFT JOIN users su ON su.id = s.sender_id"
    " LEFT JOIN users tu ON tu.id = s.to_user_id LEFT JOIN departments td ON td.id = s.to_department_id"
)


def _message(row: dict[str, Any]) -> StaffMessage:
    return StaffMessage(row["id"], row["sender_id"], row["sender_name"], row["subject"], row["body"], row["to_user_id"],
                        row["to_department_id"], row["to_name"], row["created_at"], row.get("read_at"),
                        row["recipients"])  # fmt: skip


class StaffMessageService:
    def __init__(self, db: Database, clock: Clock | None = None) -> None:
        self.db = db
        self.clock = clock or Clock()

    async def send(
        self, actor: Actor, subject: str, body: str = "", *, to_user_id: int | None = None,
        to_department_id: int | None = None,
    ) -> StaffMessage:  # fmt: skip
        """To exactly one of a user or a department (and its sub-departments)."""
        sender = _user_id(actor)
        subject = common.text("subject", subject, max_length=MAX_SUBJECT)
        body = common.text("body", body, max_length=MAX_BODY, required=False)
        if (to_user_id is None) == (to_department_id is None):
            raise ValidationError("to", "choose one colleague or one department", code="staff_message.recipient")
        async with self.db.transaction() as tx:
            if to_user_id is not None:
                if not await tx.fetch_value("SELECT 1 FROM users WHERE id = ? AND active = 1", (to_user_id,)):
                    raise ValidationError("to_user_id", f"user {to_user_id} is not an active user", code="user.not_found")
                recipients = [to_user_id]
            else:
                path = await tx.fetch_value("SELECT path FROM departments WHERE id = ?", (to_department_id,))
                if path is None:
                    raise ValidationError("to_department_id", f"department {to_department_id} does not exist",
                                          code="department.not_found")  # fmt: skip
                rows = await tx.fetch_all(
                    "SELECT u.id FROM users u JOIN departments d ON d.id = u.department_id"
                    " WHERE u.active = 1 AND u.id <> ? AND d.path LIKE ? || '%' ORDER BY u.id LIMIT ?",
                    (sender, path, MAX_RECIPIENTS + 1),
                )
                recipients = [r["id"] for r in rows]
                if len(recipients) > MAX_RECIPIENTS:
                    raise ValidationError("to_department_id", f"more than {MAX_RECIPIENTS} people: publish a notice",
                                          code="staff_message.too_many")  # fmt: skip
                if not recipients:
                    raise ValidationError("to_department_id", "nobody works in that department yet",
                                          code="staff_message.nobody")  # fmt: skip
            message_id = await tx.insert(
                "INSERT INTO staff_messages (sender_id, subject, body, to_user_id, to_department_id, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                (sender, subject, body, to_user_id, to_department_id, to_iso(self.clock.now())),
            )
            await tx.execute_many("INSERT INTO staff_message_recipients (message_id, user_id) VALUES (?, ?)",
                                  [(message_id, user) for user in recipients])  # fmt: skip
            message = _message(await tx.fetch_one(f"{_SELECT} WHERE s.id = ?", (message_id,)) or {})
            await audit.record(tx, self.clock, actor, "staff_message", message_id, "send",
                               after={"subject": subject, "to_user_id": to_user_id,
                                      "to_department_id": to_department_id, "recipients": len(recipients)})  # fmt: skip
        return message

    async def inbox(
        self, actor: Actor, *, unread_only: bool = False, offset: int = 0, limit: int = common.DEFAULT_PAGE_SIZE
    ) -> common.Page[StaffMessage]:
        """Messages to me, newest first."""
        user_id = _user_id(actor)
        offset, limit = common.page_bounds(offset, limit)
        condition = "r.user_id = ?" + (" AND r.read_at IS NULL" if unread_only else "")
        async with self.db.reading() as r:
            total = await r.fetch_value(f"SELECT COUNT(*) FROM staff_message_recipients r WHERE {condition}", (user_id,))
            rows = await r.fetch_all(
                f"{_SELECT.replace('SELECT s.*', 'SELECT s.*, r.read_at', 1)}"
                f" JOIN staff_message_recipients r ON r.message_id = s.id WHERE {condition}"
                " ORDER BY s.id DESC LIMIT ? OFFSET ?",
                (user_id, limit, offset),
            )
        return common.Page([_message(row) for row in rows], int(total), offset, limit)

    async def sent(self, actor: Actor, *, limit: int = common.DEFAULT_PAGE_SIZE) -> list[StaffMessage]:
        user_id = _user_id(actor)
        common.page_bounds(0, limit)
        rows = await self.db.fetch_all(f"{_SELECT} WHERE s.sender_id = ? ORDER BY s.id DESC LIMIT ?", (user_id, limit))
        return [_message(row) for row in rows]

    async def unread_count(self, actor: Actor) -> int:
        if actor.user_id is None:
            return 0
        return int(await self.db.fetch_value(
            "SELECT COUNT(*) FROM staff_message_recipients WHERE user_id = ? AND read_at IS NULL", (actor.user_id,)))

    async def mark_read(self, actor: Actor, message_id: int) -> None:
        """Idempotent: reading twice keeps the first time."""
        user_id = _user_id(actor)
        async with self.db.transaction() as tx:
            found = await tx.fetch_one("SELECT read_at FROM staff_message_recipients WHERE user_id = ? AND message_id = ?",
                                       (user_id, message_id))  # fmt: skip
            if found is None:
                raise NotFound(f"message {message_id} is not in your inbox", code="staff_message.not_found")
            if found["read_at"] is None:
                await tx.execute("UPDATE staff_message_recipients SET read_at = ? WHERE user_id = ? AND message_id = ?",
                                 (to_iso(self.clock.now()), user_id, message_id))  # fmt: skip

    async def mark_all_read(self, actor: Actor) -> int:
        user_id = _user_id(actor)
        return await self.db.execute(
            "UPDATE staff_message_recipients SET read_at = ? WHERE user_id = ? AND read_at IS NULL",
            (to_iso(self.clock.now()), user_id),
        )

    async def directory(self, actor: Actor) -> tuple[list[Colleague], list[DepartmentName]]:
        """Who can be written to: active colleagues and departments, by name."""
        _user_id(actor)
        async with self.db.reading() as r:
            users = await r.fetch_all("SELECT id, display_name, department_id FROM users WHERE active = 1"
                                      " ORDER BY display_name, id")  # fmt: skip
            departments = await r.fetch_all("SELECT id, name FROM departments ORDER BY path")
        return ([Colleague(u["id"], u["display_name"], u["department_id"]) for u in users],
                [DepartmentName(d["id"], d["name"]) for d in departments])  # fmt: skip
