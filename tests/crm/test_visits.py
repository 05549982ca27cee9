"""售后回访 and 客户调查: follow-ups created by the flows, campaigns, outcomes, answers, satisfaction."""

from __future__ import annotations

from datetime import timedelta

import pytest

from crm.access import SYSTEM
from crm.clock import FixedClock, from_iso
from crm.errors import Forbidden, InvalidTransition, ValidationError
from crm.members import MemberQuery
from crm.service import Crm
from crm.surveys import Answer, QuestionSpec, SurveyStatus
from crm.visits import VisitOutcome, VisitQuery, VisitReason, VisitStatus

QUESTIONS = [
    QuestionSpec("scale", "您对本次服务的总体满意度？", satisfaction=True),
    QuestionSpec("choice", "技师是否准时上门？", ("准时", "迟到", "未上门")),
    QuestionSpec("multi_choice", "您还关注哪些项目？", ("美白", "补水", "抗衰"), required=False),
    QuestionSpec("text", "其他意见", required=False),
]


async def _survey(crm: Crm, org, *, activate: bool = True) -> int:
    survey = await crm.surveys.create(org.supervisor, "售后满意度回访", QUESTIONS, description="完工后三天内回访")
    if activate:
        await crm.surveys.set_status(org.supervisor, survey.id, "active")
    return survey.id


async def _approved_work_order(crm: Crm, org, phone: str) -> tuple[int, int]:
    member = await crm.members.create(org.agent1, "何美玲", phones=[phone])
    order = await crm.work_orders.create(
        org.agent1, member_id=member.id, service_type="repair", product_model="射频美容仪 RF-200",
        serial_no=f"RF-{phone}", purchase_date="2026-06-01", region="浦东新区", dispatch=True,
        technician_id=org.tech_pudong.user_id,
    )  # fmt: skip
    await crm.work_orders.complete(org.tech_pudong, order.id, device_state="更换电池后正常")
    await crm.work_orders.approve(org.auditor, order.id)
    return member.id, order.id


async def test_an_approved_work_order_gets_a_return_visit_with_the_followup_survey(crm: Crm, org, clock: FixedClock) -> None:
    survey_id = await _survey(crm, org)
    await crm.dictionaries.set_int(org.admin, "visit.followup_survey_id", survey_id)
    await crm.dictionaries.set_int(org.admin, "visit.followup_delay_days", 2)
    member_id, order_id = await _approved_work_order(crm, org, "13900139000")
    page = await crm.visits.search(org.agent1, VisitQuery(reason=VisitReason.WORK_ORDER))
    assert page.total == 1
    visit = page.items[0]
    assert (visit.member_id, visit.work_order_id, visit.staff_id, visit.survey_id, visit.assignee_id) == (
        member_id, order_id, org.tech_pudong.user_id, survey_id, None)  # the pool
    assert from_iso(visit.due_at) == clock.now() + timedelta(days=2)

    claimed = await crm.visits.assign(org.agent1, visit.id, org.agent1.user_id)
    with pytest.raises(Forbidden):  # now agent1's: agent2 (scope own) no longer sees it
        await crm.visits.record_outcome(org.agent2, visit.id, "refused")
    survey = await crm.surveys.get(org.agent1, survey_id)
    q = [question.id for question in survey.questions]
    with pytest.raises(ValidationError) as unanswered:
        await crm.visits.record_outcome(org.agent1, claimed.id, "reached", answers=[Answer(q[0], scale_value=5)])
    assert unanswered.value.code == "survey.unanswered"
    with pytest.raises(ValidationError) as bad_scale:
        await crm.visits.record_outcome(org.agent1, claimed.id, "reached",
                                        answers=[Answer(q[0], scale_value=6), Answer(q[1], choice="准时")])  # fmt: skip
    assert bad_scale.value.code == "survey.bad_scale"
    with pytest.raises(ValidationError) as bad_choice:
        await crm.visits.record_outcome(org.agent1, claimed.id, "reached",
                                        answers=[Answer(q[0], scale_value=4), Answer(q[1], choice="早到")])  # fmt: skip
    assert bad_choice.value.code == "survey.bad_choice"
    done = await crm.visits.record_outcome(
        org.agent1, claimed.id, "reached", note="客户表示满意",
        answers=[Answer(q[0], scale_value=4), Answer(q[1], choice="准时"), Answer(q[2], choices=("补水", "美白")),
                 Answer(q[3], text="希望提前电话确认")],
    )  # fmt: skip
    assert done.status is VisitStatus.DONE and done.outcome is VisitOutcome.REACHED and done.attempts == 1
    assert [(a.scale_value, a.choice, a.choices, a.text) for a in done.answers] == [
        (4, None, (), None), (None, "准时", (), None), (None, None, ("补水", "美白"), None),
        (None, None, (), "希望提前电话确认")]  # fmt: skip
    with pytest.raises(InvalidTransition):
        await crm.visits.record_outcome(org.agent1, claimed.id, "refused")


