"""机构、用户、角色: users with hashed passwords and roles with permissions (the departments tree is
crm.departments, the base of `OrgService`).

A user holds one or more roles; the actor built for them carries the union of the roles'
permissions and the widest of their data scopes. Passwords are hashed in a worker thread: a 0.2 s
scrypt must not stall the event loop that also carries calls.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from crm import access, audit, common, networks, passwords
from crm.access import Actor, DataScope
from crm.clock import Clock, to_iso
from crm.db import Database, IntegrityError, Transaction
from crm.departments import DepartmentOps
from crm.errors import Conflict, Forbidden, NotFound, ValidationError

# Letters (any script), digits and . _ - @ : what login forms and SIP user parts both accept.
_USERNAME = re.compile(r"^[\w.@-]{2,64}$")
_ROLE_NAME = re.compile(r"^[a-z][a-z0-9_]{1,31}$")


@dataclass(frozen=True)
class Role:
    id: int
    name: str
    display_name: str
    data_scope: DataScope
    permissions: frozenset[str]
    builtin: bool
    #: Networks (CIDR) the role may work from; empty: anywhere (crm.networks).
    networks: tuple[str, ...] = ()


@dataclass(frozen=True)
class User:
    id: int
    username: str
    display_name: str
    department_id: int | None
    active: bool
    roles: tuple[str, ...]
    phone: str | None
    email: str | None
    region: str | None
    extension: str | None
    created_at: str
    updated_at: str
    last_login_at: str | None


@dataclass(frozen=True)
class NewUser:
    """One user to create; see `OrgService.create_user` for the fields."""

    username: str
    display_name: str
    password: str
    roles: tuple[str, ...] = ("agent",)
    department_id: int | None = None
    phone: str | None = None
    email: str | None = None
    region: str | None = None
    extension: str | None = None


class OrgService(DepartmentOps):
    def __init__(
        self,
        db: Database,
        clock: Clock | None = None,
        *,
        password_params: passwords.ScryptParams = passwords.DEFAULT_PARAMS,
    ) -> None:
        self.db = db
        self.clock = clock or Clock()
        self.password_params = password_params

    # -- roles ----------------------------------------------------------------------------------
    async def list_roles(self, actor: Actor) -> list[Role]:
        actor.require(access.ORG_READ)
        async with self.db.reading() as r:
            roles = await r.fetch_all("SELECT * FROM roles ORDER BY id")
            perms = await r.fetch_all("SELECT role_id, permission FROM role_permissions")
            nets = await networks.networks_of_roles(r)
        by_role: dict[int, set[str]] = {}
        for p in perms:
            by_role.setdefault(p["role_id"], set()).add(p["permission"])
        return [self._role(row, by_role.get(row["id"], set()), nets.get(row["id"], ())) for row in roles]

    async def get_role(self, actor: Actor, name: str) -> Role:
        actor.require(access.ORG_READ)
        async with self.db.reading() as r:
            return await self._role_by_name(r, name)

    async def create_role(
        self, actor: Actor, name: str, display_name: str, permissions: Iterable[str], data_scope: DataScope | str
    ) -> Role:
        actor.require(access.ORG_WRITE)
        if not isinstance(name, str) or not _ROLE_NAME.match(name):
            raise ValidationError("name", "lower-case letters, digits and _ (2-32), starting with a letter")
        display_name = common.text("display_name", display_name, max_length=64)
        scope = common.enum_value("data_scope", DataScope, data_scope)
        perms = self._check_permissions(permissions)
        async with self.db.transaction() as tx:
            try:
                role_id = await tx.insert(
                    "INSERT INTO roles (name, display_name, data_scope, builtin) VALUES (?, ?, ?, 0) RETURNING id",
                    (name, display_name, scope.value),
                )
            except IntegrityError:
                raise Conflict(f"role {name!r} already exists", code="role.duplicate") from None
            await tx.execute_many(
                "INSERT INTO role_permissions (role_id, permission) VALUES (?, ?)", [(role_id, p) for p in sorted(perms)]
            )
            role = await self._role_by_name(tx, name)
            await audit.record(tx, self.clock, actor, "role", role_id, "create", after=role)
        return role

    async def update_role(
        self,
        actor: Actor,
        name: str,
        *,
        display_name: str | common._Unset = common.UNSET,
        permissions: Iterable[str] | common._Unset = common.UNSET,
        data_scope: DataScope | str | common._Unset = common.UNSET,
    ) -> Role:
        """Built-in roles may be tuned too (a site decides what its agents may do); only the name is fixed."""
        actor.require(access.ORG_WRITE)
        async with self.db.transaction() as tx:
            before = await self._role_by_name(tx, name)
            new_display = (before.display_name if isinstance(display_name, common._Unset)
                           else common.text("display_name", display_name, max_length=64))  # fmt: skip
            new_scope = (before.data_scope if isinstance(data_scope, common._Unset)
                         else common.enum_value("data_scope", DataScope, data_scope))  # fmt: skip
            await tx.execute(
                "UPDATE roles SET display_name = ?, data_scope = ? WHERE id = ?", (new_display, new_scope.value, before.id)
            )
            if not isinstance(permissions, common._Unset):
                perms = self._check_permissions(permissions)
                await tx.execute("DELETE FROM role_permissions WHERE role_id = ?", (before.id,))
                await tx.execute_many(
                    "INSERT INTO role_permissions (role_id, permission) VALUES (?, ?)",
                    [(before.id, p) for p in sorted(perms)],
                )
            after = await self._role_by_name(tx, name)
            await audit.record(tx, self.clock, actor, "role", before.id, "update", before=before, after=after)
        return after

    async def delete_role(self, actor: Actor, name: str) -> None:
        actor.require(access.ORG_WRITE)
        async with self.db.transaction() as tx:
            role = await self._role_by_name(tx, name)
            if role.builtin:
                raise Conflict(f"built-in role {name!r} cannot be deleted", code="role.builtin")
            if await tx.fetch_value("SELECT 1 FROM user_roles WHERE role_id = ? LIMIT 1", (role.id,)):
                raise Conflict(f"role {name!r} is still held by users", code="role.in_use")
            await tx.execute("DELETE FROM role_permissions WHERE role_id = ?", (role.id,))
            await tx.execute("DELETE FROM role_networks WHERE role_id = ?", (role.id,))
            await tx.execute("DELETE FROM roles WHERE id = ?", (role.id,))
            await audit.record(tx, self.clock, actor, "role", role.id, "delete", before=role)

    async def set_role_networks(
        self, actor: Actor, name: str, entries: Iterable[str] | str, *, address: str | None = None
    ) -> Role:
        """Replace the networks role `name` may work from (empty: anywhere).

        `address` is where the acting administrator is now: a list under which they could no
        longer work from there (no role of theirs would allow it) is refused, so nobody locks
        themselves out by a typo."""
        actor.require(access.ORG_WRITE)
        parsed = networks.parse_networks(entries)
        async with self.db.transaction() as tx:
            before = await self._role_by_name(tx, name)
            if address is not None and actor.user_id is not None:
                held = await networks.networks_of_user(tx, actor.user_id)
                if before.id in held:
                    held[before.id] = parsed
                    if not networks.user_allows(list(held.values()), address):
                        raise ValidationError("networks", f"your own address {address} would no longer be allowed",
                                              code="network.self_lockout")  # fmt: skip
            await networks.store_role_networks(tx, before.id, parsed)
            after = await self._role_by_name(tx, name)
            await audit.record(tx, self.clock, actor, "role", before.id, "set_networks",
                               before={"networks": before.networks}, after={"networks": after.networks})  # fmt: skip
        return after

    async def address_allowed(self, user_id: int, address: str) -> bool:
        """May the user work from `address`? Any of their roles allowing it is enough."""
        async with self.db.reading() as r:
            held = await networks.networks_of_user(r, user_id)
        return networks.user_allows(list(held.values()), address)

    async def record_refused_address(self, user_id: int, address: str, where: str) -> None:
        """Audit a sign-in or request refused because of the address (the user as actor)."""
        async with self.db.transaction() as tx:
            actor = await self._actor(tx, user_id)
            await audit.record(tx, self.clock, actor, "user", user_id, "address_refused",
                               after={"address": address, "where": where})  # fmt: skip

    @staticmethod
    def _check_permissions(permissions: Iterable[str]) -> frozenset[str]:
        if isinstance(permissions, str):
            raise ValidationError("permissions", "must be a list of permissions")
        perms = frozenset(permissions)
        unknown = sorted(perms - access.ALL_PERMISSIONS)
        if unknown:
            raise ValidationError("permissions", f"unknown permission(s) {', '.join(unknown)}", code="role.unknown_permission")
        return perms

    @staticmethod
    def _role(row: dict[str, Any], perms: Iterable[str], nets: tuple[str, ...] = ()) -> Role:
        return Role(row["id"], row["name"], row["display_name"], DataScope(row["data_scope"]),
                    frozenset(perms), bool(row["builtin"]), nets)  # fmt: skip

    async def _role_by_name(self, tx: Transaction, name: str) -> Role:
        row = await tx.fetch_one("SELECT * FROM roles WHERE name = ?", (name,))
        if row is None:
            raise NotFound(f"role {name!r} does not exist", code="role.not_found")
        perms = await tx.fetch_all("SELECT permission FROM role_permissions WHERE role_id = ?", (row["id"],))
        nets = await tx.fetch_all("SELECT network FROM role_networks WHERE role_id = ? ORDER BY position", (row["id"],))
        return self._role(row, (p["permission"] for p in perms), tuple(n["network"] for n in nets))

    # -- users ----------------------------------------------------------------------------------
    async def create_user(
        self,
        actor: Actor,
        username: str,
        display_name: str,
        password: str,
        *,
        roles: Sequence[str] = ("agent",),
        department_id: int | None = None,
        phone: str | None = None,
        email: str | None = None,
        region: str | None = None,
        extension: str | None = None,
    ) -> User:
        spec = NewUser(username, display_name, password, tuple(roles), department_id, phone, email, region, extension)
        return (await self.create_users(actor, [spec]))[0]

    async def create_users(self, actor: Actor, specs: Sequence[NewUser]) -> list[User]:
        """Create several users in one transaction (批量导入): all or none, ids in the given order.
        The passwords are hashed in parallel worker threads first."""
        actor.require(access.ORG_WRITE)
        checked = []
        for index, spec in enumerate(specs):
            try:
                username = self._username(spec.username)
                display_name = common.text("display_name", spec.display_name, max_length=64)
                self._check_password(spec.password)
                fields = self._user_fields(phone=spec.phone, email=spec.email, region=spec.region,
                                           extension=spec.extension)  # fmt: skip
            except ValidationError as exc:
                if len(specs) == 1:
                    raise
                raise ValidationError(f"users[{index}].{exc.field}", exc.message, code=exc.code) from None
            checked.append((spec, username, display_name, fields))
        hashes = await asyncio.gather(
            *(asyncio.to_thread(passwords.hash_password, spec.password, self.password_params) for spec in specs)
        )
        created = []
        async with self.db.transaction() as tx:
            for (spec, username, display_name, fields), hashed in zip(checked, hashes, strict=True):
                if spec.department_id is not None:
                    await self._department_row(tx, spec.department_id, field="department_id")
                role_ids = await self._role_ids(tx, spec.roles)
                now = to_iso(self.clock.now())
                try:
                    user_id = await tx.insert(
                        "INSERT INTO users (username, display_name, department_id, active, password_hash, phone, email,"
                        " region, extension, created_at, updated_at) VALUES (?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                        (username, display_name, spec.department_id, hashed, fields["phone"], fields["email"],
                         fields["region"], fields["extension"], now, now),
                    )  # fmt: skip
                except IntegrityError:
                    raise Conflict(f"user name {username!r} is taken", code="user.duplicate") from None
                await tx.execute_many(
                    "INSERT INTO user_roles (user_id, role_id) VALUES (?, ?)", [(user_id, r) for r in role_ids]
                )
                user = await self._user(tx, user_id)
                await audit.record(tx, self.clock, actor, "user", user_id, "create", after=user)
                created.append(user)
        return created

    async def update_user(
        self,
        actor: Actor,
        user_id: int,
        *,
        display_name: str | common._Unset = common.UNSET,
        department_id: int | None | common._Unset = common.UNSET,
        roles: Sequence[str] | common._Unset = common.UNSET,
        active: bool | common._Unset = common.UNSET,
        phone: str | None | common._Unset = common.UNSET,
        email: str | None | common._Unset = common.UNSET,
        region: str | None | common._Unset = common.UNSET,
        extension: str | None | common._Unset = common.UNSET,
    ) -> User:
        actor.require(access.ORG_WRITE)
        if active is False and actor.user_id == user_id:
            raise ValidationError("active", "you cannot deactivate yourself", code="user.self_deactivate")
        async with self.db.transaction() as tx:
            before = await self._user(tx, user_id)
            changes: dict[str, Any] = {}
            if not isinstance(display_name, common._Unset):
                changes["display_name"] = common.text("display_name", display_name, max_length=64)
            if not isinstance(department_id, common._Unset):
                if department_id is not None:
                    await self._department_row(tx, department_id, field="department_id")
                changes["department_id"] = department_id
            if not isinstance(active, common._Unset):
                changes["active"] = 1 if active else 0
            optional = {k: v for k, v in (("phone", phone), ("email", email), ("region", region),
                                          ("extension", extension)) if not isinstance(v, common._Unset)}  # fmt: skip
            changes.update(self._user_fields(**optional))
            changes["updated_at"] = to_iso(self.clock.now())
            assignments = ", ".join(f"{column} = ?" for column in changes)
            await tx.execute(f"UPDATE users SET {assignments} WHERE id = ?", (*changes.values(), user_id))
            if not isinstance(roles, common._Unset):
                role_ids = await self._role_ids(tx, roles)
                await tx.execute("DELETE FROM user_roles WHERE user_id = ?", (user_id,))
                await tx.execute_many("INSERT INTO user_roles (user_id, role_id) VALUES (?, ?)", [(user_id, r) for r in role_ids])
            after = await self._user(tx, user_id)
            await audit.record(tx, self.clock, actor, "user", user_id, "update", before=before, after=after)
        return after

    async def set_password(self, actor: Actor, user_id: int, new_password: str, *, old_password: str | None = None) -> None:
        """An administrator (org.write) resets anyone else's password; everyone, administrators
        included, changes their own by giving the current one (修改密码): a session left open
        on a shared desk must not be enough to take the account over."""
        self._check_password(new_password)
        if actor.user_id == user_id:
            stored = await self.db.fetch_value("SELECT password_hash FROM users WHERE id = ?", (user_id,))
            ok = bool(stored) and old_password is not None and await asyncio.to_thread(
                passwords.verify_password, old_password, stored
            )
            if not ok:
                raise Forbidden("the current password is wrong", code="auth.wrong_password")
        else:
            actor.require(access.ORG_WRITE)
        hashed = await asyncio.to_thread(passwords.hash_password, new_password, self.password_params)
        async with self.db.transaction() as tx:
            await self._user(tx, user_id)
            await tx.execute("UPDATE users SET password_hash = ?, updated_at = ? WHERE id = ?",
                             (hashed, to_iso(self.clock.now()), user_id))  # fmt: skip
            await audit.record(tx, self.clock, actor, "user", user_id, "set_password")

    async def get_user(self, actor: Actor, user_id: int) -> User:
        if actor.user_id != user_id:
            actor.require(access.ORG_READ)
        async with self.db.reading() as r:
            return await self._user(r, user_id)

    async def list_users(
        self, actor: Actor, *, department_id: int | None = None, role: str | None = None, active: bool | None = None
    ) -> list[User]:
        actor.require(access.ORG_READ)
        where, params = ["1 = 1"], []
        if department_id is not None:
            where.append("u.department_id = ?")
            params.append(department_id)
        if active is not None:
            where.append("u.active = ?")
            params.append(1 if active else 0)
        if role is not None:
            where.append("u.id IN (SELECT ur.user_id FROM user_roles ur JOIN roles r ON r.id = ur.role_id WHERE r.name = ?)")
            params.append(role)
        async with self.db.reading() as r:
            rows = await r.fetch_all(f"SELECT u.* FROM users u WHERE {' AND '.join(where)} ORDER BY u.username", params)
            names = await self._role_names(r, [row["id"] for row in rows])
        return [self._user_from_row(row, names.get(row["id"], ())) for row in rows]

    # -- authentication -------------------------------------------------------------------------
    async def authenticate(self, username: str, password: str, *, address: str | None = None) -> Actor | None:
        """The actor for a correct user name and password of an active user, else None.

        Unknown and inactive users cost the same scrypt time as a wrong password. With `address`
        (where the sign-in comes from), a user none of whose roles allows that address is
        refused with Forbidden (auth.address_not_allowed) and the refusal is audited; the
        password is checked first, so the refusal tells nothing to someone guessing."""
        key = username.strip().casefold() if isinstance(username, str) else ""
        if not isinstance(password, str):
            return None
        row = await self.db.fetch_one("SELECT id, active, password_hash FROM users WHERE username = ?", (key,))
        if row is None or not row["active"] or not row["password_hash"]:
            await asyncio.to_thread(passwords.dummy_verify, password, self.password_params)
            return None
        if not await asyncio.to_thread(passwords.verify_password, password, row["password_hash"]):
            return None
        if address is not None and not await self.address_allowed(row["id"], address):
            await self.record_refused_address(row["id"], address, "sign-in")
            raise Forbidden(f"sign-in from {address} is not allowed for {key}", code="auth.address_not_allowed")
        rehash = passwords.needs_rehash(row["password_hash"], self.password_params)
        new_hash = await asyncio.to_thread(passwords.hash_password, password, self.password_params) if rehash else None
        async with self.db.transaction() as tx:
            now = to_iso(self.clock.now())
            if new_hash:
                await tx.execute("UPDATE users SET password_hash = ? WHERE id = ?", (new_hash, row["id"]))
            await tx.execute("UPDATE users SET last_login_at = ? WHERE id = ?", (now, row["id"]))
            actor = await self._actor(tx, row["id"])
            await audit.record(tx, self.clock, actor, "user", row["id"], "login")
        return actor

    async def actor_for_user(self, user_id: int) -> Actor:
        """The actor of an active user (per web request or WebSocket session)."""
        async with self.db.reading() as r:
            return await self._actor(r, user_id)

    async def _actor(self, tx: Transaction, user_id: int) -> Actor:
        row = await tx.fetch_one("SELECT id, username, active, department_id FROM users WHERE id = ?", (user_id,))
        if row is None:
            raise NotFound(f"user {user_id} does not exist", code="user.not_found")
        if not row["active"]:
            raise Forbidden(f"user {row['username']} is deactivated", code="auth.inactive")
        grants = await tx.fetch_all(
            "SELECT r.data_scope, rp.permission FROM user_roles ur JOIN roles r ON r.id = ur.role_id"
            " LEFT JOIN role_permissions rp ON rp.role_id = r.id WHERE ur.user_id = ?",
            (user_id,),
        )
        scopes = [DataScope(g["data_scope"]) for g in grants]
        scope = max(scopes, key=lambda s: s.breadth) if scopes else DataScope.OWN
        perms = frozenset(g["permission"] for g in grants if g["permission"])
        return Actor(row["id"], row["username"], perms, scope, row["department_id"])

    # -- helpers ----------------------------------------------------------------------------------
    @staticmethod
    def _username(username: str) -> str:
        if not isinstance(username, str) or not _USERNAME.match(username.strip()):
            raise ValidationError("username", "2-64 letters, digits or . _ - @", code="user.bad_username")
        return username.strip().casefold()

    @staticmethod
    def _check_password(password: str) -> None:
        if not isinstance(password, str) or len(password) < passwords.MIN_PASSWORD_CHARS:
            raise ValidationError("password", f"must have at least {passwords.MIN_PASSWORD_CHARS} characters",
                                  code="password.too_short")  # fmt: skip
        if len(password) > passwords.MAX_PASSWORD_CHARS:
            raise ValidationError("password", f"must have at most {passwords.MAX_PASSWORD_CHARS} characters")

    @staticmethod
    def _user_fields(**values: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in values.items():
            if key == "email":
                out[key] = common.email("email", value)
            else:
                out[key] = common.optional_text(key, value, max_length=64)
        return out

    async def _role_ids(self, tx: Transaction, roles: Sequence[str]) -> list[int]:
        if isinstance(roles, str) or not roles:
            raise ValidationError("roles", "give at least one role name in a list")
        ids = []
        for name in dict.fromkeys(roles):
            role_id = await tx.fetch_value("SELECT id FROM roles WHERE name = ?", (name,))
            if role_id is None:
                raise ValidationError("roles", f"role {name!r} does not exist", code="role.not_found")
            ids.append(role_id)
        return ids

    async def _role_names(self, tx: Transaction, user_ids: list[int]) -> dict[int, tuple[str, ...]]:
        if not user_ids:
            return {}
        marks = ", ".join("?" for _ in user_ids)
        rows = await tx.fetch_all(
            f"SELECT ur.user_id, r.name FROM user_roles ur JOIN roles r ON r.id = ur.role_id"
            f" WHERE ur.user_id IN ({marks}) ORDER BY r.id",
            user_ids,
        )
        names: dict[int, list[str]] = {}
        for row in rows:
            names.setdefault(row["user_id"], []).append(row["name"])
        return {k: tuple(v) for k, v in names.items()}

    async def _user(self, tx: Transaction, user_id: int) -> User:
        row = await tx.fetch_one("SELECT * FROM users WHERE id = ?", (user_id,))
        if row is None:
            raise NotFound(f"user {user_id} does not exist", code="user.not_found")
        names = await self._role_names(tx, [user_id])
        return self._user_from_row(row, names.get(user_id, ()))

    @staticmethod
    def _user_from_row(row: dict[str, Any], roles: tuple[str, ...]) -> User:
        return User(
            id=row["id"], username=row["username"], display_name=row["display_name"],
            department_id=row["department_id"], active=bool(row["active"]), roles=roles,
            phone=row["phone"], email=row["email"], region=row["region"], extension=row["extension"],
            created_at=row["created_at"], updated_at=row["updated_at"], last_login_at=row["last_login_at"],
        )  # fmt: skip
