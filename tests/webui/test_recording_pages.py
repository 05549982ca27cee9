"""Recordings in the web UI against the real app, the CRM's users and a real SQLite file with the
ACD's CDR and recordings tables: supervisors hear every call, agents their own only, nobody
reaches a file outside the recordings directory, seeking works by byte ranges, and each play or
download is audited."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile
from starlette.applications import Starlette
from starlette.testclient import TestClient

from acd.cdr import MIGRATIONS_CDR, CdrRecord, CdrWriter, Disposition
from acd.recording_index import MIGRATIONS_RECORDINGS, RecordingIndex
from crm import audit
from crm.access import SYSTEM
from crm.service import Crm
from mediacore.recording import RecordingInfo, finalise
from tests.webui.page_harness import staff_app
from webui.auth import SESSION_COOKIE

# user -> (role, extension)
USERS = {"sup": ("supervisor", "1010"), "boss": ("admin", None), "agent1": ("agent", "1001"),
         "agent2": ("agent", "1009"), "agent3": ("agent", None)}
OWN = "2026/11/23/aaaa1111.wav"          # 1005 called 1001, agent1's call
OTHER = "2026/11/23/bbbb2222.wav"        # 1005 called 1006


@dataclass
class Site:
    client: TestClient
    state: dict[str, Any]
    root: Path

    def get(self, path: str, who: str | None, **kw: Any):  # type: ignore[no-untyped-def]
        self.client.cookies.clear()
        if who is not None:
            self.client.cookies.set(SESSION_COOKIE, self.state["sessions"][who][0])
        return self.client.get(path, **kw)

    def listed(self, who: str, query: str = "") -> list[str]:
        response = self.get(f"/api/recordings{query}", who)
        assert response.status_code == 200, response.text
        return [r["ref"] for r in response.json()["recordings"]]

    def audit(self) -> list[audit.AuditEntry]:
        assert self.client.portal is not None

        async def entries() -> list[audit.AuditEntry]:
            return await audit.list_entries(self.state["crm"].db, SYSTEM)
        return self.client.portal.call(entries)


async def record_call(conn, index: RecordingIndex, ref: str, call_id: str, caller: str, callee: str,
                      started: float) -> None:
    path = index.path_of(ref)
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(8000) / 8000
    tone = (6000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    soundfile.write(path, np.stack([tone, tone], axis=1), 8000, subtype="PCM_16")
    size, digest, duration = finalise(path)
    await index.started(ref, call_id, "call", "always", started)
    await index.finished(ref, RecordingInfo(path, size, digest, duration), started + 1)
    await CdrWriter(conn).write(CdrRecord(call_id, caller, callee, started, started + 1, Disposition.ANSWERED,
                                          "caller", "normal", answered_by=callee, answered_at=started,
                                          recording_ref=ref))


def make_app(root: Path) -> tuple[Starlette, dict[str, Any]]:
    async def setup(conn, crm: Crm, state: dict[str, Any]) -> dict[str, Any]:  # type: ignore[no-untyped-def]
        await conn.executescript(MIGRATIONS_CDR + MIGRATIONS_RECORDINGS)
        index = RecordingIndex(conn, root / "recordings")
        now = time.time()
        await record_call(conn, index, OWN, "aaaa1111", "1005", "1001", now - 60)
        await record_call(conn, index, OTHER, "bbbb2222", "1005", "1006", now - 30)
        return {"recordings": index}

    return staff_app(root / "callcenter.db", USERS, setup)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    app, state = make_app(tmp_path)
    with TestClient(app) as client:
        yield Site(client, state, tmp_path)


def test_supervisors_hear_every_call_agents_their_own_only(site: Site) -> None:
    assert site.listed("sup") == [OTHER, OWN]                  # newest first
    assert site.listed("boss") == [OTHER, OWN]
    assert site.listed("agent1") == [OWN]
    assert site.listed("agent1", "?party=1006") == []          # no peeking by filter
    assert site.listed("agent2") == [] and site.listed("agent3") == []
    assert site.listed("sup", "?party=1006") == [OTHER]
    [own] = site.get("/api/recordings", "agent1").json()["recordings"]
    assert own["segments"][0]["caller"] == "1005" and own["segments"][0]["answered_by"] == "1001"
    assert own["sha256"] and own["size_bytes"] == (site.root / "recordings" / OWN).stat().st_size
    assert site.get("/api/recordings", None).status_code == 401
    assert site.get("/api/recordings?limit=0", "sup").status_code == 422
    assert site.get("/api/recordings?from=yesterday", "sup").status_code == 422


def test_playing_streams_the_file_with_byte_ranges_and_is_audited(site: Site) -> None:
    data = (site.root / "recordings" / OWN).read_bytes()
    played = site.get(f"/recordings/audio/{OWN}", "agent1")
    assert played.status_code == 200 and played.content == data
    assert played.headers["content-type"] == "audio/wav" and played.headers["accept-ranges"] == "bytes"
    # Seeking in <audio>: a range further on, answered 206 and not audited again.
    part = site.get(f"/recordings/audio/{OWN}", "agent1", headers={"Range": "bytes=1000-1999"})
    assert part.status_code == 206 and part.content == data[1000:2000]
    assert part.headers["content-range"] == f"bytes 1000-1999/{len(data)}"
    beyond = site.get(f"/recordings/audio/{OWN}", "agent1", headers={"Range": f"bytes={len(data) + 10}-"})
    assert beyond.status_code == 416
    download = site.get(f"/recordings/audio/{OTHER}?download=1", "sup")
    assert download.status_code == 200 and download.headers["content-disposition"].startswith("attachment")
    # Someone else's call is no recording at all for an agent.
    assert site.get(f"/recordings/audio/{OTHER}", "agent1").status_code == 404
    assert site.get(f"/recordings/audio/{OWN}", "agent3").status_code == 404
    assert site.get(f"/recordings/audio/{OWN}", None).status_code == 401
    heard = [(e.username, e.action, e.after["ref"]) for e in site.audit() if e.action.startswith("recording_")]
    assert sorted(heard) == [("agent1", "recording_play", OWN), ("sup", "recording_download", OTHER)]


def test_no_reference_reaches_outside_the_recordings_directory(site: Site) -> None:
    secret = site.root / "callcenter.db"
    (site.root / "recordings" / "2026" / "11" / "23" / "link.wav").symlink_to(secret)
    for ref in ("../callcenter.db", "2026/11/23/../../../../callcenter.db", "%2e%2e/callcenter.db",
                "2026/11/23/%2e%2e/%2e%2e/%2e%2e/%2e%2e/callcenter.db", "2026/11/23/link.wav",
                "/etc/passwd", "2026/11/23/aaaa1111.wav%00.db", "2026/11/23/nosuch.wav"):
        response = site.get(f"/recordings/audio/{ref}", "boss")
        assert response.status_code == 404, ref
        assert b"SQLite" not in response.content


def test_the_page_lists_the_calls_with_a_player_in_the_users_language(site: Site) -> None:
    page = site.get("/recordings", "agent1")
    assert page.status_code == 200
    assert "通话录音" in page.text and f'src="/recordings/audio/{OWN}"' in page.text
    assert OTHER not in page.text and "1005 → 1001" in page.text
    assert site.get("/recordings", None, follow_redirects=False).status_code == 303
    everyone = site.get("/recordings", "sup")
    assert OWN in everyone.text and OTHER in everyone.text
