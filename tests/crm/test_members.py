"""会员管理: members with phones in every form, search, the caller-ID card, data scope."""

from __future__ import annotations

from datetime import timedelta

import pytest

from crm import audit
from crm import members as members_module
from crm.access import SYSTEM
from crm.clock import FixedClock
from crm.errors import Conflict, Forbidden, ValidationError
from crm.members import MemberQuery
from crm.service import Crm
from crm.timeline import Disposition, TimelineKind


async def test_create_member_with_every_field(crm: Crm, org) -> None:
    m = await crm.members.create(
        org.agent1, "李晓燕", phones=["138-0013-8000", "(021)12345678"], gender="female", email="XiaoYan@Example.com",
        birthday="1990-05-17", level="gold", tags=["敏感肌", "抗衰", "敏感肌"], customer_type="personal",
        relationship_level="close",
        source_channel="wechat", notes="喜欢周末预约", owner_id=org.agent1.user_id, card_no="VIP0001",
    )
    assert m.name == "李晓燕" and m.gender == "female" and m.email == "xiaoyan@example.com"
    assert [p.e164 for p in m.phones] == ["+8613800138000", "+862112345678"]
    assert m.primary_phone is not None and m.primary_phone.e164 == "+8613800138000"
    assert m.tags == ("抗衰", "敏感肌") and m.level_code == "gold" and m.points_balance == 0
    assert m.birthday == "1990-05-17" and m.owner_id == org.agent1.user_id
    assert (m.customer_type, m.relationship_level, m.source_channel) == ("personal", "close", "wechat")

    default = await crm.members.create(org.agent1, "张敏", phones=["13900139000"])
    assert default.level_code == "normal" and default.owner_id is None

    entry = (await audit.list_entries(crm.db, org.admin, entity="member", entity_id=m.id))[0]
    assert entry.action == "create" and entry.username == "agent1" and entry.after["name"] == "李晓燕"


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [("phones", {"phones": []}), ("phones[0]", {"phones": ["12345"]}), ("email", {"email": "not-an-address"}),
     ("birthday", {"birthday": "1990-13-01"}), ("level", {"level": "platinum"}), ("gender", {"gender": "x"}),
     ("source_channel", {"source_channel": "tv"}), ("name", {"name": "  "}), ("tags", {"tags": "单个字符串"}),
     ("relationship_level", {"relationship_level": "best friends"})],
)  # fmt: skip
async def test_bad_input_names_the_field(crm: Crm, org, field: str, kwargs: dict) -> None:
    args = {"name": "王芳", "phones": ["13700137000"], **kwargs}
    name = args.pop("name")
    with pytest.raises(ValidationError) as err:
        await crm.members.create(org.agent1, name, **args)
    assert err.value.field == field
    assert (await crm.members.search(SYSTEM, MemberQuery())).total == 0


async def test_a_mobile_belongs_to_one_member_a_landline_may_be_shared(crm: Crm, org) -> None:
    wife = await crm.members.create(org.agent1, "陈静", phones=["13800138000", "010-6552 9988"])
    with pytest.raises(Conflict) as taken:
        await crm.members.create(org.agent1, "陈静二号", phones=["+86 138 0013 8000"])
    assert taken.value.code == "member.phone_taken" and str(wife.id) in taken.value.message
    husband = await crm.members.create(org.agent1, "刘强", phones=["13911112222", "(010)65529988"])
    card = await crm.members.lookup_by_caller_id(org.agent1, "01065529988")
    assert card is not None and card.member.id == husband.id  # most recently updated first
    assert [o.id for o in card.other_matches] == [wife.id]


async def test_all_typed_forms_find_the_member(crm: Crm, org) -> None:
    m = await crm.members.create(org.agent1, "周婷", phones=["13800138000", "021-12345678"])
    for typed in ("+86 138 0013 8000", "008613800138000", "13800138000", "138-0013-8000", "(021)12345678"):
        page = await crm.members.search(org.agent1, MemberQuery(text=typed))
        assert [x.id for x in page.items] == [m.id], typed
        card = await crm.members.lookup_by_caller_id(org.agent1, typed)
        assert card is not None and card.member.id == m.id
    assert await crm.members.lookup_by_caller_id(org.agent1, "13900000000") is None
    assert await crm.members.lookup_by_caller_id(org.agent1, "anonymous") is None


