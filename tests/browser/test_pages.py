"""The web UI in a real browser (Debian's Chromium driven by Playwright): sign in, find a
member, read the card, switch language, sign out; hostile input stays inert."""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from bench.server import ServerProcess
from callcenter.database import open_database
from crm.access import SYSTEM
from crm.db import Database
from crm.service import Crm
from tests.browser.helpers import demo_server

ADMIN_PASSWORD = "s3cret-admin-pw"
# Screenshots of the main pages, kept for people to look at after a run.
ARTIFACTS = Path(__file__).parents[2] / "test-artifacts"
HOSTILE = '王<img src=x onerror="window.__pwned=1"><script>alert(2)</script>'


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("web")
    with demo_server(tmp / "data", ADMIN_PASSWORD, seed_timeout=30) as proc:
        asyncio.run(_add_member(tmp / "data" / "callcenter.db"))
        yield proc


async def _add_member(db_path: Path) -> None:
    """A member whose name is an XSS attempt, written through the CRM as a form would."""
    conn = await open_database(db_path)
    try:
        await Crm.build(Database(conn)).members.create(SYSTEM, HOSTILE, phones=["13912345678"])
    finally:
        await conn.close()



def sign_in(page: Page, server: ServerProcess, user: str = "admin", password: str = ADMIN_PASSWORD) -> None:
    page.goto(f"{server.http_url}/login")
    page.get_by_label("用户名").fill(user)
    page.get_by_label("密码").fill(password)
    page.get_by_role("button", name="登录").click()


def test_sign_in_search_card_language_and_sign_out(server: ServerProcess, browser: Browser) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1366, "height": 768})
    sign_in(page, server)
    expect(page.get_by_role("heading", level=1)).to_contain_text("欢迎")
    page.screenshot(path=str(ARTIFACTS / "workspace.png"))
    page.get_by_role("link", name="会员").click()
    page.get_by_label("搜索").fill("139 1234 5678")  # any phone form finds the member
    page.get_by_role("button", name="搜索").click()
    expect(page.locator("table.list tbody tr")).to_have_count(1)
    page.screenshot(path=str(ARTIFACTS / "members-search.png"))
    # The hostile name is shown as text, never run.
    link = page.locator("table.list tbody tr a")
    expect(link).to_have_text(HOSTILE)
    link.click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("王")
    assert page.evaluate("window.__pwned") is None  # the onerror handler never ran
    page.screenshot(path=str(ARTIFACTS / "member-card.png"))
    # Switch to English: the page and the session follow.
    page.get_by_label("语言").select_option("en")
    expect(page.get_by_role("heading", level=2).first).to_have_text("Member card")
    page.get_by_role("link", name="Members").click()
    expect(page.get_by_role("button", name="Search")).to_be_visible()
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/login$"))
    page.goto(f"{server.http_url}/members")
    expect(page).to_have_url(re.compile(r"/login$"))  # the session is really gone


def test_wrong_password_is_refused_with_a_message(server: ServerProcess, browser: Browser) -> None:
    page = browser.new_page()
    sign_in(page, server, password="wrong-password")
    expect(page.get_by_role("alert")).to_have_text("用户名或密码错误。")


def test_forms_without_a_csrf_token_are_refused(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.http_url) as client:
        form = client.get("/login")
        assert form.status_code == 200
        refused = client.post("/login", data={"username": "admin", "password": ADMIN_PASSWORD, "csrf": "forged"})
        assert refused.status_code == 403
        token = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)  # type: ignore[union-attr]
        signed_in = client.post("/login", data={"username": "admin", "password": ADMIN_PASSWORD, "csrf": token})
        assert signed_in.status_code == 303
        cookie = signed_in.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=lax" in cookie.replace("Lax", "lax")
        # Signed in, a state change without the session's token is still refused.
        assert client.post("/logout", data={"csrf": "forged"}).status_code == 403


def test_a_role_without_permission_gets_a_403_page(server: ServerProcess, browser: Browser) -> None:
    page = browser.new_page()
    sign_in(page, server, user="agent1", password="demo1234")
    expect(page.get_by_role("link", name="操作日志")).to_have_count(0)  # not offered...
    response = page.goto(f"{server.http_url}/admin/audit")
    assert response is not None and response.status == 403  # ...and refused when asked
    expect(page.get_by_role("heading", level=1)).to_have_text("无权访问")
    admin = browser.new_page()
    sign_in(admin, server)
    admin.get_by_role("link", name="操作日志").click()
    expect(admin.locator("table.list tbody tr").first).to_be_visible()
    admin.screenshot(path=str(ARTIFACTS / "audit-log.png"))


