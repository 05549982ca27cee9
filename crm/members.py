"""会员管理: members, their phone numbers, tags and levels; search; the caller-ID card.

Phone numbers live in `member_phones` keyed by E.164, so any typed form finds the member and the
caller-ID look-up on the call path is an index probe. A mobile number belongs to one member (a
second member with the same mobile is a duplicate record, refused); a landline may be shared.
Name search goes through the n-gram table (see `name_grams`) so it stays an index look-up at a
million members.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from typing import Any

from crm import access, audit, common, scopes, timeline
from crm.access import Actor
from crm.clock import Clock, to_iso
from crm.db import Database, Transaction
from crm.dictionaries import DictionaryService
from crm.errors import Conflict, ValidationError
from crm.phones import Phone, PhoneKind, PhoneNormaliser
from crm.timeline import TimelineItem

MAX_PHONES = 10
MAX_NAME_LENGTH = 64
MAX_NOTES_LENGTH = 4000
#: Search results are counted exactly up to this many; beyond, the page says "at least" (1000+).
#: Counting visits every match: at a million members 10,000 matches of a popular tag cost 15-30 ms
#: of random row reads per search, a thousand cost a tenth of it, and fifty pages of results are
#: more than anyone reads before narrowing the search.
MAX_EXACT_COUNT = 1_000
#: Items of each kind on the caller-ID card: enough for the agent's first glance.
DEFAULT_CARD_ITEMS = 5


class Gender(StrEnum):
    MALE = "male"
    FEMALE = "female"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Member:
    id: int
    card_no: str | None
    name: str
    gender: Gender
    phones: tuple[Phone, ...]
    email: str | None
    birthday: str | None
    level_code: str | None
    customer_type: str | None
    relationship_level: str | None
    source_channel: str | None
    tags: tuple[str, ...]
    blacklisted: bool
    blacklist_reason: str | None
    notes: str
    owner_id: int | None
    points_balance: int
    created_at: str
    updated_at: str

    @property
    def primary_phone(self) -> Phone | None:
        return next((p for p in self.phones if p.is_primary), self.phones[0] if self.phones else None)


@dataclass(frozen=True)
class MemberRef:
    id: int
    name: str
    level_code: str | None


@dataclass(frozen=True)
class MemberCard:
    """What the agent's screen pops when a member calls: who, how valuable, what happened lately."""

    member: Member
    level_name: str | None
    #: Rank of the member's level (higher is more valuable); the ACD may queue by it.
    level_rank: int | None
    #: Newest first; up to N of each kind the actor may read.
    recent: list[TimelineItem]
    #: Other members sharing this (landline) number, so the agent can switch.
    other_matches: list[MemberRef] = field(default_factory=list)


@dataclass(frozen=True)
class MemberQuery:
    """Filters combined with AND. `text` is the one search box: an e-mail address, a phone number
    in any form, a card number or part of a name."""

    text: str | None = None
    name: str | None = None
    phone: str | None = None
    email: str | None = None
    tag: str | None = None
    level: str | None = None
    owner_id: int | None = None
    blacklisted: bool | None = None


def name_key(name: str) -> str:
    """What name search compares: case-folded, without blanks (`Zhang Wei` == `zhangwei`)."""
    return "".join(name.casefold().split())


