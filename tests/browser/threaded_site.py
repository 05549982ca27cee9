"""A web app served by uvicorn from a thread with its own event loop, on a free port of
127.0.0.1: the browser tests drive it with Playwright's synchronous API from the test thread.
Subclasses build their app in `_serve` and hand it to `serve_app`. Not a test module."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path

import uvicorn
from starlette.types import ASGIApp

from callcenter.database import apply_migrations
from crm import schema
from crm.access import SYSTEM
from crm.db import Database
from crm.passwords import ScryptParams
from crm.service import Crm
from webui.sessions import MIGRATIONS as SESSION_MIGRATIONS


async def softphone_crm(conn, password: str) -> Crm:  # type: ignore[no-untyped-def]
    """The CRM of the softphone pages' tests on `conn` (with the web sessions' table): agent1
    (林晓) at extension 2001, signing in with `password`."""
    await apply_migrations(conn, "crm", schema.MIGRATIONS)
    await apply_migrations(conn, "webui", SESSION_MIGRATIONS)
    crm = Crm.build(Database(conn), password_params=ScryptParams(log2_n=4, r=8, p=1))
    await crm.org.create_user(SYSTEM, "agent1", "林晓", password, roles=["agent"], extension="2001")
    return crm


async def media_healthy() -> dict[str, bool]:
    return {"media": True}


class ThreadedSite:
    def __init__(self, data: Path) -> None:
        self.data = data
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.failure: BaseException | None = None
        self.port = 0
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._thread.start()
        if not self.ready.wait(30) or self.failure is not None:
            raise RuntimeError(f"the test site did not start: {self.failure!r}")

    def stop(self) -> None:
        if self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(20)

    def _run(self) -> None:
        try:
            self._stop = asyncio.Event()
            self.data.mkdir(parents=True, exist_ok=True)
            self.loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported to the test thread by start()
            self.failure = exc
            self.ready.set()
        finally:
            self.loop.close()

    async def _serve(self) -> None:
        raise NotImplementedError

    async def serve_app(self, app: ASGIApp, *, before_exit: Callable[[], Awaitable[None]] | None = None) -> None:
        """Serve `app` until `stop()`; `before_exit` runs first then (e.g. closing WebSockets)."""
        assert self._stop is not None
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(app, loop="none", lifespan="off", log_level="warning",
                                               ws="websockets-sansio"))
        server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.02)
        self.ready.set()
        await self._stop.wait()
        if before_exit is not None:
            await before_exit()
        server.should_exit = True
        await asyncio.wait_for(task, 10)
