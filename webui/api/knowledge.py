"""/api/kb: the knowledge base; /api/kb/public is readable without login."""

from __future__ import annotations

from crm.common import Page
from crm.knowledge import Article, ArticleStatus, ArticleSummary, Category
from webui.api.params import PAGING, paging
from webui.api.registry import Call, Section, q
from webui.api.schema import boolean, enum_of, identifier, integer, obj, string

api = Section("knowledge", "知识库: articles with Chinese full-text search; public ones need no login")

SEARCH = [q("q", string(100), description="words to find; Chinese needs no spaces"), q("category_id", identifier()), *PAGING]
_FIELDS = {"title": string(200, min_length=1), "body": string(100_000, min_length=1), "category_id": identifier(nullable=True),
           "public": boolean(), "pinned": boolean()}  # fmt: skip


@api.get("/kb/public/articles", Page[ArticleSummary], public=True, summary="Search public articles (no login)",
         query=SEARCH)  # fmt: skip
async def search_public(call: Call) -> Page[ArticleSummary]:
    f = call.query
    return await call.crm.knowledge.search(None, f.get("q"), category_id=f.get("category_id"), **paging(call))


@api.get("/kb/public/articles/{article_id}", Article, public=True, summary="Read a public article (counts a view)")
async def read_public(call: Call) -> Article:
    return await call.crm.knowledge.read(None, call.path["article_id"])


@api.get("/kb/categories", list[Category], summary="Categories in display order")
async def list_categories(call: Call) -> list[Category]:
    return await call.crm.knowledge.categories()


@api.post("/kb/categories", Category, status=201, summary="Create a category",
          body=obj({"name": string(64, min_length=1), "sort_order": integer(-1_000_000, 1_000_000)}, "name"))  # fmt: skip
async def create_category(call: Call) -> Category:
    return await call.crm.knowledge.create_category(call.me, call.body["name"], sort_order=call.body.get("sort_order", 0))


@api.get("/kb/articles", Page[ArticleSummary], summary="Search articles: pinned first, then best match or most viewed",
         query=[*SEARCH, q("status", enum_of(ArticleStatus))])  # fmt: skip
async def search_articles(call: Call) -> Page[ArticleSummary]:
    f = call.query
    return await call.crm.knowledge.search(call.me, f.get("q"), category_id=f.get("category_id"), status=f.get("status"),
                                           **paging(call))  # fmt: skip


@api.post("/kb/articles", Article, status=201, summary="Write an article (a draft unless publish)",
          body=obj({**_FIELDS, "publish": boolean()}, "title", "body"))  # fmt: skip
async def create_article(call: Call) -> Article:
    return await call.crm.knowledge.create(call.me, **call.body)


@api.get("/kb/articles/{article_id}", Article, summary="Read an article (counts a view)")
async def read_article(call: Call) -> Article:
    return await call.crm.knowledge.read(call.me, call.path["article_id"])


@api.patch("/kb/articles/{article_id}", Article, summary="Edit; status publishes or takes back to draft",
           body=obj({**_FIELDS, "status": enum_of(ArticleStatus)}))  # fmt: skip
async def update_article(call: Call) -> Article:
    return await call.crm.knowledge.update(call.me, call.path["article_id"], **call.body)


@api.delete("/kb/articles/{article_id}", None, status=204, summary="Delete an article")
async def delete_article(call: Call) -> None:
    await call.crm.knowledge.delete(call.me, call.path["article_id"])
