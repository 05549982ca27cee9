"""/api/auth, /api/me, /api/tokens: getting and managing API tokens."""

from __future__ import annotations

from dataclasses import dataclass

from crm.errors import CrmError
from crm.tokens import ApiToken
from webui.api.registry import Call, Section, q
from webui.api.schema import datetime_string, identifier, obj, string
from webui.ip_allow import address_of

api = Section("auth", "API tokens: log in for a token, list and revoke tokens")


class Unauthenticated(CrmError):
    status = 401
    default_code = "auth.unauthenticated"


@dataclass(frozen=True)
class IssuedTokenView:
    """The secret is shown this once; store it like a password."""

    token: str
    id: int
    user_id: int
    name: str
    prefix: str
    expires_at: str | None


@dataclass(frozen=True)
class MeView:
    user_id: int | None
    username: str
    permissions: list[str]
    data_scope: str
    department_id: int | None


def _issued(issued) -> IssuedTokenView:
    t = issued.token
    return IssuedTokenView(issued.secret, t.id, t.user_id, t.name, t.prefix, t.expires_at)


@api.post("/auth/token", IssuedTokenView, status=201, public=True, summary="Log in and receive an API token",
          body=obj({"username": string(64, min_length=1), "password": string(1024, min_length=1),
                    "name": string(64)}, "username", "password"))  # fmt: skip
async def login_for_token(call: Call) -> IssuedTokenView:
    """For scripts and third-party systems: user name and password once, then the token."""
    # The per-role IP allow-list applies here as at the sign-in page (403 auth.address_not_allowed).
    actor = await call.crm.org.authenticate(call.body["username"], call.body["password"],
                                            address=address_of(call.request))
    if actor is None:
        raise Unauthenticated("wrong user name or password", code="auth.wrong_credentials")
    return _issued(await call.crm.tokens.create(actor, name=call.body.get("name") or "api"))


@api.get("/me", MeView, summary="The authenticated user and what they may do")
async def me(call: Call) -> MeView:
    a = call.me
    return MeView(a.user_id, a.username, sorted(a.permissions), a.data_scope.value, a.department_id)


@api.get("/tokens", list[ApiToken], summary="API tokens of a user (default: mine)", query=[q("user_id", identifier())])
async def list_tokens(call: Call) -> list[ApiToken]:
    return await call.crm.tokens.list(call.me, user_id=call.query.get("user_id"))


@api.post("/tokens", IssuedTokenView, status=201, summary="Create an API token",
          body=obj({"name": string(64, min_length=1), "user_id": identifier(), "expires_at": datetime_string()}, "name"))  # fmt: skip
async def create_token(call: Call) -> IssuedTokenView:
    body = call.body
    return _issued(await call.crm.tokens.create(call.me, name=body["name"], user_id=body.get("user_id"),
                                                expires_at=body.get("expires_at")))  # fmt: skip


@api.delete("/tokens/{token_id}", ApiToken, summary="Revoke an API token")
async def revoke_token(call: Call) -> ApiToken:
    return await call.crm.tokens.revoke(call.me, call.path["token_id"])
