"""调查结果: one survey's answers summed up per question — the average and distribution of a
scale, the Net Promoter Score of a 0-10 question, counts per option, the latest free-text answers.

NPS (Reichheld, "The One Number You Need to Grow", HBR 2003): on "how likely are you to
recommend us, 0-10", 9-10 are promoters, 7-8 passives, 0-6 detractors; the score is the
percentage of promoters minus the percentage of detractors, from -100 to +100.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime

from crm import access
from crm.access import Actor
from crm.clock import to_iso
from crm.db import Database
from crm.errors import ValidationError
from crm.surveys import QuestionKind, Survey, SurveyService

#: Free-text answers listed per question, newest first.
TEXT_SAMPLES = 10


@dataclass(frozen=True)
class NetPromoter:
    promoters: int
    passives: int
    detractors: int
    #: % promoters − % detractors, rounded to one decimal; None without answers.
    score: float | None


@dataclass(frozen=True)
class QuestionResult:
    question_id: int
    position: int
    kind: QuestionKind
    prompt: str
    answers: int
    #: Scale questions: mean and count per value ("1".."5" or "0".."10").
    average: float | None = None
    distribution: dict[str, int] = field(default_factory=dict)
    nps: NetPromoter | None = None
    #: Choice questions: count per option, in the question's order.
    options: dict[str, int] = field(default_factory=dict)
    texts: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SurveyResults:
    survey: Survey
    responses: int
    questions: list[QuestionResult]


def net_promoter(distribution: dict[str, int]) -> NetPromoter:
    promoters = sum(n for k, n in distribution.items() if int(k) >= 9)
    passives = sum(n for k, n in distribution.items() if 7 <= int(k) <= 8)
    detractors = sum(n for k, n in distribution.items() if int(k) <= 6)
    total = promoters + passives + detractors
    score = round(100 * (promoters - detractors) / total, 1) if total else None
    return NetPromoter(promoters, passives, detractors, score)


async def survey_results(
    db: Database, actor: Actor, survey_id: int, *, since: datetime | None = None, until: datetime | None = None
) -> SurveyResults:
    """Answers given in [since, until) (all when not given)."""
    actor.require(access.REPORT_READ)
    if since is not None and until is not None and until <= since:
        raise ValidationError("until", "must be after since")
    where, params = ["r.survey_id = ?"], [survey_id]
    for op, value in ((">=", since), ("<", until)):
        if value is not None:
            where.append(f"r.created_at {op} ?")
            params.append(to_iso(value))
    condition = " AND ".join(where)
    async with db.reading() as r:
        survey = await SurveyService.load(r, survey_id)
        responses = await r.fetch_value(f"SELECT COUNT(*) FROM survey_responses r WHERE {condition}", params)
        rows = await r.fetch_all(
            "SELECT a.question_id, a.scale_value, a.choice, a.text_value, r.created_at FROM survey_answers a"
            f" JOIN survey_responses r ON r.id = a.response_id WHERE {condition} ORDER BY r.created_at DESC, r.id DESC",
            params,
        )
    by_question: dict[int, list[dict[str, object]]] = {}
    for row in rows:
        by_question.setdefault(int(row["question_id"]), []).append(row)
    results = []
    for q in survey.questions:
        answers = by_question.get(q.id, [])
        if q.kind is QuestionKind.SCALE:
            distribution = {str(v): 0 for v in q.scale}
            for a in answers:
                distribution[str(a["scale_value"])] += 1
            total = sum(distribution.values())
            average = round(sum(int(k) * n for k, n in distribution.items()) / total, 2) if total else None
            results.append(QuestionResult(q.id, q.position, q.kind, q.prompt, total, average, distribution,
                                          net_promoter(distribution) if q.scale_max == 10 else None))  # fmt: skip
        elif q.kind in (QuestionKind.CHOICE, QuestionKind.MULTI_CHOICE):
            counts = dict.fromkeys(q.options, 0)
            for a in answers:
                picked = json.loads(str(a["choice"])) if q.kind is QuestionKind.MULTI_CHOICE else [a["choice"]]
                for choice in picked:
                    if choice in counts:
                        counts[str(choice)] += 1
            results.append(QuestionResult(q.id, q.position, q.kind, q.prompt, len(answers), options=counts))
        else:
            texts = [str(a["text_value"]) for a in answers if a["text_value"]]
            results.append(QuestionResult(q.id, q.position, q.kind, q.prompt, len(texts), texts=texts[:TEXT_SAMPLES]))
    return SurveyResults(survey, int(responses), results)
