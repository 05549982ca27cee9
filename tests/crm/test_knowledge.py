"""知识库: Chinese full-text search (FTS5 trigram, LIKE below three characters), visibility of
drafts, internal and public articles, view counts, pinned first."""

from __future__ import annotations

import pytest

from crm.errors import Forbidden, NotFound, ValidationError
from crm.knowledge import ArticleStatus
from crm.service import Crm

ARTICLES = [
    ("玻尿酸注射后注意事项", "注射玻尿酸后24小时内不要沾水，一周内避免桑拿和剧烈运动。", True),
    ("光子嫩肤的疗程安排", "光子嫩肤一般每3-4周做一次，4-6次为一个疗程；术后注意防晒。", True),
    ("会员积分规则", "消费1元积1分，积分可兑换护理项目和产品。生日当月双倍积分。", True),
    ("门店内部排班制度", "美容师每周轮休两天，旺季由店长统一调配。", False),
]


async def _seed(crm: Crm, org) -> dict[str, int]:
    category = await crm.knowledge.create_category(org.supervisor, "常见问题")
    ids = {}
    for title, body, public in ARTICLES:
        article = await crm.knowledge.create(org.supervisor, title=title, body=body, category_id=category.id,
                                             public=public, publish=True)  # fmt: skip
        ids[title] = article.id
    return ids


async def test_chinese_full_text_search(crm: Crm, org) -> None:
    ids = await _seed(crm, org)

    async def titles(query: str, actor=None) -> list[str]:
        return [a.title for a in (await crm.knowledge.search(actor or org.agent1, query)).items]

    assert await titles("玻尿酸") == ["玻尿酸注射后注意事项"]  # a word inside a sentence, no spaces
    assert await titles("注意防晒") == ["光子嫩肤的疗程安排"]  # found in the body
    assert await titles("积分 兑换") == ["会员积分规则"]  # every term must match
    assert await titles("积分 嫩肤") == []
    assert await titles("双倍积分规则") == []
    # shorter than a trigram: the LIKE fallback still finds it
    assert await titles("桑拿") == ["玻尿酸注射后注意事项"]
    assert await titles("疗") == ["光子嫩肤的疗程安排"]
    assert set(await titles("")) == set(ids)
    # FTS syntax in user input is just text
    assert await titles('"玻尿酸" OR *') == []
    assert await titles('NEAR(玻尿酸 积分规则"') == []
    assert await titles('"玻尿酸"') == []  # the quotes are part of the phrase searched for
    with pytest.raises(ValidationError):
        await crm.knowledge.search(org.agent1, "长" * 101)


async def test_visibility_public_internal_and_drafts(crm: Crm, org) -> None:
    ids = await _seed(crm, org)
    draft = await crm.knowledge.create(org.supervisor, title="新品上市：修护面霜", body="敏感肌适用的修护面霜即将上市。",
                                       public=True)  # fmt: skip
    assert draft.status is ArticleStatus.DRAFT

    public = {a.title for a in (await crm.knowledge.search(None)).items}
    assert public == {"玻尿酸注射后注意事项", "光子嫩肤的疗程安排", "会员积分规则"}
    internal = {a.title for a in (await crm.knowledge.search(org.agent1)).items}
    assert internal == public | {"门店内部排班制度"}
    with pytest.raises(NotFound):  # without login, an internal article does not exist
        await crm.knowledge.read(None, ids["门店内部排班制度"])
    with pytest.raises(NotFound):  # drafts exist only for writers
        await crm.knowledge.read(org.agent1, draft.id)
    with pytest.raises(Forbidden):
        await crm.knowledge.search(org.agent1, status="draft")
    assert [a.title for a in (await crm.knowledge.search(org.supervisor, "修护", status="draft")).items] == ["新品上市：修护面霜"]
    published = await crm.knowledge.update(org.supervisor, draft.id, status="published")
    assert published.published_at is not None
    assert (await crm.knowledge.read(None, draft.id)).title == "新品上市：修护面霜"
    with pytest.raises(Forbidden):
        await crm.knowledge.create(org.agent1, title="x", body="y")


async def test_views_and_pinned_order_and_edits_reach_the_index(crm: Crm, org) -> None:
    ids = await _seed(crm, org)
    for _ in range(3):
        await crm.knowledge.read(None, ids["会员积分规则"])
    article = await crm.knowledge.read(org.agent1, ids["光子嫩肤的疗程安排"])
    assert article.view_count == 1
    listing = [a.title for a in (await crm.knowledge.search(org.agent1)).items]
    assert listing[:2] == ["会员积分规则", "光子嫩肤的疗程安排"]  # most viewed first
    await crm.knowledge.update(org.supervisor, ids["门店内部排班制度"], pinned=True)
    listing = [a.title for a in (await crm.knowledge.search(org.agent1)).items]
    assert listing[0] == "门店内部排班制度"  # pinned first (置顶)

    await crm.knowledge.update(org.supervisor, ids["会员积分规则"], body="消费1元积1分，积分可抵扣现金。")
    assert [a.title for a in (await crm.knowledge.search(org.agent1, "抵扣现金")).items] == ["会员积分规则"]
    assert (await crm.knowledge.search(org.agent1, "双倍积分")).total == 0
    await crm.knowledge.delete(org.supervisor, ids["会员积分规则"])
    assert (await crm.knowledge.search(org.agent1, "积分可")).total == 0


async def test_the_index_is_rebuilt_for_a_database_that_lacks_it(crm: Crm, org) -> None:
    await _seed(crm, org)
    await crm.db.execute("DROP TABLE kb_articles_fts")  # e.g. a file restored from an older tool
    fresh = type(crm.knowledge)(crm.db, crm.clock)
    assert [a.title for a in (await fresh.search(org.agent1, "疗程安排")).items] == ["光子嫩肤的疗程安排"]
