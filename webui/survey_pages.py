"""回访与客户调查 in the browser: the return-visit list (mine and the unassigned pool), a visit
after a resolved ticket or a completed appointment, the agent filling a visit's survey during
the call, the survey builder (1-5 and 0-10 scales, single and multiple choice, text) and each
survey's results (averages, distributions, NPS). Rules and permissions are crm's."""

from __future__ import annotations

import re
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from crm import access
from crm.errors import Forbidden, NotFound, ValidationError
from crm.survey_results import survey_results
from crm.surveys import Answer, QuestionKind, QuestionSpec, Survey, SurveyStatus
from crm.visits import VisitOutcome, VisitQuery, VisitStatus
from webui.auth import Viewer
from webui.charts import bar_chart
from webui.form_values import checked, local_datetime, optional_id
from webui.pages import PAGE_SIZE, Pages

#: Blank question rows the builder form offers; blank prompts are skipped.
BUILDER_ROWS = 8
#: The builder's kinds: a scale's range is part of the choice.
BUILDER_KINDS = ("scale5", "scale10", "choice", "multi_choice", "text")
_OPTION_SPLIT = re.compile(r"[\n,，、;；|]+")


def questions_from(form: FormData) -> list[QuestionSpec]:
    specs = []
    for i in range(BUILDER_ROWS):
        prompt = str(form.get(f"prompt_{i}", "")).strip()
        if not prompt:
            continue
        kind = str(form.get(f"kind_{i}", "scale5"))
        if kind not in BUILDER_KINDS:
            raise ValidationError(f"kind_{i}", "is not a question kind")
        options = tuple(o.strip() for o in _OPTION_SPLIT.split(str(form.get(f"options_{i}", ""))) if o.strip())
        scale = kind.startswith("scale")
        specs.append(QuestionSpec("scale" if scale else kind, prompt, () if scale else options,
                                  required=checked(form, f"required_{i}"),
                                  satisfaction=kind == "scale5" and checked(form, f"satisfaction_{i}"),
                                  scale_max=10 if kind == "scale10" else 5))  # fmt: skip
    return specs


def answers_from_form(survey: Survey, form: FormData) -> list[Answer]:
    answers = []
    for q in survey.questions:
        name = f"q{q.id}"
        if q.kind is QuestionKind.MULTI_CHOICE:
            picked = tuple(str(v) for v in form.getlist(name))
            if picked:
                answers.append(Answer(q.id, choices=picked))
            continue
        raw = str(form.get(name, "")).strip()
        if not raw:
            continue
        if q.kind is QuestionKind.SCALE:
            if not raw.isdigit() or len(raw) > 2:
                raise ValidationError(name, "is not a score", code="survey.bad_scale")
            answers.append(Answer(q.id, scale_value=int(raw)))
        elif q.kind is QuestionKind.CHOICE:
            answers.append(Answer(q.id, choice=raw))
        else:
            answers.append(Answer(q.id, text=raw))
    return answers


