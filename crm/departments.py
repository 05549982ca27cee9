"""部门: the departments tree of crm.org (a user belongs to one department; data scopes and
reports follow the tree through each department's materialised `path`, e.g. "/1/4/")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from crm import access, audit, common
from crm.access import Actor
from crm.clock import Clock, to_iso
from crm.db import Database, Transaction
from crm.errors import Conflict, NotFound, ValidationError

#: The tree is for people to read; deeper than this is a data-entry mistake, not an organisation.
MAX_DEPARTMENT_DEPTH = 12


@dataclass(frozen=True)
class Department:
    id: int
    name: str
    parent_id: int | None
    path: str
    sort_order: int


@dataclass(frozen=True)
class DepartmentNode:
    department: Department
    children: tuple[DepartmentNode, ...]


def _department(row: dict[str, Any]) -> Department:
    return Department(row["id"], row["name"], row["parent_id"], row["path"], row["sort_order"])


class DepartmentOps:
    """Department operations of `crm.org.OrgService` (its base class)."""

    db: Database
    clock: Clock

    async def create_department(
        self, actor: Actor, name: str, *, parent_id: int | None = None, sort_order: int = 0
    ) -> Department:
        actor.require(access.ORG_WRITE)
        name = common.text("name", name, max_length=64)
        async with self.db.transaction() as tx:
            parent_path = "/"
            if parent_id is not None:
                parent = await self._department_row(tx, parent_id, field="parent_id")
                if parent["path"].count("/") - 1 >= MAX_DEPARTMENT_DEPTH:
                    raise ValidationError("parent_id", f"the tree is limited to {MAX_DEPARTMENT_DEPTH} levels")
                parent_path = parent["path"]
            await self._check_sibling_name(tx, parent_id, name, exclude_id=None)
            now = to_iso(self.clock.now())
            dept_id = await tx.insert(
                "INSERT INTO departments (name, parent_id, path, sort_order, created_at)"
                " VALUES (?, ?, '', ?, ?) RETURNING id",
                (name, parent_id, sort_order, now),
            )
            await tx.execute("UPDATE departments SET path = ? WHERE id = ?", (f"{parent_path}{dept_id}/", dept_id))
            dept = _department(await self._department_row(tx, dept_id))
            await audit.record(tx, self.clock, actor, "department", dept_id, "create", after=dept)
        return dept

    async def update_department(
        self,
        actor: Actor,
        department_id: int,
        *,
        name: str | common._Unset = common.UNSET,
        parent_id: int | None | common._Unset = common.UNSET,
        sort_order: int | common._Unset = common.UNSET,
    ) -> Department:
        """Rename, reorder or move a department (with its whole subtree)."""
        actor.require(access.ORG_WRITE)
        async with self.db.transaction() as tx:
            before = _department(await self._department_row(tx, department_id))
            new_name = before.name if isinstance(name, common._Unset) else common.text("name", name, max_length=64)
            new_parent = before.parent_id if isinstance(parent_id, common._Unset) else parent_id
            new_order = before.sort_order if isinstance(sort_order, common._Unset) else sort_order
            new_path = before.path
            if new_parent != before.parent_id:
                parent_path = "/"
                if new_parent is not None:
                    parent = await self._department_row(tx, new_parent, field="parent_id")
                    if parent["path"].startswith(before.path):
                        raise ValidationError("parent_id", "a department cannot move under itself",
                                              code="department.cycle")  # fmt: skip
                    parent_path = parent["path"]
                new_path = f"{parent_path}{department_id}/"
                # Rewrite the subtree's paths in one statement: prefix swap.
                await tx.execute(
                    "UPDATE departments SET path = ? || substr(path, ?) WHERE path LIKE ?",
                    (new_path, len(before.path) + 1, before.path + "%"),
                )
            if new_name != before.name or new_parent != before.parent_id:
                await self._check_sibling_name(tx, new_parent, new_name, exclude_id=department_id)
            await tx.execute(
                "UPDATE departments SET name = ?, parent_id = ?, sort_order = ? WHERE id = ?",
                (new_name, new_parent, new_order, department_id),
            )
            after = _department(await self._department_row(tx, department_id))
            assert after.path == new_path
            await audit.record(tx, self.clock, actor, "department", department_id, "update",
                               before=before, after=after)  # fmt: skip
        return after

    async def delete_department(self, actor: Actor, department_id: int) -> None:
        actor.require(access.ORG_WRITE)
        async with self.db.transaction() as tx:
            before = _department(await self._department_row(tx, department_id))
            if await tx.fetch_value("SELECT 1 FROM departments WHERE parent_id = ? LIMIT 1", (department_id,)):
                raise Conflict("the department still has sub-departments", code="department.has_children")
            if await tx.fetch_value("SELECT 1 FROM users WHERE department_id = ? LIMIT 1", (department_id,)):
                raise Conflict("the department still has users", code="department.has_users")
            for table in ("tickets", "work_orders"):
                if await tx.fetch_value(f"SELECT 1 FROM {table} WHERE department_id = ? LIMIT 1", (department_id,)):
                    raise Conflict(f"{table} still refer to the department", code="department.in_use")
            await tx.execute("DELETE FROM departments WHERE id = ?", (department_id,))
            await audit.record(tx, self.clock, actor, "department", department_id, "delete", before=before)

    async def list_departments(self, actor: Actor) -> list[Department]:
        actor.require(access.ORG_READ)
        rows = await self.db.fetch_all("SELECT * FROM departments ORDER BY path")
        return [_department(r) for r in rows]

    async def department_tree(self, actor: Actor) -> list[DepartmentNode]:
        """The roots with their children, each level ordered by sort_order then name."""
        departments = await self.list_departments(actor)
        children: dict[int | None, list[Department]] = {}
        for dept in departments:
            children.setdefault(dept.parent_id, []).append(dept)

        def build(parent: int | None) -> tuple[DepartmentNode, ...]:
            ordered = sorted(children.get(parent, []), key=lambda d: (d.sort_order, d.name))
            return tuple(DepartmentNode(d, build(d.id)) for d in ordered)

        return list(build(None))

    async def _department_row(self, tx: Transaction, department_id: int, *, field: str = "department_id") -> dict[str, Any]:
        row = await tx.fetch_one("SELECT * FROM departments WHERE id = ?", (department_id,))
        if row is None:
            raise NotFound(f"{field}: department {department_id} does not exist", code="department.not_found")
        return row

    async def _check_sibling_name(self, tx: Transaction, parent_id: int | None, name: str, exclude_id: int | None) -> None:
        clash = await tx.fetch_value(
            "SELECT id FROM departments WHERE name = ? AND "
            + ("parent_id IS NULL" if parent_id is None else "parent_id = ?")
            + " AND id <> ?",
            (name, *(() if parent_id is None else (parent_id,)), exclude_id or 0),
        )
        if clash is not None:
            raise Conflict(f"a department named {name!r} already exists here", code="department.duplicate")
