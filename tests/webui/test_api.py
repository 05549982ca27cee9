"""The REST API through Starlette's TestClient, on a real SQLite file: authentication, the error
shape, pagination, and each area's main story over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

from callcenter.database import apply_migrations, open_database
from crm import schema
from crm.access import SYSTEM
from crm.clock import FixedClock
from crm.db import Database
from crm.passwords import ScryptParams
from crm.service import Crm
from webui.api import api_routes, openapi_document

FAST_HASH = ScryptParams(log2_n=4, r=8, p=1)
NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # Monday 10:00 in Shanghai
USERS = {  # username: roles
    "admin": ["admin"], "sup": ["supervisor"], "agent1": ["agent"], "agent2": ["agent"], "tech": ["technician"],
    "auditor": ["auditor"], "expert": ["expert"],
}  # fmt: skip


@dataclass
class Api:
    client: TestClient
    crm: Crm
    clock: FixedClock
    tokens: dict[str, str]
    ids: dict[str, int]

    def call(self, method: str, path: str, who: str | None = "admin", **kw):
        headers = kw.pop("headers", {})
        if who is not None:
            headers["Authorization"] = f"Bearer {self.tokens[who]}"
        return self.client.request(method, f"/api{path}", headers=headers, **kw)

    def ok(self, method: str, path: str, who: str | None = "admin", status: int = 200, **kw):
        response = self.call(method, path, who, **kw)
        assert response.status_code == status, response.text
        return response.json() if response.content else None


async def seed(crm: Crm) -> tuple[dict[str, str], dict[str, int]]:
    hq = await crm.org.create_department(SYSTEM, "总部")
    tokens, ids = {}, {}
    for username, roles in USERS.items():
        user = await crm.org.create_user(SYSTEM, username, f"用户{username}", "secret-pass", roles=roles,
                                         department_id=hq.id, region="浦东新区" if username == "tech" else None)  # fmt: skip
        ids[username] = user.id
        tokens[username] = (await crm.tokens.create(SYSTEM, name="test", user_id=user.id)).secret
    for sku, kind, name, price, minutes in (("FACIAL", "service", "光子嫩肤", 68_000, 60), ("CREAM", "product", "修护面霜", 29_900, None)):
        change = await crm.catalogue.propose_new(SYSTEM, sku=sku, kind=kind, name=name, price_cents=price,
                                                 duration_minutes=minutes)  # fmt: skip
        approver = await crm.org.actor_for_user(ids["auditor"])
        ids[sku] = (await crm.catalogue.approve(approver, change.id)).id
    return tokens, ids


def make_app(path: Path) -> tuple[Starlette, dict]:
    state: dict = {}

    @asynccontextmanager
    async def lifespan(app: Starlette):
        conn = await open_database(path)
        try:
            await apply_migrations(conn, "crm", schema.MIGRATIONS)
            clock = FixedClock(NOW)
            crm = Crm.build(Database(conn), clock=clock, password_params=FAST_HASH)
            state.update(crm=crm, clock=clock)
            state["tokens"], state["ids"] = await seed(crm)
            app.router.routes.append(Mount("/api", routes=api_routes(crm)))
            yield
        finally:
            await conn.close()

    return Starlette(lifespan=lifespan), state


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    app, state = make_app(tmp_path / "callcenter.db")
    with TestClient(app) as client:
        yield Api(client, state["crm"], state["clock"], state["tokens"], state["ids"])


def test_openapi_document_is_served_and_complete(api: Api) -> None:
    doc = api.ok("GET", "/openapi.json", who=None)
    assert doc == openapi_document()
    assert doc["openapi"] == "3.1.0" and doc["servers"] == [{"url": "/api"}]
    operations = [(path, method, op) for path, item in doc["paths"].items() for method, op in item.items()]
    assert len(operations) > 90
    for path, method, op in operations:
        assert op["operationId"] and op["responses"], (path, method)
    public = {(path, method) for path, method, op in operations if op.get("security") == []}
    assert public == {("/auth/token", "post"), ("/kb/public/articles", "get"), ("/kb/public/articles/{article_id}", "get")}
    member = doc["components"]["schemas"]["Member"]
    assert member["properties"]["phones"]["items"] == {"$ref": "#/components/schemas/Phone"}
    assert member["properties"]["email"] == {"type": ["string", "null"]}


def test_authentication(api: Api) -> None:
    missing = api.call("GET", "/members", who=None)
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == 'Bearer realm="callcenter"'
    assert missing.json()["error"]["code"] == "auth.unauthenticated"
    bad = api.call("GET", "/members", who=None, headers={"Authorization": "Bearer cct_nope"})
    assert bad.status_code == 401 and 'error="invalid_token"' in bad.headers["www-authenticate"]
    assert api.call("GET", "/members", who=None, headers={"Authorization": "Basic YWRtaW46eA=="}).status_code == 401

    issued = api.ok("POST", "/auth/token", who=None, status=201, json={"username": "agent1", "password": "secret-pass"})
    me = api.ok("GET", "/me", who=None, headers={"Authorization": f"Bearer {issued['token']}"})
    assert me["username"] == "agent1" and "ticket.write" in me["permissions"] and me["data_scope"] == "own"
    wrong = api.call("POST", "/auth/token", who=None, json={"username": "agent1", "password": "guess"})
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "auth.wrong_credentials"

    tokens = api.ok("GET", "/tokens", who="agent1")
    assert len(tokens) == 2 and all("token_hash" not in t for t in tokens)
    api.ok("DELETE", f"/tokens/{issued['id']}", who="agent1")
    assert api.call("GET", "/me", who=None, headers={"Authorization": f"Bearer {issued['token']}"}).status_code == 401
    assert api.call("DELETE", f"/tokens/{tokens[0]['id']}", who="agent2").status_code == 403


def test_error_shape(api: Api) -> None:
    malformed = api.call("POST", "/members", content=b'{"name": "x", ', headers={"Content-Type": "application/json"})
    assert malformed.status_code == 400 and malformed.json()["error"]["code"] == "request.malformed_json"
    nan = api.call("POST", "/members", content=b'{"name": "x", "phones": ["13800138000"], "owner_id": NaN}')
    assert nan.status_code == 400
    invalid = api.call("POST", "/members", json={"name": "杨柳", "phones": []})
    assert invalid.status_code == 422 and invalid.json()["error"]["field"] == "phones"
    typo = api.call("POST", "/members", json={"name": "杨柳", "phones": ["13800138000"], "nmae": "x"})
    assert typo.status_code == 422 and typo.json()["error"] == {
        "code": "field.unknown", "message": "nmae: is not a field of this request", "field": "nmae"}
    bad_phone = api.call("POST", "/members", json={"name": "杨柳", "phones": ["12345"]})
    assert bad_phone.status_code == 422 and bad_phone.json()["error"]["field"] == "phones[0]"
    assert api.call("GET", "/members/abc").json()["error"]["field"] == "member_id"
    missing = api.call("GET", "/members/424242")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "member.not_found"
    nowhere = api.call("GET", "/no/such/thing")
    assert nowhere.status_code == 404 and nowhere.json()["error"]["code"] == "request.unknown_path"
    wrong_method = api.call("DELETE", "/members")
    assert wrong_method.status_code == 405 and wrong_method.headers["allow"] == "GET, HEAD, POST"
    forbidden = api.call("POST", "/catalogue/changes", who="agent1",
                         json={"sku": "X1", "kind": "product", "name": "x", "price_cents": 1})  # fmt: skip
    assert forbidden.status_code == 403 and forbidden.json()["error"]["code"] == "auth.permission_denied"
    assert api.call("GET", "/members?limit=500").status_code == 422


def test_members_points_and_caller_id(api: Api) -> None:
    created = [api.ok("POST", "/members", who="agent1", status=201, json={
        "name": f"杨柳{i}", "phones": [f"1380013800{i}"], "level": "gold", "tags": ["敏感肌"], "birthday": "1990-05-01"})
        for i in range(3)]  # fmt: skip
    page = api.ok("GET", "/members?tag=敏感肌&level=gold&limit=2")
    assert (page["total"], len(page["items"]), page["has_more"]) == (3, 2, True)
    assert page["items"][0]["name"] == "杨柳2"  # newest first
    second = api.ok("GET", "/members?q=杨柳&offset=2&limit=2")
    assert [m["name"] for m in second["items"]] == ["杨柳0"]
    member_id = created[0]["id"]
    patched = api.ok("PATCH", f"/members/{member_id}", who="agent1", json={"email": "yl@example.com", "level": None})
    assert patched["email"] == "yl@example.com" and patched["level_code"] is None and patched["phones"][0]["kind"] == "mobile"

    api.ok("POST", f"/members/{member_id}/points", who="agent1", status=201,
           json={"kind": "earn", "points": 500, "reason": "消费积分"})  # fmt: skip
    spend = api.call("POST", f"/members/{member_id}/points", who="agent1", json={"kind": "spend", "points": 800, "reason": "兑换"})
    assert spend.status_code == 409 and spend.json()["error"]["code"] == "points.insufficient"
    adjust = api.call("POST", f"/members/{member_id}/points", who="agent1",
                      json={"kind": "adjust", "points": -600, "reason": "更正", "allow_negative": True})  # fmt: skip
    assert adjust.status_code == 403  # agents do not adjust
    api.ok("POST", f"/members/{member_id}/points", who="sup", status=201,
           json={"kind": "adjust", "points": -600, "reason": "退款扣回", "allow_negative": True})  # fmt: skip
    ledger = api.ok("GET", f"/members/{member_id}/points")
    assert [e["amount"] for e in ledger["items"]] == [-600, 500] and ledger["items"][0]["balance_after"] == -100

    api.ok("POST", f"/members/{member_id}/notes", who="agent1", status=201, json={"body": "喜欢周末预约"})
    card = api.ok("GET", "/caller-id?number=013800138000", who="agent1")
    assert card["member"]["id"] == member_id and card["level_name"] is None
    assert {item["kind"] for item in card["recent"]} == {"note", "points"}
    assert api.call("GET", "/caller-id?number=13999999999").status_code == 404
    timeline = api.ok("GET", f"/members/{member_id}/timeline?kind=note")
    assert [t["title"] for t in timeline] == ["喜欢周末预约"]
    blocked = api.ok("PUT", f"/members/{member_id}/blacklist", who="sup", json={"blacklisted": True, "reason": "恶意投诉"})
    assert blocked["blacklisted"] is True


def test_tickets_and_work_orders_over_http(api: Api) -> None:
    member = api.ok("POST", "/members", who="agent1", status=201, json={"name": "何美玲", "phones": ["13900139000"]})
    ticket = api.ok("POST", "/tickets", who="agent1", status=201, json={
        "ticket_type": "complaint", "subject": "护理后皮肤泛红", "member_id": member["id"], "priority": 3, "category": "service"})  # fmt: skip
    assert ticket["status"] == "new" and ticket["due_at"] is not None
    tid = ticket["id"]
    early = api.call("POST", f"/tickets/{tid}/resolve", who="agent1", json={"resolution": "x"})
    assert early.status_code == 409 and early.json()["error"]["code"] == "ticket.invalid_transition"
    api.ok("POST", f"/tickets/{tid}/assign", who="sup", json={"assignee_id": api.ids["agent2"], "note": "请跟进"})
    api.ok("POST", f"/tickets/{tid}/start", who="agent2", json={})
    api.ok("POST", f"/tickets/{tid}/comments", who="agent2", status=201, json={"body": "已致电道歉"})
    resolved = api.ok("POST", f"/tickets/{tid}/resolve", who="agent2", json={"resolution": "赠送修复护理一次"})
    assert resolved["status"] == "resolved"
    api.ok("POST", f"/tickets/{tid}/close", who="sup", json={})
    history = api.ok("GET", f"/tickets/{tid}/history", who="sup")
    assert [h["action"] for h in history] == ["create", "assign", "start", "comment", "resolve", "close"]
    today = api.ok("GET", "/tickets?created_from=2026-11-23&created_to=2026-11-23&ticket_type=complaint", who="sup")
    assert today["total"] == 1
    assert api.ok("GET", "/tickets?open_only=true", who="sup")["total"] == 0

    order = api.ok("POST", "/work-orders", who="agent1", status=201, json={
        "member_id": member["id"], "service_type": "repair", "product_model": "射频美容仪 RF-200",
        "serial_no": "rf-2026-0001", "purchase_date": "2026-06-01", "region": "浦东新区", "dispatch": True})  # fmt: skip
    assert order["status"] == "dispatched" and order["technician_id"] == api.ids["tech"]
    done = api.ok("POST", f"/work-orders/{order['id']}/complete", who="tech", json={
        "device_state": "更换电池后正常", "parts": [{"part_no": "BT-02", "name": "锂电池", "quantity": 1}]})  # fmt: skip
    assert done["parts"] == [{"part_no": "BT-02", "name": "锂电池", "quantity": 1}]
    api.ok("POST", f"/work-orders/{order['id']}/approve", who="auditor", json={})
    visits = api.ok("GET", f"/visits?reason=work_order&member_id={member['id']}", who="agent1")
    assert visits["total"] == 1 and visits["items"][0]["staff_id"] == api.ids["tech"]


def test_booking_consultation_and_purchase_over_http(api: Api) -> None:
    expert, facial, cream = api.ids["expert"], api.ids["FACIAL"], api.ids["CREAM"]
    api.ok("PUT", f"/experts/{expert}", who="sup", json={"title": "高级美容顾问", "service_ids": [facial]})
    hours = [{"weekday": d, "start": "09:00", "end": "18:00"} for d in range(7)]
    assert len(api.ok("PUT", f"/experts/{expert}/hours", who="sup", json={"hours": hours})["hours"]) == 7
    bad_hours = api.call("PUT", f"/experts/{expert}/hours", who="sup", json={"hours": [{"weekday": 1, "start": "9:00", "end": "18:00"}]})
    assert bad_hours.status_code == 422 and bad_hours.json()["error"]["field"] == "hours[0].start"
    slots = api.ok("GET", f"/experts/{expert}/slots?day=2026-11-24&item_id={facial}", who="agent1")
    assert slots[0]["starts_at"] == "2026-11-24T01:00:00.000000Z" and len(slots) == 33
    member = api.ok("POST", "/members", who="agent1", status=201, json={"name": "林晓", "phones": ["13700137000"]})
    other = api.ok("POST", "/members", who="agent1", status=201, json={"name": "王雪", "phones": ["13600136000"]})
    booking = {"member_id": member["id"], "expert_id": expert, "item_id": facial, "starts_at": "2026-11-24T10:00:00+08:00"}
    appointment = api.ok("POST", "/appointments", who="agent1", status=201, json=booking)
    clash = api.call("POST", "/appointments", who="agent1", json={**booking, "member_id": other["id"],
                                                                   "starts_at": "2026-11-24T10:30:00+08:00"})  # fmt: skip
    assert clash.status_code == 409 and clash.json()["error"]["code"] == "appointment.expert_busy"
    naive = api.call("POST", "/appointments", who="agent1", json={**booking, "starts_at": "2026-11-24T10:00:00"})
    assert naive.status_code == 422 and naive.json()["error"]["code"] == "date.naive"

    api.clock.set(datetime(2026, 11, 24, 2, 0, tzinfo=UTC))
    noted = api.ok("POST", f"/appointments/{appointment['id']}/consultation", who="expert", json={
        "notes": "混合性皮肤", "customer_needs": "改善毛孔", "recommendations": [{"item_id": cream, "note": "晚间使用"}]})  # fmt: skip
    assert noted["recommendations"] == [{"item_id": cream, "note": "晚间使用"}]
    order = api.ok("POST", "/orders", who="agent1", status=201, json={
        "member_id": member["id"], "appointment_id": appointment["id"], "lines": [{"item_id": facial, "quantity": 1}]})  # fmt: skip
    assert order["total_cents"] == 68_000
    api.ok("POST", f"/orders/{order['id']}/pay", who="agent1", json={"method": "alipay", "amount_cents": 68_000})
    api.ok("POST", f"/appointments/{appointment['id']}/complete", who="expert", json={})
    service = api.ok("POST", "/appointments", who="agent1", status=201, json={
        **booking, "starts_at": "2026-11-25T14:00:00+08:00", "order_id": order["id"]})  # fmt: skip
    api.clock.set(datetime(2026, 11, 25, 6, 30, tzinfo=UTC))
    api.ok("POST", f"/appointments/{service['id']}/complete", who="expert", json={})
    assert api.ok("GET", f"/orders/{order['id']}", who="agent1")["status"] == "completed"
    assert api.ok("GET", "/visits?reason=order", who="agent1")["total"] == 1
    sales = api.ok("GET", "/reports/sales?first_day=2026-11-01&last_day=2026-11-30", who="sup")
    assert [(s["sku"], s["amount_cents"]) for s in sales] == [("FACIAL", 68_000)]
    by_expert = api.ok("GET", "/reports/appointments?first_day=2026-11-24&last_day=2026-11-25", who="sup")
    assert by_expert == [{"key_id": expert, "name": "用户expert", "booked": 0, "completed": 2, "cancelled": 0, "no_show": 0}]


def test_catalogue_approval_over_http(api: Api) -> None:
    change = api.ok("POST", "/catalogue/changes", who="sup", status=201,
                    json={"item_id": api.ids["CREAM"], "price_cents": 32_900})  # fmt: skip
    assert api.ok("GET", f"/catalogue/items/{api.ids['CREAM']}", who="agent1")["price_cents"] == 29_900
    fixed = api.call("POST", "/catalogue/changes", who="sup", json={"item_id": api.ids["CREAM"], "sku": "NEW"})
    assert fixed.status_code == 422 and fixed.json()["error"]["code"] == "catalogue.immutable"
    queue = api.ok("GET", "/catalogue/changes", who="auditor")
    assert [c["id"] for c in queue["items"]] == [change["id"]]
    live = api.ok("POST", f"/catalogue/changes/{change['id']}/approve", who="auditor", json={"note": "已核价"})
    assert live["price_cents"] == 32_900 and live["version"] == 2
    mine = api.ok("POST", "/catalogue/changes", who="admin", status=201,
                  json={"sku": "MASK-1", "kind": "product", "name": "补水面膜", "price_cents": 8_800})  # fmt: skip
    self_approval = api.call("POST", f"/catalogue/changes/{mine['id']}/approve", who="admin", json={})
    assert self_approval.status_code == 403 and self_approval.json()["error"]["code"] == "catalogue.self_approval"
    listing = api.ok("GET", "/catalogue/items?kind=product", who="agent1")
    assert [i["sku"] for i in listing["items"]] == ["CREAM"]


def test_surveys_visits_and_satisfaction_over_http(api: Api) -> None:
    survey = api.ok("POST", "/surveys", who="sup", status=201, json={"name": "满意度调查", "questions": [
        {"kind": "scale", "prompt": "总体满意度", "satisfaction": True},
        {"kind": "choice", "prompt": "是否愿意推荐", "options": ["愿意", "不愿意"]}]})  # fmt: skip
    api.ok("POST", f"/surveys/{survey['id']}/status", who="sup", json={"status": "active"})
    for i in range(2):
        api.ok("POST", "/members", who="agent1", status=201, json={"name": f"金卡{i}", "phones": [f"1350013500{i}"], "level": "gold"})
    campaign = api.ok("POST", f"/surveys/{survey['id']}/campaigns", who="sup", status=201, json={
        "name": "金卡回访", "filter": {"level": "gold"}, "assignee_ids": [api.ids["agent1"]]})  # fmt: skip
    assert campaign["task_count"] == 2
    visits = api.ok("GET", f"/visits?campaign_id={campaign['id']}", who="agent1")["items"]
    q1, q2 = (q["id"] for q in survey["questions"])
    for visit, score in zip(visits, (5, 3), strict=True):
        done = api.ok("POST", f"/visits/{visit['id']}/outcome", who="agent1", json={
            "outcome": "reached", "answers": [{"question_id": q1, "scale_value": score}, {"question_id": q2, "choice": "愿意"}]})  # fmt: skip
        assert done["status"] == "done" and done["answers"][0]["scale_value"] == score
    figures = api.ok("GET", "/reports/satisfaction?first_day=2026-11-23&last_day=2026-11-23", who="sup")
    assert figures["average"] == 4.0 and figures["distribution"] == {"1": 0, "2": 0, "3": 1, "4": 0, "5": 1}


def test_knowledge_base_public_without_login(api: Api) -> None:
    public = api.ok("POST", "/kb/articles", who="sup", status=201, json={
        "title": "玻尿酸注射后注意事项", "body": "注射玻尿酸后24小时内不要沾水。", "public": True, "publish": True})  # fmt: skip
    internal = api.ok("POST", "/kb/articles", who="sup", status=201, json={
        "title": "内部排班制度", "body": "美容师每周轮休两天。", "publish": True})  # fmt: skip
    found = api.ok("GET", "/kb/public/articles?q=玻尿酸", who=None)
    assert [a["title"] for a in found["items"]] == ["玻尿酸注射后注意事项"]
    assert api.ok("GET", "/kb/public/articles?q=轮休", who=None)["total"] == 0
    assert api.ok("GET", "/kb/articles?q=轮休", who="agent1")["total"] == 1
    assert api.ok("GET", f"/kb/public/articles/{public['id']}", who=None)["view_count"] == 1
    assert api.call("GET", f"/kb/public/articles/{internal['id']}", who=None).status_code == 404
    api.ok("DELETE", f"/kb/articles/{internal['id']}", who="sup", status=204)


def test_messaging_over_http(api: Api) -> None:
    api.ok("PUT", "/messages/templates/birthday", who="sup", json={
        "channel": "sms", "name": "生日祝福", "body": "【美颜连锁】{name}，祝您生日快乐！{gift}"})  # fmt: skip
    broken = api.call("PUT", "/messages/templates/broken", who="sup", json={"channel": "sms", "name": "x", "body": "{姓名}"})
    assert broken.status_code == 422 and broken.json()["error"]["code"] == "template.syntax"
    member = api.ok("POST", "/members", who="agent1", status=201, json={"name": "杨柳", "phones": ["13800138000"], "level": "silver"})
    preview = api.ok("POST", "/messages/preview", who="agent1", json={
        "template_code": "birthday", "member_id": member["id"], "variables": {"gift": "赠送面膜一盒"}})  # fmt: skip
    assert preview == {"recipient": "+8613800138000", "subject": None, "body": "【美颜连锁】杨柳，祝您生日快乐！赠送面膜一盒"}
    missing = api.call("POST", "/messages/member", who="agent1", json={"template_code": "birthday", "member_id": member["id"]})
    assert missing.status_code == 422 and missing.json()["error"]["code"] == "template.missing_variable"
    queued = api.ok("POST", "/messages/member", who="agent1", status=201, json={
        "template_code": "birthday", "member_id": member["id"], "variables": {"gift": "🎁"}})  # fmt: skip
    assert queued["status"] == "queued"
    bulk = api.ok("POST", "/messages/bulk", who="sup", status=201, json={
        "template_code": "birthday", "filter": {"level": "silver"}, "variables": {"gift": ""}})  # fmt: skip
    assert bulk["queued"] == 1
    assert api.call("POST", "/messages/bulk", who="agent1", json={"template_code": "birthday", "filter": {}}).status_code == 403
    outbox = api.ok("GET", "/messages?status=queued", who="agent1")
    assert outbox["total"] == 2
    api.ok("PUT", "/messages/greeting-days", who="sup", json={"day": "03-08", "name": "妇女节", "template_code": "birthday"})
    assert [g["day"] for g in api.ok("GET", "/messages/greeting-days", who="agent1")] == ["03-08"]


def test_reports_answer_with_rows(api: Api) -> None:
    span = "first_day=2026-11-01&last_day=2026-11-30"
    for path in ("/reports/tickets", "/reports/work-orders", "/reports/sales", "/reports/members/growth",
                 "/reports/calls", "/reports/calls?source=calls&period=week"):  # fmt: skip
        joiner = "&" if "?" in path else "?"
        assert isinstance(api.ok("GET", f"{path}{joiner}{span}", who="sup"), list), path
    assert api.ok("GET", "/reports/members/levels", who="sup") == []
    assert api.call("GET", "/reports/tickets", who="sup").json()["error"]["field"] == "first_day"
    assert api.call("GET", f"/reports/tickets?{span}", who="agent1").status_code == 403
