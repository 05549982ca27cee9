"""知识库: categories and articles — drafts and published ones, internal or public — with
full-text search that works for Chinese, view counts, and pinned articles first.

Chinese has no spaces between words, so a word-splitting index finds nothing. SQLite's FTS5
`trigram` tokenizer (SQLite ≥ 3.34) indexes every run of three characters, which matches any
substring of three or more characters in any script: 玻尿酸 finds 注射玻尿酸后. A query shorter
than three characters cannot use trigrams and falls back to LIKE over title and body (fine for
the thousands of articles a knowledge base holds).

The FTS table is the one SQLite-specific piece of the CRM, so it lives here and not in
`crm.schema` (whose SQL stays portable): `_ensure_index` creates it on first use and fills it from
`kb_articles`; every write of an article updates it in the same transaction. A PostgreSQL backend
would swap this module's search for pg_trgm.

Public, published articles are readable without login (`actor=None`): members look up answers
themselves (会员登陆后可以直接在线查询); internal ones need knowledge.read, drafts knowledge.write.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from crm import access, audit, common
from crm.access import Actor
from crm.clock import Clock, to_iso
from crm.db import Database, IntegrityError, Transaction
from crm.errors import Conflict, Forbidden, NotFound, ValidationError

MAX_TITLE = 200
MAX_BODY = 100_000
MAX_QUERY = 100
#: FTS5's trigram tokenizer indexes runs of this many characters; shorter terms cannot match.
TRIGRAM = 3
_FTS_TABLE = "kb_articles_fts"


class ArticleStatus(StrEnum):
    DRAFT = "draft"
    PUBLISHED = "published"


@dataclass(frozen=True)
class Category:
    id: int
    name: str
    sort_order: int


@dataclass(frozen=True)
class Article:
    id: int
    category_id: int | None
    title: str
    body: str
    status: ArticleStatus
    public: bool
    pinned: bool
    view_count: int
    created_by: int | None
    updated_by: int | None
    created_at: str
    updated_at: str
    published_at: str | None


@dataclass(frozen=True)
class ArticleSummary:
    """A search hit or list entry: the article without its body, with a short excerpt."""

    id: int
    category_id: int | None
    title: str
    excerpt: str
    status: ArticleStatus
    public: bool
    pinned: bool
    view_count: int
    updated_at: str


def _article(row: dict[str, Any]) -> Article:
    return Article(
        id=row["id"], category_id=row["category_id"], title=row["title"], body=row["body"],
        status=ArticleStatus(row["status"]), public=bool(row["public"]), pinned=bool(row["pinned"]),
        view_count=row["view_count"], created_by=row["created_by"], updated_by=row["updated_by"],
        created_at=row["created_at"], updated_at=row["updated_at"], published_at=row["published_at"],
    )  # fmt: skip


def _summary(row: dict[str, Any]) -> ArticleSummary:
    body = " ".join(row["body"].split())
    return ArticleSummary(row["id"], row["category_id"], row["title"], body[:120], ArticleStatus(row["status"]),
                          bool(row["public"]), bool(row["pinned"]), row["view_count"], row["updated_at"])  # fmt: skip


def _fts_phrase(term: str) -> str:
    # FTS5 query syntax: a "string" is a phrase; a double quote inside is written twice.
    return '"' + term.replace('"', '""') + '"'


def _like(term: str) -> str:
    return "%" + term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


class KnowledgeService:
    def __init__(self, db: Database, clock: Clock | None = None) -> None:
        self.db = db
        self.clock = clock or Clock()
        self._index_ready = False

    # -- categories ---------------------------------------------------------------------------------
    async def create_category(self, actor: Actor, name: str, *, sort_order: int = 0) -> Category:
        actor.require(access.KNOWLEDGE_WRITE)
        name = common.text("name", name, max_length=64)
        if isinstance(sort_order, bool) or not isinstance(sort_order, int):
            raise ValidationError("sort_order", "must be an integer")
        async with self.db.transaction() as tx:
            try:
                category_id = await tx.insert(
                    "INSERT INTO kb_categories (name, sort_order, created_at) VALUES (?, ?, ?) RETURNING id",
                    (name, sort_order, to_iso(self.clock.now())),
                )
            except IntegrityError:
                raise Conflict(f"category {name!r} exists", code="kb_category.duplicate") from None
            category = Category(category_id, name, sort_order)
            await audit.record(tx, self.clock, actor, "kb_category", category_id, "create", after=category)
        return category

    async def categories(self) -> list[Category]:
        rows = await self.db.fetch_all("SELECT * FROM kb_categories ORDER BY sort_order, name")
        return [Category(r["id"], r["name"], r["sort_order"]) for r in rows]

    # -- articles -----------------------------------------------------------------------------------
    async def create(
        self, actor: Actor, *, title: str, body: str, category_id: int | None = None, public: bool = False,
        pinned: bool = False, publish: bool = False,
    ) -> Article:  # fmt: skip
        actor.require(access.KNOWLEDGE_WRITE)
        title = common.text("title", title, max_length=MAX_TITLE)
        body = common.text("body", body, max_length=MAX_BODY)
        for field, flag in (("public", public), ("pinned", pinned), ("publish", publish)):
            if not isinstance(flag, bool):
                raise ValidationError(field, "must be true or false")
        await self._ensure_index()
        async with self.db.transaction() as tx:
            await self._check_category(tx, category_id)
            now = to_iso(self.clock.now())
            status = ArticleStatus.PUBLISHED if publish else ArticleStatus.DRAFT
            article_id = await tx.insert(
                "INSERT INTO kb_articles (category_id, title, body, status, public, pinned, created_by, updated_by,"
                " created_at, updated_at, published_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (category_id, title, body, status.value, int(public), int(pinned), actor.user_id, actor.user_id, now, now,
                 now if publish else None),
            )  # fmt: skip
            await tx.execute(f"INSERT INTO {_FTS_TABLE} (rowid, title, body) VALUES (?, ?, ?)", (article_id, title, body))
            article = await self._load(tx, article_id)
            await audit.record(tx, self.clock, actor, "kb_article", article_id, "create", after=article)
        return article

    async def update(
        self,
        actor: Actor,
        article_id: int,
        *,
        title: str | common._Unset = common.UNSET,
        body: str | common._Unset = common.UNSET,
        category_id: int | None | common._Unset = common.UNSET,
        public: bool | common._Unset = common.UNSET,
        pinned: bool | common._Unset = common.UNSET,
        status: ArticleStatus | str | common._Unset = common.UNSET,
    ) -> Article:
        """Edit; `status` publishes (发布) or takes back to draft (撤回)."""
        actor.require(access.KNOWLEDGE_WRITE)
        changes: dict[str, Any] = {}
        if not isinstance(title, common._Unset):
            changes["title"] = common.text("title", title, max_length=MAX_TITLE)
        if not isinstance(body, common._Unset):
            changes["body"] = common.text("body", body, max_length=MAX_BODY)
        for field, flag in (("public", public), ("pinned", pinned)):
            if not isinstance(flag, common._Unset):
                if not isinstance(flag, bool):
                    raise ValidationError(field, "must be true or false")
                changes[field] = int(flag)
        await self._ensure_index()
        async with self.db.transaction() as tx:
            before = await self._load(tx, article_id)
            if not isinstance(category_id, common._Unset):
                await self._check_category(tx, category_id)
                changes["category_id"] = category_id
            if not isinstance(status, common._Unset):
                target = common.enum_value("status", ArticleStatus, status)
                changes["status"] = target.value
                if target is ArticleStatus.PUBLISHED and before.status is not ArticleStatus.PUBLISHED:
                    changes["published_at"] = to_iso(self.clock.now())
            changes["updated_by"] = actor.user_id
            changes["updated_at"] = to_iso(self.clock.now())
            assignments = ", ".join(f"{column} = ?" for column in changes)
            await tx.execute(f"UPDATE kb_articles SET {assignments} WHERE id = ?", (*changes.values(), article_id))
            if "title" in changes or "body" in changes:
                await tx.execute(f"DELETE FROM {_FTS_TABLE} WHERE rowid = ?", (article_id,))
                after_row = await tx.fetch_one("SELECT title, body FROM kb_articles WHERE id = ?", (article_id,))
                assert after_row is not None
                await tx.execute(f"INSERT INTO {_FTS_TABLE} (rowid, title, body) VALUES (?, ?, ?)",
                                 (article_id, after_row["title"], after_row["body"]))  # fmt: skip
            after = await self._load(tx, article_id)
            await audit.record(tx, self.clock, actor, "kb_article", article_id, "update", before=before, after=after)
        return after

    async def delete(self, actor: Actor, article_id: int) -> None:
        actor.require(access.KNOWLEDGE_WRITE)
        await self._ensure_index()
        async with self.db.transaction() as tx:
            before = await self._load(tx, article_id)
            await tx.execute("DELETE FROM kb_articles WHERE id = ?", (article_id,))
            await tx.execute(f"DELETE FROM {_FTS_TABLE} WHERE rowid = ?", (article_id,))
            await audit.record(tx, self.clock, actor, "kb_article", article_id, "delete", before=before)

    # -- reading ------------------------------------------------------------------------------------
    async def read(self, actor: Actor | None, article_id: int, *, count_view: bool = True) -> Article:
        """One article, counting the view (浏览次数). `actor=None` reads public articles only."""
        async with self.db.transaction() as tx:
            row = await tx.fetch_one("SELECT * FROM kb_articles WHERE id = ?", (article_id,))
            if row is None or not self._may_read(actor, row):
                # Unpublished or internal articles do not exist for those who may not read them.
                raise NotFound(f"article {article_id} does not exist", code="kb_article.not_found")
            if count_view and row["status"] == ArticleStatus.PUBLISHED.value:
                await tx.execute("UPDATE kb_articles SET view_count = view_count + 1 WHERE id = ?", (article_id,))
                row["view_count"] += 1
        return _article(row)

    async def search(
        self,
        actor: Actor | None,
        text: str | None = None,
        *,
        category_id: int | None = None,
        status: ArticleStatus | str | None = None,
        offset: int = 0,
        limit: int = common.DEFAULT_PAGE_SIZE,
    ) -> common.Page[ArticleSummary]:
        """Pinned first, then best match (or most viewed without a query), then newest.

        `actor=None`: public published articles. knowledge.read: all published ones.
        knowledge.write: drafts too (`status` narrows)."""
        offset, limit = common.page_bounds(offset, limit)
        where, params = self._visibility(actor, status)
        if category_id is not None:
            where.append("a.category_id = ?")
            params.append(category_id)
        query = common.text("q", text, max_length=MAX_QUERY, required=False) if text is not None else ""
        terms = query.split()
        source, rank = "kb_articles a", "a.view_count DESC"
        if terms and all(len(t) >= TRIGRAM for t in terms):
            await self._ensure_index()
            source = f"kb_articles a JOIN {_FTS_TABLE} f ON f.rowid = a.id"
            where.append(f"{_FTS_TABLE} MATCH ?")
            params.append(" AND ".join(_fts_phrase(t) for t in terms))
            rank = "bm25(" + _FTS_TABLE + "), a.view_count DESC"
        else:
            for term in terms:  # shorter than a trigram: substring scan
                where.append("(a.title LIKE ? ESCAPE '\\' OR a.body LIKE ? ESCAPE '\\')")
                params += [_like(term), _like(term)]
        condition = " AND ".join(where)
        async with self.db.reading() as r:
            total = await r.fetch_value(f"SELECT COUNT(*) FROM {source} WHERE {condition}", params)
            rows = await r.fetch_all(
                f"SELECT a.* FROM {source} WHERE {condition} ORDER BY a.pinned DESC, {rank}, a.updated_at DESC, a.id DESC"
                " LIMIT ? OFFSET ?",
                [*params, limit, offset],
            )
        return common.Page([_summary(row) for row in rows], int(total), offset, limit)

    # -- helpers ------------------------------------------------------------------------------------
    @staticmethod
    def _may_read(actor: Actor | None, row: dict[str, Any]) -> bool:
        if actor is not None and actor.can(access.KNOWLEDGE_WRITE):
            return True
        if row["status"] != ArticleStatus.PUBLISHED.value:
            return False
        return bool(row["public"]) or (actor is not None and actor.can(access.KNOWLEDGE_READ))

    @staticmethod
    def _visibility(actor: Actor | None, status: ArticleStatus | str | None) -> tuple[list[str], list[Any]]:
        wanted = common.enum_value("status", ArticleStatus, status) if status is not None else None
        if actor is not None and actor.can(access.KNOWLEDGE_WRITE):
            return (["a.status = ?"], [wanted.value]) if wanted else (["1 = 1"], [])
        if wanted is ArticleStatus.DRAFT:
            raise Forbidden("drafts are for knowledge.write", code="auth.permission_denied")
        if actor is not None and actor.can(access.KNOWLEDGE_READ):
            return ["a.status = 'published'"], []
        return ["a.status = 'published' AND a.public = 1"], []

    @staticmethod
    async def _check_category(tx: Transaction, category_id: int | None) -> None:
        if category_id is not None and await tx.fetch_value("SELECT 1 FROM kb_categories WHERE id = ?", (category_id,)) is None:
            raise ValidationError("category_id", f"category {category_id} does not exist", code="kb_category.not_found")

    async def _ensure_index(self) -> None:
        """Create and fill the FTS5 index once per database, in its own transaction (so a write
        that fails later cannot roll the index away after we noted it exists)."""
        if self._index_ready:
            return
        async with self.db.transaction() as tx:
            exists = await tx.fetch_value("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (_FTS_TABLE,))
            if not exists:
                await tx.execute(f"CREATE VIRTUAL TABLE {_FTS_TABLE} USING fts5(title, body, tokenize = 'trigram')")
                await tx.execute(f"INSERT INTO {_FTS_TABLE} (rowid, title, body) SELECT id, title, body FROM kb_articles")
        self._index_ready = True

    @staticmethod
    async def _load(tx: Transaction, article_id: int) -> Article:
        row = await tx.fetch_one("SELECT * FROM kb_articles WHERE id = ?", (article_id,))
        if row is None:
            raise NotFound(f"article {article_id} does not exist", code="kb_article.not_found")
        return _article(row)
