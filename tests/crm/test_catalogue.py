"""服务项目管理: unique item codes; nothing goes live without approval by someone else."""

from __future__ import annotations

import pytest

from crm import audit
from crm.catalogue import ChangeState, ItemStatus
from crm.errors import Conflict, Forbidden, InvalidTransition, NotFound, ValidationError
from crm.service import Crm


async def test_a_new_item_is_live_only_after_approval(crm: Crm, org) -> None:
    proposal = await crm.catalogue.propose_new(
        org.supervisor, sku="fw-001", kind="service", name="光子嫩肤", price_cents=68_000, duration_minutes=60,
        category="facial", description="IPL 全脸",
    )  # fmt: skip
    assert proposal.state is ChangeState.PENDING and proposal.item_id is None and proposal.sku == "FW-001"
    assert (await crm.catalogue.items()).total == 0  # pending versions are kept apart from the live catalogue
    with pytest.raises(Forbidden) as own:
        await crm.catalogue.approve(org.supervisor, proposal.id)
    assert own.value.code == "auth.permission_denied"  # a supervisor may propose but not approve

    item = await crm.catalogue.approve(org.auditor, proposal.id, note="价格已核对")
    assert (item.sku, item.price_cents, item.version, item.approved_by) == ("FW-001", 68_000, 1, org.auditor.user_id)
    live = await crm.catalogue.items(kind="service")
    assert [i.name for i in live.items] == ["光子嫩肤"]
    assert (await crm.catalogue.by_sku("fw-001")).id == item.id
    change = await crm.catalogue.get_change(org.auditor, proposal.id)
    assert change.state is ChangeState.APPROVED and change.item_id == item.id and change.review_note == "价格已核对"
    logged = await audit.list_entries(crm.db, org.admin, entity="catalogue_item", entity_id=item.id)
    assert logged[0].action == "approve" and logged[0].after["price_cents"] == 68_000


async def test_a_change_keeps_the_live_version_until_approved_and_rejecting_keeps_it(crm: Crm, org) -> None:
    proposal = await crm.catalogue.propose_new(org.supervisor, sku="SKU-9", kind="product", name="玻尿酸精华", price_cents=29_900)
    item = await crm.catalogue.approve(org.admin, proposal.id)

    raise_price = await crm.catalogue.propose_change(org.supervisor, item.id, price_cents=32_900)
    assert (await crm.catalogue.get(item.id)).price_cents == 29_900  # still the live price
    with pytest.raises(Conflict) as twice:  # one pending version per item
        await crm.catalogue.propose_change(org.supervisor, item.id, name="新名字")
    assert twice.value.code == "catalogue.change_pending"
    rejected = await crm.catalogue.reject(org.auditor, raise_price.id, "涨价未经批准")
    assert rejected.state is ChangeState.REJECTED
    assert (await crm.catalogue.get(item.id)).price_cents == 29_900

    withdraw = await crm.catalogue.propose_change(org.supervisor, item.id, status="inactive")
    approved = await crm.catalogue.approve(org.auditor, withdraw.id)
    assert approved.status is ItemStatus.INACTIVE and approved.version == 2 and approved.sku == "SKU-9"
    assert (await crm.catalogue.items()).total == 0 and (await crm.catalogue.items(status=None)).total == 1
    with pytest.raises(InvalidTransition):  # reviewed once only
        await crm.catalogue.approve(org.admin, withdraw.id)


async def test_no_self_approval_and_unique_codes(crm: Crm, org) -> None:
    mine = await crm.catalogue.propose_new(org.admin, sku="A1", kind="product", name="面膜", price_cents=8_800)
    with pytest.raises(Forbidden) as self_approval:
        await crm.catalogue.approve(org.admin, mine.id)
    assert self_approval.value.code == "catalogue.self_approval"
    with pytest.raises(Conflict) as pending_code:
        await crm.catalogue.propose_new(org.supervisor, sku="a1", kind="product", name="另一个面膜", price_cents=1)
    assert pending_code.value.code == "catalogue.change_pending"
    await crm.catalogue.approve(org.auditor, mine.id)
    with pytest.raises(Conflict) as live_code:
        await crm.catalogue.propose_new(org.supervisor, sku="A1", kind="product", name="另一个面膜", price_cents=1)
    assert live_code.value.code == "catalogue.sku_taken"

    other = await crm.catalogue.propose_new(org.supervisor, sku="B2", kind="product", name="爽肤水", price_cents=100)
    with pytest.raises(Forbidden):  # only the proposer (or an approver) withdraws
        await crm.catalogue.withdraw(org.agent1, other.id)
    assert (await crm.catalogue.withdraw(org.supervisor, other.id)).state is ChangeState.WITHDRAWN
    pending = await crm.catalogue.changes(org.auditor)
    assert pending.total == 0


@pytest.mark.parametrize(
    ("fields", "field"),
    [({"sku": "", "kind": "product", "price_cents": 1}, "sku"),
     ({"sku": "有中文", "kind": "product", "price_cents": 1}, "sku"),
     ({"sku": "X", "kind": "gift", "price_cents": 1}, "kind"),
     ({"sku": "X", "kind": "product", "price_cents": -1}, "price_cents"),
     ({"sku": "X", "kind": "product", "price_cents": 10**12}, "price_cents"),
     ({"sku": "X", "kind": "service", "price_cents": 1}, "duration_minutes"),
     ({"sku": "X", "kind": "service", "price_cents": 1, "duration_minutes": 47}, "duration_minutes"),
     ({"sku": "X", "kind": "product", "price_cents": 1, "duration_minutes": 30}, "duration_minutes")],
)  # fmt: skip
async def test_bad_items_are_refused_with_the_field(crm: Crm, org, fields: dict, field: str) -> None:
    with pytest.raises(ValidationError) as err:
        await crm.catalogue.propose_new(org.supervisor, name="x", **fields)
    assert err.value.field == field


async def test_permissions_and_missing_records(crm: Crm, org) -> None:
    with pytest.raises(Forbidden):
        await crm.catalogue.propose_new(org.agent1, sku="X", kind="product", name="x", price_cents=1)
    with pytest.raises(Forbidden):
        await crm.catalogue.changes(org.agent1)
    with pytest.raises(NotFound):
        await crm.catalogue.get(999)
    with pytest.raises(NotFound):
        await crm.catalogue.approve(org.admin, 999)
    proposal = await crm.catalogue.propose_new(org.supervisor, sku="C3", kind="product", name="x", price_cents=1)
    item = await crm.catalogue.approve(org.admin, proposal.id)
    with pytest.raises(ValidationError) as nothing:
        await crm.catalogue.propose_change(org.supervisor, item.id, price_cents=1)
    assert nothing.value.code == "catalogue.no_change"