def test_a_complaint_ticket_is_opened_assigned_and_resolved(server: ServerProcess, browser: Browser) -> None:
    page = browser.new_page(viewport={"width": 1366, "height": 768})
    sign_in(page, server, user="supervisor1", password="demo1234")
    page.get_by_role("link", name="服务工单").click()
    page.get_by_label("类型").select_option("complaint")
    page.get_by_label("优先级").select_option("4")
    page.get_by_label("主题").fill("顾客投诉：做完护理后皮肤过敏")
    page.get_by_role("button", name="提交").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("皮肤过敏")
    expect(page.locator("dd.status")).to_have_text("新建")
    # Closing an unresolved ticket is refused by the service; the page says why.
    page.get_by_role("button", name="关闭").click()
    expect(page.get_by_role("alert")).to_have_text("当前状态下不能执行此操作。")
    page.get_by_label("处理人").select_option(label="林晓")  # agent1
    page.get_by_role("button", name="分派").click()
    expect(page.locator("dd.status")).to_have_text("已分派")
    page.get_by_role("button", name="受理").click()
    expect(page.locator("dd.status")).to_have_text("处理中")
    page.get_by_label("处理结果").fill("已致电道歉并安排免费复诊")
    page.get_by_role("button", name="解决").click()
    expect(page.locator("dd.status")).to_have_text("已解决")
    page.screenshot(path=str(ARTIFACTS / "ticket.png"))
    # On the board, urgent unresolved tickets come first: ours is resolved, so it is not listed.
    page.get_by_role("link", name="服务工单").click()
    expect(page.get_by_role("link", name="顾客投诉：做完护理后皮肤过敏")).to_have_count(0)


def test_work_order_dispatch_completion_audit_and_the_duplicate_warning(server: ServerProcess, browser: Browser) -> None:
    supervisor = browser.new_page(viewport={"width": 1366, "height": 768})
    sign_in(supervisor, server, user="supervisor1", password="demo1234")

    def new_order() -> None:
        supervisor.goto(f"{server.http_url}/workorders")
        supervisor.get_by_label("会员电话").fill("13912345678")
        supervisor.get_by_label("服务类型").select_option("repair")
        supervisor.get_by_label("产品型号").fill("美容仪 BX-200")
        supervisor.get_by_label("机身序列号").fill("SN-2026-0001")
        supervisor.get_by_label("购买日期").fill("2026-03-01")
        supervisor.get_by_role("button", name="提交").click()

    new_order()
    expect(supervisor.locator("dd.status")).to_have_text("待派工")
    # 完工 before 派工 is a fake: refused with the reason.
    supervisor.get_by_label("客户要求").fill("上门维修")
    supervisor.get_by_label("客户意见").fill("满意")
    supervisor.get_by_label("机器状态").fill("正常")
    supervisor.get_by_role("button", name="完工").click()
    expect(supervisor.get_by_role("alert")).to_have_text("工单尚未派工，不能完工。")
    supervisor.get_by_role("button", name="派工").click()
    expect(supervisor.locator("dd.status")).to_have_text("已派工")
    order_url = supervisor.url
    technician = supervisor.locator("dd.technician").get_attribute("data-username")
    assert technician and technician.startswith("tech")

    tech = browser.new_page()
    sign_in(tech, server, user=technician, password="demo1234")
    tech.goto(order_url)
    tech.get_by_label("客户要求").fill("上门维修")
    tech.get_by_label("客户意见").fill("满意")
    tech.get_by_label("机器状态").fill("已修复，运行正常")
    tech.get_by_role("button", name="完工").click()
    expect(tech.locator("dd.status")).to_have_text("已完工待审核")

    auditor = browser.new_page()
    sign_in(auditor, server, user="auditor1", password="demo1234")
    auditor.goto(order_url)
    auditor.get_by_role("button", name="审核通过").click()
    expect(auditor.locator("dd.status")).to_have_text("审核通过")

    # The same member and serial again within the window: flagged as a possible duplicate.
    new_order()
    expect(supervisor.get_by_role("status")).to_contain_text("疑似重单")
    supervisor.screenshot(path=str(ARTIFACTS / "workorder-duplicate.png"))


def test_admin_creates_a_user_who_can_then_sign_in(server: ServerProcess, browser: Browser) -> None:
    admin = browser.new_page(viewport={"width": 1366, "height": 768})
    sign_in(admin, server)
    admin.get_by_role("link", name="系统管理").click()
    expect(admin.get_by_role("navigation", name="部门")).to_contain_text("客服中心")
    admin.get_by_label("用户名").fill("agent9")
    admin.get_by_label("姓名", exact=True).fill("新坐席")
    admin.get_by_label("密码").fill("short")
    admin.get_by_label("座席").check()
    admin.get_by_role("button", name="创建").click()
    expect(admin.get_by_role("alert")).to_have_text("密码太短。")  # the service's rule, in Chinese
    admin.get_by_label("用户名").fill("agent9")
    admin.get_by_label("姓名", exact=True).fill("新坐席")
    admin.get_by_label("密码").fill("long-enough-9")
    admin.get_by_label("座席").check()
    admin.get_by_role("button", name="创建").click()
    expect(admin.locator("table.users")).to_contain_text("新坐席")
    admin.screenshot(path=str(ARTIFACTS / "admin-users.png"), full_page=True)
    newcomer = browser.new_page()
    sign_in(newcomer, server, user="agent9", password="long-enough-9")
    expect(newcomer.get_by_role("heading", level=1)).to_contain_text("新坐席")
    expect(newcomer.get_by_role("link", name="系统管理")).to_have_count(0)


