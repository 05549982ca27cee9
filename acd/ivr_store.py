"""IVR flows in the database, versioned: every save is a new version, one version is live.

Calls always run the live version they started with, so publishing a change never alters a
call already in the menu; an administrator can go back to any earlier version.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiosqlite

from acd.ivr_flow import Flow, FlowError, parse_flow

MIGRATIONS_IVR = """
CREATE TABLE ivr_flows (
    name       TEXT NOT NULL,
    version    INTEGER NOT NULL,
    body       TEXT NOT NULL,
    saved_at   REAL NOT NULL,
    saved_by   TEXT NOT NULL DEFAULT '',
    live       INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (name, version)
);
"""


@dataclass(frozen=True)
class FlowVersion:
    name: str
    version: int
    saved_at: float
    saved_by: str
    live: bool


class FlowNotFound(LookupError):
    pass


class FlowStore:
    """Versioned flows over the process's database connection."""

    def __init__(self, conn: aiosqlite.Connection, prompt_exists: Callable[[str], bool] | None = None) -> None:
        self._conn = conn
        self._prompt_exists = prompt_exists
        self._live: dict[str, Flow] = {}

    async def save(self, body: dict[str, Any] | str, *, by: str = "", publish: bool = True) -> Flow:
        """Check a flow and store it as the next version of its name (live if `publish`).
        FlowError lists what is wrong; nothing is stored then."""
        data = json.loads(body) if isinstance(body, str) else dict(body)
        flow = parse_flow(data, prompt_exists=self._prompt_exists)   # raises before any write
        async with self._conn.execute("SELECT COALESCE(MAX(version), 0) FROM ivr_flows WHERE name = ?",
                                      (flow.name,)) as cur:
            (latest,) = await cur.fetchone()
        data["version"] = latest + 1
        flow = parse_flow(data, prompt_exists=self._prompt_exists)
        if publish:
            await self._conn.execute("UPDATE ivr_flows SET live = 0 WHERE name = ?", (flow.name,))
        await self._conn.execute(
            "INSERT INTO ivr_flows (name, version, body, saved_at, saved_by, live) VALUES (?, ?, ?, ?, ?, ?)",
            (flow.name, flow.version, json.dumps(data, ensure_ascii=False), time.time(), by, int(publish)))
        await self._conn.commit()
        if publish:
            self._live[flow.name] = flow
        return flow

    async def publish(self, name: str, version: int) -> Flow:
        """Make an earlier (or unpublished) version live again."""
        flow = await self.version(name, version)
        await self._conn.execute("UPDATE ivr_flows SET live = (version = ?) WHERE name = ?", (version, name))
        await self._conn.commit()
        self._live[name] = flow
        return flow

    async def live(self, name: str) -> Flow:
        """The live version of a flow (cached; saves and publishes refresh it)."""
        flow = self._live.get(name)
        if flow is not None:
            return flow
        async with self._conn.execute("SELECT body FROM ivr_flows WHERE name = ? AND live = 1", (name,)) as cur:
            row = await cur.fetchone()
        if row is None:
            raise FlowNotFound(f"no live IVR flow named {name!r}")
        flow = parse_flow(row[0])
        self._live[name] = flow
        return flow

    async def version(self, name: str, version: int) -> Flow:
        async with self._conn.execute("SELECT body FROM ivr_flows WHERE name = ? AND version = ?",
                                      (name, version)) as cur:
            row = await cur.fetchone()
        if row is None:
            raise FlowNotFound(f"IVR flow {name!r} has no version {version}")
        return parse_flow(row[0])

    async def versions(self, name: str | None = None) -> list[FlowVersion]:
        sql = "SELECT name, version, saved_at, saved_by, live FROM ivr_flows"
        args: tuple[Any, ...] = ()
        if name is not None:
            sql += " WHERE name = ?"
            args = (name,)
        async with self._conn.execute(sql + " ORDER BY name, version", args) as cur:
            rows = await cur.fetchall()
        return [FlowVersion(r[0], r[1], r[2], r[3], bool(r[4])) for r in rows]

    async def seed(self, body: dict[str, Any], *, by: str = "demo") -> Flow | None:
        """Store a flow only if no version of its name exists (demo data, shipped flows)."""
        try:
            return await self.live(body["name"])
        except FlowNotFound:
            pass
        if await self.versions(body["name"]):
            return None
        return await self.save(body, by=by)


__all__ = ["FlowError", "FlowNotFound", "FlowStore", "FlowVersion", "MIGRATIONS_IVR"]
