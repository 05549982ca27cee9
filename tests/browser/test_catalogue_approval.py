"""服务项目审核 in a real browser (Debian's Chromium driven by Playwright) against the demo
server: a supervisor proposes a new price from the catalogue page, an auditor approves it from
the queue with the old and new price in front of them, and the live catalogue shows it. The
demo's admin role carries seed 000's office-network allow-list."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from bench.server import ServerProcess
from tests.browser.helpers import demo_server, sign_in
from tests.browser.test_pages import ARTIFACTS

ADMIN_PASSWORD = "s3cret-admin-pw"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with demo_server(tmp_path_factory.mktemp("catalogue") / "data", ADMIN_PASSWORD) as proc:
        yield proc



def signed_in(browser: Browser, server: ServerProcess, user: str, password: str = "demo1234") -> Page:
    page = sign_in(browser, server.http_url, user, password)
    expect(page.get_by_role("link", name="个人设置")).to_be_visible()
    return page


def test_a_price_change_is_proposed_approved_and_goes_live(server: ServerProcess, browser: Browser) -> None:
    sup = signed_in(browser, server, "supervisor1")
    sup.get_by_role("link", name="服务项目", exact=True).click()
    first = sup.locator("table.catalogue tbody tr").first
    sku = first.get_attribute("data-sku")
    name = first.locator("td").nth(1).inner_text()
    first.get_by_role("link", name="申请修改").click()
    sup.get_by_label("价格（元）").fill("1234.50")
    sup.get_by_role("button", name="提交审核").click()
    expect(sup.get_by_role("status")).to_contain_text("等待审核")
    sup.get_by_role("link", name="服务项目", exact=True).click()          # not live before approval
    expect(sup.locator(f'tr[data-sku="{sku}"] .price')).not_to_contain_text("1,234.50")

    auditor = signed_in(browser, server, "auditor1")
    auditor.goto(f"{server.http_url}/catalogue/changes")
    change = auditor.locator("section.change", has_text=name).last
    expect(change.locator('tr[data-field="price_cents"] ins')).to_have_text("¥1,234.50")
    change.get_by_label("审核意见").fill("同意调价")
    auditor.screenshot(path=str(ARTIFACTS / "catalogue_queue.png"))
    section_id = change.get_attribute("id")
    change.get_by_role("button", name="批准").click()
    expect(auditor.locator(f"#{section_id}")).to_have_count(0)             # gone from the queue

    sup.goto(f"{server.http_url}/catalogue")
    expect(sup.locator(f'tr[data-sku="{sku}"] .price')).to_have_text("¥1,234.50")


def test_the_demo_admin_role_is_limited_to_the_office_networks(server: ServerProcess, browser: Browser) -> None:
    admin = signed_in(browser, server, "admin", ADMIN_PASSWORD)
    admin.goto(f"{server.http_url}/admin/roles")
    networks = admin.get_by_label("允许的网段: 系统管理员")
    expect(networks).to_have_value("127.0.0.0/8\n::1/128\n10.0.0.0/8\n172.16.0.0/12\n192.168.0.0/16\nfc00::/7")
    expect(admin.locator("code.my-address")).to_have_text("127.0.0.1")
    admin.screenshot(path=str(ARTIFACTS / "admin_roles.png"), full_page=True)
    networks.fill("10.0.0.0/8")                                   # would shut the admin out: refused
    admin.get_by_role("button", name="保存: 系统管理员").click()
    expect(admin.get_by_role("alert")).to_contain_text("不能保存")
