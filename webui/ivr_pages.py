"""IVR flows in the browser (settings.write): every flow with its versions, the JSON of any
version to read, edit and save as the next version (checked as a whole: every mistake listed),
an earlier version put live again, and any version downloaded as JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from acd.ivr_flow import FlowError
from acd.ivr_store import FlowNotFound, FlowStore
from crm import access, audit
from webui.auth import Viewer
from webui.pages import Pages

# A flow is a few kilobytes; this bounds what a form may post.
MAX_FLOW_BYTES = 256 * 1024


class IvrPages:
    def __init__(self, pages: Pages, flows: FlowStore | None) -> None:
        self.pages = pages
        self.flows = flows

    def routes(self) -> list[Any]:
        if self.flows is None:
            return []
        return [
            Route("/admin/ivr", self.show, methods=["GET"]),
            Route("/admin/ivr", self.save, methods=["POST"]),
            Route("/admin/ivr/{name}/{version:int}/publish", self.publish, methods=["POST"]),
            Route("/admin/ivr/{name}/{version:int}.json", self.export, methods=["GET"]),
        ]

    async def _admin(self, request: Request) -> Viewer | Response:
        viewer = await self.pages.viewer(request)
        if viewer is None:
            return self.pages.to_login(request)
        if not viewer.actor.can(access.SETTINGS_WRITE):
            return self.pages.forbidden(request, viewer)
        return viewer

    async def show(self, request: Request, problems: list[str] | None = None, body: str | None = None,
                   status: int = 200) -> Response:
        viewer = await self._admin(request)
        if not isinstance(viewer, Viewer):
            return viewer
        assert self.flows is not None
        versions = await self.flows.versions()
        names = sorted({v.name for v in versions})
        name = request.query_params.get("name") or (names[0] if names else "")
        chosen = [v for v in versions if v.name == name]
        version = request.query_params.get("version", "")
        if body is None and chosen:
            wanted = int(version) if version.isdigit() else next((v.version for v in chosen if v.live),
                                                                  chosen[-1].version)
            try:
                body = (await self.flows.version(name, wanted)).to_json()
            except FlowNotFound:
                return self.pages.not_found(request, viewer)
            version = str(wanted)
        saved = {v.version: datetime.fromtimestamp(v.saved_at, UTC) for v in chosen}
        return self.pages.render(request, viewer, "ivr.html", status, names=names, name=name, versions=chosen,
                                 saved=saved, version=version, body=body or "", problems=problems or [])

    async def save(self, request: Request) -> Response:
        async def run(viewer: Viewer, form: FormData) -> Response:
            assert self.flows is not None
            text = str(form.get("body", ""))
            if len(text.encode()) > MAX_FLOW_BYTES:
                return await self.show(request, [f"the flow is larger than {MAX_FLOW_BYTES // 1024} KiB"], text, 413)
            try:
                data = json.loads(text)
                if not isinstance(data, dict):
                    raise FlowError(["a flow is a JSON object"])
                data.pop("version", None)           # the store numbers versions
                flow = await self.flows.save(data, by=viewer.actor.username, publish=bool(form.get("publish")))
            except json.JSONDecodeError as exc:
                return await self.show(request, [f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"],
                                       text, 422)
            except FlowError as exc:
                return await self.show(request, exc.problems, text, 422)
            await self._audit(viewer, "save", {"name": flow.name, "version": flow.version,
                                               "live": bool(form.get("publish"))})
            return RedirectResponse(f"/admin/ivr?name={quote(flow.name)}&version={flow.version}", status_code=303)

        return await self.pages.post_action(request, run, self._refused)

    async def publish(self, request: Request) -> Response:
        name, version = request.path_params["name"], request.path_params["version"]

        async def run(viewer: Viewer, form: FormData) -> Response:
            assert self.flows is not None
            try:
                await self.flows.publish(name, version)
            except FlowNotFound:
                return self.pages.not_found(request, viewer)
            await self._audit(viewer, "publish", {"name": name, "version": version})
            return RedirectResponse(f"/admin/ivr?name={quote(name)}&version={version}", status_code=303)

        return await self.pages.post_action(request, run, self._refused)

    async def export(self, request: Request) -> Response:
        viewer = await self._admin(request)
        if not isinstance(viewer, Viewer):
            return viewer
        assert self.flows is not None
        name, version = request.path_params["name"], request.path_params["version"]
        try:
            flow = await self.flows.version(name, version)
        except FlowNotFound:
            return self.pages.not_found(request, viewer)
        filename = quote(f"ivr-{name}-v{version}.json")
        return Response(flow.to_json(), media_type="application/json; charset=utf-8",
                        headers={"Content-Disposition": f"attachment; filename*=UTF-8''{filename}"})

    async def _refused(self, request: Request, error: str, status: int) -> Response:
        return await self.show(request, [error], None, status)

    async def _audit(self, viewer: Viewer, action: str, after: dict[str, Any]) -> None:
        crm = self.pages.crm
        async with crm.db.transaction() as tx:
            await audit.record(tx, crm.clock, viewer.actor, "ivr_flow", None, action, after=after)
