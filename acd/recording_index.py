"""The recordings index: one row per recording file (a call's, or a conference room's), written
when it starts and completed with its duration, size and SHA-256 when it stops; read by the
web UI with the call's CDR segments beside it.

A recording is named by its `ref`, its path relative to the recordings directory
(`2026/11/23/<call id>.wav`); the CDR's `recording_ref` holds the same text, so every segment of a
transferred call points at the one file. `path_of` is the only way from a ref to a file, and it
refuses anything that would leave the directory.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiosqlite

from mediacore.recording import RecordingInfo

MIGRATIONS_RECORDINGS = """
CREATE TABLE recordings (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    ref         TEXT NOT NULL UNIQUE,
    call_id     TEXT NOT NULL,
    kind        TEXT NOT NULL DEFAULT 'call',
    rule        TEXT NOT NULL DEFAULT '',
    started_at  TEXT NOT NULL,
    ended_at    TEXT,
    duration    REAL,
    size_bytes  INTEGER,
    sha256      TEXT,
    error       TEXT
);
CREATE INDEX recordings_call ON recordings (call_id);
CREATE INDEX recordings_started ON recordings (started_at);
-- An agent's own recordings: the calls they answered (caller and callee are indexed already).
CREATE INDEX cdr_answered_by ON cdr (answered_by);
"""

KIND_CALL = "call"
KIND_ROOM = "room"
#: The most rows one listing returns.
MAX_PAGE = 200
# A ref is what recording_ref() and room refs produce: path segments of letters, digits, '-', '_'
# and '.', never '.' or '..' alone, ending in .wav.
_REF_RE = re.compile(r"(?:[A-Za-z0-9_-][A-Za-z0-9_.-]*/){1,6}[A-Za-z0-9_-][A-Za-z0-9_.-]*\.wav")


class BadRef(ValueError):
    """A recording reference that names no file inside the recordings directory."""


def iso(t: float) -> str:
    """UTC ISO 8601 with milliseconds, as the CDR writes its times."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int((t % 1) * 1000):03d}Z"


@dataclass(frozen=True)
class Segment:
    """One CDR segment of a recorded call: who talked with whom, and when."""

    segment: int
    caller: str
    callee: str
    answered_by: str
    started_at: str
    ended_at: str


@dataclass(frozen=True)
class RecordingEntry:
    ref: str
    call_id: str
    kind: str
    rule: str
    started_at: str
    ended_at: str | None
    "None while the recording runs (or when the server stopped without closing it)."
    duration: float | None
    size_bytes: int | None
    sha256: str | None
    error: str | None
    segments: tuple[Segment, ...] = field(default=())

    @property
    def parties(self) -> set[str]:
        return {p for s in self.segments for p in (s.caller, s.callee, s.answered_by) if p}

    def as_json(self) -> dict[str, Any]:
        return {"ref": self.ref, "call_id": self.call_id, "kind": self.kind, "rule": self.rule,
                "started_at": self.started_at, "ended_at": self.ended_at, "duration": self.duration,
                "size_bytes": self.size_bytes, "sha256": self.sha256, "error": self.error,
                "segments": [s.__dict__ for s in self.segments]}


def check_ref(ref: str) -> str:
    if not isinstance(ref, str) or not _REF_RE.fullmatch(ref) or any(p in (".", "..") for p in ref.split("/")):
        raise BadRef(f"not a recording reference: {ref!r}")
    return ref


class RecordingIndex:
    """The `recordings` table (acd migration 8) and the files under `directory`."""

    def __init__(self, conn: aiosqlite.Connection, directory: Path) -> None:
        self._conn = conn
        self.directory = directory

    def path_of(self, ref: str) -> Path:
        """The file of a reference, never outside the recordings directory (BadRef otherwise)."""
        root = self.directory.resolve()
        path = (root / check_ref(ref)).resolve()
        if not path.is_relative_to(root):
            raise BadRef(f"recording reference {ref!r} leaves the recordings directory")
        return path

    async def started(self, ref: str, call_id: str, kind: str, rule: str, at: float) -> None:
        await self._conn.execute(
            "INSERT INTO recordings (ref, call_id, kind, rule, started_at) VALUES (?, ?, ?, ?, ?)",
            (check_ref(ref), call_id, kind, rule, iso(at)))

    async def finished(self, ref: str, info: RecordingInfo, at: float) -> None:
        await self._conn.execute(
            "UPDATE recordings SET ended_at = ?, duration = ?, size_bytes = ?, sha256 = ?, error = ? WHERE ref = ?",
            (iso(at), round(info.duration_s, 3), info.size_bytes, info.sha256, info.error, ref))

    async def get(self, ref: str) -> RecordingEntry | None:
        check_ref(ref)
        found = await self._entries("WHERE r.ref = ?", (ref,), 1, 0)
        return found[0] if found else None

    async def listing(self, *, since: float | None = None, until: float | None = None, party: str | None = None,
                      limit: int = 50, offset: int = 0) -> list[RecordingEntry]:
        """Newest first; `party`: only calls where that number called, was called or answered."""
        if not 1 <= limit <= MAX_PAGE or offset < 0:
            raise ValueError(f"limit must be 1..{MAX_PAGE} and offset >= 0")
        where, args = [], []
        if since is not None:
            where.append("r.started_at >= ?")
            args.append(iso(since))
        if until is not None:
            where.append("r.started_at < ?")
            args.append(iso(until))
        if party is not None:
            where.append("r.call_id IN (SELECT call_id FROM cdr WHERE caller = ? OR callee = ? OR answered_by = ?)")
            args += [party, party, party]
        return await self._entries(("WHERE " + " AND ".join(where)) if where else "", tuple(args), limit, offset)

    async def _entries(self, where: str, args: tuple[Any, ...], limit: int, offset: int) -> list[RecordingEntry]:
        sql = (f"SELECT r.* FROM recordings r {where} ORDER BY r.started_at DESC, r.id DESC LIMIT ? OFFSET ?")
        async with self._conn.execute(sql, (*args, limit, offset)) as cur:
            rows = [dict(r) for r in await cur.fetchall()]
        if not rows:
            return []
        calls = sorted({r["call_id"] for r in rows})
        marks = ", ".join("?" for _ in calls)
        segments: dict[str, list[Segment]] = {}
        async with self._conn.execute(
                "SELECT call_id, segment, caller, callee, answered_by, started_at, ended_at FROM cdr"
                f" WHERE call_id IN ({marks}) ORDER BY call_id, segment", calls) as cur:
            for s in await cur.fetchall():
                segments.setdefault(s["call_id"], []).append(Segment(
                    s["segment"], s["caller"], s["callee"], s["answered_by"], s["started_at"], s["ended_at"]))
        return [RecordingEntry(r["ref"], r["call_id"], r["kind"], r["rule"], r["started_at"], r["ended_at"],
                               r["duration"], r["size_bytes"], r["sha256"], r["error"],
                               tuple(segments.get(r["call_id"], ()))) for r in rows]
