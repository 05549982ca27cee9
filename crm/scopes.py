"""Data scope per kind of record: which columns make a record "mine" or "my department's".

- member: its owner (专属顾问); unowned members are the public pool (公海) everyone serves.
- ticket: its assignee or creator; its handling department.
- work order: its technician or creator; the technician's department.

Lists add the condition to their WHERE clause; single-record access goes through `require_*`,
which answers NotFound for a missing record and Forbidden for one outside the actor's scope.
"""

from __future__ import annotations

from typing import Any

from crm.access import Actor, scope_condition
from crm.db import Transaction
from crm.errors import Forbidden, NotFound


def member_condition(actor: Actor, alias: str = "m") -> tuple[str, list[object]]:
    return scope_condition(actor, user_columns=[f"{alias}.owner_id"], public_if_null=f"{alias}.owner_id")


def ticket_condition(actor: Actor, alias: str = "t") -> tuple[str, list[object]]:
    return scope_condition(
        actor, user_columns=[f"{alias}.assignee_id", f"{alias}.created_by"], department_column=f"{alias}.department_id"
    )


def work_order_condition(actor: Actor, alias: str = "w") -> tuple[str, list[object]]:
    return scope_condition(
        actor, user_columns=[f"{alias}.technician_id", f"{alias}.created_by"], department_column=f"{alias}.department_id"
    )


async def _require(
    tx: Transaction, actor: Actor, table: str, alias: str, record_id: int, condition: tuple[str, list[object]], what: str
) -> dict[str, Any]:
    sql, params = condition
    row = await tx.fetch_one(
        f"SELECT {alias}.*, CASE WHEN {sql} THEN 1 ELSE 0 END AS in_scope FROM {table} {alias} WHERE {alias}.id = ?",
        (*params, record_id),
    )
    if row is None:
        raise NotFound(f"{what} {record_id} does not exist", code=f"{what}.not_found")
    if not row.pop("in_scope"):
        raise Forbidden(f"{what} {record_id} is outside {actor.username}'s data scope", code="auth.out_of_scope")
    return row


async def require_member(tx: Transaction, actor: Actor, member_id: int) -> dict[str, Any]:
    return await _require(tx, actor, "members", "m", member_id, member_condition(actor), "member")


async def require_ticket(tx: Transaction, actor: Actor, ticket_id: int) -> dict[str, Any]:
    return await _require(tx, actor, "tickets", "t", ticket_id, ticket_condition(actor), "ticket")


async def require_work_order(tx: Transaction, actor: Actor, work_order_id: int) -> dict[str, Any]:
    return await _require(tx, actor, "work_orders", "w", work_order_id, work_order_condition(actor), "work_order")
