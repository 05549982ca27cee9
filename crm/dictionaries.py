"""字典管理 and site settings: the configurable lists and values other services read.

Dictionaries are generic ordered code/label lists (customer types, relationship levels, ticket
categories, source channels); a record stores the code, the UI shows the label. Member levels
are their own table because their rank means something (VIP routing, upgrades). Settings are
typed key/values that business rules read (the duplicate work-order window, default warranty).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from crm import access, audit, common
from crm.access import Actor
from crm.clock import Clock
from crm.db import Database, IntegrityError, Transaction
from crm.errors import Conflict, NotFound, ValidationError

_CODE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,47}$")


#: Where records store each dictionary's codes: an item still used there cannot be deleted.
DICTIONARY_USES: dict[str, tuple[tuple[str, str], ...]] = {
    "customer_type": (("members", "customer_type"),),
    "relationship_level": (("members", "relationship_level"),),
    "source_channel": (("members", "source_channel"),),
    "ticket_category": (("tickets", "category"),),
}


@dataclass(frozen=True)
class DictionaryItem:
    dictionary: str
    code: str
    label: str
    sort_order: int
    active: bool


@dataclass(frozen=True)
class MemberLevel:
    code: str
    name: str
    rank: int


def check_code(field: str, value: object) -> str:
    if not isinstance(value, str) or not _CODE.match(value):
        raise ValidationError(field, "lower-case letters, digits and _ . - (1-48 characters)", code="code.invalid")
    return value


class DictionaryService:
    def __init__(self, db: Database, clock: Clock | None = None) -> None:
        self.db = db
        self.clock = clock or Clock()

    # -- dictionaries ---------------------------------------------------------------------------
    async def items(self, dictionary: str, *, include_inactive: bool = False) -> list[DictionaryItem]:
        """Items in display order. Readable by everyone: every form needs its drop-downs."""
        sql = "SELECT * FROM dictionary_items WHERE dictionary = ?"
        if not include_inactive:
            sql += " AND active = 1"
        rows = await self.db.fetch_all(sql + " ORDER BY sort_order, code", (dictionary,))
        return [DictionaryItem(r["dictionary"], r["code"], r["label"], r["sort_order"], bool(r["active"])) for r in rows]

    async def put_item(
        self, actor: Actor, dictionary: str, code: str, label: str, *, sort_order: int = 0, active: bool = True
    ) -> DictionaryItem:
        """Create or change one item. Items are deactivated rather than deleted: stored records keep their code."""
        actor.require(access.SETTINGS_WRITE)
        check_code("dictionary", dictionary)
        check_code("code", code)
        label = common.text("label", label, max_length=64)
        async with self.db.transaction() as tx:
            before = await tx.fetch_one(
                "SELECT * FROM dictionary_items WHERE dictionary = ? AND code = ?", (dictionary, code)
            )
            if before is None:
                await tx.execute(
                    "INSERT INTO dictionary_items (dictionary, code, label, sort_order, active) VALUES (?, ?, ?, ?, ?)",
                    (dictionary, code, label, sort_order, 1 if active else 0),
                )
            else:
                await tx.execute(
                    "UPDATE dictionary_items SET label = ?, sort_order = ?, active = ? WHERE id = ?",
                    (label, sort_order, 1 if active else 0, before["id"]),
                )
            item = DictionaryItem(dictionary, code, label, sort_order, active)
            await audit.record(tx, self.clock, actor, "dictionary_item", before["id"] if before else None,
                               "update" if before else "create", before=before, after=item)  # fmt: skip
        return item

    async def dictionaries(self) -> list[str]:
        """The names of the dictionaries that exist, in name order."""
        rows = await self.db.fetch_all("SELECT DISTINCT dictionary FROM dictionary_items ORDER BY dictionary")
        return [r["dictionary"] for r in rows]

    async def delete_item(self, actor: Actor, dictionary: str, code: str) -> None:
        """Remove an item nothing refers to. One that records still hold is refused (Conflict):
        deactivate it instead, so old records keep a label and new ones cannot pick it."""
        actor.require(access.SETTINGS_WRITE)
        async with self.db.transaction() as tx:
            before = await tx.fetch_one(
                "SELECT * FROM dictionary_items WHERE dictionary = ? AND code = ?", (dictionary, code)
            )
            if before is None:
                raise NotFound(f"{dictionary}/{code} does not exist", code="dictionary.not_found")
            for table, column in DICTIONARY_USES.get(dictionary, ()):
                used = await tx.fetch_value(f"SELECT COUNT(*) FROM {table} WHERE {column} = ?", (code,))
                if used:
                    raise Conflict(f"{used} {table} record(s) still use {dictionary}/{code}: deactivate it instead",
                                   code="dictionary.in_use")  # fmt: skip
            await tx.execute("DELETE FROM dictionary_items WHERE id = ?", (before["id"],))
            await audit.record(tx, self.clock, actor, "dictionary_item", before["id"], "delete", before=before)

    @staticmethod
    async def check_item(tx: Transaction, dictionary: str, code: str | None, *, field: str) -> str | None:
        """`code` if it is an active item of `dictionary` (None passes), else ValidationError."""
        if code is None or code == "":
            return None
        found = await tx.fetch_value(
            "SELECT 1 FROM dictionary_items WHERE dictionary = ? AND code = ? AND active = 1", (dictionary, code)
        )
        if not found:
            raise ValidationError(field, f"{code!r} is not in dictionary {dictionary!r}", code="dictionary.unknown_code")
        return code

    # -- member levels --------------------------------------------------------------------------
    async def levels(self) -> list[MemberLevel]:
        rows = await self.db.fetch_all("SELECT * FROM member_levels ORDER BY rank")
        return [MemberLevel(r["code"], r["name"], r["rank"]) for r in rows]

    async def put_level(self, actor: Actor, code: str, name: str, rank: int) -> MemberLevel:
        actor.require(access.SETTINGS_WRITE)
        check_code("code", code)
        name = common.text("name", name, max_length=32)
        if isinstance(rank, bool) or not isinstance(rank, int):
            raise ValidationError("rank", "must be an integer")
        async with self.db.transaction() as tx:
            before = await tx.fetch_one("SELECT * FROM member_levels WHERE code = ?", (code,))
            try:
                if before is None:
                    await tx.execute("INSERT INTO member_levels (code, name, rank) VALUES (?, ?, ?)", (code, name, rank))
                else:
                    await tx.execute("UPDATE member_levels SET name = ?, rank = ? WHERE code = ?", (name, rank, code))
            except IntegrityError:
                raise Conflict(f"another level already has rank {rank}", code="level.duplicate_rank") from None
            level = MemberLevel(code, name, rank)
            await audit.record(tx, self.clock, actor, "member_level", None, "update" if before else "create",
                               before=before, after=level)  # fmt: skip
        return level

    async def delete_level(self, actor: Actor, code: str) -> None:
        actor.require(access.SETTINGS_WRITE)
        async with self.db.transaction() as tx:
            before = await tx.fetch_one("SELECT * FROM member_levels WHERE code = ?", (code,))
            if before is None:
                raise NotFound(f"member level {code!r} does not exist", code="level.not_found")
            if await tx.fetch_value("SELECT 1 FROM members WHERE level_code = ? LIMIT 1", (code,)):
                raise Conflict(f"members still hold level {code!r}", code="level.in_use")
            await tx.execute("DELETE FROM member_levels WHERE code = ?", (code,))
            await audit.record(tx, self.clock, actor, "member_level", None, "delete", before=before)

    # -- settings -------------------------------------------------------------------------------
    async def get_int(self, key: str, default: int) -> int:
        value = await self.db.fetch_value("SELECT value FROM settings WHERE key = ?", (key,))
        return default if value is None else int(value)

    async def set_int(self, actor: Actor, key: str, value: int) -> None:
        actor.require(access.SETTINGS_WRITE)
        check_code("key", key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValidationError(key, "must be an integer")
        async with self.db.transaction() as tx:
            before = await tx.fetch_value("SELECT value FROM settings WHERE key = ?", (key,))
            if before is None:
                await tx.execute("INSERT INTO settings (key, value) VALUES (?, ?)", (key, str(value)))
            else:
                await tx.execute("UPDATE settings SET value = ? WHERE key = ?", (str(value), key))
            await audit.record(tx, self.clock, actor, "setting", None, "update",
                               before={key: before}, after={key: str(value)})  # fmt: skip