async def test_search_combines_filters_and_pages(crm: Crm, org) -> None:
    names = ["王小丽", "李丽华", "丽娜", "王芳", "Zhang Wei", "张伟", "刘丽"]
    created = {}
    for i, name in enumerate(names):
        created[name] = await crm.members.create(
            org.agent1, name, phones=[f"1380000{i:04d}"], email=f"m{i}@example.com",
            level="gold" if i % 2 == 0 else "normal", tags=["美白"] if "丽" in name else ["祛斑"],
        )  # fmt: skip

    async def ids(**q) -> list[str]:
        page = await crm.members.search(org.agent1, MemberQuery(**q), limit=50)
        return sorted(m.name for m in page.items)

    assert await ids(name="丽") == ["丽娜", "刘丽", "李丽华", "王小丽"]
    assert await ids(name="小丽") == ["王小丽"]
    assert await ids(name="王丽") == []  # characters present but not adjacent
    assert await ids(text="zhang wei") == ["Zhang Wei"]
    assert await ids(text="ZHANGWEI") == ["Zhang Wei"]
    assert await ids(text="m3@EXAMPLE.com") == ["王芳"]
    assert await ids(tag="美白", level="gold") == ["丽娜", "刘丽", "王小丽"]
    assert await ids(name="丽", level="normal") == ["李丽华"]
    assert await ids(name="%") == []  # LIKE wildcards are literal
    assert await ids(phone="138-0000-0005") == ["张伟"]

    first = await crm.members.search(org.agent1, MemberQuery(), offset=0, limit=3)
    second = await crm.members.search(org.agent1, MemberQuery(), offset=3, limit=3)
    third = await crm.members.search(org.agent1, MemberQuery(), offset=6, limit=3)
    assert first.total == 7 and first.has_more and not third.has_more
    seen = [m.id for page in (first, second, third) for m in page.items]
    assert len(set(seen)) == 7 and seen == sorted(seen, reverse=True)
    with pytest.raises(ValidationError):
        await crm.members.search(org.agent1, MemberQuery(), limit=10_000)
    with pytest.raises(ValidationError):
        await crm.members.search(org.agent1, MemberQuery(phone="12"))


async def test_update_replaces_phones_tags_and_name_index(crm: Crm, org) -> None:
    m = await crm.members.create(org.agent1, "赵雪", phones=["13800138000"], tags=["美白"])
    updated = await crm.members.update(org.agent1, m.id, name="赵雪梅", phones=["13900139000"], tags=["抗衰"], level="silver")
    assert updated.name == "赵雪梅" and [p.e164 for p in updated.phones] == ["+8613900139000"]
    assert updated.tags == ("抗衰",) and updated.level_code == "silver"
    assert await crm.members.lookup_by_caller_id(org.agent1, "13800138000") is None
    assert (await crm.members.search(org.agent1, MemberQuery(name="雪梅"))).total == 1
    assert (await crm.members.search(org.agent1, MemberQuery(tag="美白"))).total == 0
    # the old mobile is free again
    await crm.members.create(org.agent1, "新会员", phones=["13800138000"])
    entry = (await audit.list_entries(crm.db, org.admin, entity="member", entity_id=m.id))[0]
    assert entry.before["name"] == "赵雪" and entry.after["name"] == "赵雪梅"


async def test_blacklist_needs_a_reason(crm: Crm, org) -> None:
    m = await crm.members.create(org.agent1, "黄某", phones=["13800138000"])
    with pytest.raises(ValidationError):
        await crm.members.set_blacklist(org.agent1, m.id, True)
    listed = await crm.members.set_blacklist(org.agent1, m.id, True, "多次恶意投诉")
    assert listed.blacklisted and listed.blacklist_reason == "多次恶意投诉"
    card = await crm.members.lookup_by_caller_id(org.agent1, "13800138000")
    assert card is not None and card.member.blacklisted
    assert (await crm.members.search(org.agent1, MemberQuery(blacklisted=True))).total == 1
    cleared = await crm.members.set_blacklist(org.agent1, m.id, False)
    assert not cleared.blacklisted and cleared.blacklist_reason is None


