"""API tokens: how third-party systems (and scripts) act as a user over the REST API.

A token is 32 random bytes shown once at creation (`cct_` + URL-safe base64); only its SHA-256
is stored. A plain hash is enough here, unlike passwords: the secret has 256 bits of entropy, so
there is nothing to guess and no need for a slow hash, and the look-up stays one index probe per
request. Tokens belong to a user and act with that user's current roles; they can expire and be
revoked, and stop working when the user is deactivated. Users manage their own tokens;
org.write manages everyone's.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from crm import access, audit, common
from crm.access import Actor
from crm.clock import Clock, from_iso, to_iso
from crm.db import Database
from crm.errors import Forbidden, InvalidTransition, NotFound, ValidationError
from crm.org import OrgService

PREFIX = "cct_"
TOKEN_BYTES = 32
#: last_used_at is written at most this often per token: a busy integration must not turn every
#: read into a write.
TOUCH_INTERVAL = timedelta(minutes=5)
MAX_TOKENS_PER_USER = 50


@dataclass(frozen=True)
class ApiToken:
    id: int
    user_id: int
    name: str
    #: The first characters of the secret, to tell tokens apart in a list.
    prefix: str
    created_by: int | None
    created_at: str
    expires_at: str | None
    last_used_at: str | None
    revoked_at: str | None


@dataclass(frozen=True)
class IssuedToken:
    token: ApiToken
    #: The secret itself: shown once, never stored.
    secret: str


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _token(row: dict[str, Any]) -> ApiToken:
    return ApiToken(row["id"], row["user_id"], row["name"], row["prefix"], row["created_by"], row["created_at"],
                    row["expires_at"], row["last_used_at"], row["revoked_at"])  # fmt: skip


class ApiTokenService:
    def __init__(self, db: Database, clock: Clock, org: OrgService) -> None:
        self.db = db
        self.clock = clock
        self.org = org

    async def create(self, actor: Actor, *, name: str, user_id: int | None = None, expires_at: datetime | None = None) -> IssuedToken:
        """A new token for `user_id` (default: the actor)."""
        owner = actor.user_id if user_id is None else user_id
        if owner is None:
            raise ValidationError("user_id", "give the user the token is for", code="field.required")
        if owner != actor.user_id:
            actor.require(access.ORG_WRITE)
        name = common.text("name", name, max_length=64)
        if expires_at is not None and expires_at <= self.clock.now():
            raise ValidationError("expires_at", "is in the past", code="date.in_past")
        secret = PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(TOKEN_BYTES)).rstrip(b"=").decode("ascii")
        async with self.db.transaction() as tx:
            user = await tx.fetch_one("SELECT active FROM users WHERE id = ?", (owner,))
            if user is None or not user["active"]:
                raise ValidationError("user_id", f"user {owner} is not an active user", code="user.not_found")
            count = await tx.fetch_value("SELECT COUNT(*) FROM api_tokens WHERE user_id = ? AND revoked_at IS NULL", (owner,))
            if count >= MAX_TOKENS_PER_USER:
                raise ValidationError("user_id", f"a user holds at most {MAX_TOKENS_PER_USER} live tokens", code="token.too_many")
            token_id = await tx.insert(
                "INSERT INTO api_tokens (user_id, name, token_hash, prefix, created_by, created_at, expires_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (owner, name, digest(secret), secret[: len(PREFIX) + 6], actor.user_id, to_iso(self.clock.now()),
                 to_iso(expires_at) if expires_at else None),
            )  # fmt: skip
            row = await tx.fetch_one("SELECT * FROM api_tokens WHERE id = ?", (token_id,))
            assert row is not None
            token = _token(row)
            await audit.record(tx, self.clock, actor, "api_token", token_id, "create", after=token)
        return IssuedToken(token, secret)

    async def list(self, actor: Actor, *, user_id: int | None = None) -> list[ApiToken]:
        owner = actor.user_id if user_id is None else user_id
        if owner != actor.user_id:
            actor.require(access.ORG_READ)
        rows = await self.db.fetch_all("SELECT * FROM api_tokens WHERE user_id = ? ORDER BY id", (owner,))
        return [_token(r) for r in rows]

    async def revoke(self, actor: Actor, token_id: int) -> ApiToken:
        async with self.db.transaction() as tx:
            row = await tx.fetch_one("SELECT * FROM api_tokens WHERE id = ?", (token_id,))
            if row is None:
                raise NotFound(f"token {token_id} does not exist", code="token.not_found")
            if row["user_id"] != actor.user_id and not actor.can(access.ORG_WRITE):
                raise Forbidden("revoking another user's token needs org.write", code="auth.permission_denied")
            if row["revoked_at"] is not None:
                raise InvalidTransition(f"token {token_id} is already revoked", code="token.revoked")
            await tx.execute("UPDATE api_tokens SET revoked_at = ? WHERE id = ?", (to_iso(self.clock.now()), token_id))
            after = _token({**row, "revoked_at": to_iso(self.clock.now())})
            await audit.record(tx, self.clock, actor, "api_token", token_id, "revoke", before=_token(row), after=after)
        return after

    async def authenticate(self, secret: str) -> Actor | None:
        """The actor a presented secret stands for, with the user's current roles; None when the
        token is unknown, revoked or expired, or its user deactivated."""
        if not isinstance(secret, str) or not secret.startswith(PREFIX) or len(secret) > 100:
            return None
        row = await self.db.fetch_one(
            "SELECT t.*, u.active FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE t.token_hash = ?",
            (digest(secret),),
        )
        now = self.clock.now()
        if row is None or row["revoked_at"] is not None or not row["active"]:
            return None
        if row["expires_at"] is not None and from_iso(row["expires_at"]) <= now:
            return None
        if row["last_used_at"] is None or from_iso(row["last_used_at"]) + TOUCH_INTERVAL <= now:
            await self.db.execute("UPDATE api_tokens SET last_used_at = ? WHERE id = ?", (to_iso(now), row["id"]))
        return await self.org.actor_for_user(row["user_id"])
