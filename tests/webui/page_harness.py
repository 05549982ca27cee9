"""A real web UI (webui.app.create_app: pages, API, the address guard) over a real SQLite file,
for the page tests driven through Starlette's TestClient. Imported by the tests as
`tests.webui.page_harness` (not collected: no test_ prefix)."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

from callcenter.database import apply_all, apply_migrations, open_database
from crm import schema
from crm.access import SYSTEM
from crm.db import Database
from crm.passwords import ScryptParams
from crm.schema import MIGRATIONS as CRM_MIGRATIONS
from crm.service import Crm
from webui.app import WebServices, create_app
from webui.sessions import MIGRATIONS as WEBUI_MIGRATIONS
from webui.sessions import SessionStore

FAST_HASH = ScryptParams(log2_n=4, r=8, p=1)
PASSWORD = "secret-pass"
#: username: roles
USERS = {"admin": ["admin"], "admin2": ["admin"], "sup": ["supervisor"], "auditor": ["auditor"],
         "agent1": ["agent"], "tech": ["technician"]}  # fmt: skip


@dataclass
class Site:
    app: Starlette
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def crm(self) -> Crm:
        return self.state["crm"]

    @property
    def ids(self) -> dict[str, int]:
        return self.state["ids"]

    def client(self, address: str = "127.0.0.1") -> TestClient:
        """A browser at `address` (the socket peer the server sees)."""
        return TestClient(self.app, client=(address, 50000), follow_redirects=False)

    def run(self, coro: Any) -> Any:
        """Run a coroutine on the app's event loop (where the database connection lives)."""
        return self.state["portal"].call(lambda: coro)


def make_site(db_path: Path, *, trusted_proxies: Sequence[str] = ()) -> Site:
    site = Site(Starlette())

    @asynccontextmanager
    async def lifespan(app: Starlette):
        conn = await open_database(db_path)
        try:
            await apply_migrations(conn, "crm", schema.MIGRATIONS)
            await apply_migrations(conn, "webui", WEBUI_MIGRATIONS)
            crm = Crm.build(Database(conn), password_params=FAST_HASH)
            hq = await crm.org.create_department(SYSTEM, "总部")
            ids = {}
            for username, roles in USERS.items():
                user = await crm.org.create_user(SYSTEM, username, f"用户{username}", PASSWORD, roles=roles,
                                                 department_id=hq.id)  # fmt: skip
                ids[username] = user.id
            site.state.update(crm=crm, ids=ids)
            inner = create_app(WebServices(health=_healthy, metrics=lambda: "", crm=crm, sessions=SessionStore(conn),
                                           trusted_proxies=trusted_proxies))  # fmt: skip
            app.router.routes.append(Mount("/", app=inner))
            yield
        finally:
            await conn.close()

    site.app = Starlette(lifespan=lifespan)
    return site


#: Seeds what one test module needs once the staff exist: gets the database connection, the CRM
#: and the app state, returns the `WebServices` fields beyond crm and sessions.
ServiceSetup = Callable[[Any, Crm, dict[str, Any]], Awaitable[dict[str, Any]]]


def staff_app(db_path: Path, users: Mapping[str, tuple[str, str | None]], setup: ServiceSetup, *,
              migrations: Mapping[str, Sequence[Any]] | None = None) -> tuple[Starlette, dict[str, Any]]:
    """The web UI (webui.app.create_app) over a real SQLite file holding one department and
    `users` (username: (role, extension)), each already signed in: `state["sessions"][username]`
    is (session token, CSRF token) and `state["tokens"][username]` an API token. `setup` adds
    the services a module tests (voicemail, recordings, the supervisor's router...)."""
    state: dict[str, Any] = {"sessions": {}, "tokens": {}}

    @asynccontextmanager
    async def lifespan(app: Starlette):  # type: ignore[no-untyped-def]
        conn = await open_database(db_path)
        try:
            await apply_all(conn, {**(migrations or {}), "crm": CRM_MIGRATIONS, "webui": WEBUI_MIGRATIONS})
            crm = Crm.build(Database(conn), password_params=FAST_HASH)
            sessions = SessionStore(conn)
            hq = await crm.org.create_department(SYSTEM, "总部")
            state["crm"] = crm
            for username, (role, extension) in users.items():
                user = await crm.org.create_user(SYSTEM, username, username, PASSWORD, roles=[role],
                                                 department_id=hq.id, extension=extension)
                token, session = await sessions.create(user.id, "zh-CN")
                state["sessions"][username] = (token, session.csrf)
                state["tokens"][username] = (await crm.tokens.create(SYSTEM, name="t", user_id=user.id)).secret
            services = await setup(conn, crm, state)
            web = create_app(WebServices(health=_healthy, metrics=lambda: "", crm=crm, sessions=sessions,
                                         **services))
            app.router.routes.extend(web.routes)
            yield
        finally:
            await conn.close()

    return Starlette(lifespan=lifespan), state


async def _healthy() -> dict[str, bool]:
    return {"database": True}


@contextmanager
def running(site: Site) -> Iterator[TestClient]:
    """Start the app (its lifespan seeds the users); the yielded client is 127.0.0.1."""
    with site.client() as client:
        site.state["portal"] = client.portal
        yield client


def csrf_of(text: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', text)
    assert found is not None, text[:500]
    return found.group(1)


def sign_in(client: TestClient, username: str, password: str = PASSWORD, headers: dict[str, str] | None = None):
    form = client.get("/login", headers=headers or {})
    return client.post("/login", data={"csrf": csrf_of(form.text), "username": username, "password": password},
                       headers=headers or {})  # fmt: skip


def page_csrf(client: TestClient, path: str = "/profile") -> str:
    page = client.get(path)
    assert page.status_code == 200, page.text[:300]
    return csrf_of(page.text)
