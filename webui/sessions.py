"""Signed-in sessions, kept server-side so that signing out (everywhere) really ends them.

The browser holds only a random token (HttpOnly cookie); the database keeps its SHA-256, the
user, the CSRF token of the session, the chosen language and the expiry.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

import aiosqlite

MIGRATIONS: list[str] = [
    """
    CREATE TABLE web_sessions (
        token_hash TEXT PRIMARY KEY,
        user_id    INTEGER NOT NULL,
        csrf       TEXT NOT NULL,
        locale     TEXT NOT NULL,
        created_at REAL NOT NULL,
        last_seen  REAL NOT NULL,
        expires_at REAL NOT NULL
    );
    CREATE INDEX web_sessions_user ON web_sessions (user_id);
    """,
    # Where each session signed in from and with what browser: the profile page lists a user's
    # sessions so they can tell an unknown one before ending it.
    """
    ALTER TABLE web_sessions ADD COLUMN address TEXT NOT NULL DEFAULT '';
    ALTER TABLE web_sessions ADD COLUMN user_agent TEXT NOT NULL DEFAULT '';
    """,
]

# A working day plus margin: an agent signs in once per shift; idle sessions end sooner.
SESSION_LIFETIME = 12 * 3600.0
IDLE_TIMEOUT = 2 * 3600.0
#: Enough of a User-Agent to recognise the browser; the rest is noise (and unbounded input).
MAX_USER_AGENT_CHARS = 200


@dataclass(frozen=True)
class Session:
    token_hash: str
    user_id: int
    csrf: str
    locale: str
    expires_at: float


@dataclass(frozen=True)
class SessionInfo:
    """One of a user's live sessions as the profile page lists it (never the token)."""

    #: A short public handle of the session (a prefix of the token's hash), for the page.
    handle: str
    created_at: float
    last_seen: float
    address: str
    user_agent: str
    #: The session the list is shown to.
    current: bool


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class SessionStore:
    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def create(self, user_id: int, locale: str, now: float | None = None, *, address: str = "",
                     user_agent: str = "") -> tuple[str, Session]:
        now = time.time() if now is None else now
        token = secrets.token_urlsafe(32)
        session = Session(_hash(token), user_id, secrets.token_urlsafe(24), locale, now + SESSION_LIFETIME)
        await self._conn.execute(
            "INSERT INTO web_sessions (token_hash, user_id, csrf, locale, created_at, last_seen, expires_at,"
            " address, user_agent) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (session.token_hash, user_id, session.csrf, locale, now, now, session.expires_at, address[:64],
             user_agent[:MAX_USER_AGENT_CHARS]))
        return token, session

    async def get(self, token: str, now: float | None = None) -> Session | None:
        now = time.time() if now is None else now
        async with self._conn.execute(
            "SELECT token_hash, user_id, csrf, locale, expires_at, last_seen FROM web_sessions WHERE token_hash = ?",
            (_hash(token),)) as cur:
            row = await cur.fetchone()
        if row is None:
            return None
        if row[4] <= now or row[5] + IDLE_TIMEOUT <= now:
            await self._conn.execute("DELETE FROM web_sessions WHERE token_hash = ?", (row[0],))
            return None
        if now - row[5] > 60:  # refresh the idle clock at most once a minute: no write per page
            await self._conn.execute("UPDATE web_sessions SET last_seen = ? WHERE token_hash = ?", (now, row[0]))
        return Session(row[0], row[1], row[2], row[3], row[4])

    async def set_locale(self, session: Session, locale: str) -> None:
        await self._conn.execute("UPDATE web_sessions SET locale = ? WHERE token_hash = ?", (locale, session.token_hash))

    async def end(self, session: Session) -> None:
        await self._conn.execute("DELETE FROM web_sessions WHERE token_hash = ?", (session.token_hash,))

    async def end_all(self, user_id: int) -> int:
        """Sign a user out everywhere (after a password change, or on request)."""
        cur = await self._conn.execute("DELETE FROM web_sessions WHERE user_id = ?", (user_id,))
        return cur.rowcount

    async def end_others(self, keep: Session) -> int:
        """Sign the user of `keep` out of every other session (a lost phone, a shared PC)."""
        cur = await self._conn.execute("DELETE FROM web_sessions WHERE user_id = ? AND token_hash <> ?",
                                       (keep.user_id, keep.token_hash))
        return cur.rowcount

    async def list_for_user(self, user_id: int, current: Session | None = None,
                            now: float | None = None) -> list[SessionInfo]:
        """The user's live sessions, most recently used first."""
        now = time.time() if now is None else now
        async with self._conn.execute(
            "SELECT token_hash, created_at, last_seen, address, user_agent FROM web_sessions"
            " WHERE user_id = ? AND expires_at > ? AND last_seen > ? ORDER BY last_seen DESC, created_at DESC",
            (user_id, now, now - IDLE_TIMEOUT)) as cur:
            rows = await cur.fetchall()
        return [SessionInfo(row[0][:8], row[1], row[2], row[3], row[4],
                            current is not None and row[0] == current.token_hash) for row in rows]