async def test_data_scope_own_department_all(crm: Crm, org) -> None:
    mine = await crm.members.create(org.admin, "甲", phones=["13800000001"], owner_id=org.agent1.user_id)
    theirs = await crm.members.create(org.admin, "乙", phones=["13800000002"], owner_id=org.agent2.user_id)
    tech_owned = await crm.members.create(org.admin, "丙", phones=["13800000003"], owner_id=org.tech_pudong.user_id)
    pool = await crm.members.create(org.admin, "丁", phones=["13800000004"])

    async def visible(actor) -> set[int]:
        return {m.id for m in (await crm.members.search(actor, MemberQuery())).items}

    assert await visible(org.agent1) == {mine.id, pool.id}  # own + the public pool (公海)
    assert await visible(org.supervisor) == {mine.id, theirs.id, pool.id}  # 客服中心 only
    assert await visible(org.admin) == {mine.id, theirs.id, tech_owned.id, pool.id}
    with pytest.raises(Forbidden) as err:
        await crm.members.get(org.agent1, theirs.id)
    assert err.value.code == "auth.out_of_scope"
    with pytest.raises(Forbidden):
        await crm.members.update(org.agent1, theirs.id, notes="偷看")
    assert await crm.members.lookup_by_caller_id(org.agent1, "13800000002") is None
    assert await crm.members.lookup_by_caller_id(org.agent2, "13800000002") is not None
    with pytest.raises(Forbidden):
        await crm.members.create(org.auditor, "戊", phones=["13800000005"])  # auditors only read


async def test_caller_id_card_shows_recent_history(crm: Crm, org, clock: FixedClock) -> None:
    m = await crm.members.create(org.agent1, "孙丽", phones=["13800138000"], level="diamond", tags=["VIP", "抗衰"])
    for i in range(7):
        clock.advance(timedelta(minutes=5))
        await crm.tickets.create(org.agent1, ticket_type="consultation", subject=f"咨询{i}", member_id=m.id)
    clock.advance(timedelta(minutes=5))
    await crm.timeline.record_call(SYSTEM, direction="inbound", caller="013800138000", callee="4008208820",
                                   started_at=clock.now(), duration=65, billsec=50, disposition=Disposition.ANSWERED,
                                   agent_id=org.agent1.user_id, recording_ref="2026/11/23/abc.wav")  # fmt: skip
    await crm.points.earn(org.agent1, m.id, 300, "消费积分", reference="ORD-1")

    card = await crm.members.lookup_by_caller_id(org.agent1, "+86 138 0013 8000", recent=3)
    assert card is not None
    assert card.member.name == "孙丽" and card.member.tags == ("VIP", "抗衰") and card.member.points_balance == 300
    assert card.level_name == "钻石" and card.level_rank == 30
    kinds = [i.kind for i in card.recent]
    assert kinds.count(TimelineKind.TICKET) == 3 and kinds.count(TimelineKind.CALL) == 1
    tickets = [i.title for i in card.recent if i.kind is TimelineKind.TICKET]
    assert tickets == ["咨询6", "咨询5", "咨询4"]  # the newest ones
    stamps = [i.occurred_at for i in card.recent]
    assert stamps == sorted(stamps, reverse=True)
    call = next(i for i in card.recent if i.kind is TimelineKind.CALL)
    assert call.status == "ANSWERED" and call.value == 65 and call.ref == "2026/11/23/abc.wav"

    # a technician reads members but not tickets: the card leaves tickets out
    tech_card = await crm.members.lookup_by_caller_id(org.tech_pudong, "13800138000")
    assert tech_card is not None and all(i.kind is not TimelineKind.TICKET for i in tech_card.recent)


async def test_caller_id_lookup_uses_the_phone_index(crm: Crm, org) -> None:
    await crm.members.create(org.agent1, "钱多多", phones=["13800138000"])
    plan = await crm.db.fetch_all(
        "EXPLAIN QUERY PLAN SELECT m.id FROM member_phones hit JOIN members m ON m.id = hit.member_id"
        " JOIN member_phones p ON p.member_id = m.id WHERE hit.e164 = ?",
        ("+8613800138000",),
    )
    details = " ".join(row["detail"] for row in plan)
    assert "SEARCH hit USING" in details and "SCAN" not in details


async def test_large_result_counts_stop_early(crm: Crm, org, monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(6):
        await crm.members.create(org.agent1, f"林{i}", phones=[f"1380000{i:04d}"])
    monkeypatch.setattr(members_module, "MAX_EXACT_COUNT", 3)
    page = await crm.members.search(org.agent1, MemberQuery(name="林"), limit=2)
    assert (page.total, page.total_exact, len(page.items), page.has_more) == (3, False, 2, True)
    deep = await crm.members.search(org.agent1, MemberQuery(name="林"), offset=4, limit=2)
    assert (deep.total, deep.total_exact, len(deep.items), deep.has_more) == (6, True, 2, False)
