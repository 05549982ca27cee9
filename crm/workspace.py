"""我的工作台: the figures an employee's home page opens with — what is waiting for me.

Counts only what is personally mine (assigned to me, dispatched to me, booked with me, mine to
call back), whatever my data scope: a supervisor's workspace is their own work too; the wider
view is the lists and reports.
"""

from __future__ import annotations

from dataclasses import dataclass

from crm.access import Actor
from crm.clock import Clock, to_iso
from crm.db import Database


@dataclass(frozen=True)
class MyWork:
    #: Tickets assigned to me and not yet resolved.
    open_tickets: int
    #: Work orders dispatched to me (technicians) or created by me, not yet completed.
    open_work_orders: int
    #: My bookings from today on (as the expert, or booked by me).
    upcoming_appointments: int
    #: Return visits assigned to me and still open.
    open_visits: int


class WorkspaceService:
    def __init__(self, db: Database, clock: Clock | None = None) -> None:
        self.db = db
        self.clock = clock or Clock()

    async def my_work(self, actor: Actor) -> MyWork:
        if actor.user_id is None:
            return MyWork(0, 0, 0, 0)
        me = actor.user_id
        start, _ = self.clock.day_bounds(self.clock.today())
        async with self.db.reading() as r:
            tickets = await r.fetch_value(
                "SELECT COUNT(*) FROM tickets WHERE assignee_id = ? AND status IN ('new', 'assigned', 'in_progress')",
                (me,))  # fmt: skip
            orders = await r.fetch_value(
                "SELECT COUNT(*) FROM work_orders WHERE (technician_id = ? OR created_by = ?)"
                " AND status IN ('pending', 'dispatched')", (me, me))  # fmt: skip
            appointments = await r.fetch_value(
                "SELECT COUNT(*) FROM appointments WHERE (expert_id = ? OR created_by = ?) AND status = 'booked'"
                " AND starts_at >= ?", (me, me, to_iso(start)))  # fmt: skip
            visits = await r.fetch_value(
                "SELECT COUNT(*) FROM return_visits WHERE assignee_id = ? AND status = 'open'", (me,))
        return MyWork(int(tickets), int(orders), int(appointments), int(visits))
