"""The extensions of the site: who may register, under which number, with which secret.

Kept in memory for the SIP server's per-request look-ups (a dict read, no I/O on the hot path)
and in the database as the source of truth the web UI edits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import aiosqlite

MIGRATIONS_EXTENSIONS = """
    CREATE TABLE extensions (
        number       TEXT PRIMARY KEY,
        display_name TEXT NOT NULL DEFAULT '',
        secret       TEXT NOT NULL,
        kind         TEXT NOT NULL DEFAULT 'sip' CHECK (kind IN ('sip', 'webrtc')),
        enabled      INTEGER NOT NULL DEFAULT 1,
        created_at   TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
    );
"""

# Extension numbers are dialled on phone keypads: digits only, 2 to 10 of them.
NUMBER_RE = re.compile(r"^[0-9]{2,10}$")
# Digest secrets travel through phone configuration screens: printable ASCII, no quotes.
SECRET_RE = re.compile(r'^[!#-~]{4,64}$')


class DirectoryError(ValueError):
    """An extension that cannot be created as asked, with the reason."""


@dataclass(frozen=True)
class Extension:
    number: str
    display_name: str
    secret: str
    kind: str = "sip"
    enabled: bool = True


class ExtensionDirectory:
    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn
        self._by_number: dict[str, Extension] = {}

    async def load(self) -> None:
        async with self._conn.execute(
            "SELECT number, display_name, secret, kind, enabled FROM extensions"
        ) as cur:
            rows = await cur.fetchall()
        self._by_number = {r[0]: Extension(r[0], r[1], r[2], r[3], bool(r[4])) for r in rows}

    def secret(self, number: str) -> str | None:
        """The digest secret of an enabled extension (the SIP server's credential look-up)."""
        ext = self._by_number.get(number)
        return ext.secret if ext is not None and ext.enabled else None

    def get(self, number: str) -> Extension | None:
        return self._by_number.get(number)

    def __len__(self) -> int:
        return len(self._by_number)

    async def upsert(self, ext: Extension) -> None:
        if not NUMBER_RE.match(ext.number):
            raise DirectoryError(f"extension number {ext.number!r} must be 2 to 10 digits")
        if not SECRET_RE.match(ext.secret):
            raise DirectoryError("the secret must be 4 to 64 printable ASCII characters without quotes or spaces")
        await self._conn.execute(
            "INSERT INTO extensions (number, display_name, secret, kind, enabled) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (number) DO UPDATE SET display_name = excluded.display_name,"
            " secret = excluded.secret, kind = excluded.kind, enabled = excluded.enabled",
            (ext.number, ext.display_name, ext.secret, ext.kind, int(ext.enabled)),
        )
        self._by_number[ext.number] = ext
