"""我的工作台 and the administration pages in a real browser (one server for all of them):
schedule and reminders, internal messages with the unread count in the header, notices with
read receipts; data dictionaries, templates and bulk e-mail through a real SMTP server with a
preview, return visits and surveys, database backup and restore."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Browser, Page, expect

from bench.server import ServerProcess
from tests.browser.helpers import demo_server, sign_in

ADMIN_PASSWORD = "s3cret-admin-pw"
ARTIFACTS = Path(__file__).parents[2] / "test-artifacts"
SITE = ZoneInfo("Asia/Shanghai")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with demo_server(tmp_path_factory.mktemp("desk") / "data", ADMIN_PASSWORD, seed_timeout=30) as proc:
        yield proc



#: Signed-in browser state per user name: each user signs in once per run (scrypt is slow on
#: purpose), later pages reuse the session cookie.
_SESSIONS: dict[str, Any] = {}


def signed_in(browser: Browser, server: ServerProcess, user: str = "admin", password: str | None = None) -> Page:
    if password is None:
        password = ADMIN_PASSWORD if user == "admin" else "demo1234"
    if user in _SESSIONS:
        page = browser.new_context(storage_state=_SESSIONS[user], viewport={"width": 1366, "height": 768}).new_page()
        page.goto(f"{server.http_url}/")
    else:
        page = sign_in(browser, server.http_url, user, password)
    expect(page.get_by_role("heading", level=1)).to_contain_text("欢迎")
    _SESSIONS[user] = page.context.storage_state()
    return page


def local(minutes_from_now: int) -> str:
    """A datetime-local field's value, in the site's time zone."""
    return (datetime.now(SITE) + timedelta(minutes=minutes_from_now)).strftime("%Y-%m-%dT%H:%M")


def test_a_reminder_due_soon_is_highlighted_until_done(server: ServerProcess, browser: Browser) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page = signed_in(browser, server, "agent1")
    expect(page.locator("section.reminders")).to_have_count(0)
    page.get_by_label("事项").fill("回电杨女士：退款进度")
    page.get_by_label("时间", exact=True).fill(local(10))
    page.get_by_label("提醒时间").fill(local(5))
    page.get_by_role("button", name="添加").click()
    page.get_by_label("事项").fill("下午例会")
    page.get_by_label("时间", exact=True).fill(local(180))
    page.get_by_role("button", name="添加").click()
    # Today's list, or the coming days' when the test runs just before midnight at the site.
    schedule = page.locator("section.schedule")
    expect(schedule).to_contain_text("下午例会")
    # Due within the quarter hour: raised at the top and highlighted in the list; the meeting is not.
    expect(page.locator("section.reminders li")).to_have_text(re.compile("回电杨女士"))
    expect(schedule.locator("li.reminding")).to_have_count(1)
    expect(schedule.locator("li.reminding")).to_contain_text("回电杨女士：退款进度")
    page.screenshot(path=str(ARTIFACTS / "workspace-reminder.png"))
    page.get_by_role("button", name="完成: 回电杨女士：退款进度").click()
    expect(page.locator("section.reminders")).to_have_count(0)
    expect(schedule.locator("li.reminding")).to_have_count(0)
    # A reminder after the item is refused with the reason.
    page.get_by_label("事项").fill("错误的提醒")
    page.get_by_label("时间", exact=True).fill(local(60))
    page.get_by_label("提醒时间").fill(local(90))
    page.get_by_role("button", name="添加").click()
    expect(page.get_by_role("alert")).to_have_text("提醒时间应早于日程时间。")
    # My work links to the lists.
    page.locator("a.count.tickets").click()
    expect(page).to_have_url(re.compile(r"/tickets$"))


def test_messages_between_staff_show_unread_in_the_header(server: ServerProcess, browser: Browser) -> None:
    boss = signed_in(browser, server, "supervisor1")
    boss.get_by_role("link", name="站内消息").click()
    boss.get_by_label("收件人").select_option(label="客服中心")
    boss.get_by_label("主题").fill("今晚加班安排")
    boss.get_by_label("内容").fill("双十二活动，请各位18:00后留守一小时。")
    boss.get_by_role("button", name="发送").click()
    expect(boss.get_by_role("status")).to_have_text("消息已发送。")
    agent = signed_in(browser, server, "agent3")
    expect(agent.locator("header .unread-count")).to_have_text("1")
    agent.get_by_role("link", name=re.compile("^站内消息")).click()
    expect(agent.locator("li.unread .subject")).to_have_text("今晚加班安排")
    # Answer the supervisor directly.
    agent.get_by_label("收件人").select_option(label="周主管")
    agent.get_by_label("主题").fill("收到")
    agent.get_by_role("button", name="发送").click()
    agent.get_by_role("button", name="标为已读: 今晚加班安排").click()
    expect(agent.locator("header .unread-count")).to_have_count(0)
    expect(agent.locator("li.read .subject")).to_have_text("今晚加班安排")
    agent.screenshot(path=str(ARTIFACTS / "messages.png"))
    boss.goto(f"{server.http_url}/")
    expect(boss.locator("header .unread-count")).to_have_text("1")
    expect(boss.locator("a.count.messages strong")).to_have_text("1")


def test_a_notice_reaches_its_department_and_records_who_read_it(server: ServerProcess, browser: Browser) -> None:
    admin = signed_in(browser, server, "admin", ADMIN_PASSWORD)
    admin.get_by_role("link", name="公告管理").click()
    admin.get_by_label("标题").fill("退款新规：12月1日起执行")
    admin.get_by_label("正文").fill("凡护理后7日内投诉的，一律先行退款。\n详情见知识库。")
    admin.get_by_role("checkbox", name="客服中心").check()
    admin.get_by_label("置顶").check()
    admin.get_by_label("有效期至").fill(local(7 * 24 * 60))
    admin.get_by_role("button", name="发布").click()
    expect(admin.locator("table.notices tbody tr")).to_have_count(1)
    agent = signed_in(browser, server, "agent2")
    notice = agent.locator("ul.notices li.unread a")
    expect(notice).to_have_text("退款新规：12月1日起执行")
    notice.click()
    expect(agent.get_by_role("heading", level=1)).to_contain_text("退款新规")
    agent.goto(f"{server.http_url}/")
    expect(agent.locator("ul.notices li.read a")).to_have_text("退款新规：12月1日起执行")
    # A technician is outside the audience: not listed, and not readable by address.
    tech = signed_in(browser, server, "tech1")
    expect(tech.locator("ul.notices li.empty")).to_have_count(1)
    response = tech.goto(agent.url.rstrip("/") + "/notices/1")
    assert response is not None and response.status == 404
    assert tech.goto(f"{server.http_url}/admin/notices").status == 403  # type: ignore[union-attr]
    # Receipts: agent2 has read it, the rest of the service centre has not.
    admin.get_by_role("link", name="退款新规：12月1日起执行").click()
    expect(admin.locator("p.summary")).to_have_text(re.compile(r"已读 1 / \d+ 人"))
    expect(admin.locator("tr.read td").first).to_have_text(re.compile("."))
    admin.screenshot(path=str(ARTIFACTS / "notice-receipts.png"))
    admin.get_by_role("link", name="公告管理").last.click()
    admin.get_by_role("button", name="撤回: 退款新规：12月1日起执行").click()
    agent.goto(f"{server.http_url}/")
    expect(agent.locator("ul.notices li.empty")).to_have_count(1)


def test_the_workspace_speaks_english_when_asked(server: ServerProcess, browser: Browser) -> None:
    page = signed_in(browser, server, "agent4")
    page.get_by_label("语言").select_option("en")
    expect(page.get_by_role("heading", level=2, name="Today's schedule")).to_be_visible()
    expect(page.get_by_role("navigation", name="My work")).to_contain_text("open tickets")
    page.get_by_role("link", name=re.compile(r"^Messages")).first.click()  # with its unread badge, if any
    expect(page.get_by_role("heading", level=2, name="Write a message")).to_be_visible()
    page.get_by_role("button", name="Send").click()  # nothing chosen: the browser asks first
    assert page.get_by_label("To").evaluate("select => select.validity.valueMissing") is True


def test_dictionary_entries_are_edited_ordered_switched_off_and_protected_when_in_use(
        server: ServerProcess, browser: Browser) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page = signed_in(browser, server)
    page.get_by_role("link", name="数据字典").click()
    page.get_by_role("link", name="客户来源").click()
    page.get_by_label("编码").first.fill("douyin")
    page.locator("#new_label").fill("抖音")
    page.locator("#new_order").fill("5")
    page.get_by_role("button", name="新增", exact=True).click()
    rows = page.locator("table.items tbody tr")
    expect(rows.first).to_have_attribute("data-code", "douyin")  # order 5 sorts first
    page.get_by_label("名称: douyin").fill("抖音直播")
    page.get_by_label("启用: douyin").uncheck()
    page.get_by_role("button", name="保存: douyin").click()
    row = page.locator('tr[data-code="douyin"]')
    expect(row).to_have_class(re.compile("inactive"))
    expect(page.get_by_label("名称: douyin")).to_have_value("抖音直播")
    # Members came in by phone: that entry cannot go, and the page says what to do instead.
    with page.expect_response(re.compile(r"/phone/delete$")) as deleted:
        page.get_by_role("button", name="删除: phone").click()
    assert deleted.value.status == 409
    expect(page.get_by_role("alert")).to_have_text("该字典项仍被业务记录使用，不能删除；请改为停用。")
    expect(page.locator('tr[data-code="phone"]')).to_have_count(1)
    page.screenshot(path=str(ARTIFACTS / "dictionaries.png"))
    page.get_by_role("button", name="删除: douyin").click()
    expect(page.locator('tr[data-code="douyin"]')).to_have_count(0)
    # Member levels: a level members hold cannot be deleted either.
    page.get_by_role("button", name="删除: gold").click()
    expect(page.get_by_role("alert")).to_have_text("仍有会员属于该级别，不能删除。")
    # Only roles that manage settings get here.
    agent = signed_in(browser, server, "agent1", "demo1234")
    expect(agent.get_by_role("link", name="数据字典")).to_have_count(0)
    assert agent.goto(f"{server.http_url}/admin/dictionaries").status == 403  # type: ignore[union-attr]


class _Inbox:
    """aiosmtpd handler keeping what arrives."""

    def __init__(self) -> None:
        self.envelopes: list = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's hook name)
        self.envelopes.append(envelope)
        return "250 OK queued"


@pytest.fixture
def smtp_server() -> Iterator[tuple[int, _Inbox]]:
    """A real SMTP server (aiosmtpd) on a free port of 127.0.0.1, in a thread of its own."""
    import threading

    from aiosmtpd.smtp import SMTP

    inbox = _Inbox()
    loop = asyncio.new_event_loop()
    started = threading.Event()
    servers: list[asyncio.Server] = []

    def serve() -> None:  # the browser's event loop owns this thread's: the server gets a thread of its own
        asyncio.set_event_loop(loop)
        servers.append(loop.run_until_complete(
            loop.create_server(lambda: SMTP(inbox, hostname="mail.test"), "127.0.0.1", 0)))
        started.set()
        loop.run_forever()
        servers[0].close()
        loop.run_until_complete(servers[0].wait_closed())
        loop.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert started.wait(10)
    try:
        yield servers[0].sockets[0].getsockname()[1], inbox
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)


def run_apart(coroutine: Any) -> None:
    """Run a coroutine to completion on a thread of its own (Playwright's loop holds this one)."""
    import threading

    errors: list[BaseException] = []

    def main() -> None:
        try:
            asyncio.run(coroutine)
        except BaseException as exc:  # re-raised in the test's thread
            errors.append(exc)

    thread = threading.Thread(target=main)
    thread.start()
    thread.join(timeout=60)
    if errors:
        raise errors[0]


async def _add_mailing_members(db_path: Path, month: int) -> None:
    from callcenter.database import open_database
    from crm.access import SYSTEM
    from crm.db import Database
    from crm.service import Crm

    conn = await open_database(db_path)
    try:
        crm = Crm.build(Database(conn))
        other = month % 12 + 1
        for i, (name, birth_month) in enumerate((("杨柳", month), ("林晓", month), ("退订者", month), ("黑名单", month),
                                                 ("周敏", other))):  # fmt: skip
            member = await crm.members.create(SYSTEM, name, phones=[f"1377777000{i}"], email=f"m{i}@example.com",
                                              birthday=f"1990-{birth_month:02d}-0{i + 1}", tags=["E2群发"])  # fmt: skip
            if name == "黑名单":
                await crm.members.set_blacklist(SYSTEM, member.id, True, "恶意投诉")
    finally:
        await conn.close()


def test_bulk_email_with_preview_skips_opt_outs_and_arrives_through_smtp(
        server: ServerProcess, browser: Browser, smtp_server: tuple[int, _Inbox]) -> None:
    from datetime import datetime
    from email import message_from_bytes, policy
    from zoneinfo import ZoneInfo

    port, inbox = smtp_server
    month = datetime.now(ZoneInfo("Asia/Shanghai")).month
    run_apart(_add_mailing_members(server.data_dir / "callcenter.db", month))
    page = signed_in(browser, server)
    page.get_by_role("link", name="短信邮件").click()
    page.get_by_label("SMTP 主机").fill("127.0.0.1")
    page.get_by_label("端口").fill(str(port))
    page.get_by_label("发件地址").fill("service@meiyan.example")
    page.get_by_label("发件人名称").fill("美颜连锁")
    page.locator("#smtp").get_by_role("button", name="保存").click()
    expect(page.get_by_role("status")).to_have_text("邮件服务器设置已保存。")
    page.get_by_label("模板编码").fill("bday_mail")
    page.get_by_label("渠道", exact=True).select_option("email")
    page.get_by_label("模板名称").fill("生日关怀")
    page.get_by_label("邮件主题").fill("{name}，生日快乐")
    page.get_by_label("内容", exact=True).fill("亲爱的{name}：\n祝您生日快乐！本月到店护理享8折。")
    page.locator("#template-form + form").get_by_role("button", name="保存").click()
    expect(page.locator('table.templates tr[data-code="bday_mail"]')).to_contain_text("{name}")
    # 退订: the member asked for no more e-mail.
    page.get_by_label("会员手机号").fill("13777770002")
    page.get_by_label("退订渠道").select_option("email")
    page.get_by_label("原因").fill("回复TD")
    page.get_by_role("button", name="登记退订").click()
    expect(page.locator("ul.opt-outs")).to_contain_text("退订者")

    page.get_by_role("link", name="群发").first.click()
    page.get_by_label("模板").select_option("bday_mail")
    page.get_by_label("标签").fill("E2群发")
    page.get_by_label(re.compile("本月")).check()
    page.get_by_role("button", name="预览").click()
    expect(page.locator("strong.ready")).to_have_text("2")
    expect(page.locator("li.opted-out")).to_have_text("已退订跳过 1 位")
    expect(page.locator("article.sample h3").first).to_contain_text("杨柳")
    expect(page.locator("article.sample pre").first).to_have_text("亲爱的杨柳：\n祝您生日快乐！本月到店护理享8折。")
    page.screenshot(path=str(ARTIFACTS / "bulk-preview.png"))
    page.get_by_role("button", name="确认发送 2 条").click()
    expect(page.get_by_role("status")).to_have_text("已加入发送队列 2 条，跳过 2 位。")
    # The server's delivery loop hands them to the SMTP server within a few seconds.
    for _ in range(300):
        if len(inbox.envelopes) >= 2:
            break
        page.wait_for_timeout(100)
    mails = [message_from_bytes(e.content, policy=policy.default) for e in inbox.envelopes]
    assert {str(m["Subject"]) for m in mails} == {"林晓，生日快乐", "杨柳，生日快乐"} and len(mails) == 2
    assert all("祝您生日快乐！本月到店护理享8折。" in m.get_content() for m in mails)
    assert sorted(r for e in inbox.envelopes for r in e.rcpt_tos) == ["m0@example.com", "m1@example.com"]
    page.get_by_role("link", name="短信邮件").first.click()
    for address in ("m0@example.com", "m1@example.com"):
        expect(page.locator("table.outbox tbody tr.status-sent", has_text=address)).to_have_count(1)


async def _resolved_ticket(db_path: Path, found: list[int]) -> None:
    from callcenter.database import open_database
    from crm.access import SYSTEM
    from crm.db import Database
    from crm.service import Crm

    conn = await open_database(db_path)
    try:
        crm = Crm.build(Database(conn))
        member = await crm.members.create(SYSTEM, "回访会员", phones=["13766660001"])
        ticket = await crm.tickets.create(SYSTEM, ticket_type="complaint", subject="护理后红肿", member_id=member.id)
        agent = await crm.db.fetch_value("SELECT id FROM users WHERE username = 'agent1'")
        await crm.tickets.assign(SYSTEM, ticket.id, assignee_id=agent)
        await crm.tickets.start(SYSTEM, ticket.id)
        await crm.tickets.resolve(SYSTEM, ticket.id, "已安排免费复诊")
        found.append(ticket.id)
    finally:
        await conn.close()


def test_a_survey_is_built_a_visit_follows_a_ticket_and_the_results_add_up(
        server: ServerProcess, browser: Browser) -> None:
    tickets: list[int] = []
    run_apart(_resolved_ticket(server.data_dir / "callcenter.db", tickets))
    boss = signed_in(browser, server, "supervisor1", "demo1234")
    boss.goto(f"{server.http_url}/surveys")
    boss.get_by_label("问卷名称").fill("护理回访")
    rows = [("scale5", "总体满意度", "", True), ("scale10", "您向朋友推荐我们的可能性？", "", False),
            ("choice", "美容师是否准时？", "准时、迟到", False), ("text", "其他建议", "", False)]
    for i, (kind, prompt, options, satisfaction) in enumerate(rows, start=1):
        boss.get_by_label(f"题型 {i}", exact=True).select_option(kind)
        boss.get_by_label(f"题目 {i}", exact=True).fill(prompt)
        if options:
            boss.get_by_label(f"选项 {i}", exact=True).fill(options)
        if satisfaction:
            boss.get_by_label(f"计入满意度 {i}", exact=True).check()
    boss.get_by_label("必答 4", exact=True).uncheck()
    boss.get_by_role("button", name="保存问卷").click()
    expect(boss.locator("h1 .status")).to_have_text("草稿")
    boss.get_by_role("button", name="启用").click()
    expect(boss.locator("h1 .status")).to_have_text("启用中")
    survey_url = boss.url

    boss.goto(f"{server.http_url}/visits")
    boss.get_by_label("回访对象").select_option("ticket")
    boss.get_by_label("单号").fill(str(tickets[0]))
    boss.get_by_label("调查问卷").select_option(label="护理回访")
    boss.get_by_label("回访人").select_option(label="林晓")
    boss.get_by_role("button", name="创建回访").click()
    expect(boss.get_by_role("heading", level=1)).to_contain_text("回访会员")
    boss.goto(f"{server.http_url}/visits")  # a second visit for the same ticket is refused
    boss.get_by_label("单号").fill(str(tickets[0]))
    boss.get_by_role("button", name="创建回访").click()
    expect(boss.get_by_role("alert")).to_have_text("该单据已经安排过回访。")

    agent = signed_in(browser, server, "agent1", "demo1234")
    agent.get_by_role("link", name="回访", exact=True).click()
    agent.get_by_role("link", name="回访会员").click()
    question = agent.locator("fieldset.question")
    question.filter(has_text="总体满意度").get_by_label("4", exact=True).check()
    # Saving without the required recommendation score is refused with the reason.
    agent.get_by_role("button", name="保存回访结果").click()
    expect(agent.get_by_role("alert")).to_have_text("还有必答题未回答。")
    question.filter(has_text="总体满意度").get_by_label("4", exact=True).check()
    question.filter(has_text="推荐").get_by_label("9", exact=True).check()
    question.filter(has_text="准时").get_by_label("准时", exact=True).check()
    question.filter(has_text="其他建议").locator("textarea").fill("医生很耐心")
    agent.screenshot(path=str(ARTIFACTS / "return-visit.png"))
    agent.get_by_role("button", name="保存回访结果").click()
    expect(agent.locator("dd.status")).to_have_text("已完成 · 已回访")

    boss.goto(survey_url)
    expect(boss.locator(".responses")).to_have_text("共 1 份答卷")
    expect(boss.locator('article[data-kind="scale"] .average').first).to_have_text("4.0")
    expect(boss.locator(".nps-score")).to_have_text("100.0")
    expect(boss.locator("table.options")).to_contain_text("准时")
    expect(boss.locator("ul.texts")).to_have_text("医生很耐心")
    boss.screenshot(path=str(ARTIFACTS / "survey-results.png"))


def test_backup_download_is_a_consistent_database_and_restore_refuses_garbage(
        server: ServerProcess, browser: Browser, tmp_path: Path) -> None:
    import sqlite3

    page = signed_in(browser, server)
    page.get_by_role("link", name="数据备份").click()
    with page.expect_download() as downloading:
        page.get_by_role("button", name="立即备份并下载").click()
    backup = tmp_path / downloading.value.suggested_filename
    downloading.value.save_as(backup)
    assert backup.name.startswith("callcenter-") and backup.suffix == ".db"
    copy = sqlite3.connect(f"file:{backup}?mode=ro", uri=True)
    try:
        assert copy.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert copy.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # one self-contained file
        assert copy.execute("SELECT COUNT(*) FROM users WHERE username = 'admin'").fetchone()[0] == 1
    finally:
        copy.close()
    page.reload()
    expect(page.locator("ul.backups li code")).to_have_text([backup.name])

    garbage = tmp_path / "garbage.db"
    garbage.write_bytes("这不是数据库，只是一段文字。".encode() * 200)
    page.get_by_label("备份文件").set_input_files(str(garbage))
    with page.expect_response(re.compile(r"/admin/backup/restore$")) as answered:
        page.get_by_role("button", name="上传并校验").click()
    assert answered.value.status == 422
    expect(page.get_by_role("alert")).to_have_text("上传的文件不是数据库备份。")
    foreign = tmp_path / "notes.db"
    other = sqlite3.connect(foreign)
    other.execute("CREATE TABLE notes (body TEXT)")
    other.commit()
    other.close()
    page.get_by_label("备份文件").set_input_files(str(foreign))
    page.get_by_role("button", name="上传并校验").click()
    expect(page.get_by_role("alert")).to_have_text("这是一个数据库文件，但不是本系统的备份。")
    expect(page.locator("section.pending")).to_have_count(0)

    page.get_by_label("备份文件").set_input_files(str(backup))
    page.get_by_role("button", name="上传并校验").click()
    expect(page.locator("section.pending h2")).to_have_text("待恢复的备份")
    assert (server.data_dir / "callcenter.db.restore").is_file()
    page.screenshot(path=str(ARTIFACTS / "backup.png"))
    page.get_by_role("button", name="取消恢复").click()
    expect(page.locator("section.pending")).to_have_count(0)
    assert not (server.data_dir / "callcenter.db.restore").exists()
    # Without the permission there is neither the link nor the page, nor a download by a forged post.
    agent = signed_in(browser, server, "agent1", "demo1234")
    expect(agent.get_by_role("link", name="数据备份")).to_have_count(0)
    assert agent.goto(f"{server.http_url}/admin/backup").status == 403  # type: ignore[union-attr]
    forged = agent.request.post(f"{server.http_url}/admin/backup/download", form={"csrf": "forged"})
    assert forged.status == 403
