"""Survey results (scales 1-5 and 0-10 with NPS, choices, texts) and return visits that follow
a resolved ticket or a completed appointment."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from crm.clock import FixedClock
from crm.errors import Conflict, Forbidden, InvalidTransition, ValidationError
from crm.experts import HoursSpec
from crm.service import Crm
from crm.survey_results import net_promoter, survey_results
from crm.surveys import Answer, QuestionSpec
from crm.visits import VisitOutcome

SHANGHAI = ZoneInfo("Asia/Shanghai")


def test_net_promoter_score_is_promoters_minus_detractors() -> None:
    nps = net_promoter({"10": 3, "9": 1, "8": 2, "7": 0, "6": 1, "0": 1})
    assert (nps.promoters, nps.passives, nps.detractors) == (4, 2, 2) and nps.score == 25.0
    assert net_promoter({"5": 0}).score is None


async def _survey(crm: Crm, org) -> int:
    survey = await crm.surveys.create(org.supervisor, "服务回访", [
        QuestionSpec("scale", "总体满意度", satisfaction=True),
        QuestionSpec("scale", "您向朋友推荐我们的可能性有多大？", scale_max=10),
        QuestionSpec("choice", "技师是否准时？", ("准时", "迟到")),
        QuestionSpec("text", "其他建议", required=False),
    ])  # fmt: skip
    await crm.surveys.set_status(org.supervisor, survey.id, "active")
    return survey.id


async def _resolved_ticket(crm: Crm, org, name: str, phone: str) -> int:
    member = await crm.members.create(org.agent1, name, phones=[phone])
    ticket = await crm.tickets.create(org.agent1, ticket_type="complaint", subject=f"{name}投诉", member_id=member.id,
                                      assignee_id=org.agent1.user_id)  # fmt: skip
    await crm.tickets.start(org.agent1, ticket.id)
    await crm.tickets.resolve(org.agent1, ticket.id, "已处理")
    return ticket.id


async def test_visits_after_tickets_and_the_survey_results(crm: Crm, org) -> None:
    survey_id = await _survey(crm, org)
    questions = (await crm.surveys.get(org.agent1, survey_id)).questions
    scale, nps, choice, text = (q.id for q in questions)
    answers = [(5, 10, "准时", "很好"), (4, 9, "准时", None), (2, 3, "迟到", "技师迟到半小时")]
    for i, (s, n, c, x) in enumerate(answers):
        ticket_id = await _resolved_ticket(crm, org, f"会员{i}", f"1380013800{i}")
        visit = await crm.visits.follow_up(org.agent1, ticket_id=ticket_id, survey_id=survey_id)
        assert visit.ticket_id == ticket_id and visit.staff_id == org.agent1.user_id
        given = [Answer(scale, scale_value=s), Answer(nps, scale_value=n), Answer(choice, choice=c)]
        await crm.visits.record_outcome(org.agent1, visit.id, VisitOutcome.REACHED,
                                        answers=given + ([Answer(text, text=x)] if x else []))  # fmt: skip
    with pytest.raises(Conflict):
        await crm.visits.follow_up(org.agent1, ticket_id=ticket_id)  # one visit per ticket
    results = await survey_results(crm.db, org.supervisor, survey_id)
    assert results.responses == 3
    by_prompt = {q.prompt: q for q in results.questions}
    satisfaction = by_prompt["总体满意度"]
    assert satisfaction.average == 3.67 and satisfaction.distribution == {"1": 0, "2": 1, "3": 0, "4": 1, "5": 1}
    recommend = by_prompt["您向朋友推荐我们的可能性有多大？"]
    assert recommend.nps is not None and recommend.nps.score == round(100 * (2 - 1) / 3, 1)
    assert list(recommend.distribution) == [str(v) for v in range(11)]
    assert by_prompt["技师是否准时？"].options == {"准时": 2, "迟到": 1}
    assert sorted(by_prompt["其他建议"].texts) == sorted(["很好", "技师迟到半小时"])
    # The satisfaction figures keep to the 1-5 scale.
    now = crm.clock.now()
    assert (await crm.surveys.satisfaction(org.supervisor, now - timedelta(days=1), now + timedelta(days=1))).answers == 3
    with pytest.raises(Forbidden):
        await survey_results(crm.db, org.agent1, survey_id)


async def test_scales_and_sources_are_checked(crm: Crm, org) -> None:
    survey_id = await _survey(crm, org)
    nps = (await crm.surveys.get(org.agent1, survey_id)).questions[1]
    with pytest.raises(ValidationError):
        await crm.surveys.create(org.supervisor, "x", [QuestionSpec("scale", "x", scale_max=7)])
    with pytest.raises(ValidationError):
        await crm.surveys.create(org.supervisor, "x", [QuestionSpec("scale", "x", scale_max=10, satisfaction=True)])
    member = await crm.members.create(org.agent1, "杨柳", phones=["13800138000"])
    open_ticket = await crm.tickets.create(org.agent1, ticket_type="consultation", subject="咨询", member_id=member.id)
    with pytest.raises(InvalidTransition):
        await crm.visits.follow_up(org.agent1, ticket_id=open_ticket.id)
    with pytest.raises(ValidationError):
        await crm.visits.follow_up(org.agent1)
    ticket_id = await _resolved_ticket(crm, org, "林晓", "13900139000")
    visit = await crm.visits.follow_up(org.agent1, ticket_id=ticket_id, survey_id=survey_id)
    required = [Answer(q.id, scale_value=5) for q in (await crm.surveys.get(org.agent1, survey_id)).questions[:1]]
    for bad in (11, -1):
        with pytest.raises(ValidationError) as out_of_range:
            await crm.visits.record_outcome(org.agent1, visit.id, "reached", answers=[
                *required, Answer(nps.id, scale_value=bad), Answer(nps.id + 1, choice="准时")])  # fmt: skip
        assert out_of_range.value.code == "survey.bad_scale"
    done = await crm.visits.record_outcome(org.agent1, visit.id, "reached", answers=[
        *required, Answer(nps.id, scale_value=0), Answer(nps.id + 1, choice="准时")])  # fmt: skip
    assert {a.scale_value for a in done.answers} >= {0, 5}


async def test_a_visit_follows_a_completed_appointment_and_asks_about_the_expert(
        crm: Crm, org, make_user, clock: FixedClock) -> None:
    expert = await make_user(crm, "expert1", ["expert"], department_id=org.service_center)
    change = await crm.catalogue.propose_new(org.supervisor, sku="FACIAL-60", kind="service", name="光子嫩肤",
                                             price_cents=68_000, duration_minutes=60)  # fmt: skip
    facial = (await crm.catalogue.approve(org.admin, change.id)).id
    await crm.experts.put_expert(org.supervisor, expert.user_id, title="顾问", service_ids=[facial])
    await crm.experts.set_hours(org.supervisor, expert.user_id, [HoursSpec(d, "09:00", "18:00") for d in range(7)])
    member = await crm.members.create(org.agent1, "杨柳", phones=["13800138000"])
    booking = await crm.appointments.book(org.agent1, member_id=member.id, expert_id=expert.user_id, item_id=facial,
                                          starts_at=datetime(2026, 11, 23, 14, 0, tzinfo=SHANGHAI))  # fmt: skip
    with pytest.raises(InvalidTransition):
        await crm.visits.follow_up(org.agent1, appointment_id=booking.id)  # not served yet
    clock.advance(timedelta(hours=5))
    await crm.appointments.complete(expert, booking.id)
    visit = await crm.visits.follow_up(org.supervisor, appointment_id=booking.id, assignee_id=org.agent2.user_id)
    assert (visit.appointment_id, visit.staff_id, visit.assignee_id) == (booking.id, expert.user_id, org.agent2.user_id)
    with pytest.raises(Forbidden):  # handing work to someone else is the supervisor's
        await crm.visits.follow_up(org.agent1, ticket_id=await _resolved_ticket(crm, org, "林晓", "13900139000"),
                                   assignee_id=org.agent2.user_id)  # fmt: skip


async def test_migration_3_keeps_the_answers_of_an_existing_database(tmp_path) -> None:
    from callcenter.database import apply_migrations, open_database
    from crm import schema

    conn = await open_database(tmp_path / "old.db")
    try:
        await apply_migrations(conn, "crm", schema.MIGRATIONS[:2])  # a database of the previous release
        now = "2026-11-01T02:00:00.000000Z"
        for sql in (
            "INSERT INTO members (id, name, name_key, created_at, updated_at) VALUES (1, '杨柳', '杨柳', ?, ?)",
            "INSERT INTO surveys (id, name, status, created_at, updated_at) VALUES (1, '旧问卷', 'active', ?, ?)",
            "INSERT INTO return_visits (id, member_id, reason, status, created_at, updated_at)"
            " VALUES (1, 1, 'manual', 'done', ?, ?)",
        ):
            await conn.execute(sql, (now, now))
        await conn.execute("INSERT INTO survey_questions (id, survey_id, position, kind, prompt, satisfaction)"
                           " VALUES (1, 1, 1, 'scale', '满意度', 1)")
        await conn.execute("INSERT INTO survey_responses (id, survey_id, return_visit_id, member_id, created_at)"
                           " VALUES (1, 1, 1, 1, ?)", (now,))
        await conn.execute("INSERT INTO survey_answers (response_id, question_id, scale_value) VALUES (1, 1, 4)")
        assert await apply_migrations(conn, "crm", schema.MIGRATIONS) == len(schema.MIGRATIONS)
        async with conn.execute("SELECT a.scale_value, q.scale_max FROM survey_answers a"
                                " JOIN survey_questions q ON q.id = a.question_id") as cur:
            assert [tuple(r) for r in await cur.fetchall()] == [(4, 5)]
        async with conn.execute("PRAGMA foreign_key_check") as cur:
            assert await cur.fetchall() == []
    finally:
        await conn.close()
