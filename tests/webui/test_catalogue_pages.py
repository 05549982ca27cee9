"""服务项目管理 in the browser's pages: a supervisor proposes a new item or a change, the item
goes live only when an approver approves it from the queue (oldest first, old → new shown);
a rejection keeps the live item; nobody approves their own change; only the roles holding the
permissions may propose or review, and every form needs its CSRF token."""

from __future__ import annotations

import re
from pathlib import Path

from tests.webui.page_harness import csrf_of, make_site, page_csrf, running, sign_in


def propose_new(client, sku: str = "FACIAL", name: str = "光子嫩肤", price: str = "680.00", minutes: str = "60"):
    csrf = page_csrf(client, "/catalogue/new")
    return client.post("/catalogue/new", data={"csrf": csrf, "sku": sku, "kind": "service", "name": name,
                                               "category": "面部护理", "price": price, "duration_minutes": minutes,
                                               "status": "active", "description": ""})  # fmt: skip


def change_ids(page: str) -> list[int]:
    return [int(x) for x in re.findall(r'data-change="(\d+)"', page)]


def live_row(page: str, sku: str) -> str:
    found = re.search(rf'<tr data-sku="{sku}".*?</tr>', page, re.S)
    return found.group(0) if found else ""


def test_propose_queue_approve_live(tmp_path: Path) -> None:
    site = make_site(tmp_path / "cc.db")
    with running(site) as sup:
        sign_in(sup, "sup")
        proposed = propose_new(sup)
        assert proposed.status_code == 303 and proposed.headers["location"] == "/catalogue/changes?proposed=1"
        assert live_row(sup.get("/catalogue").text, "FACIAL") == ""              # not live before approval

        auditor = site.client()
        sign_in(auditor, "auditor")
        assert "/catalogue" in auditor.get("/").text                              # in the navigation
        queue = auditor.get("/catalogue/changes").text
        first = change_ids(queue)[0]
        assert "光子嫩肤" in queue and "¥680.00" in queue and "60 分钟" in queue and "用户sup" in queue
        approved = auditor.post(f"/catalogue/changes/{first}/approve", data={"csrf": csrf_of(queue), "note": "价格已核"})
        assert approved.status_code == 303
        row = live_row(sup.get("/catalogue").text, "FACIAL")
        assert "¥680.00" in row and "在售" in row and "60 分钟" in row

        # A change of the live item: the queue shows the old and the new price.
        item_id = site.run(site.crm.catalogue.by_sku("FACIAL")).id
        form = sup.get(f"/catalogue/items/{item_id}/change")
        assert 'value="680.00"' in form.text
        changed = sup.post(f"/catalogue/items/{item_id}/change", data={
            "csrf": csrf_of(form.text), "name": "光子嫩肤", "category": "面部护理", "price": "720",
            "duration_minutes": "60", "status": "active", "description": ""})  # fmt: skip
        assert changed.status_code == 303
        queue = auditor.get("/catalogue/changes").text
        diff = re.search(r'<tr data-field="price_cents">.*?</tr>', queue, re.S).group(0)
        assert "<del>¥680.00</del>" in diff and "<ins>¥720.00</ins>" in diff
        assert 'data-field="name"' not in queue                                   # unchanged fields are not listed
        auditor.post(f"/catalogue/changes/{change_ids(queue)[0]}/approve", data={"csrf": csrf_of(queue)})
        assert "¥720.00" in live_row(sup.get("/catalogue").text, "FACIAL")

        # English: the price in the English format of the same currency.
        sup.post("/lang", data={"csrf": page_csrf(sup, "/catalogue"), "locale": "en", "next": "/catalogue"})
        english = live_row(sup.get("/catalogue").text, "FACIAL")
        assert "CN¥720.00" in english and "On sale" in english
        history = auditor.get("/catalogue/changes?state=approved").text
        assert len(change_ids(history)) == 2 and "价格已核" in history


def test_the_queue_is_oldest_first_and_a_rejection_keeps_the_live_item(tmp_path: Path) -> None:
    site = make_site(tmp_path / "cc.db")
    with running(site) as sup:
        sign_in(sup, "sup")
        propose_new(sup, "A1", "第一项")
        propose_new(sup, "B2", "第二项", "99.5", "30")
        auditor = site.client()
        sign_in(auditor, "auditor")
        queue = auditor.get("/catalogue/changes").text
        ids = change_ids(queue)
        assert ids == sorted(ids) and queue.index("第一项") < queue.index("第二项")
        no_reason = auditor.post(f"/catalogue/changes/{ids[1]}/reject", data={"csrf": csrf_of(queue), "note": ""})
        assert no_reason.status_code == 422
        rejected = auditor.post(f"/catalogue/changes/{ids[1]}/reject", data={"csrf": csrf_of(queue), "note": "价格待定"})
        assert rejected.status_code == 303
        assert live_row(sup.get("/catalogue?status=all").text, "B2") == ""
        shown = sup.get("/catalogue/changes?state=rejected").text
        assert "第二项" in shown and "价格待定" in shown
        again = auditor.post(f"/catalogue/changes/{ids[1]}/approve", data={"csrf": csrf_of(queue)})
        assert again.status_code == 409 and "不在待审核状态" in again.text