class SurveyPages:
    def __init__(self, pages: Pages) -> None:
        self.pages = pages
        self.crm = pages.crm

    def routes(self) -> list[Any]:
        return [
            Route("/visits", self.visits, methods=["GET"]),
            Route("/visits", self.follow_up, methods=["POST"]),
            Route("/visits/{visit_id:int}", self.visit, methods=["GET"]),
            Route("/visits/{visit_id:int}", self.record, methods=["POST"]),
            Route("/surveys", self.surveys, methods=["GET"]),
            Route("/surveys", self.create_survey, methods=["POST"]),
            Route("/surveys/{survey_id:int}", self.survey, methods=["GET"]),
            Route("/surveys/{survey_id:int}/status", self.set_status, methods=["POST"]),
        ]

    # -- return visits ------------------------------------------------------------------------------
    async def visits(self, request: Request, error: str = "", status: int = 200) -> Response:
        viewer = await self.pages.viewer(request)
        if viewer is None:
            return self.pages.to_login(request)
        done = request.query_params.get("done") == "1"
        try:
            page = await self.crm.visits.search(
                viewer.actor, VisitQuery(status=VisitStatus.DONE if done else VisitStatus.OPEN), limit=PAGE_SIZE)
            surveys = await self.crm.surveys.list(viewer.actor, status=SurveyStatus.ACTIVE)
        except Forbidden:
            return self.pages.forbidden(request, viewer)
        colleagues, _ = await self.crm.staff_messages.directory(viewer.actor)
        return self.pages.render(request, viewer, "visits.html", status, error=error, page=page, done=done,
                                 surveys=surveys, colleagues=colleagues, names=await self._member_names(viewer, page.items),
                                 can=viewer.actor.can)  # fmt: skip

    async def _member_names(self, viewer: Viewer, visits: list[Any]) -> dict[int, str]:
        if not viewer.actor.can(access.MEMBER_READ):
            return {}
        return await self.crm.members.names(viewer.actor, [v.member_id for v in visits])

    async def follow_up(self, request: Request) -> Response:
        async def run(viewer: Viewer, form: FormData) -> Response:
            source = str(form.get("source", ""))
            number = optional_id(form, "number")
            if number is None:
                raise ValidationError("number", "is required", code="field.required")
            try:
                visit = await self.crm.visits.follow_up(
                    viewer.actor, ticket_id=number if source == "ticket" else None,
                    appointment_id=number if source == "appointment" else None,
                    survey_id=optional_id(form, "survey_id"), assignee_id=optional_id(form, "assignee_id"),
                    due_at=local_datetime(form, "due_at", self.crm.clock.tz, required=False),
                    note=str(form.get("note", "")))  # fmt: skip
            except NotFound as exc:  # a mistyped number: say so on the form, not as a missing page
                raise ValidationError("number", exc.message, code=exc.code) from None
            return RedirectResponse(f"/visits/{visit.id}", status_code=303)

        return await self.pages.post_action(request, run, lambda r, e, s: self.visits(r, e, s))

    async def visit(self, request: Request, error: str = "", status: int = 200) -> Response:
        viewer = await self.pages.viewer(request)
        if viewer is None:
            return self.pages.to_login(request)
        try:
            visit = await self.crm.visits.get(viewer.actor, request.path_params["visit_id"])
            member = await self.crm.members.get(viewer.actor, visit.member_id)
            survey = await self.crm.surveys.get(viewer.actor, visit.survey_id) if visit.survey_id else None
        except Forbidden:
            return self.pages.forbidden(request, viewer)
        except NotFound:
            return self.pages.not_found(request, viewer)
        given = {a.question_id: a for a in visit.answers}
        return self.pages.render(request, viewer, "visit.html", status, error=error, visit=visit, member=member,
                                 survey=survey, given=given, outcomes=list(VisitOutcome))  # fmt: skip

    async def record(self, request: Request) -> Response:
        visit_id = request.path_params["visit_id"]

        async def run(viewer: Viewer, form: FormData) -> Response:
            visit = await self.crm.visits.get(viewer.actor, visit_id)
            outcome = str(form.get("outcome", ""))
            answers: list[Answer] = []
            if visit.survey_id is not None and outcome == VisitOutcome.REACHED.value:
                answers = answers_from_form(await self.crm.surveys.get(viewer.actor, visit.survey_id), form)
            await self.crm.visits.record_outcome(
                viewer.actor, visit_id, outcome, note=str(form.get("note", "")), answers=answers,
                retry_at=local_datetime(form, "retry_at", self.crm.clock.tz, required=False)
                if outcome == VisitOutcome.UNREACHABLE.value else None)  # fmt: skip
            return RedirectResponse(f"/visits/{visit_id}", status_code=303)

        return await self.pages.post_action(request, run, lambda r, e, s: self.visit(r, e, s))

    # -- surveys ------------------------------------------------------------------------------------
    async def surveys(self, request: Request, error: str = "", status: int = 200) -> Response:
        viewer = await self.pages.viewer(request)
        if viewer is None:
            return self.pages.to_login(request)
        try:
            surveys = await self.crm.surveys.list(viewer.actor)
        except Forbidden:
            return self.pages.forbidden(request, viewer)
        return self.pages.render(request, viewer, "surveys.html", status, error=error, surveys=surveys,
                                 rows=range(BUILDER_ROWS), kinds=BUILDER_KINDS, can=viewer.actor.can)  # fmt: skip

    async def create_survey(self, request: Request) -> Response:
        async def run(viewer: Viewer, form: FormData) -> Response:
            survey = await self.crm.surveys.create(viewer.actor, str(form.get("name", "")), questions_from(form),
                                                   description=str(form.get("description", "")))  # fmt: skip
            return RedirectResponse(f"/surveys/{survey.id}", status_code=303)

        return await self.pages.post_action(request, run, lambda r, e, s: self.surveys(r, e, s))

    async def survey(self, request: Request, error: str = "", status: int = 200) -> Response:
        viewer = await self.pages.viewer(request)
        if viewer is None:
            return self.pages.to_login(request)
        survey_id = request.path_params["survey_id"]
        try:
            survey = await self.crm.surveys.get(viewer.actor, survey_id)
        except Forbidden:
            return self.pages.forbidden(request, viewer)
        except NotFound:
            return self.pages.not_found(request, viewer)
        results, charts = None, {}
        if viewer.actor.can(access.REPORT_READ):
            results = await survey_results(self.crm.db, viewer.actor, survey_id)
            label = self.pages.translator(request, viewer)("surveys.answers")
            charts = {r.question_id: bar_chart(list(r.distribution), {label: [float(n) for n in r.distribution.values()]},
                                               width=480, height=180)
                      for r in results.questions if r.distribution}  # fmt: skip
        return self.pages.render(request, viewer, "survey.html", status, error=error, survey=survey,
                                 results=results, charts=charts, can=viewer.actor.can)  # fmt: skip

    async def set_status(self, request: Request) -> Response:
        survey_id = request.path_params["survey_id"]

        async def run(viewer: Viewer, form: FormData) -> Response:
            await self.crm.surveys.set_status(viewer.actor, survey_id, str(form.get("status", "")))
            return RedirectResponse(f"/surveys/{survey_id}", status_code=303)

        return await self.pages.post_action(request, run, lambda r, e, s: self.survey(r, e, s))
