"""服务项目管理 in the browser: the live catalogue, proposing a new item or a change
(catalogue.write), and the approver's queue (catalogue.approve) where pending changes, oldest
first, show what they would change and are approved or rejected with a note.

The rules (nobody approves their own change, the item code is fixed, one pending change per
code) live in crm.catalogue; this module turns forms into calls and refusals into messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from crm import access
from crm.catalogue import MAX_PRICE_CENTS, CatalogueChange, CatalogueItem, ChangeState, ItemKind, ItemStatus
from crm.errors import Forbidden, NotFound, ValidationError
from webui.auth import Viewer
from webui.pages import PAGE_SIZE, Pages

#: Fields a change may touch, in the order the queue shows them.
DIFF_FIELDS = ("name", "category", "price_cents", "duration_minutes", "status", "description")
#: Refusals of the approver's queue shown on the queue itself rather than as a bare 403 page:
#: the approver needs to know why (their own proposal) to hand it to a colleague.
QUEUE_REFUSALS = ("catalogue.self_approval", "catalogue.not_proposer")


@dataclass(frozen=True)
class FieldChange:
    field: str
    old: Any
    new: Any


def price_cents(form: FormData, field: str = "price") -> int:
    """A price typed in yuan ("680", "680.5", "1,280.00") as whole fen."""
    raw = str(form.get(field, "")).strip().replace(",", "").replace("¥", "").replace("￥", "")
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise ValidationError(field, f"{raw[:20]!r} is not an amount in yuan", code="catalogue.bad_price") from None
    if not value.is_finite() or value < 0 or value != value.quantize(Decimal("0.01")):
        raise ValidationError(field, "an amount in yuan with at most two decimals", code="catalogue.bad_price")
    cents = int(value * 100)
    if cents > MAX_PRICE_CENTS:
        raise ValidationError(field, f"must be at most {MAX_PRICE_CENTS // 100} yuan", code="catalogue.price_too_high")
    return cents


def duration(form: FormData, kind: ItemKind) -> int | None:
    raw = str(form.get("duration_minutes", "")).strip()
    if kind is ItemKind.PRODUCT or not raw:
        return None
    if not raw.isdigit() or len(raw) > 6:
        raise ValidationError("duration_minutes", "must be a whole number of minutes", code="field.integer")
    return int(raw)


def diff(change: CatalogueChange, live: CatalogueItem | None) -> list[FieldChange]:
    """What approving `change` would change: every field for a new item, else the differing ones."""
    out = []
    for name in DIFF_FIELDS:
        new = getattr(change, name)
        old = getattr(live, name) if live is not None else None
        if live is None or old != new:
            out.append(FieldChange(name, old, new))
    return out


class CataloguePages:
    def __init__(self, pages: Pages) -> None:
        self.pages = pages
        self.crm = pages.crm

    def routes(self) -> list[Any]:
        return [
            Route("/catalogue", self.items, methods=["GET"]),
            Route("/catalogue/new", self.new_form, methods=["GET"]),
            Route("/catalogue/new", self.propose_new, methods=["POST"]),
            Route("/catalogue/items/{item_id:int}/change", self.change_form, methods=["GET"]),
            Route("/catalogue/items/{item_id:int}/change", self.propose_change, methods=["POST"]),
            Route("/catalogue/changes", self.queue, methods=["GET"]),
            Route("/catalogue/changes/{change_id:int}/approve", self.approve, methods=["POST"]),
            Route("/catalogue/changes/{change_id:int}/reject", self.reject, methods=["POST"]),
            Route("/catalogue/changes/{change_id:int}/withdraw", self.withdraw, methods=["POST"]),
        ]

    # ------------------------------------------------------------- the live catalogue

    async def items(self, request: Request) -> Response:
        viewer = await self.pages.viewer(request)
        if viewer is None:
            return self.pages.to_login(request)
        kind = request.query_params.get("kind", "")
        kind = kind if kind in {k.value for k in ItemKind} else ""
        status = request.query_params.get("status", "active")
        status = status if status in {s.value for s in ItemStatus} | {"all"} else "active"
        offset = request.query_params.get("offset", "0")
        offset_n = int(offset) if offset.isdigit() and len(offset) < 9 else 0
        page = await self.crm.catalogue.items(kind=kind or None, status=None if status == "all" else status,
                                              offset=offset_n, limit=PAGE_SIZE)  # fmt: skip
        pending = 0
        if viewer.actor.can(access.CATALOGUE_APPROVE) or viewer.actor.can(access.CATALOGUE_WRITE):
            pending = (await self.crm.catalogue.changes(viewer.actor, limit=1)).total
        return self.pages.render(request, viewer, "catalogue.html", page=page, kind=kind, shown=status,
                                 pending=pending, **self._rights(viewer))  # fmt: skip

    @staticmethod
    def _rights(viewer: Viewer) -> dict[str, bool]:
        return {"can_propose": viewer.actor.can(access.CATALOGUE_WRITE),
                "can_approve": viewer.actor.can(access.CATALOGUE_APPROVE)}  # fmt: skip

    # ------------------------------------------------------------- proposing

    async def new_form(self, request: Request, error: str = "", status: int = 200, form: FormData | None = None) -> Response:
        viewer = await self.pages.viewer(request)
        if viewer is None:
            return self.pages.to_login(request)
        if not viewer.actor.can(access.CATALOGUE_WRITE):
            return self.pages.forbidden(request, viewer)
        values = dict(form) if form is not None else {"kind": "service", "status": "active"}
        return self.pages.render(request, viewer, "catalogue_form.html", status, error=error, item=None,
                                 values=values, kinds=list(ItemKind), statuses=list(ItemStatus))  # fmt: skip

    async def change_form(self, request: Request, error: str = "", status: int = 200,
                          form: FormData | None = None) -> Response:
        viewer = await self.pages.viewer(request)
        if viewer is None:
            return self.pages.to_login(request)
        if not viewer.actor.can(access.CATALOGUE_WRITE):
            return self.pages.forbidden(request, viewer)
        try:
            item = await self.crm.catalogue.get(request.path_params["item_id"])
        except NotFound:
            return self.pages.not_found(request, viewer)
        values: dict[str, Any] = dict(form) if form is not None else {
            "name": item.name, "category": item.category or "", "price": f"{item.price_cents / 100:.2f}",
            "duration_minutes": item.duration_minutes or "", "status": item.status.value,
            "description": item.description,
        }  # fmt: skip
        return self.pages.render(request, viewer, "catalogue_form.html", status, error=error, item=item,
                                 values=values, kinds=list(ItemKind), statuses=list(ItemStatus))  # fmt: skip

    async def propose_new(self, request: Request) -> Response:
        async def run(viewer: Viewer, form: FormData) -> Response:
            raw_kind = str(form.get("kind", ""))
            if raw_kind not in {k.value for k in ItemKind}:
                raise ValidationError("kind", "choose service or product")
            kind = ItemKind(raw_kind)
            await self.crm.catalogue.propose_new(
                viewer.actor, sku=str(form.get("sku", "")), kind=kind, name=str(form.get("name", "")),
                price_cents=price_cents(form), duration_minutes=duration(form, kind),
                description=str(form.get("description", "")), category=str(form.get("category", "")).strip() or None,
                status=str(form.get("status", "active")))  # fmt: skip
            return RedirectResponse("/catalogue/changes?proposed=1", status_code=303)

        async def refused(request: Request, error: str, status: int) -> Response:
            return await self.new_form(request, error, status, await request.form())

        return await self.pages.post_action(request, run, refused)

    async def propose_change(self, request: Request) -> Response:
        item_id = request.path_params["item_id"]

        async def run(viewer: Viewer, form: FormData) -> Response:
            item = await self.crm.catalogue.get(item_id)
            await self.crm.catalogue.propose_change(
                viewer.actor, item_id, name=str(form.get("name", "")), price_cents=price_cents(form),
                duration_minutes=duration(form, item.kind), description=str(form.get("description", "")),
                category=str(form.get("category", "")).strip() or None, status=str(form.get("status", "")))  # fmt: skip
            return RedirectResponse("/catalogue/changes?proposed=1", status_code=303)

        async def refused(request: Request, error: str, status: int) -> Response:
            return await self.change_form(request, error, status, await request.form())

        return await self.pages.post_action(request, run, refused)

    # ------------------------------------------------------------- the approver's queue

    async def queue(self, request: Request, error: str = "", status: int = 200) -> Response:
        viewer = await self.pages.viewer(request)
        if viewer is None:
            return self.pages.to_login(request)
        state = request.query_params.get("state", "pending")
        state = state if state in {s.value for s in ChangeState} else "pending"
        try:
            page = await self.crm.catalogue.changes(viewer.actor, state=state, limit=100)
        except Forbidden:
            return self.pages.forbidden(request, viewer)
        live: dict[int, CatalogueItem] = {}
        for change in page.items:
            if change.item_id is not None and change.item_id not in live:
                try:
                    live[change.item_id] = await self.crm.catalogue.get(change.item_id)
                except NotFound:
                    pass
        rows = [(c, diff(c, live.get(c.item_id) if c.item_id is not None else None)) for c in page.items]
        return self.pages.render(request, viewer, "catalogue_changes.html", status, error=error, rows=rows,
                                 state=state, states=list(ChangeState), total=page.total,
                                 names=await self._names(viewer, page.items),
                                 proposed=request.query_params.get("proposed") == "1", **self._rights(viewer))  # fmt: skip

    async def _names(self, viewer: Viewer, changes: list[CatalogueChange]) -> dict[int, str]:
        """Who proposed and reviewed, by display name where the viewer may read the user list."""
        names: dict[int, str] = {}
        if viewer.actor.user_id is not None:
            names[viewer.actor.user_id] = viewer.display_name
        if viewer.actor.can(access.ORG_READ):
            wanted = {c.proposed_by for c in changes} | {c.reviewed_by for c in changes}
            if wanted - set(names) - {None}:
                for user in await self.crm.org.list_users(viewer.actor):
                    names[user.id] = user.display_name or user.username
        return names

    async def _queue_refused(self, request: Request, error: str, status: int) -> Response:
        return await self.queue(request, error, status)

    async def _review(self, request: Request, action: str) -> Response:
        change_id = request.path_params["change_id"]

        async def run(viewer: Viewer, form: FormData) -> Response:
            note = str(form.get("note", ""))
            try:
                if action == "approve":
                    await self.crm.catalogue.approve(viewer.actor, change_id, note=note)
                elif action == "reject":
                    await self.crm.catalogue.reject(viewer.actor, change_id, note)
                else:
                    await self.crm.catalogue.withdraw(viewer.actor, change_id)
            except Forbidden as exc:
                if exc.code not in QUEUE_REFUSALS:
                    raise
                return await self.queue(request, self.pages.refusal(request, viewer, exc), 403)
            return RedirectResponse(f"/catalogue/changes?done={action}", status_code=303)

        return await self.pages.post_action(request, run, self._queue_refused)

    async def approve(self, request: Request) -> Response:
        return await self._review(request, "approve")

    async def reject(self, request: Request) -> Response:
        return await self._review(request, "reject")

    async def withdraw(self, request: Request) -> Response:
        return await self._review(request, "withdraw")

