"""数据备份与恢复 in the browser (backup.run): download a consistent copy of the live database
(SQLite's online backup API, never a file copy of a WAL database), and upload one to restore.

An upload is streamed to disk, checked (an SQLite file, intact, a callcenter schema no newer
than this release) and staged; it replaces the live database at the next start, keeping the
current one beside it (`crm.restore`). The page says so, and shows a staged restore until then.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import Route

from crm import access
from crm.errors import ValidationError
from webui.auth import Viewer
from webui.pages import Pages

BACKUP_DIR = "backups"
UPLOAD_DIR = "restore-uploads"
#: Backups kept on the server after a download; older ones are removed.
KEEP_BACKUPS = 10
#: Largest upload accepted: far above a contact centre's database, small enough to refuse a disk-filler.
MAX_UPLOAD_BYTES = 4 * 1024**3
CHUNK = 1 << 20


class BackupPages:
    def __init__(self, pages: Pages) -> None:
        self.pages = pages
        self.crm = pages.crm

    def routes(self) -> list[Any]:
        return [
            Route("/admin/backup", self.show, methods=["GET"]),
            Route("/admin/backup/download", self.download, methods=["POST"]),
            Route("/admin/backup/restore", self.restore, methods=["POST"]),
            Route("/admin/backup/restore/cancel", self.cancel, methods=["POST"]),
        ]

    async def show(self, request: Request, error: str = "", status: int = 200) -> Response:
        viewer = await self.pages.viewer(request)
        if viewer is None:
            return self.pages.to_login(request)
        if not viewer.actor.can(access.BACKUP_RUN):
            return self.pages.forbidden(request, viewer)
        folder = (await self.crm.backup.database_path()).parent / BACKUP_DIR
        backups = sorted(folder.glob("callcenter-*.db"), reverse=True) if folder.is_dir() else []
        return self.pages.render(request, viewer, "backup.html", status, error=error,
                                 pending=await self.crm.restore.pending(viewer.actor),
                                 versions=await self.crm.restore.schema_versions(),
                                 backups=[(b.name, b.stat().st_size) for b in backups])  # fmt: skip

    async def _refused(self, request: Request, error: str, status: int) -> Response:
        return await self.show(request, error, status)

    async def download(self, request: Request) -> Response:
        async def run(viewer: Viewer, form: FormData) -> Response:
            folder = (await self.crm.backup.database_path()).parent / BACKUP_DIR
            folder.mkdir(exist_ok=True)
            stamp = self.crm.clock.now().astimezone(self.crm.clock.tz).strftime("%Y%m%d-%H%M%S")
            target = folder / f"callcenter-{stamp}.db"
            suffix = 1
            while target.exists():  # two downloads in one second
                target = folder / f"callcenter-{stamp}-{suffix}.db"
                suffix += 1
            info = await self.crm.backup.backup(viewer.actor, target)
            for old in sorted(folder.glob("callcenter-*.db"), reverse=True)[KEEP_BACKUPS:]:
                old.unlink(missing_ok=True)
            return FileResponse(info.path, media_type="application/vnd.sqlite3", filename=target.name,
                                headers={"X-Backup-SHA256": info.sha256})  # fmt: skip

        return await self.pages.post_action(request, run, self._refused)

    async def restore(self, request: Request) -> Response:
        async def run(viewer: Viewer, form: FormData) -> Response:
            viewer.actor.require(access.BACKUP_RUN)
            upload = form.get("file")
            if not isinstance(upload, UploadFile) or not upload.filename:
                raise ValidationError("file", "choose a backup file", code="field.required")
            folder = (await self.crm.backup.database_path()).parent / UPLOAD_DIR
            folder.mkdir(exist_ok=True)
            part = folder / "upload.db"
            try:
                await _save(upload, part)
                await self.crm.restore.stage(viewer.actor, part)
            finally:
                part.unlink(missing_ok=True)
            return RedirectResponse("/admin/backup?staged=1", status_code=303)

        return await self.pages.post_action(request, run, self._refused)

    async def cancel(self, request: Request) -> Response:
        async def run(viewer: Viewer, form: FormData) -> Response:
            await self.crm.restore.cancel(viewer.actor)
            return RedirectResponse("/admin/backup", status_code=303)

        return await self.pages.post_action(request, run, self._refused)


async def _save(upload: UploadFile, path: Path) -> None:
    written = 0
    with path.open("wb") as out:
        while chunk := await upload.read(CHUNK):
            written += len(chunk)
            if written > MAX_UPLOAD_BYTES:
                raise ValidationError("file", f"larger than {MAX_UPLOAD_BYTES // 1024**3} GiB", code="restore.too_large")
            out.write(chunk)
    if written == 0:
        raise ValidationError("file", "the file is empty", code="restore.not_sqlite")