def name_grams(key: str) -> set[str]:
    """Every character and every adjacent pair: a substring of length 1 is one unigram probe;
    a longer one must contain all its bigrams, which narrows candidates to a handful before
    the LIKE confirms the order."""
    return set(key) | {key[i : i + 2] for i in range(len(key) - 1)}


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class MemberService:
    def __init__(self, db: Database, clock: Clock | None = None, phones: PhoneNormaliser | None = None) -> None:
        self.db = db
        self.clock = clock or Clock()
        self.phones = phones or PhoneNormaliser()

    # -- writes -----------------------------------------------------------------------------------
    async def create(
        self,
        actor: Actor,
        name: str,
        *,
        phones: Sequence[str],
        gender: Gender | str = Gender.UNKNOWN,
        email: str | None = None,
        birthday: date | str | None = None,
        level: str | None = None,
        tags: Sequence[str] | None = None,
        customer_type: str | None = None,
        relationship_level: str | None = None,
        source_channel: str | None = None,
        notes: str = "",
        owner_id: int | None = None,
        card_no: str | None = None,
    ) -> Member:
        """A new member; the first phone is the primary one. Level defaults to the lowest tier."""
        actor.require(access.MEMBER_WRITE)
        values = {
            "name": common.text("name", name, max_length=MAX_NAME_LENGTH),
            "gender": common.enum_value("gender", Gender, gender).value,
            "email": common.email("email", email),
            "notes": common.text("notes", notes, max_length=MAX_NOTES_LENGTH, required=False),
            "card_no": common.optional_text("card_no", card_no, max_length=32),
            **self._birthday_columns(birthday),
        }
        normalised = self._normalise_phones(phones)
        tag_values = common.tag_list("tags", tags)
        async with self.db.transaction() as tx:
            values["level_code"] = await self._level(tx, level, default_lowest=True)
            values["customer_type"] = await DictionaryService.check_item(tx, "customer_type", customer_type, field="customer_type")
            values["relationship_level"] = await DictionaryService.check_item(
                tx, "relationship_level", relationship_level, field="relationship_level"
            )
            values["source_channel"] = await DictionaryService.check_item(tx, "source_channel", source_channel, field="source_channel")
            values["owner_id"] = await self._owner(tx, owner_id)
            await self._check_card_no(tx, values["card_no"], None)
            await self._check_mobiles(tx, normalised, None)
            now = to_iso(self.clock.now())
            values.update(name_key=name_key(values["name"]), created_by=actor.user_id, created_at=now, updated_at=now)
            columns = ", ".join(values)
            marks = ", ".join("?" for _ in values)
            member_id = await tx.insert(f"INSERT INTO members ({columns}) VALUES ({marks}) RETURNING id", list(values.values()))
            await self._write_phones(tx, member_id, normalised)
            await self._write_tags(tx, member_id, tag_values, values["level_code"])
            await self._write_grams(tx, member_id, values["name_key"])
            member = (await self._load(tx, [member_id]))[member_id]
            await audit.record(tx, self.clock, actor, "member", member_id, "create", after=member)
        return member

    async def update(
        self,
        actor: Actor,
        member_id: int,
        *,
        name: str | common._Unset = common.UNSET,
        phones: Sequence[str] | common._Unset = common.UNSET,
        gender: Gender | str | common._Unset = common.UNSET,
        email: str | None | common._Unset = common.UNSET,
        birthday: date | str | None | common._Unset = common.UNSET,
        level: str | None | common._Unset = common.UNSET,
        tags: Sequence[str] | common._Unset = common.UNSET,
        customer_type: str | None | common._Unset = common.UNSET,
        relationship_level: str | None | common._Unset = common.UNSET,
        source_channel: str | None | common._Unset = common.UNSET,
        notes: str | common._Unset = common.UNSET,
        owner_id: int | None | common._Unset = common.UNSET,
        card_no: str | None | common._Unset = common.UNSET,
    ) -> Member:
        """Change the given fields; `phones` and `tags`, when given, replace the whole list."""
        actor.require(access.MEMBER_WRITE)
        changes: dict[str, Any] = {}
        if not isinstance(name, common._Unset):
            changes["name"] = common.text("name", name, max_length=MAX_NAME_LENGTH)
            changes["name_key"] = name_key(changes["name"])
        if not isinstance(gender, common._Unset):
            changes["gender"] = common.enum_value("gender", Gender, gender).value
        if not isinstance(email, common._Unset):
            changes["email"] = common.email("email", email)
        if not isinstance(birthday, common._Unset):
            changes.update(self._birthday_columns(birthday))
        if not isinstance(notes, common._Unset):
            changes["notes"] = common.text("notes", notes, max_length=MAX_NOTES_LENGTH, required=False)
        if not isinstance(card_no, common._Unset):
            changes["card_no"] = common.optional_text("card_no", card_no, max_length=32)
        normalised = None if isinstance(phones, common._Unset) else self._normalise_phones(phones)
        tag_values = None if isinstance(tags, common._Unset) else common.tag_list("tags", tags)
        async with self.db.transaction() as tx:
            await scopes.require_member(tx, actor, member_id)
            before = (await self._load(tx, [member_id]))[member_id]
            if not isinstance(level, common._Unset):
                changes["level_code"] = await self._level(tx, level, default_lowest=False)
            if not isinstance(customer_type, common._Unset):
                changes["customer_type"] = await DictionaryService.check_item(tx, "customer_type", customer_type, field="customer_type")
            if not isinstance(relationship_level, common._Unset):
                changes["relationship_level"] = await DictionaryService.check_item(
                    tx, "relationship_level", relationship_level, field="relationship_level"
                )
            if not isinstance(source_channel, common._Unset):
                changes["source_channel"] = await DictionaryService.check_item(tx, "source_channel", source_channel, field="source_channel")
            if not isinstance(owner_id, common._Unset):
                changes["owner_id"] = await self._owner(tx, owner_id)
            if "card_no" in changes:
                await self._check_card_no(tx, changes["card_no"], member_id)
            changes["updated_at"] = to_iso(self.clock.now())
            assignments = ", ".join(f"{column} = ?" for column in changes)
            await tx.execute(f"UPDATE members SET {assignments} WHERE id = ?", (*changes.values(), member_id))
            if normalised is not None:
                await self._check_mobiles(tx, normalised, member_id)
                await tx.execute("DELETE FROM member_phones WHERE member_id = ?", (member_id,))
                await self._write_phones(tx, member_id, normalised)
            if tag_values is not None:
                await tx.execute("DELETE FROM member_tags WHERE member_id = ?", (member_id,))
                level_now = await tx.fetch_value("SELECT level_code FROM members WHERE id = ?", (member_id,))
                await self._write_tags(tx, member_id, tag_values, level_now)
            elif "level_code" in changes:
                await tx.execute("UPDATE member_tags SET level_code = ? WHERE member_id = ?", (changes["level_code"], member_id))
            if "name_key" in changes:
                await tx.execute("DELETE FROM member_name_grams WHERE member_id = ?", (member_id,))
                await self._write_grams(tx, member_id, changes["name_key"])
            after = (await self._load(tx, [member_id]))[member_id]
            await audit.record(tx, self.clock, actor, "member", member_id, "update", before=before, after=after)
        return after

    async def set_blacklist(self, actor: Actor, member_id: int, blacklisted: bool, reason: str | None = None) -> Member:
        """Put a member on the blacklist (a reason is required) or take them off it."""
        actor.require(access.MEMBER_WRITE)
        reason_text = common.text("reason", reason, max_length=500, required=blacklisted) or None
        async with self.db.transaction() as tx:
            await scopes.require_member(tx, actor, member_id)
            before = (await self._load(tx, [member_id]))[member_id]
            await tx.execute(
                "UPDATE members SET blacklisted = ?, blacklist_reason = ?, updated_at = ? WHERE id = ?",
                (1 if blacklisted else 0, reason_text if blacklisted else None, to_iso(self.clock.now()), member_id),
            )
            after = (await self._load(tx, [member_id]))[member_id]
            await audit.record(tx, self.clock, actor, "member", member_id,
                               "blacklist" if blacklisted else "unblacklist", before=before, after=after)  # fmt: skip
        return after

    # -- reads ------------------------------------------------------------------------------------
    async def get(self, actor: Actor, member_id: int) -> Member:
        actor.require(access.MEMBER_READ)
        async with self.db.reading() as r:
            await scopes.require_member(r, actor, member_id)
            return (await self._load(r, [member_id]))[member_id]

    async def names(self, actor: Actor, member_ids: Sequence[int]) -> dict[int, str]:
        """Names of the given members this actor may see (for lists of tasks about members)."""
        actor.require(access.MEMBER_READ)
        ids = sorted(set(member_ids))[: common.MAX_PAGE_SIZE]
        if not ids:
            return {}
        condition, params = scopes.member_condition(actor, "m")
        rows = await self.db.fetch_all(
            f"SELECT m.id, m.name FROM members m WHERE m.id IN ({', '.join('?' for _ in ids)}) AND {condition}",
            [*ids, *params])  # fmt: skip
        return {r["id"]: r["name"] for r in rows}

    async def search(self, actor: Actor, query: MemberQuery, *, offset: int = 0, limit: int = common.DEFAULT_PAGE_SIZE) -> common.Page[Member]:
        """Members matching every given filter, newest first, one page at a time."""
        actor.require(access.MEMBER_READ)
        offset, limit = common.page_bounds(offset, limit)
        source, order, condition, params = self._plan(actor, query, drive=True)
        # Count no further than needed to say "1000+": a one-character name or a popular tag
        # matches a large share of a million members, and exact totals there help nobody.
        count_to = max(MAX_EXACT_COUNT, offset + limit) + 1
        async with self.db.reading() as r:
            total = await r.fetch_value(
                f"SELECT COUNT(*) FROM (SELECT 1 FROM {source} WHERE {condition} LIMIT ?) AS hits", [*params, count_to]
            )
            rows = await r.fetch_all(
                f"SELECT m.id FROM {source} WHERE {condition} ORDER BY {order} DESC LIMIT ? OFFSET ?",
                [*params, limit, offset],
            )
            ids = [row["id"] for row in rows]
            loaded = await self._load(r, ids)
        exact = total < count_to
        return common.Page([loaded[i] for i in ids], total if exact else total - 1, offset, limit, exact)

    def filter_condition(self, actor: Actor, query: MemberQuery) -> tuple[str, list[Any]]:
        """The WHERE condition (on alias `m` of `members`) of the members `actor` may see that
        match `query`. Shared by bulk messaging and survey campaigns, so "the members of this
        filter" means what search means. The caller checks member.read (or its own permission)."""
        _, _, condition, params = self._plan(actor, query, drive=False)
        return condition, params

    def _plan(self, actor: Actor, query: MemberQuery, *, drive: bool) -> tuple[str, str, str, list[Any]]:
        """(FROM clause, ORDER BY column, WHERE condition, parameters) of a member query.

        With `drive`, a broad filter (a tag, with or without the level; a one-character name)
        becomes the outer loop of the query: rows come straight off that index in member-id
        order, so the first page and the capped count stop early. Written as `m.id IN (...)`
        instead, SQLite first materialises every matching id — 80k members of a popular tag at
        a million members cost 60-130 ms per search, against a 50 ms goal. CROSS JOIN fixes the
        loop order in SQLite (its documented planner override); elsewhere it is an inner join.
        """
        source, order = "members m", "m.id"
        scope_sql, params = scopes.member_condition(actor, "m")
        where = [scope_sql]
        tag = query.tag.strip() if query.tag is not None and query.tag.strip() else None
        level_done = False
        if tag is not None and drive:
            source, order = "member_tags g CROSS JOIN members m ON m.id = g.member_id", "g.member_id"
            where.append("g.tag = ?")
            params.append(tag)
            if query.level is not None:
                # One range of ix_member_tags_tag_level, whose rows carry the member's level.
                where.append("g.level_code = ?")
                params.append(query.level)
                level_done = True
        elif tag is not None:
            where.append("m.id IN (SELECT g.member_id FROM member_tags g WHERE g.tag = ?)")
            params.append(tag)
        if query.text is not None and query.text.strip():
            cond, p = self._text_condition(common.text("text", query.text, max_length=MAX_NAME_LENGTH))
            where.append(cond)
            params += p
        if query.name is not None and query.name.strip():
            name = common.text("name", query.name, max_length=MAX_NAME_LENGTH)
            if drive and source == "members m" and len(name_key(name)) == 1:
                source, order = "member_name_grams n CROSS JOIN members m ON m.id = n.member_id", "n.member_id"
                where.append("n.gram = ?")
                params.append(name_key(name))
            else:
                cond, p = self._name_condition(name)
                where.append(cond)
                params += p
        if query.phone is not None and query.phone.strip():
            where.append("m.id IN (SELECT p.member_id FROM member_phones p WHERE p.e164 = ?)")
            params.append(self.phones.normalise(query.phone, field="phone").e164)
        if query.email is not None and query.email.strip():
            where.append("m.email = ?")
            params.append(common.email("email", query.email))
        if query.level is not None and not level_done:
            where.append("m.level_code = ?")
            params.append(query.level)
        if query.owner_id is not None:
            where.append("m.owner_id = ?")
            params.append(query.owner_id)
        if query.blacklisted is not None:
            where.append("m.blacklisted = ?")
            params.append(1 if query.blacklisted else 0)
        return source, order, " AND ".join(where), params

    async def lookup_by_caller_id(self, actor: Actor, number: str, *, recent: int = DEFAULT_CARD_ITEMS) -> MemberCard | None:
        """The card of the member calling from `number` (any form), or None if nobody visible has it.

        On the call path: two queries, both index probes — the member with all phones by the
        E.164 key, then tags and the newest items of each kind from their member indexes.
        """
        actor.require(access.MEMBER_READ)
        if not 1 <= recent <= 50:
            raise ValidationError("recent", "must be between 1 and 50")
        key = self.phones.lookup_key(number) if isinstance(number, str) else None
        if key is None:
            return None
        scope_sql, scope_params = scopes.member_condition(actor, "m")
        async with self.db.reading() as r:
            rows = await r.fetch_all(
                "SELECT m.*, l.name AS level_name, l.rank AS level_rank, p.e164 AS p_e164, p.kind AS p_kind,"
                " p.raw AS p_raw, p.is_primary AS p_primary"
                " FROM member_phones hit JOIN members m ON m.id = hit.member_id"
                " LEFT JOIN member_levels l ON l.code = m.level_code"
                " JOIN member_phones p ON p.member_id = m.id"
                f" WHERE hit.e164 = ? AND {scope_sql}"
                " ORDER BY m.updated_at DESC, m.id DESC, p.is_primary DESC, p.e164",
                [key, *scope_params],
            )
            if not rows:
                return None
            first = rows[0]
            history = timeline.recent_query(actor, first["id"], recent)
            tag_sql = ("SELECT 'tag' AS kind, 0 AS id, '' AS occurred_at, g.tag AS title, NULL AS status, NULL AS subtype,"
                       " NULL AS value, NULL AS ref, NULL AS user_id FROM member_tags g WHERE g.member_id = ?")  # fmt: skip
            sql, params = tag_sql, [first["id"]]
            if history is not None:
                sql, params = f"{sql} UNION ALL {history[0]}", params + history[1]
            extra = await r.fetch_all(sql, params)
        phones = tuple(
            Phone(row["p_e164"], PhoneKind(row["p_kind"]), row["p_raw"], bool(row["p_primary"]))
            for row in rows if row["id"] == first["id"]
        )  # fmt: skip
        tags = tuple(sorted(row["title"] for row in extra if row["kind"] == "tag"))
        items = timeline.newest_first(timeline.item_from_row(row) for row in extra if row["kind"] != "tag")
        others: dict[int, MemberRef] = {}
        for row in rows:
            if row["id"] != first["id"]:
                others.setdefault(row["id"], MemberRef(row["id"], row["name"], row["level_code"]))
        member = self._member(first, phones, tags)
        return MemberCard(member, first["level_name"], first["level_rank"], items, list(others.values()))

    # -- helpers ----------------------------------------------------------------------------------
    def _text_condition(self, text: str) -> tuple[str, list[Any]]:
        # Alternatives are a UNION of id sets, each from its own index: an OR across columns
        # would make SQLite scan every member.
        if "@" in text:
            return "m.email = ?", [text.lower()]
        card = "SELECT c.id FROM members c WHERE c.card_no = ?"
        key = self.phones.lookup_key(text)
        if key is not None:
            return f"m.id IN ({card} UNION SELECT p.member_id FROM member_phones p WHERE p.e164 = ?)", [text, key]
        names, params = self._name_ids(text)
        return f"m.id IN ({card} UNION {names})", [text, *params]

    @classmethod
    def _name_condition(cls, name: str) -> tuple[str, list[Any]]:
        names, params = cls._name_ids(name)
        return f"m.id IN ({names})", params

    @staticmethod
    def _name_ids(name: str) -> tuple[str, list[Any]]:
        """A query of the ids of members whose name contains `name`, driven by the n-gram index."""
        key = name_key(name)
        if len(key) == 1:
            return "SELECT n.member_id FROM member_name_grams n WHERE n.gram = ?", [key]
        bigrams = sorted({key[i : i + 2] for i in range(len(key) - 1)})
        parts = ["c.id IN (SELECT n.member_id FROM member_name_grams n WHERE n.gram = ?)"] * len(bigrams)
        parts.append("c.name_key LIKE ? ESCAPE '\\'")
        return "SELECT c.id FROM members c WHERE " + " AND ".join(parts), [*bigrams, f"%{_like_escape(key)}%"]

    def _normalise_phones(self, phones: Sequence[str]) -> list[Phone]:
        if isinstance(phones, str) or phones is None:
            raise ValidationError("phones", "must be a list of phone numbers")
        out: dict[str, Phone] = {}
        for index, raw in enumerate(phones):
            if not isinstance(raw, str):
                raise ValidationError("phones", "must be a list of phone numbers")
            phone = self.phones.normalise(raw, field=f"phones[{index}]")
            out.setdefault(phone.e164, phone)
        if not out:
            raise ValidationError("phones", "at least one phone number is required", code="field.required")
        if len(out) > MAX_PHONES:
            raise ValidationError("phones", f"at most {MAX_PHONES} phone numbers")
        return list(out.values())

    @staticmethod
    def _birthday_columns(birthday: date | str | None) -> dict[str, Any]:
        day = common.iso_date("birthday", birthday)
        if day is None:
            return {"birthday": None, "birth_md": None}
        if day.year < 1900:
            raise ValidationError("birthday", "is before 1900", code="date.out_of_range")
        return {"birthday": day.isoformat(), "birth_md": day.strftime("%m-%d")}

    @staticmethod
    async def _level(tx: Transaction, level: str | None, *, default_lowest: bool) -> str | None:
        if level is None or level == "":
            if default_lowest:
                return await tx.fetch_value("SELECT code FROM member_levels ORDER BY rank LIMIT 1")
            return None
        if await tx.fetch_value("SELECT 1 FROM member_levels WHERE code = ?", (level,)) is None:
            raise ValidationError("level", f"{level!r} is not a member level", code="level.not_found")
        return level

    @staticmethod
    async def _owner(tx: Transaction, owner_id: int | None) -> int | None:
        if owner_id is None:
            return None
        if await tx.fetch_value("SELECT 1 FROM users WHERE id = ? AND active = 1", (owner_id,)) is None:
            raise ValidationError("owner_id", f"user {owner_id} is not an active user", code="user.not_found")
        return owner_id

    @staticmethod
    async def _check_card_no(tx: Transaction, card_no: str | None, member_id: int | None) -> None:
        if card_no is None:
            return
        other = await tx.fetch_value("SELECT id FROM members WHERE card_no = ? AND id <> ?", (card_no, member_id or 0))
        if other is not None:
            raise Conflict(f"card number {card_no} belongs to member {other}", code="member.card_taken")

    @staticmethod
    async def _check_mobiles(tx: Transaction, phones: list[Phone], member_id: int | None) -> None:
        for phone in phones:
            if phone.kind is not PhoneKind.MOBILE:
                continue
            other = await tx.fetch_value(
                "SELECT member_id FROM member_phones WHERE e164 = ? AND kind = 'mobile' AND member_id <> ?",
                (phone.e164, member_id or 0),
            )
            if other is not None:
                raise Conflict(f"mobile {phone.national} belongs to member {other}", code="member.phone_taken")

    @staticmethod
    async def _write_phones(tx: Transaction, member_id: int, phones: list[Phone]) -> None:
        await tx.execute_many(
            "INSERT INTO member_phones (e164, member_id, kind, raw, is_primary) VALUES (?, ?, ?, ?, ?)",
            [(p.e164, member_id, p.kind.value, p.raw, 1 if i == 0 else 0) for i, p in enumerate(phones)],
        )

    @staticmethod
    async def _write_tags(tx: Transaction, member_id: int, tags: list[str], level_code: str | None) -> None:
        await tx.execute_many(
            "INSERT INTO member_tags (member_id, tag, level_code) VALUES (?, ?, ?)", [(member_id, t, level_code) for t in tags]
        )

    @staticmethod
    async def _write_grams(tx: Transaction, member_id: int, key: str) -> None:
        await tx.execute_many(
            "INSERT INTO member_name_grams (gram, member_id) VALUES (?, ?)", [(g, member_id) for g in sorted(name_grams(key))]
        )

    async def _load(self, tx: Transaction, ids: list[int]) -> dict[int, Member]:
        """Members by id with their phones and tags: three queries for a whole page."""
        if not ids:
            return {}
        marks = ", ".join("?" for _ in ids)
        rows = await tx.fetch_all(f"SELECT * FROM members WHERE id IN ({marks})", ids)
        phone_rows = await tx.fetch_all(
            f"SELECT * FROM member_phones WHERE member_id IN ({marks}) ORDER BY is_primary DESC, e164", ids
        )
        tag_rows = await tx.fetch_all(f"SELECT * FROM member_tags WHERE member_id IN ({marks}) ORDER BY tag", ids)
        phones: dict[int, list[Phone]] = {}
        for p in phone_rows:
            phones.setdefault(p["member_id"], []).append(Phone(p["e164"], PhoneKind(p["kind"]), p["raw"], bool(p["is_primary"])))
        tags: dict[int, list[str]] = {}
        for t in tag_rows:
            tags.setdefault(t["member_id"], []).append(t["tag"])
        return {row["id"]: self._member(row, tuple(phones.get(row["id"], ())), tuple(tags.get(row["id"], ()))) for row in rows}

    @staticmethod
    def _member(row: dict[str, Any], phones: tuple[Phone, ...], tags: tuple[str, ...]) -> Member:
        return Member(
            id=row["id"], card_no=row["card_no"], name=row["name"], gender=Gender(row["gender"]), phones=phones,
            email=row["email"], birthday=row["birthday"], level_code=row["level_code"],
            customer_type=row["customer_type"], relationship_level=row["relationship_level"],
            source_channel=row["source_channel"], tags=tags,
            blacklisted=bool(row["blacklisted"]), blacklist_reason=row["blacklist_reason"], notes=row["notes"],
            owner_id=row["owner_id"], points_balance=row["points_balance"], created_at=row["created_at"],
            updated_at=row["updated_at"],
        )  # fmt: skip