def test_the_rest_api_takes_the_browser_session_but_changes_need_its_csrf_token(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.http_url) as client:
        form = client.get("/login")
        token = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)  # type: ignore[union-attr]
        client.post("/login", data={"username": "supervisor1", "password": "demo1234", "csrf": token})
        assert client.get("/api/openapi.json").json()["openapi"].startswith("3.1")
        found = client.get("/api/members", params={"q": "13912345678"})
        assert found.status_code == 200 and found.json()["items"][0]["name"].startswith("王")
        ticket = {"ticket_type": "consultation", "subject": "咨询护理项目价格"}
        assert client.post("/api/tickets", json=ticket).status_code == 401  # the cookie alone is not enough
        page = client.get("/tickets")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        created = client.post("/api/tickets", json=ticket, headers={"X-CSRF-Token": csrf})
        assert created.status_code == 201, created.text
        assert created.json()["subject"] == "咨询护理项目价格"


def test_an_appointment_is_booked_and_the_same_slot_is_refused_to_a_second_agent(
        server: ServerProcess, browser: Browser) -> None:
    first, second = browser.new_page(viewport={"width": 1366, "height": 768}), browser.new_page()
    sign_in(first, server, user="agent1", password="demo1234")
    sign_in(second, server, user="agent2", password="demo1234")
    for page in (first, second):
        page.goto(f"{server.http_url}/appointments")
        expect(page.locator("table.slots form").first).to_be_visible()
    # Both agents look at the same free slot; the first books it...
    slot_text = first.locator("table.slots tr").first.locator("td").first.inner_text()
    first.locator("table.slots form").first.get_by_placeholder("会员电话").fill("13912345678")
    first.locator("table.slots form").first.get_by_role("button", name="预约").click()
    expect(first.locator("section.card").first).to_contain_text(slot_text)
    first.screenshot(path=str(ARTIFACTS / "appointments.png"))
    # ...and the second, from the page it opened before, is refused: no double booking.
    second.locator("table.slots form").first.get_by_placeholder("会员电话").fill("13912345678")
    second.locator("table.slots form").first.get_by_role("button", name="预约").click()
    expect(second.get_by_role("alert")).to_contain_text("已被预约")


def test_reports_draw_charts_and_export_csv_and_xlsx(server: ServerProcess, browser: Browser) -> None:
    page = browser.new_page(viewport={"width": 1366, "height": 768})
    sign_in(page, server, user="supervisor1", password="demo1234")
    page.get_by_role("link", name="报表").click()
    expect(page.locator("figure.chart svg rect").first).to_be_visible()  # the demo's tickets, charted
    page.get_by_label("报表", exact=True).select_option("levels")
    page.get_by_role("button", name="查看").click()
    expect(page.locator("table.report")).to_contain_text("金卡")
    page.screenshot(path=str(ARTIFACTS / "report-levels.png"))

    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    with httpx.Client(base_url=server.http_url, cookies=cookies) as client:
        csv_file = client.get("/reports/export", params={"report": "levels", "format": "csv"})
        assert csv_file.status_code == 200 and csv_file.content.startswith("\ufeff".encode())  # Excel's hint
        lines = csv_file.content.decode("utf-8-sig").splitlines()
        assert lines[0] == "等级,会员数" and any(line.startswith("金卡,") for line in lines[1:])
        xlsx = client.get("/reports/export", params={"report": "tickets", "format": "xlsx"})
    from openpyxl import load_workbook

    sheet = load_workbook(io.BytesIO(xlsx.content)).active
    header = [cell.value for cell in next(sheet.iter_rows(max_row=1))]
    assert header[0] == "日期" and "投诉" in header


def test_knowledge_base_public_view_and_staff_search(server: ServerProcess, browser: Browser) -> None:
    member = browser.new_page()  # not signed in: a member reading the public articles
    member.goto(f"{server.http_url}/kb?q=积分")
    expect(member.get_by_role("link", name="会员积分规则")).to_be_visible()
    member.goto(f"{server.http_url}/kb?q=投诉处理")
    expect(member.locator("ul.articles")).to_contain_text("没有找到文章")  # internal: not for members
    staff = browser.new_page()
    sign_in(staff, server, user="agent1", password="demo1234")
    staff.goto(f"{server.http_url}/kb?q=投诉处理")
    staff.get_by_role("link", name="投诉处理流程").click()
    expect(staff.get_by_role("heading", level=1)).to_have_text("投诉处理流程")
    staff.goto(f"{server.http_url}/kb")
    expect(staff.locator("ul.articles li").first).to_contain_text("置顶")  # pinned first
    staff.screenshot(path=str(ARTIFACTS / "knowledge-base.png"))
