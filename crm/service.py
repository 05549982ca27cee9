"""All CRM services over one database, built the same way everywhere (server, tests, benches)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from crm.appointments import AppointmentService
from crm.backup import BackupService
from crm.catalogue import CatalogueService
from crm.clock import Clock
from crm.db import Database
from crm.dictionaries import DictionaryService
from crm.experts import ExpertService
from crm.knowledge import KnowledgeService
from crm.mail_settings import ConfiguredSmtpProvider, MailSettingsService
from crm.members import MemberService
from crm.messaging import MessagingService
from crm.notices import NoticeService
from crm.opt_outs import OptOutService
from crm.orders import OrderService
from crm.org import OrgService
from crm.passwords import DEFAULT_PARAMS, ScryptParams
from crm.phones import PhoneNormaliser
from crm.points import PointsService
from crm.providers import Channel, Provider
from crm.providers.local import LocalProvider
from crm.reports import ReportService
from crm.restore import RestoreService
from crm.schedule import ScheduleService
from crm.staff_messages import StaffMessageService
from crm.surveys import SurveyService
from crm.templates import TemplateService
from crm.tickets import TicketService
from crm.timeline import TimelineService
from crm.tokens import ApiTokenService
from crm.visits import VisitService
from crm.workorders import WorkOrderService
from crm.workspace import WorkspaceService


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
    catalogue: CatalogueService
    orders: OrderService
    experts: ExpertService
    appointments: AppointmentService
    surveys: SurveyService
    visits: VisitService
    knowledge: KnowledgeService
    templates: TemplateService
    messaging: MessagingService
    reports: ReportService
    backup: BackupService
    tokens: ApiTokenService
    schedule: ScheduleService
    staff_messages: StaffMessageService
    notices: NoticeService
    workspace: WorkspaceService
    opt_outs: OptOutService
    mail_settings: MailSettingsService
    restore: RestoreService

    @classmethod
    def build(
        cls,
        db: Database,
        *,
        clock: Clock | None = None,
        phones: PhoneNormaliser | None = None,
        password_params: ScryptParams = DEFAULT_PARAMS,
        providers: Mapping[Channel, Provider] | None = None,
    ) -> Crm:
        """`providers` deliver SMS and e-mail (crm.providers); by default SMS stays local (the
        outbox) and e-mail goes through the SMTP relay set on the settings page, if any."""
        clock = clock or Clock()
        mail_settings = MailSettingsService(db, clock)
        if providers is None:
            providers = {Channel.SMS: LocalProvider(), Channel.EMAIL: ConfiguredSmtpProvider(mail_settings)}
        phones = phones or PhoneNormaliser()
        org = OrgService(db, clock, password_params=password_params)
        members = MemberService(db, clock, phones)
        work_orders = WorkOrderService(db, clock, phones)
        orders = OrderService(db, clock)
        surveys = SurveyService(db, clock)
        templates = TemplateService(db, clock)
        backup = BackupService(db, clock)
        return cls(
            db=db,
            clock=clock,
            phones=phones,
            org=org,
            dictionaries=DictionaryService(db, clock),
            members=members,
            points=PointsService(db, clock),
            tickets=TicketService(db, clock, phones),
            work_orders=work_orders,
            timeline=TimelineService(db, clock, phones),
            catalogue=CatalogueService(db, clock),
            orders=orders,
            experts=ExpertService(db, clock),
            appointments=AppointmentService(db, clock, orders),
            surveys=surveys,
            visits=VisitService(db, clock, members, surveys),
            knowledge=KnowledgeService(db, clock),
            templates=templates,
            messaging=MessagingService(db, clock, members, templates, providers, phones),
            reports=ReportService(db, clock, work_orders, surveys),
            backup=backup,
            tokens=ApiTokenService(db, clock, org),
            schedule=ScheduleService(db, clock),
            staff_messages=StaffMessageService(db, clock),
            notices=NoticeService(db, clock),
            workspace=WorkspaceService(db, clock),
            opt_outs=OptOutService(db, clock),
            mail_settings=mail_settings,
            restore=RestoreService(db, backup, clock),
        )
