"""公告管理: company news, announcements and policies, with read receipts.

Roles holding notice.write publish a notice to everyone or to some departments (each reaching
its sub-departments too, as data scope does); pinned notices come first; a notice past its
expiry or withdrawn is no longer shown to staff but stays in the list its publishers see, with
its receipts, because "who had read the new refund policy before the complaint" is the question
receipts exist to answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from crm import access, audit, common
from crm.access import Actor
from crm.clock import Clock, to_iso
from crm.db import Database, Transaction
from crm.errors import Forbidden, InvalidTransition, NotFound, ValidationError

MAX_TITLE = 200
MAX_BODY = 20_000
MAX_AUDIENCE = 100


@dataclass(frozen=True)
class Notice:
    id: int
    title: str
    body: str
    pinned: bool
    expires_at: str | None
    published_by: int | None
    publisher_name: str
    published_at: str
    withdrawn_at: str | None
    #: Empty: everyone.
    department_ids: tuple[int, ...]
    department_names: tuple[str, ...]
    #: For a reader: when they read it.
    read_at: str | None = None


@dataclass(frozen=True)
class Receipt:
    user_id: int
    display_name: str
    department_name: str | None
    read_at: str | None


@dataclass(frozen=True)
class Receipts:
    notice_id: int
    audience: int
    read: int
    readers: list[Receipt]


# The user's department is the audience department or below it: their path starts with its path.
_REACHES = (
    "(NOT EXISTS (SELECT 1 FROM notice_departments nd WHERE nd.notice_id = n.id) OR EXISTS ("
    " SELECT 1 FROM notice_departments nd JOIN departments ad ON ad.id = nd.department_id"
    " JOIN departments ud ON ud.path LIKE ad.path || '%' WHERE nd.notice_id = n.id AND ud.id = ?))"
)


class NoticeService:
    def __init__(self, db: Database, clock: Clock | None = None) -> None:
        self.db = db
        self.clock = clock or Clock()

    async def publish(
        self,
        actor: Actor,
        title: str,
        body: str,
        *,
        department_ids: Sequence[int] = (),
        pinned: bool = False,
        expires_at: datetime | None = None,
    ) -> Notice:
        actor.require(access.NOTICE_WRITE)
        title = common.text("title", title, max_length=MAX_TITLE)
        body = common.text("body", body, max_length=MAX_BODY)
        departments = list(dict.fromkeys(department_ids))
        if len(departments) > MAX_AUDIENCE or any(isinstance(d, bool) or not isinstance(d, int) for d in departments):
            raise ValidationError("department_ids", f"up to {MAX_AUDIENCE} department ids")
        if expires_at is not None and (expires_at.tzinfo is None or expires_at <= self.clock.now()):
            raise ValidationError("expires_at", "must be in the future", code="date.in_past")
        async with self.db.transaction() as tx:
            for department in departments:
                if not await tx.fetch_value("SELECT 1 FROM departments WHERE id = ?", (department,)):
                    raise ValidationError("department_ids", f"department {department} does not exist",
                                          code="department.not_found")  # fmt: skip
            notice_id = await tx.insert(
                "INSERT INTO notices (title, body, pinned, expires_at, published_by, published_at)"
                " VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                (title, body, int(bool(pinned)), to_iso(expires_at) if expires_at else None, actor.user_id,
                 to_iso(self.clock.now())),
            )  # fmt: skip
            await tx.execute_many("INSERT INTO notice_departments (notice_id, department_id) VALUES (?, ?)",
                                  [(notice_id, d) for d in departments])  # fmt: skip
            notice = await self._load(tx, notice_id)
            await audit.record(tx, self.clock, actor, "notice", notice_id, "publish", after=notice)
        return notice

    async def withdraw(self, actor: Actor, notice_id: int) -> Notice:
        actor.require(access.NOTICE_WRITE)
        async with self.db.transaction() as tx:
            before = await self._load(tx, notice_id)
            if before.withdrawn_at is not None:
                raise InvalidTransition(f"notice {notice_id} is already withdrawn", code="notice.withdrawn")
            await tx.execute("UPDATE notices SET withdrawn_at = ? WHERE id = ?", (to_iso(self.clock.now()), notice_id))
            after = await self._load(tx, notice_id)
            await audit.record(tx, self.clock, actor, "notice", notice_id, "withdraw", before=before, after=after)
        return after

    async def current(self, actor: Actor, *, limit: int = 20) -> list[Notice]:
        """The notices this user should see now: reaching their department, not expired, not
        withdrawn; pinned first, then newest. Each carries the user's read time."""
        user_id = self._user(actor)
        common.page_bounds(0, limit)
        async with self.db.reading() as r:
            department = await r.fetch_value("SELECT department_id FROM users WHERE id = ?", (user_id,))
            rows = await r.fetch_all(
                "SELECT n.id, (SELECT x.read_at FROM notice_reads x WHERE x.notice_id = n.id AND x.user_id = ?) AS read_at"
                f" FROM notices n WHERE n.withdrawn_at IS NULL AND (n.expires_at IS NULL OR n.expires_at > ?) AND {_REACHES}"
                " ORDER BY n.pinned DESC, n.published_at DESC, n.id DESC LIMIT ?",
                (user_id, to_iso(self.clock.now()), department, limit),
            )
            notices = [await self._load(r, row["id"], read_at=row["read_at"]) for row in rows]
        return notices

    async def read(self, actor: Actor, notice_id: int) -> Notice:
        """Open a notice: records the receipt the first time."""
        user_id = self._user(actor)
        async with self.db.transaction() as tx:
            notice = await self._visible(tx, actor, user_id, notice_id)
            read_at = await tx.fetch_value("SELECT read_at FROM notice_reads WHERE notice_id = ? AND user_id = ?",
                                           (notice_id, user_id))  # fmt: skip
            if read_at is None:
                read_at = to_iso(self.clock.now())
                await tx.execute("INSERT INTO notice_reads (notice_id, user_id, read_at) VALUES (?, ?, ?)",
                                 (notice_id, user_id, read_at))  # fmt: skip
        return _with_read(notice, read_at)

    async def unread_count(self, actor: Actor) -> int:
        return sum(1 for n in await self.current(actor, limit=200) if n.read_at is None) if actor.user_id else 0

    async def list_all(self, actor: Actor, *, limit: int = 100) -> list[Notice]:
        """Every notice, newest first, for the publishers' page."""
        actor.require(access.NOTICE_WRITE)
        common.page_bounds(0, limit)
        async with self.db.reading() as r:
            rows = await r.fetch_all("SELECT id FROM notices ORDER BY id DESC LIMIT ?", (limit,))
            return [await self._load(r, row["id"]) for row in rows]

    async def get(self, actor: Actor, notice_id: int) -> Notice:
        """Any notice, current or not, for its publishers."""
        actor.require(access.NOTICE_WRITE)
        async with self.db.reading() as r:
            return await self._load(r, notice_id)

    async def receipts(self, actor: Actor, notice_id: int) -> Receipts:
        """阅读回执: everyone the notice reaches (active users), read or not, unread first."""
        actor.require(access.NOTICE_WRITE)
        async with self.db.reading() as r:
            await self._load(r, notice_id)
            rows = await r.fetch_all(
                "SELECT u.id, u.display_name, d.name AS department_name, x.read_at FROM users u"
                " LEFT JOIN departments d ON d.id = u.department_id"
                " LEFT JOIN notice_reads x ON x.notice_id = ? AND x.user_id = u.id"
                f" JOIN notices n ON n.id = ? WHERE u.active = 1 AND {_REACHES.replace('ud.id = ?', 'ud.id = u.department_id')}"
                " ORDER BY CASE WHEN x.read_at IS NULL THEN 0 ELSE 1 END, u.display_name, u.id",
                (notice_id, notice_id),
            )
        readers = [Receipt(row["id"], row["display_name"], row["department_name"], row["read_at"]) for row in rows]
        return Receipts(notice_id, len(readers), sum(1 for x in readers if x.read_at), readers)

    # -- helpers ------------------------------------------------------------------------------------
    @staticmethod
    def _user(actor: Actor) -> int:
        if actor.user_id is None:
            raise Forbidden("notices are read by signed-in users", code="auth.permission_denied")
        return actor.user_id

    async def _visible(self, tx: Transaction, actor: Actor, user_id: int, notice_id: int) -> Notice:
        notice = await self._load(tx, notice_id)
        if actor.can(access.NOTICE_WRITE):
            return notice  # publishers open any notice, current or not
        department = await tx.fetch_value("SELECT department_id FROM users WHERE id = ?", (user_id,))
        visible = await tx.fetch_value(
            f"SELECT 1 FROM notices n WHERE n.id = ? AND n.withdrawn_at IS NULL AND (n.expires_at IS NULL"
            f" OR n.expires_at > ?) AND {_REACHES}", (notice_id, to_iso(self.clock.now()), department))  # fmt: skip
        if not visible:
            raise NotFound(f"notice {notice_id} does not exist", code="notice.not_found")
        return notice

    @staticmethod
    async def _load(tx: Transaction, notice_id: int, *, read_at: str | None = None) -> Notice:
        row = await tx.fetch_one(
            "SELECT n.*, COALESCE(u.display_name, 'system') AS publisher_name FROM notices n"
            " LEFT JOIN users u ON u.id = n.published_by WHERE n.id = ?", (notice_id,))  # fmt: skip
        if row is None:
            raise NotFound(f"notice {notice_id} does not exist", code="notice.not_found")
        audience = await tx.fetch_all(
            "SELECT d.id, d.name FROM notice_departments nd JOIN departments d ON d.id = nd.department_id"
            " WHERE nd.notice_id = ? ORDER BY d.path", (notice_id,))  # fmt: skip
        return _notice(row, audience, read_at)


def _notice(row: dict[str, Any], audience: list[dict[str, Any]], read_at: str | None) -> Notice:
    return Notice(row["id"], row["title"], row["body"], bool(row["pinned"]), row["expires_at"], row["published_by"],
                  row["publisher_name"], row["published_at"], row["withdrawn_at"], tuple(a["id"] for a in audience),
                  tuple(a["name"] for a in audience), read_at)  # fmt: skip


def _with_read(notice: Notice, read_at: str | None) -> Notice:
    return replace(notice, read_at=read_at)
