"""All CRM services over one database, built the same way everywhere (server, tests, benches)."""

from __future__ import annotations

from dataclasses import dataclass

from crm.clock import Clock
from crm.db import Database
from crm.dictionaries import DictionaryService
from crm.members import MemberService
from crm.org import OrgService
from crm.passwords import DEFAULT_PARAMS, ScryptParams
from crm.phones import PhoneNormaliser
from crm.points import PointsService
from crm.tickets import TicketService
from crm.timeline import TimelineService
from crm.workorders import WorkOrderService


@dataclass
class Crm:
    db: Database
    clock: Clock
    phones: PhoneNormaliser
    org: OrgService
    dictionaries: DictionaryService
    members: MemberService
    points: PointsService
    tickets: TicketService
    work_orders: WorkOrderService
    timeline: TimelineService

    @classmethod
    def build(
        cls,
        db: Database,
        *,
        clock: Clock | None = None,
        phones: PhoneNormaliser | None = None,
        password_params: ScryptParams = DEFAULT_PARAMS,
    ) -> Crm:
        clock = clock or Clock()
        phones = phones or PhoneNormaliser()
        return cls(
            db=db,
            clock=clock,
            phones=phones,
            org=OrgService(db, clock, password_params=password_params),
            dictionaries=DictionaryService(db, clock),
            members=MemberService(db, clock, phones),
            points=PointsService(db, clock),
            tickets=TicketService(db, clock, phones),
            work_orders=WorkOrderService(db, clock, phones),
            timeline=TimelineService(db, clock, phones),
        )
