"""数据字典 in the browser (settings.write): the code/label lists the CRM's forms offer
(customer types, relationship levels, ticket categories, source channels) and the member
levels, each editable with its order and an on/off switch. Deleting an entry that records
still use is refused by the service (409) and the page says to switch it off instead."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from crm import access
from crm.errors import ValidationError
from webui.auth import Viewer
from webui.form_values import checked
from webui.pages import Pages

#: Bounds of the display order a form may set; the list sorts by it.
MAX_ORDER = 1_000_000


def _order(form: FormData, field: str) -> int:
    raw = str(form.get(field, "0")).strip() or "0"
    try:
        value = int(raw)
    except ValueError:
        raise ValidationError(field, "must be a whole number", code="field.integer") from None
    if not -MAX_ORDER <= value <= MAX_ORDER:
        raise ValidationError(field, f"must be within ±{MAX_ORDER}", code="field.integer")
    return value


class DictionaryPages:
    def __init__(self, pages: Pages) -> None:
        self.pages = pages
        self.crm = pages.crm

    def routes(self) -> list[Any]:
        return [
            Route("/admin/dictionaries", self.show, methods=["GET"]),
            Route("/admin/dictionaries/{dictionary}", self.put_item, methods=["POST"]),
            Route("/admin/dictionaries/{dictionary}/{code}/delete", self.delete_item, methods=["POST"]),
            Route("/admin/levels", self.put_level, methods=["POST"]),
            Route("/admin/levels/{code}/delete", self.delete_level, methods=["POST"]),
        ]

    async def show(self, request: Request, error: str = "", status: int = 200) -> Response:
        viewer = await self.pages.viewer(request)
        if viewer is None:
            return self.pages.to_login(request)
        if not viewer.actor.can(access.SETTINGS_WRITE):
            return self.pages.forbidden(request, viewer)
        service = self.crm.dictionaries
        names = await service.dictionaries()
        chosen = request.query_params.get("d") or request.path_params.get("dictionary") or (names[0] if names else "")
        if chosen not in names:
            chosen = names[0] if names else ""
        items = await service.items(chosen, include_inactive=True) if chosen else []
        return self.pages.render(request, viewer, "dictionaries.html", status, error=error, names=names,
                                 chosen=chosen, items=items, levels=await service.levels())  # fmt: skip

    def _back(self, dictionary: str) -> RedirectResponse:
        return RedirectResponse(f"/admin/dictionaries?d={quote(dictionary)}", status_code=303)

    async def _refused(self, request: Request, error: str, status: int) -> Response:
        return await self.show(request, error, status)

    async def put_item(self, request: Request) -> Response:
        dictionary = request.path_params["dictionary"]

        async def run(viewer: Viewer, form: FormData) -> Response:
            await self.crm.dictionaries.put_item(viewer.actor, dictionary, str(form.get("code", "")).strip(),
                                                 str(form.get("label", "")), sort_order=_order(form, "sort_order"),
                                                 active=checked(form, "active"))  # fmt: skip
            return self._back(dictionary)

        return await self.pages.post_action(request, run, self._refused)

    async def delete_item(self, request: Request) -> Response:
        dictionary, code = request.path_params["dictionary"], request.path_params["code"]

        async def run(viewer: Viewer, form: FormData) -> Response:
            await self.crm.dictionaries.delete_item(viewer.actor, dictionary, code)
            return self._back(dictionary)

        return await self.pages.post_action(request, run, self._refused)

    async def put_level(self, request: Request) -> Response:
        async def run(viewer: Viewer, form: FormData) -> Response:
            await self.crm.dictionaries.put_level(viewer.actor, str(form.get("code", "")).strip(),
                                                  str(form.get("name", "")), _order(form, "rank"))  # fmt: skip
            return RedirectResponse("/admin/dictionaries#levels", status_code=303)

        return await self.pages.post_action(request, run, self._refused)

    async def delete_level(self, request: Request) -> Response:
        async def run(viewer: Viewer, form: FormData) -> Response:
            await self.crm.dictionaries.delete_level(viewer.actor, request.path_params["code"])
            return RedirectResponse("/admin/dictionaries#levels", status_code=303)

        return await self.pages.post_action(request, run, self._refused)
