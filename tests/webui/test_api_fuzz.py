"""Schemathesis against the REST API: every operation of /api/openapi.json, fed inputs generated
from its own schema, never answers with a server error (5xx).

The API runs in a real uvicorn server on 127.0.0.1 (a free port) over a real SQLite file seeded
with a little of everything, so generated ids often hit records and reach the services' rules.
Every answer must also match the document: its status code, content type and response schema.
The run is bounded (a few examples per operation, derandomized: the same inputs every run).
Needs the test dependency `schemathesis` (pip install schemathesis).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from callcenter.database import apply_migrations, open_database
from crm import schema
from crm.access import SYSTEM
from crm.clock import FixedClock
from crm.db import Database
from crm.experts import HoursSpec
from crm.passwords import ScryptParams
from crm.service import Crm
from crm.surveys import QuestionSpec
from webui.api import api_routes

schemathesis = pytest.importorskip("schemathesis")
checks = pytest.importorskip("schemathesis.checks")
failures = pytest.importorskip("schemathesis.core.failures")
requests = pytest.importorskip("requests")
uvicorn = pytest.importorskip("uvicorn")
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402

EXAMPLES_PER_OPERATION = 6
NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)


async def _seed(crm: Crm) -> str:
    hq = await crm.org.create_department(SYSTEM, "总部")
    admin = await crm.org.create_user(SYSTEM, "admin", "管理员", "secret-pass", roles=["admin"], department_id=hq.id)
    auditor = await crm.org.actor_for_user((await crm.org.create_user(SYSTEM, "auditor", "审核", "secret-pass",
                                                                      roles=["auditor"])).id)  # fmt: skip
    expert = await crm.org.create_user(SYSTEM, "expert", "专家", "secret-pass", roles=["expert"])
    await crm.org.create_user(SYSTEM, "tech", "技师", "secret-pass", roles=["technician"], region="浦东新区")
    token = (await crm.tokens.create(SYSTEM, name="fuzz", user_id=admin.id)).secret
    change = await crm.catalogue.propose_new(SYSTEM, sku="FACIAL", kind="service", name="光子嫩肤", price_cents=68_000,
                                             duration_minutes=60)  # fmt: skip
    facial = await crm.catalogue.approve(auditor, change.id)
    await crm.experts.put_expert(SYSTEM, expert.id, service_ids=[facial.id])
    await crm.experts.set_hours(SYSTEM, expert.id, [HoursSpec(d, "09:00", "18:00") for d in range(7)])
    member = await crm.members.create(SYSTEM, "杨柳", phones=["13800138000"], tags=["敏感肌"], level="gold")
    await crm.tickets.create(SYSTEM, ticket_type="complaint", subject="投诉", member_id=member.id)
    await crm.work_orders.create(SYSTEM, member_id=member.id, service_type="repair", product_model="RF-200",
                                 serial_no="RF-1", dispatch=True)  # fmt: skip
    await crm.appointments.book(SYSTEM, member_id=member.id, expert_id=expert.id, item_id=facial.id,
                                starts_at=datetime(2026, 11, 24, 2, 0, tzinfo=UTC))  # fmt: skip
    order = await crm.orders.create(SYSTEM, member_id=member.id, lines=[(facial.id, 1)])
    await crm.orders.pay(SYSTEM, order.id, method="cash", amount_cents=order.total_cents)
    survey = await crm.surveys.create(SYSTEM, "满意度", [QuestionSpec("scale", "满意度", satisfaction=True)])
    await crm.surveys.set_status(SYSTEM, survey.id, "active")
    await crm.visits.create(SYSTEM, member_id=member.id, survey_id=survey.id)
    await crm.knowledge.create(SYSTEM, title="玻尿酸注射后注意事项", body="24小时内不要沾水", public=True, publish=True)
    await crm.templates.put(SYSTEM, "birthday", channel="sms", name="生日", body="{name}生日快乐")
    await crm.messaging.send_to_member(SYSTEM, "birthday", member.id)
    return token


@pytest.fixture(scope="module")
def live_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    path: Path = tmp_path_factory.mktemp("api-fuzz") / "callcenter.db"
    state: dict[str, str] = {}

    @asynccontextmanager
    async def lifespan(app: Starlette):
        conn = await open_database(path)
        try:
            await apply_migrations(conn, "crm", schema.MIGRATIONS)
            crm = Crm.build(Database(conn), clock=FixedClock(NOW), password_params=ScryptParams(4, 8, 1))
            state["token"] = await _seed(crm)
            app.router.routes.append(Mount("/api", routes=api_routes(crm)))
            yield
        finally:
            await conn.close()

    config = uvicorn.Config(Starlette(lifespan=lifespan), host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="api-under-test", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the API server did not start")
            time.sleep(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}", state["token"]
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def test_no_operation_answers_with_a_server_error(live_api: tuple[str, str]) -> None:
    base, token = live_api
    api = schemathesis.openapi.from_url(f"{base}/api/openapi.json")
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) > 90
    # Revoking tokens last: the fuzzer must not revoke its own credential before the rest has run.
    operations.sort(key=lambda op: op.path.startswith("/tokens/"))
    session = requests.Session()
    auth = {"Authorization": f"Bearer {token}"}
    server_errors: list[str] = []
    statuses: dict[int, int] = {}
    unauthenticated: set[str] = set()
    mismatches: list[str] = []
    conformance = [checks.response_schema_conformance, checks.status_code_conformance, checks.content_type_conformance]

    for operation in operations:

        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None, derandomize=True,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))  # fmt: skip
        @given(case=operation.as_strategy())
        def exercise(case) -> None:
            response = case.call(base_url=f"{base}/api", session=session, headers=auth, timeout=30)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            if response.status_code == 401:
                unauthenticated.add(case.operation.path)
            if response.status_code >= 500:
                server_errors.append(f"{case.method} {case.formatted_path} {case.query} {case.body!r}: {response.text[:300]}")
            try:
                case.validate_response(response, checks=conformance)
            except failures.FailureGroup as exc:  # the document and the answer disagree
                mismatches.append(f"{case.method} {case.formatted_path}: {str(exc)[:400]}")

        exercise()
    assert server_errors == []
    assert mismatches == []
    # The run reached the services, not only the request checks: successes and business refusals.
    assert statuses.get(200, 0) + statuses.get(201, 0) > 50 and statuses.get(404, 0) > 0
    # 401 only where credentials are the subject: a wrong login, or after the fuzzer revoked its token
    assert unauthenticated <= {"/auth/token", "/tokens/{token_id}"}, unauthenticated