def test_nobody_approves_their_own_change(tmp_path: Path) -> None:
    site = make_site(tmp_path / "cc.db")
    with running(site) as admin:
        sign_in(admin, "admin")                       # holds both catalogue.write and catalogue.approve
        propose_new(admin, "SELF1", "自审项目")
        queue = admin.get("/catalogue/changes").text
        change = change_ids(queue)[0]
        assert "需由其他审核员批准" in queue and f"/catalogue/changes/{change}/approve" not in queue
        refused = admin.post(f"/catalogue/changes/{change}/approve", data={"csrf": csrf_of(queue)})
        assert refused.status_code == 403
        assert "不能审核自己提交的修改" in refused.text
        assert live_row(admin.get("/catalogue").text, "SELF1") == ""
        withdrawn = admin.post(f"/catalogue/changes/{change}/withdraw", data={"csrf": csrf_of(queue)})
        assert withdrawn.status_code == 303
        assert change_ids(admin.get("/catalogue/changes").text) == []


def test_permissions_and_csrf(tmp_path: Path) -> None:
    site = make_site(tmp_path / "cc.db")
    with running(site) as sup:
        sign_in(sup, "sup")
        assert propose_new(sup, "P1").status_code == 303
        change = change_ids(sup.get("/catalogue/changes").text)[0]
        assert f"/catalogue/changes/{change}/approve" not in sup.get("/catalogue/changes").text

        agent = site.client()
        sign_in(agent, "agent1")
        listing = agent.get("/catalogue")
        assert listing.status_code == 200 and "/catalogue/new" not in listing.text   # the price list is for all
        assert 'href="/catalogue"' not in agent.get("/").text                         # no menu entry
        assert agent.get("/catalogue/new").status_code == 403
        assert agent.get("/catalogue/changes").status_code == 403
        csrf = csrf_of(listing.text)
        assert agent.post("/catalogue/new", data={"csrf": csrf, "sku": "X1", "kind": "product", "name": "x",
                                                  "price": "1"}).status_code == 403  # fmt: skip
        assert agent.post(f"/catalogue/changes/{change}/approve", data={"csrf": csrf}).status_code == 403
        assert sup.post(f"/catalogue/changes/{change}/approve", data={"csrf": page_csrf(sup, "/catalogue")}).status_code == 403

        auditor = site.client()
        sign_in(auditor, "auditor")
        assert auditor.post(f"/catalogue/changes/{change}/approve", data={}).status_code == 403        # no CSRF
        assert auditor.post(f"/catalogue/changes/{change}/approve", data={"csrf": "forged"}).status_code == 403
        assert sup.post("/catalogue/new", data={"sku": "NOCSRF", "kind": "product", "name": "x",
                                                "price": "1"}).status_code == 403  # fmt: skip
        assert change_ids(auditor.get("/catalogue/changes").text) == [change]              # nothing else stored
        assert live_row(auditor.get("/catalogue").text, "P1") == ""
        assert site.client().get("/catalogue").status_code == 303                          # signed out: to /login


def test_bad_input_is_a_form_error_that_keeps_what_was_typed(tmp_path: Path) -> None:
    site = make_site(tmp_path / "cc.db")
    with running(site) as sup:
        sign_in(sup, "sup")
        bad_price = propose_new(sup, "GOOD1", "保湿面膜", price="12.345")
        assert bad_price.status_code == 422 and "最多两位小数" in bad_price.text and 'value="保湿面膜"' in bad_price.text
        assert propose_new(sup, "GOOD1", price="abc").status_code == 422
        bad_sku = propose_new(sup, "坏 货号")
        assert bad_sku.status_code == 422 and "货号只能包含" in bad_sku.text
        assert propose_new(sup, "GOOD2", minutes="7").status_code == 422                # not a multiple of 5
        assert propose_new(sup, "GOOD3").status_code == 303
        taken = propose_new(sup, "GOOD3")
        assert taken.status_code == 409 and "已有一项修改在等待审核" in taken.text
        assert sup.get("/catalogue/items/999/change").status_code == 404


def test_every_string_of_these_screens_is_in_both_languages() -> None:
    import json
    import string

    webui = Path(__file__).parents[2] / "webui"
    zh, en = (json.loads((webui / "locales" / f"{loc}.json").read_text(encoding="utf-8")) for loc in ("zh-CN", "en"))
    keys: set[str] = set()
    for name in ("catalogue.html", "catalogue_form.html", "catalogue_changes.html", "profile.html", "admin_users.html", "admin_roles.html"):
        text = (webui / "templates" / name).read_text(encoding="utf-8")
        keys |= {k for k in re.findall(r"""\bt\(\s*["']([a-z0-9_.-]+)["']""", text) if not k.endswith(".")}
    keys |= {f"catalogue.{group}.{v}" for group, values in (
        ("kind", ["service", "product"]), ("status", ["active", "inactive", "all"]),
        ("state", ["pending", "approved", "rejected", "withdrawn"]),
        ("field", ["name", "category", "price_cents", "duration_minutes", "status", "description"])) for v in values}
    keys |= {"error.address_not_allowed.title", "error.address_not_allowed.text", "error.network.invalid_entry",
             "error.network.self_lockout", "error.catalogue.self_approval", "nav.catalogue", "nav.profile"}

    def fields(text: str) -> set[str]:
        return {f for _, f, _, _ in string.Formatter().parse(text) if f}

    for key in sorted(keys):
        assert key in zh and key in en, key
        assert fields(zh[key]) == fields(en[key]), key
