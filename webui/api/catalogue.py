"""/api/catalogue: the live catalogue, and proposed changes with their approval."""

from __future__ import annotations

from crm.catalogue import MAX_PRICE_CENTS, CatalogueChange, CatalogueItem, ChangeState, ItemKind, ItemStatus
from crm.common import Page
from crm.errors import ValidationError
from webui.api.params import PAGING, paging
from webui.api.registry import Call, Section, q
from webui.api.schema import enum_of, identifier, integer, obj, string

api = Section("catalogue", "服务项目管理: services and products; changes take effect when approved")


@api.get("/catalogue/items", Page[CatalogueItem], summary="The live catalogue", query=[
    q("kind", enum_of(ItemKind)), q("status", enum_of(ItemStatus)), q("category", string(32)), *PAGING])  # fmt: skip
async def list_items(call: Call) -> Page[CatalogueItem]:
    f = call.query
    return await call.crm.catalogue.items(kind=f.get("kind"), status=f.get("status", ItemStatus.ACTIVE),
                                          category=f.get("category"), **paging(call))  # fmt: skip


@api.get("/catalogue/items/{item_id}", CatalogueItem, summary="One live item")
async def get_item(call: Call) -> CatalogueItem:
    return await call.crm.catalogue.get(call.path["item_id"])


@api.get("/catalogue/changes", Page[CatalogueChange], summary="Proposed changes, oldest first (the approver's queue)",
         query=[q("state", enum_of(ChangeState)), q("item_id", identifier()), *PAGING])  # fmt: skip
async def list_changes(call: Call) -> Page[CatalogueChange]:
    return await call.crm.catalogue.changes(call.me, state=call.query.get("state", ChangeState.PENDING),
                                            item_id=call.query.get("item_id"), **paging(call))  # fmt: skip


@api.post("/catalogue/changes", CatalogueChange, status=201, summary="Propose a new item, or a change of item_id",
          body=obj({"item_id": identifier(), "sku": string(32), "kind": enum_of(ItemKind), "name": string(100),
                    "price_cents": integer(0, MAX_PRICE_CENTS), "duration_minutes": integer(0, 600, nullable=True),
                    "description": string(4000), "category": string(32, nullable=True),
                    "status": enum_of(ItemStatus)}))  # fmt: skip
async def propose(call: Call) -> CatalogueChange:
    """Without `item_id`: a new item (sku, kind, name and price_cents required). With it: the fields
    to change (the item code never changes)."""
    body = dict(call.body)
    item_id = body.pop("item_id", None)
    if item_id is not None:
        for fixed in ("sku", "kind"):
            if fixed in body:
                raise ValidationError(fixed, "is fixed once the item exists", code="catalogue.immutable")
        return await call.crm.catalogue.propose_change(call.me, item_id, **body)
    for needed in ("sku", "kind", "name", "price_cents"):
        if needed not in body:
            raise ValidationError(needed, "is required for a new item", code="field.required")
    return await call.crm.catalogue.propose_new(call.me, **body)


@api.get("/catalogue/changes/{change_id}", CatalogueChange, summary="One proposed change")
async def get_change(call: Call) -> CatalogueChange:
    return await call.crm.catalogue.get_change(call.me, call.path["change_id"])


@api.post("/catalogue/changes/{change_id}/approve", CatalogueItem, summary="Approve: the change goes live",
          body=obj({"note": string(500)}))  # fmt: skip
async def approve_change(call: Call) -> CatalogueItem:
    return await call.crm.catalogue.approve(call.me, call.path["change_id"], note=call.body.get("note", ""))


@api.post("/catalogue/changes/{change_id}/reject", CatalogueChange, summary="Reject: the live item stays",
          body=obj({"reason": string(500, min_length=1)}, "reason"))  # fmt: skip
async def reject_change(call: Call) -> CatalogueChange:
    return await call.crm.catalogue.reject(call.me, call.path["change_id"], call.body["reason"])


@api.post("/catalogue/changes/{change_id}/withdraw", CatalogueChange, summary="Withdraw one's own proposal", body=obj({}))
async def withdraw_change(call: Call) -> CatalogueChange:
    return await call.crm.catalogue.withdraw(call.me, call.path["change_id"])
