"""Reports: the CRM's report queries drawn as bar charts with their table beside them, for a
chosen period, and exported as CSV (with a BOM, so Excel reads the Chinese) or XLSX."""

from __future__ import annotations

import csv
import io
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from openpyxl import Workbook
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from crm.access import Actor
from crm.errors import Forbidden
from crm.service import Crm
from webui.charts import bar_chart
from webui.i18n import Translator
from webui.pages import Pages


@dataclass
class Table:
    columns: list[str]
    rows: list[list[Any]]
    categories: list[str]
    series: dict[str, list[float]]


async def tickets_report(crm: Crm, actor: Actor, first: date, last: date, t: Translator) -> Table:
    rows = await crm.reports.tickets(actor, first, last, by="type")
    periods = sorted({r.period for r in rows})
    kinds = sorted({r.key for r in rows})
    counts = {(r.period, r.key): r.count for r in rows}
    series = {t(f"ticket.type.{k}"): [float(counts.get((p, k), 0)) for p in periods] for k in kinds}
    table = [[p, *[counts.get((p, k), 0) for k in kinds]] for p in periods]
    return Table([t("reports.period"), *series], table, periods, series)


async def calls_report(crm: Crm, actor: Actor, first: date, last: date, t: Translator) -> Table:
    rows = await crm.reports.calls(actor, first, last)
    series = {t("reports.volume"): [float(r.volume) for r in rows], t("reports.answered"): [float(r.answered) for r in rows],
              t("reports.abandoned"): [float(r.abandoned) for r in rows]}
    table = [[r.period, r.volume, r.answered, r.abandoned,
              round(r.avg_handle_seconds) if r.avg_handle_seconds is not None else ""] for r in rows]
    return Table([t("reports.period"), *series, t("reports.aht")], table, [r.period for r in rows], series)


async def levels_report(crm: Crm, actor: Actor, first: date, last: date, t: Translator) -> Table:
    rows = await crm.reports.member_levels(actor)
    names = [r.name or r.level_code or "–" for r in rows]
    return Table([t("members.level"), t("reports.members")], [[n, r.members] for n, r in zip(names, rows, strict=True)],
                 names, {t("reports.members"): [float(r.members) for r in rows]})


REPORTS: dict[str, Callable[[Crm, Actor, date, date, Translator], Awaitable[Table]]] = {
    "tickets": tickets_report,
    "calls": calls_report,
    "levels": levels_report,
}


class ReportPages:
    def __init__(self, pages: Pages) -> None:
        self.pages = pages
        self.crm = pages.crm

    def routes(self) -> list[Any]:
        return [Route("/reports", self.page), Route("/reports/export", self.export)]

    def _period(self, request: Request) -> tuple[str, date, date]:
        params = request.query_params
        name = params.get("report", "tickets")
        name = name if name in REPORTS else "tickets"
        today = self.crm.clock.today()
        try:
            first = date.fromisoformat(params.get("from", ""))
        except ValueError:
            first = today - timedelta(days=29)
        try:
            last = date.fromisoformat(params.get("to", ""))
        except ValueError:
            last = today
        if last < first or (last - first).days > 366:
            first, last = last - timedelta(days=29), last  # a bounded, sensible period
        return name, first, last

    async def page(self, request: Request) -> Response:
        viewer = await self.pages.viewer(request)
        if viewer is None:
            return self.pages.to_login(request)
        name, first, last = self._period(request)
        t = self.pages.translator(request, viewer)
        try:
            table = await REPORTS[name](self.crm, viewer.actor, first, last, t)
        except Forbidden:
            return self.pages.forbidden(request, viewer)
        chart = bar_chart(table.categories, table.series) if table.categories else None
        return self.pages.render(request, viewer, "reports.html", report=name, reports=list(REPORTS), first=first,
                                 last=last, table=table, chart=chart)

    async def export(self, request: Request) -> Response:
        viewer = await self.pages.viewer(request)
        if viewer is None:
            return self.pages.to_login(request)
        name, first, last = self._period(request)
        t = self.pages.translator(request, viewer)
        try:
            table = await REPORTS[name](self.crm, viewer.actor, first, last, t)
        except Forbidden:
            return self.pages.forbidden(request, viewer)
        filename = f"{name}-{first.isoformat()}-{last.isoformat()}"
        if request.query_params.get("format") == "xlsx":
            book = Workbook()
            sheet = book.active
            sheet.title = name
            sheet.append(table.columns)
            for row in table.rows:
                sheet.append(row)
            out = io.BytesIO()
            book.save(out)
            return Response(out.getvalue(), media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                            headers={"Content-Disposition": f'attachment; filename="{filename}.xlsx"'})
        text = io.StringIO()
        writer = csv.writer(text)
        writer.writerow(table.columns)
        writer.writerows(table.rows)
        return Response("\ufeff" + text.getvalue(), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{filename}.csv"'})
