"""/api/surveys and /api/visits: survey definitions, campaigns, return visits and their answers."""

from __future__ import annotations

from crm.common import Page
from crm.surveys import Answer, QuestionKind, QuestionSpec, Survey, SurveyStatus
from crm.visits import Campaign, ReturnVisit, VisitOutcome, VisitQuery, VisitReason, VisitStatus
from webui.api.params import MEMBER_FILTER, PAGING, member_query, paging
from webui.api.registry import Call, Section, q
from webui.api.schema import array, boolean, datetime_string, enum_of, identifier, integer, obj, string

api = Section("surveys", "售后回访 / 客户调查: surveys, campaigns, return visits")

QUESTION = obj({"kind": enum_of(QuestionKind), "prompt": string(500, min_length=1), "options": array(string(100), 20),
                "required": boolean(), "satisfaction": boolean()}, "kind", "prompt")  # fmt: skip
QUESTIONS = array(QUESTION, 50, min_items=1)
ANSWER = obj({"question_id": identifier(), "scale_value": integer(1, 5), "choice": string(100),
              "choices": array(string(100), 20), "text": string(2000)}, "question_id")  # fmt: skip


def _questions(raw: list[dict]) -> list[QuestionSpec]:
    return [QuestionSpec(q["kind"], q["prompt"], tuple(q.get("options", ())), q.get("required", True),
                         q.get("satisfaction", False)) for q in raw]  # fmt: skip


@api.get("/surveys", list[Survey], summary="Surveys, newest first", query=[q("status", enum_of(SurveyStatus))])
async def list_surveys(call: Call) -> list[Survey]:
    return await call.crm.surveys.list(call.me, status=call.query.get("status"))


@api.post("/surveys", Survey, status=201, summary="Create a draft survey", body=obj(
    {"name": string(100, min_length=1), "description": string(2000), "questions": QUESTIONS}, "name", "questions"))  # fmt: skip
async def create_survey(call: Call) -> Survey:
    b = call.body
    return await call.crm.surveys.create(call.me, b["name"], _questions(b["questions"]), description=b.get("description", ""))


@api.get("/surveys/{survey_id}", Survey, summary="One survey with its questions")
async def get_survey(call: Call) -> Survey:
    return await call.crm.surveys.get(call.me, call.path["survey_id"])


@api.put("/surveys/{survey_id}/questions", Survey, summary="Replace the questions of a draft",
         body=obj({"questions": QUESTIONS}, "questions"))  # fmt: skip
async def replace_questions(call: Call) -> Survey:
    return await call.crm.surveys.replace_questions(call.me, call.path["survey_id"], _questions(call.body["questions"]))


@api.post("/surveys/{survey_id}/status", Survey, summary="Activate (questions freeze), close or reopen",
          body=obj({"status": enum_of(SurveyStatus)}, "status"))  # fmt: skip
async def set_survey_status(call: Call) -> Survey:
    return await call.crm.surveys.set_status(call.me, call.path["survey_id"], call.body["status"])


@api.post("/surveys/{survey_id}/campaigns", Campaign, status=201, summary="One return visit per member of a filter",
          body=obj({"name": string(100, min_length=1), "filter": MEMBER_FILTER, "assignee_ids": array(identifier(), 200),
                    "due_at": datetime_string(nullable=True)}, "name", "filter"))  # fmt: skip
async def start_campaign(call: Call) -> Campaign:
    b = call.body
    return await call.crm.visits.start_campaign(call.me, survey_id=call.path["survey_id"], name=b["name"],
                                                query=member_query(b["filter"]), assignee_ids=b.get("assignee_ids", ()),
                                                due_at=b.get("due_at"))  # fmt: skip


@api.get("/campaigns/{campaign_id}", Campaign, summary="One survey campaign")
async def get_campaign(call: Call) -> Campaign:
    return await call.crm.visits.campaign(call.me, call.path["campaign_id"])


@api.get("/visits", Page[ReturnVisit], summary="Return visits: open first, soonest due first", query=[
    q("status", enum_of(VisitStatus)), q("reason", enum_of(VisitReason)), q("assignee_id", identifier()),
    q("unassigned_only", boolean()), q("member_id", identifier()), q("campaign_id", identifier()),
    q("due_before", datetime_string()), *PAGING])  # fmt: skip
async def search_visits(call: Call) -> Page[ReturnVisit]:
    f = call.query
    query = VisitQuery(status=f.get("status"), reason=f.get("reason"), assignee_id=f.get("assignee_id"),
                       unassigned_only=f.get("unassigned_only", False), member_id=f.get("member_id"),
                       campaign_id=f.get("campaign_id"), due_before=f.get("due_before"))  # fmt: skip
    return await call.crm.visits.search(call.me, query, **paging(call))


@api.post("/visits", ReturnVisit, status=201, summary="Register a return visit by hand", body=obj(
    {"member_id": identifier(), "survey_id": identifier(nullable=True), "assignee_id": identifier(nullable=True),
     "staff_id": identifier(nullable=True), "due_at": datetime_string(nullable=True), "note": string(2000)},
    "member_id"))  # fmt: skip
async def create_visit(call: Call) -> ReturnVisit:
    return await call.crm.visits.create(call.me, **call.body)


@api.get("/visits/{visit_id}", ReturnVisit, summary="One return visit with its answers")
async def get_visit(call: Call) -> ReturnVisit:
    return await call.crm.visits.get(call.me, call.path["visit_id"])


@api.post("/visits/{visit_id}/assign", ReturnVisit, summary="Claim, hand over, or return to the pool (null)",
          body=obj({"assignee_id": identifier(nullable=True)}, "assignee_id"))  # fmt: skip
async def assign_visit(call: Call) -> ReturnVisit:
    return await call.crm.visits.assign(call.me, call.path["visit_id"], call.body["assignee_id"])


@api.post("/visits/{visit_id}/outcome", ReturnVisit, summary="Record the call's outcome and the survey answers", body=obj(
    {"outcome": enum_of(VisitOutcome), "note": string(2000), "answers": array(ANSWER, 50),
     "retry_at": datetime_string(nullable=True)}, "outcome"))  # fmt: skip
async def record_outcome(call: Call) -> ReturnVisit:
    b = call.body
    answers = [Answer(a["question_id"], a.get("scale_value"), a.get("choice"), tuple(a.get("choices", ())), a.get("text"))
               for a in b.get("answers", [])]  # fmt: skip
    return await call.crm.visits.record_outcome(call.me, call.path["visit_id"], b["outcome"], note=b.get("note", ""),
                                                answers=answers, retry_at=b.get("retry_at"))  # fmt: skip


@api.post("/visits/{visit_id}/cancel", ReturnVisit, summary="Cancel an open visit",
          body=obj({"reason": string(2000, min_length=1)}, "reason"))  # fmt: skip
async def cancel_visit(call: Call) -> ReturnVisit:
    return await call.crm.visits.cancel(call.me, call.path["visit_id"], call.body["reason"])