async def test_unreachable_members_are_tried_again(crm: Crm, org, clock: FixedClock) -> None:
    member = await crm.members.create(org.agent1, "林晓", phones=["13700137000"])
    visit = await crm.visits.create(org.agent1, member_id=member.id, note="新客回访")
    retry = clock.now() + timedelta(hours=4)
    again = await crm.visits.record_outcome(org.agent1, visit.id, "unreachable", note="无人接听", retry_at=retry)
    assert again.status is VisitStatus.OPEN and again.attempts == 1 and from_iso(again.due_at) == retry
    assert again.assignee_id == org.agent1.user_id  # whoever tried keeps it
    with pytest.raises(ValidationError):
        await crm.visits.record_outcome(org.agent1, visit.id, "refused", retry_at=retry)
    with pytest.raises(ValidationError):  # no survey on this visit
        await crm.visits.record_outcome(org.agent1, visit.id, "reached", answers=[Answer(1, scale_value=5)])
    final = await crm.visits.record_outcome(org.agent1, visit.id, "unreachable", note="号码停机")
    assert final.status is VisitStatus.DONE and final.attempts == 2


async def test_campaign_over_a_member_filter(crm: Crm, org) -> None:
    survey_id = await _survey(crm, org)
    for i in range(5):
        m = await crm.members.create(org.agent1, f"金卡{i}", phones=[f"1360013600{i}"], level="gold")
        if i == 4:
            await crm.members.set_blacklist(org.supervisor, m.id, True, "恶意投诉")
    await crm.members.create(org.agent1, "普卡", phones=["13500135000"], level="normal")
    campaign = await crm.visits.start_campaign(
        org.supervisor, survey_id=survey_id, name="金卡会员满意度调查", query=MemberQuery(level="gold"),
        assignee_ids=[org.agent1.user_id, org.agent2.user_id],
    )  # fmt: skip
    assert campaign.task_count == 4 and campaign.filter == {"level": "gold"}
    visits = await crm.visits.search(org.supervisor, VisitQuery(campaign_id=campaign.id))
    assignees = [v.assignee_id for v in visits.items]
    assert sorted(assignees) == sorted([org.agent1.user_id, org.agent2.user_id] * 2)
    assert (await crm.visits.search(org.agent1, VisitQuery(campaign_id=campaign.id))).total == 2  # own scope
    with pytest.raises(ValidationError) as empty:
        await crm.visits.start_campaign(org.supervisor, survey_id=survey_id, name="无人", query=MemberQuery(level="diamond"))
    assert empty.value.code == "campaign.empty"
    with pytest.raises(Forbidden):
        await crm.visits.start_campaign(org.agent1, survey_id=survey_id, name="x", query=MemberQuery())
    draft = await _survey(crm, org, activate=False)
    with pytest.raises(ValidationError) as not_active:
        await crm.visits.start_campaign(org.supervisor, survey_id=draft, name="x", query=MemberQuery(level="gold"))
    assert not_active.value.code == "survey.not_active"


async def test_survey_definitions(crm: Crm, org) -> None:
    with pytest.raises(ValidationError) as no_options:
        await crm.surveys.create(org.supervisor, "x", [QuestionSpec("choice", "选一个")])
    assert no_options.value.code == "survey.bad_options"
    with pytest.raises(ValidationError):
        await crm.surveys.create(org.supervisor, "x", [QuestionSpec("text", "意见", satisfaction=True)])
    with pytest.raises(ValidationError):
        await crm.surveys.create(org.supervisor, "x", [QuestionSpec("rating", "?")])
    with pytest.raises(ValidationError):
        await crm.surveys.create(org.supervisor, "x", [])
    with pytest.raises(Forbidden):
        await crm.surveys.create(org.agent1, "x", QUESTIONS)
    survey_id = await _survey(crm, org, activate=False)
    edited = await crm.surveys.replace_questions(org.supervisor, survey_id, QUESTIONS[:1])
    assert [q.position for q in edited.questions] == [1]
    active = await crm.surveys.set_status(org.supervisor, survey_id, "active")
    assert active.status is SurveyStatus.ACTIVE
    with pytest.raises(InvalidTransition):  # frozen: answers refer to the questions
        await crm.surveys.replace_questions(org.supervisor, survey_id, QUESTIONS)
    with pytest.raises(InvalidTransition):
        await crm.surveys.set_status(org.supervisor, survey_id, "draft")


async def test_satisfaction_figures_by_technician(crm: Crm, org, make_user, clock: FixedClock) -> None:
    survey_id = await _survey(crm, org)
    await crm.dictionaries.set_int(org.admin, "visit.followup_survey_id", survey_id)
    survey = await crm.surveys.get(org.agent1, survey_id)
    q = [question.id for question in survey.questions]
    scores = [5, 4, 4, 2]
    for i, score in enumerate(scores):
        await _approved_work_order(crm, org, f"1390013900{i}")
        visit = (await crm.visits.search(org.agent1, VisitQuery(status=VisitStatus.OPEN))).items[0]
        await crm.visits.record_outcome(org.agent1, visit.id, "reached",
                                        answers=[Answer(q[0], scale_value=score), Answer(q[1], choice="准时")])  # fmt: skip
    since, until = clock.now() - timedelta(days=1), clock.now() + timedelta(days=1)
    figures = await crm.surveys.satisfaction(org.supervisor, since, until)
    assert figures.answers == 4 and figures.average == 3.75
    assert figures.distribution == {"1": 0, "2": 1, "3": 0, "4": 2, "5": 1}
    assert [(s.staff_id, s.responses, s.average) for s in figures.by_staff] == [(org.tech_pudong.user_id, 4, 3.75)]
    assert (await crm.surveys.satisfaction(org.supervisor, since, until, reason="order")).answers == 0
    with pytest.raises(Forbidden):
        await crm.surveys.satisfaction(org.agent1, since, until)
    assert (await crm.visits.search(SYSTEM, VisitQuery(status=VisitStatus.DONE))).total == 4
