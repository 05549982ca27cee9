"""The knowledge base: staff search every published article (pinned first); members read the
public ones at /kb without signing in. Chinese full-text search is the CRM's (FTS5 trigrams)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from crm.errors import NotFound
from webui.pages import PAGE_SIZE, Pages


class KnowledgePages:
    def __init__(self, pages: Pages) -> None:
        self.pages = pages
        self.crm = pages.crm

    def routes(self) -> list[Any]:
        return [Route("/kb", self.search), Route("/kb/{article_id:int}", self.article)]

    async def search(self, request: Request) -> Response:
        viewer = await self.pages.viewer(request)  # None: a member, public articles only
        q = request.query_params.get("q", "").strip()[:100]
        page = await self.crm.knowledge.search(viewer.actor if viewer else None, q or None, limit=PAGE_SIZE)
        return self.pages.render(request, viewer, "kb.html", q=q, page=page)

    async def article(self, request: Request) -> Response:
        viewer = await self.pages.viewer(request)
        try:
            article = await self.crm.knowledge.read(viewer.actor if viewer else None, request.path_params["article_id"])
        except NotFound:
            return self.pages.not_found(request, viewer)
        return self.pages.render(request, viewer, "kb_article.html", article=article)
