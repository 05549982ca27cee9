"""The checks that keep an after-sales operation honest (堵塞漏洞), and balanced dispatch.

Fraud checks flag a work order for the auditor rather than refusing it (a second visit for the
same machine can be genuine); the auditor must acknowledge the flags with a note to approve.
- 重单 duplicate: the same member and serial number within the configured window (days).
- 超保 out of warranty: free service claimed after purchase date + warranty months.
- a warranty claim without a purchase date cannot be verified, so it is flagged too.
The fake order (假单, completion without dispatch) is refused by the status flow itself.

Balanced dispatch (均衡派工) picks, among active users who may receive work orders, those serving
the order's region (everyone if nobody does), then the one with the fewest open orders, then the
one dispatched to least recently (Asterisk's `leastrecent`), then the lowest id.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from crm import access
from crm.clock import add_months, to_iso
from crm.db import Transaction
from crm.workorder_flow import FlagCode

DUPLICATE_WINDOW_KEY = "workorder.duplicate_window_days"
DEFAULT_WARRANTY_KEY = "workorder.default_warranty_months"
DEFAULT_DUPLICATE_WINDOW_DAYS = 30
DEFAULT_WARRANTY_MONTHS = 12


@dataclass(frozen=True)
class Finding:
    code: FlagCode
    detail: str
    related_work_order_id: int | None = None


@dataclass(frozen=True)
class Pick:
    technician_id: int
    department_id: int | None
    open_load: int
    in_region: bool


async def setting_int(tx: Transaction, key: str, default: int) -> int:
    value = await tx.fetch_value("SELECT value FROM settings WHERE key = ?", (key,))
    return default if value is None else int(value)


async def find_duplicate(
    tx: Transaction, member_id: int, serial_no: str, created_at: datetime, *, exclude_id: int | None = None
) -> Finding | None:
    days = await setting_int(tx, DUPLICATE_WINDOW_KEY, DEFAULT_DUPLICATE_WINDOW_DAYS)
    since = to_iso(created_at - timedelta(days=days))
    row = await tx.fetch_one(
        "SELECT id, created_at FROM work_orders WHERE member_id = ? AND serial_no = ? AND status <> 'voided'"
        " AND created_at >= ? AND id <> ? ORDER BY created_at DESC, id DESC LIMIT 1",
        (member_id, serial_no, since, exclude_id or 0),
    )
    if row is None:
        return None
    return Finding(
        FlagCode.DUPLICATE,
        f"work order {row['id']} for the same member and serial {serial_no} was opened {row['created_at'][:10]}"
        f" (within {days} days)",
        row["id"],
    )


def check_warranty(
    warranty_claim: bool, purchase_date: date | None, warranty_months: int, service_date: date
) -> Finding | None:
    if not warranty_claim:
        return None
    if purchase_date is None:
        return Finding(FlagCode.WARRANTY_UNVERIFIED, "warranty claimed without a purchase date")
    # The warranty covers service up to and including the day before the same date
    # `warranty_months` later: bought 2025-03-15 with 12 months covers service until 2026-03-14.
    ends = add_months(purchase_date, warranty_months)
    if service_date >= ends:
        return Finding(
            FlagCode.OUT_OF_WARRANTY,
            f"purchased {purchase_date.isoformat()} with {warranty_months} months of warranty, which ended"
            f" {(ends - timedelta(days=1)).isoformat()}; service on {service_date.isoformat()}",
        )
    return None


async def pick_technician(tx: Transaction, region: str | None, *, exclude_id: int | None = None) -> Pick | None:
    """The technician balanced dispatch gives the next order to, or None if there is nobody."""
    rows = await tx.fetch_all(
        "SELECT u.id, u.department_id, u.region,"
        " (SELECT COUNT(*) FROM work_orders w WHERE w.technician_id = u.id AND w.status = 'dispatched') AS open_load,"
        " (SELECT MAX(w.dispatched_at) FROM work_orders w WHERE w.technician_id = u.id) AS last_dispatch"
        " FROM users u WHERE u.active = 1 AND u.id <> ? AND u.id IN (SELECT ur.user_id FROM user_roles ur"
        " JOIN role_permissions rp ON rp.role_id = ur.role_id WHERE rp.permission = ?)",
        (exclude_id or 0, access.WORKORDER_RECEIVE),
    )
    if not rows:
        return None
    in_region = [r for r in rows if region is not None and r["region"] == region]
    candidates = in_region or rows
    best = min(candidates, key=lambda r: (r["open_load"], r["last_dispatch"] or "", r["id"]))
    return Pick(best["id"], best["department_id"], best["open_load"], bool(in_region))


async def may_receive(tx: Transaction, user_id: int) -> bool:
    """An active user holding a role with workorder.receive."""
    return bool(
        await tx.fetch_value(
            "SELECT 1 FROM users u WHERE u.id = ? AND u.active = 1 AND u.id IN (SELECT ur.user_id FROM user_roles ur"
            " JOIN role_permissions rp ON rp.role_id = ur.role_id WHERE rp.permission = ?)",
            (user_id, access.WORKORDER_RECEIVE),
        )
    )
