"""客户调查: survey definitions, the answers members give, and the satisfaction figures.

A survey is a list of questions: 1–5 scales, 0–10 scales (the "would you recommend us"
question of the Net Promoter Score), single or multiple choice, free text. It is edited
while a draft; once active its questions are frozen, because stored answers refer to them.
Answers are taken during a return visit (`crm.visits`), which knows whose service the member is
asked about (the technician, the expert, the seller): the satisfaction figures average the scale
questions marked `satisfaction`, overall, as a 1–5 distribution, and per staff member.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from crm import access, audit, common
from crm.access import Actor
from crm.clock import Clock, to_iso
from crm.db import Database, Transaction
from crm.errors import InvalidTransition, NotFound, ValidationError

MAX_QUESTIONS = 50
MAX_OPTIONS = 20
MAX_TEXT_ANSWER = 2000
SCALE = range(1, 6)
#: The scale of a question is 1-5 or 0-10; the 0-10 one is NPS's (Reichheld, 2003): 9-10
#: promoters, 7-8 passives, 0-6 detractors.
SCALES = {5: range(1, 6), 10: range(0, 11)}


class SurveyStatus(StrEnum):
    DRAFT = "draft"
    ACTIVE = "active"
    CLOSED = "closed"


class QuestionKind(StrEnum):
    SCALE = "scale"  # 1 (very dissatisfied) .. 5 (very satisfied)
    CHOICE = "choice"
    MULTI_CHOICE = "multi_choice"
    TEXT = "text"


@dataclass(frozen=True)
class QuestionSpec:
    """Input form of one question."""

    kind: QuestionKind | str
    prompt: str
    options: tuple[str, ...] = ()
    required: bool = True
    satisfaction: bool = False
    #: Scale questions: 5 (1-5) or 10 (0-10).
    scale_max: int = 5


@dataclass(frozen=True)
class Question:
    id: int
    position: int
    kind: QuestionKind
    prompt: str
    options: tuple[str, ...]
    required: bool
    satisfaction: bool
    scale_max: int = 5

    @property
    def scale(self) -> range:
        return SCALES[self.scale_max]


@dataclass(frozen=True)
class Survey:
    id: int
    name: str
    description: str
    status: SurveyStatus
    created_by: int | None
    created_at: str
    updated_at: str
    questions: tuple[Question, ...]


@dataclass(frozen=True)
class Answer:
    question_id: int
    scale_value: int | None = None
    choice: str | None = None
    choices: tuple[str, ...] = ()
    text: str | None = None


@dataclass(frozen=True)
class StaffSatisfaction:
    staff_id: int | None
    display_name: str | None
    responses: int
    average: float | None


@dataclass(frozen=True)
class Satisfaction:
    """满意度: scale answers of satisfaction questions in the period."""

    answers: int
    average: float | None
    #: Count of each score "1".."5" (string keys: JSON objects have them anyway).
    distribution: dict[str, int]
    by_staff: list[StaffSatisfaction] = field(default_factory=list)


def _question(row: dict[str, Any]) -> Question:
    return Question(row["id"], row["position"], QuestionKind(row["kind"]), row["prompt"],
                    tuple(json.loads(row["options_json"]) if row["options_json"] else ()), bool(row["required"]),
                    bool(row["satisfaction"]), row["scale_max"])  # fmt: skip


def check_answers(survey: Survey, answers: Sequence[Answer]) -> list[Answer]:
    """Answers normalised against the survey: known questions, values of the right kind,
    every required question answered. Raises ValidationError naming `answers[i]`."""
    by_id = {q.id: q for q in survey.questions}
    seen: dict[int, Answer] = {}
    for index, answer in enumerate(answers):
        name = f"answers[{index}]"
        question = by_id.get(answer.question_id)
        if question is None:
            raise ValidationError(name, f"question {answer.question_id} is not in survey {survey.id}", code="survey.unknown_question")
        if question.id in seen:
            raise ValidationError(name, f"question {question.id} answered twice")
        if question.kind is QuestionKind.SCALE:
            value = answer.scale_value
            if isinstance(value, bool) or not isinstance(value, int) or value not in question.scale:
                raise ValidationError(name, f"a scale answer is {question.scale[0]} to {question.scale[-1]}",
                                      code="survey.bad_scale")  # fmt: skip
            seen[question.id] = Answer(question.id, scale_value=value)
        elif question.kind is QuestionKind.CHOICE:
            if answer.choice not in question.options:
                raise ValidationError(name, f"choose one of {', '.join(question.options)}", code="survey.bad_choice")
            seen[question.id] = Answer(question.id, choice=answer.choice)
        elif question.kind is QuestionKind.MULTI_CHOICE:
            picked = tuple(dict.fromkeys(answer.choices))
            if not picked or any(c not in question.options for c in picked):
                raise ValidationError(name, f"choose from {', '.join(question.options)}", code="survey.bad_choice")
            seen[question.id] = Answer(question.id, choices=picked)
        else:
            text = common.text(name, answer.text, max_length=MAX_TEXT_ANSWER, required=question.required)
            if text:
                seen[question.id] = Answer(question.id, text=text)
    missing = [q.position for q in survey.questions if q.required and q.id not in seen]
    if missing:
        raise ValidationError("answers", f"required question(s) {', '.join(map(str, missing))} unanswered",
                              code="survey.unanswered")  # fmt: skip
    return list(seen.values())


class SurveyService:
    def __init__(self, db: Database, clock: Clock | None = None) -> None:
        self.db = db
        self.clock = clock or Clock()

    async def create(self, actor: Actor, name: str, questions: Sequence[QuestionSpec], *, description: str = "") -> Survey:
        """A draft survey with its questions in the given order."""
        actor.require(access.SURVEY_WRITE)
        name = common.text("name", name, max_length=100)
        description = common.text("description", description, max_length=2000, required=False)
        checked = self._questions(questions)
        async with self.db.transaction() as tx:
            now = to_iso(self.clock.now())
            survey_id = await tx.insert(
                "INSERT INTO surveys (name, description, status, created_by, created_at, updated_at)"
                " VALUES (?, ?, 'draft', ?, ?, ?) RETURNING id",
                (name, description, actor.user_id, now, now),
            )
            await self._write_questions(tx, survey_id, checked)
            survey = await self.load(tx, survey_id)
            await audit.record(tx, self.clock, actor, "survey", survey_id, "create", after=survey)
        return survey

    async def replace_questions(self, actor: Actor, survey_id: int, questions: Sequence[QuestionSpec]) -> Survey:
        actor.require(access.SURVEY_WRITE)
        checked = self._questions(questions)
        async with self.db.transaction() as tx:
            before = await self.load(tx, survey_id)
            if before.status is not SurveyStatus.DRAFT:
                raise InvalidTransition("questions are frozen once a survey is active", code="survey.frozen")
            await tx.execute("DELETE FROM survey_questions WHERE survey_id = ?", (survey_id,))
            await self._write_questions(tx, survey_id, checked)
            await tx.execute("UPDATE surveys SET updated_at = ? WHERE id = ?", (to_iso(self.clock.now()), survey_id))
            after = await self.load(tx, survey_id)
            await audit.record(tx, self.clock, actor, "survey", survey_id, "update", before=before, after=after)
        return after

    async def set_status(self, actor: Actor, survey_id: int, status: SurveyStatus | str) -> Survey:
        """draft → active (questions freeze) → closed (no new answers); closed may be reactivated."""
        actor.require(access.SURVEY_WRITE)
        target = common.enum_value("status", SurveyStatus, status)
        async with self.db.transaction() as tx:
            before = await self.load(tx, survey_id)
            allowed = {(SurveyStatus.DRAFT, SurveyStatus.ACTIVE), (SurveyStatus.ACTIVE, SurveyStatus.CLOSED),
                       (SurveyStatus.CLOSED, SurveyStatus.ACTIVE)}  # fmt: skip
            if (before.status, target) not in allowed:
                raise InvalidTransition(f"a {before.status.value} survey cannot become {target.value}",
                                        code="survey.invalid_transition")  # fmt: skip
            await tx.execute("UPDATE surveys SET status = ?, updated_at = ? WHERE id = ?",
                             (target.value, to_iso(self.clock.now()), survey_id))  # fmt: skip
            after = await self.load(tx, survey_id)
            await audit.record(tx, self.clock, actor, "survey", survey_id, target.value, before=before, after=after)
        return after

    async def get(self, actor: Actor, survey_id: int) -> Survey:
        actor.require(access.VISIT_READ)
        async with self.db.reading() as r:
            return await self.load(r, survey_id)

    async def list(self, actor: Actor, *, status: SurveyStatus | str | None = None) -> list[Survey]:
        actor.require(access.VISIT_READ)
        sql, params = "SELECT id FROM surveys", []
        if status is not None:
            sql += " WHERE status = ?"
            params.append(common.enum_value("status", SurveyStatus, status).value)
        async with self.db.reading() as r:
            rows = await r.fetch_all(sql + " ORDER BY id DESC", params)
            return [await self.load(r, row["id"]) for row in rows]

    async def satisfaction(
        self, actor: Actor, since: datetime, until: datetime, *, survey_id: int | None = None, reason: str | None = None
    ) -> Satisfaction:
        """Satisfaction answers given in [since, until): average, distribution, per staff member
        (the technician or expert the member was asked about). `reason` narrows to follow-ups of
        orders, work orders or campaigns."""
        actor.require(access.REPORT_READ)
        if until <= since:
            raise ValidationError("until", "must be after since")
        where = ["q.satisfaction = 1", "q.scale_max = 5", "a.scale_value IS NOT NULL", "r.created_at >= ?",
                 "r.created_at < ?"]
        params: list[Any] = [to_iso(since), to_iso(until)]
        if survey_id is not None:
            where.append("r.survey_id = ?")
            params.append(survey_id)
        if reason is not None:
            where.append("r.return_visit_id IN (SELECT v.id FROM return_visits v WHERE v.reason = ?)")
            params.append(reason)
        joins = ("FROM survey_answers a JOIN survey_questions q ON q.id = a.question_id"
                 " JOIN survey_responses r ON r.id = a.response_id")  # fmt: skip
        condition = " AND ".join(where)
        async with self.db.reading() as r:
            counts = await r.fetch_all(
                f"SELECT a.scale_value AS score, COUNT(*) AS n {joins} WHERE {condition} GROUP BY a.scale_value", params
            )
            staff = await r.fetch_all(
                f"SELECT r.staff_id, u.display_name, COUNT(DISTINCT r.id) AS responses, AVG(a.scale_value) AS average"
                f" {joins} LEFT JOIN users u ON u.id = r.staff_id WHERE {condition}"
                " GROUP BY r.staff_id, u.display_name ORDER BY average DESC, r.staff_id",
                params,
            )
        distribution = {str(s): 0 for s in SCALE}
        for row in counts:
            distribution[str(row["score"])] = row["n"]
        total = sum(distribution.values())
        average = round(sum(int(k) * n for k, n in distribution.items()) / total, 3) if total else None
        return Satisfaction(total, average, distribution, [
            StaffSatisfaction(s["staff_id"], s["display_name"], s["responses"],
                              round(s["average"], 3) if s["average"] is not None else None)
            for s in staff
        ])  # fmt: skip

    # -- for crm.visits -----------------------------------------------------------------------------
    async def store_response(
        self, tx: Transaction, survey: Survey, *, return_visit_id: int, member_id: int, staff_id: int | None,
        actor: Actor, answers: Sequence[Answer],
    ) -> int:  # fmt: skip
        checked = check_answers(survey, answers)
        response_id = await tx.insert(
            "INSERT INTO survey_responses (survey_id, return_visit_id, member_id, staff_id, created_by, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
            (survey.id, return_visit_id, member_id, staff_id, actor.user_id, to_iso(self.clock.now())),
        )
        await tx.execute_many(
            "INSERT INTO survey_answers (response_id, question_id, scale_value, choice, text_value) VALUES (?, ?, ?, ?, ?)",
            [(response_id, a.question_id, a.scale_value,
              json.dumps(list(a.choices), ensure_ascii=False) if a.choices else a.choice, a.text) for a in checked],
        )  # fmt: skip
        return response_id

    @staticmethod
    async def answers_of(tx: Transaction, return_visit_id: int) -> list[Answer]:
        rows = await tx.fetch_all(
            "SELECT a.*, q.kind FROM survey_answers a JOIN survey_responses r ON r.id = a.response_id"
            " JOIN survey_questions q ON q.id = a.question_id WHERE r.return_visit_id = ? ORDER BY q.position",
            (return_visit_id,),
        )
        out = []
        for row in rows:
            if row["kind"] == QuestionKind.MULTI_CHOICE.value:
                out.append(Answer(row["question_id"], choices=tuple(json.loads(row["choice"]))))
            else:
                out.append(Answer(row["question_id"], row["scale_value"], row["choice"], (), row["text_value"]))
        return out

    @staticmethod
    async def load(tx: Transaction, survey_id: int) -> Survey:
        row = await tx.fetch_one("SELECT * FROM surveys WHERE id = ?", (survey_id,))
        if row is None:
            raise NotFound(f"survey {survey_id} does not exist", code="survey.not_found")
        questions = await tx.fetch_all("SELECT * FROM survey_questions WHERE survey_id = ? ORDER BY position", (survey_id,))
        return Survey(row["id"], row["name"], row["description"], SurveyStatus(row["status"]), row["created_by"],
                      row["created_at"], row["updated_at"], tuple(_question(q) for q in questions))  # fmt: skip

    # -- helpers ------------------------------------------------------------------------------------
    @staticmethod
    def _questions(questions: Sequence[QuestionSpec]) -> list[QuestionSpec]:
        if isinstance(questions, str) or not questions:
            raise ValidationError("questions", "a survey needs at least one question", code="field.required")
        if len(questions) > MAX_QUESTIONS:
            raise ValidationError("questions", f"at most {MAX_QUESTIONS} questions")
        out = []
        for index, spec in enumerate(questions):
            name = f"questions[{index}]"
            kind = common.enum_value(f"{name}.kind", QuestionKind, spec.kind)
            prompt = common.text(f"{name}.prompt", spec.prompt, max_length=500)
            if isinstance(spec.options, str):
                raise ValidationError(f"{name}.options", "must be a list")
            options = tuple(common.text(f"{name}.options", o, max_length=100) for o in spec.options)
            if kind in (QuestionKind.CHOICE, QuestionKind.MULTI_CHOICE):
                if not 2 <= len(set(options)) == len(options) <= MAX_OPTIONS:
                    raise ValidationError(f"{name}.options", f"2 to {MAX_OPTIONS} distinct options", code="survey.bad_options")
            elif options:
                raise ValidationError(f"{name}.options", f"a {kind.value} question has no options")
            scale_max = spec.scale_max if kind is QuestionKind.SCALE else 5
            if scale_max not in SCALES:
                raise ValidationError(f"{name}.scale_max", "a scale is 1-5 (5) or 0-10 (10)", code="survey.bad_scale_max")
            if spec.satisfaction and (kind is not QuestionKind.SCALE or scale_max != 5):
                raise ValidationError(f"{name}.satisfaction", "only a 1-5 scale counts towards satisfaction")
            out.append(QuestionSpec(kind, prompt, options, bool(spec.required), bool(spec.satisfaction), scale_max))
        return out

    @staticmethod
    async def _write_questions(tx: Transaction, survey_id: int, questions: list[QuestionSpec]) -> None:
        await tx.execute_many(
            "INSERT INTO survey_questions (survey_id, position, kind, prompt, options_json, required, satisfaction,"
            " scale_max) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(survey_id, i + 1, QuestionKind(q.kind).value, q.prompt,
              json.dumps(list(q.options), ensure_ascii=False) if q.options else None,
              1 if q.required else 0, 1 if q.satisfaction else 0, q.scale_max) for i, q in enumerate(questions)],
        )  # fmt: skip


def answers_from(mapping: Mapping[int, Any]) -> list[Answer]:
    """Convenience for callers holding {question_id: value}: ints are scales, lists multi-choice."""
    out = []
    for question_id, value in mapping.items():
        if isinstance(value, int) and not isinstance(value, bool):
            out.append(Answer(question_id, scale_value=value))
        elif isinstance(value, list | tuple):
            out.append(Answer(question_id, choices=tuple(value)))
        else:
            out.append(Answer(question_id, choice=value, text=value))
    return out
