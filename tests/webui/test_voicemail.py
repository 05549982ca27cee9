"""Voicemail in the web UI and REST API, through Starlette's TestClient on a real SQLite file
and real WAV files: an agent sees, plays and deletes only their own extension's messages,
administrators every mailbox; deletes are soft and audited; bad input gets a 4xx with a reason."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile
from starlette.applications import Starlette
from starlette.testclient import TestClient

from acd.schema import MIGRATIONS as ACD_MIGRATIONS
from acd.voicemail import VoicemailStore
from crm import audit
from crm.access import SYSTEM
from crm.service import Crm
from mediacore.recording import RecordingFile
from tests.webui.page_harness import staff_app
from webui.auth import SESSION_COOKIE

#: username: (role, extension)
USERS = {"admin": ("admin", None), "agent1": ("agent", "1001"), "agent2": ("agent", "1002"),
         "sup": ("supervisor", None)}


@dataclass
class Site:
    client: TestClient
    state: dict[str, Any]

    def api(self, method: str, path: str, who: str | None, **kw: Any):  # type: ignore[no-untyped-def]
        self.client.cookies.clear()
        headers = {"Authorization": f"Bearer {self.state['tokens'][who]}"} if who else {}
        return self.client.request(method, f"/api/voicemail{path}", headers=headers, **kw)

    def page_as(self, who: str) -> str:
        """Signed in as `who` in the browser: their session cookie; returns the CSRF token."""
        token, csrf = self.state["sessions"][who]
        self.client.cookies.clear()
        self.client.cookies.set(SESSION_COOKIE, token)
        return csrf

    def run(self, fn, *args):  # type: ignore[no-untyped-def]
        async def call():  # type: ignore[no-untyped-def]
            return await fn(*args)
        assert self.client.portal is not None
        return self.client.portal.call(call)


def make_app(tmp: Path) -> tuple[Starlette, dict[str, Any]]:
    async def setup(conn, crm: Crm, state: dict[str, Any]) -> dict[str, Any]:  # type: ignore[no-untyped-def]
        store = VoicemailStore(conn, tmp / "voicemail")
        state.update(store=store, messages={})
        for key, mailbox, caller, name, at in (("a", "1001", "13800138000", "王芳", 100.0),
                                               ("b", "1001", "1003", "前台", 200.0),
                                               ("c", "1002", "13900139000", "", 300.0)):
            path = store.new_message_path(mailbox, key, at)
            file = RecordingFile.create(path)
            file.write(np.full(12000, 3000, dtype=np.int16), None)
            state["messages"][key] = await store.add(mailbox, caller=caller, caller_name=name, call_id=key,
                                                     received_at=at, recording=file.close())
        return {"voicemail": store}

    return staff_app(tmp / "callcenter.db", USERS, setup, migrations={"acd": ACD_MIGRATIONS})


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    app, state = make_app(tmp_path)
    with TestClient(app) as client:
        yield Site(client, state)


def test_an_agent_lists_and_plays_only_their_own_mailbox(site: Site) -> None:
    a, b, c = (site.state["messages"][k] for k in "abc")
    mine = site.api("GET", "", "agent1")
    assert mine.status_code == 200
    body = mine.json()
    assert body["mailbox"] == "1001" and [m["id"] for m in body["items"]] == [b.id, a.id]   # newest first
    assert body["items"][1]["caller_name"] == "王芳" and body["items"][1]["duration"] == pytest.approx(1.5)
    assert site.api("GET", "?mailbox=1001", "agent1").json()["items"] == body["items"]

    other = site.api("GET", "?mailbox=1002", "agent1")
    assert other.status_code == 403 and other.json()["error"]["code"] == "auth.permission_denied"
    bad = site.api("GET", "?mailbox=10x2", "agent1")
    assert bad.status_code == 422 and "2 to 10 digits" in bad.json()["error"]["message"]
    assert site.api("GET", "", None).status_code == 401
    nobox = site.api("GET", "", "sup")
    assert nobox.status_code == 403 and nobox.json()["error"]["code"] == "voicemail.no_extension"

    audio = site.api("GET", f"/{a.id}/audio", "agent1")
    assert audio.status_code == 200 and audio.headers["content-type"] == "audio/wav"
    assert audio.content == site.state["store"].audio_path(a).read_bytes()
    data, rate = soundfile.read(io.BytesIO(audio.content), always_2d=True)
    assert rate == 8000 and data.shape == (12000, 2)
    assert site.api("GET", f"/{c.id}/audio", "agent1").status_code == 403
    assert site.api("GET", "/99999/audio", "agent1").status_code == 404

    everything = site.api("GET", "", "admin").json()
    assert everything["mailbox"] is None and len(everything["items"]) == 3
    assert site.api("GET", f"/{c.id}/audio", "admin").status_code == 200


def test_deleting_is_soft_audited_and_limited_to_your_own_messages(site: Site) -> None:
    a, _, c = (site.state["messages"][k] for k in "abc")
    assert site.api("DELETE", f"/{c.id}", "agent1").status_code == 403
    done = site.api("DELETE", f"/{a.id}", "agent1")
    assert done.status_code == 200 and done.json() == {"id": a.id, "deleted": True}
    assert a.id not in [m["id"] for m in site.api("GET", "", "agent1").json()["items"]]
    assert site.api("DELETE", f"/{a.id}", "agent1").status_code == 404
    assert site.api("GET", f"/{a.id}/audio", "agent1").status_code == 404
    kept = site.run(site.state["store"].get, a.id)
    assert kept.deleted and kept.deleted_by == "agent1" and site.state["store"].audio_path(kept).exists()
    entries = site.run(audit.list_entries, site.state["crm"].db, SYSTEM)
    assert [(e.entity, e.entity_id, e.action, e.username) for e in entries if e.entity == "voicemail"] == [
        ("voicemail", a.id, "delete", "agent1")]

    # A browser session may not delete without the page's CSRF token.
    site.page_as("agent2")
    assert site.client.request("DELETE", f"/api/voicemail/{c.id}").status_code == 401


def test_a_path_leading_out_of_the_voicemail_folder_is_never_served(site: Site) -> None:
    b = site.state["messages"]["b"]

    async def tamper() -> None:
        await site.state["crm"].db.execute("UPDATE voicemail_messages SET path = '../callcenter.db' WHERE id = ?",
                                           (b.id,))

    site.run(tamper)
    refused = site.api("GET", f"/{b.id}/audio", "admin")
    assert refused.status_code == 404 and refused.json()["error"]["code"] == "voicemail.no_file"


def test_the_page_lists_plays_marks_heard_and_deletes(site: Site) -> None:
    a, b, c = (site.state["messages"][k] for k in "abc")
    csrf = site.page_as("agent1")
    page = site.client.get("/voicemail")
    assert page.status_code == 200
    assert "王芳" in page.text and f'src="/api/voicemail/{a.id}/audio"' in page.text
    assert f'data-message="{c.id}"' not in page.text and "语音信箱" in page.text
    assert site.client.get("/voicemail?mailbox=1002").status_code == 403

    heard = site.client.post(f"/voicemail/{a.id}/heard", data={"csrf": csrf, "heard": "1", "mailbox": "1001"},
                             follow_redirects=False)
    assert heard.status_code == 303
    assert site.run(site.state["store"].get, a.id).heard
    assert site.client.post(f"/voicemail/{b.id}/delete", data={"csrf": "forged"}).status_code == 403
    assert site.client.post(f"/voicemail/{c.id}/delete", data={"csrf": csrf}).status_code == 403
    assert site.client.post(f"/voicemail/{b.id}/delete", data={"csrf": csrf}, follow_redirects=False).status_code == 303
    assert site.run(site.state["store"].get, b.id).deleted
    # Agents do not set mailboxes.
    assert site.client.post("/voicemail/settings", data={"csrf": csrf, "mailbox": "1001", "fallback": "on"}
                            ).status_code == 403


def test_an_administrator_sets_a_mailboxs_fallback_and_pin(site: Site) -> None:
    csrf = site.page_as("admin")
    listing = site.client.get("/voicemail")
    assert listing.status_code == 200 and len(re.findall(r'data-message="', listing.text)) == 3
    page = site.client.get("/voicemail?mailbox=1002")
    assert page.status_code == 200 and 'name="fallback"' in page.text
    saved = site.client.post("/voicemail/settings", data={"csrf": csrf, "mailbox": "1002", "fallback": "on",
                                                          "pin": "2468"}, follow_redirects=False)
    assert saved.status_code == 303
    store: VoicemailStore = site.state["store"]
    assert store.fallback("1002") and store.pin_matches("1002", "2468")
    wrong = site.client.post("/voicemail/settings", data={"csrf": csrf, "mailbox": "1002", "pin": "12"})
    assert wrong.status_code == 422 and "4 to 12 digits" in wrong.text
    assert store.pin_matches("1002", "2468")
    entries = site.run(audit.list_entries, site.state["crm"].db, SYSTEM)
    [entry] = [e for e in entries if e.entity == "voicemail"]
    assert entry.action == "settings" and "2468" not in str(entry.after)      # the PIN is never logged
    assert site.client.get("/voicemail?mailbox=../1").status_code == 422


def test_an_agent_uploads_and_removes_their_own_greeting(site: Site) -> None:
    csrf = site.page_as("agent1")
    store: VoicemailStore = site.state["store"]
    recorded = io.BytesIO()
    t = np.arange(44100) / 44100
    soundfile.write(recorded, np.stack([np.sin(2 * np.pi * 440 * t)] * 2, axis=1) * 0.5, 44100, format="WAV")
    upload = site.client.post("/voicemail/greeting", data={"csrf": csrf, "mailbox": "1001"},
                              files={"file": ("hello.wav", recorded.getvalue(), "audio/wav")}, follow_redirects=False)
    assert upload.status_code == 303
    greeting = store.greeting("1001")
    assert greeting is not None
    info = soundfile.info(str(greeting))
    assert (info.samplerate, info.channels) == (8000, 1) and abs(info.duration - 1.0) < 0.01
    assert "本信箱自己的问候语" in site.client.get("/voicemail").text

    refused = site.client.post("/voicemail/greeting", data={"csrf": csrf, "mailbox": "1001"},
                               files={"file": ("notes.txt", b"hello, this is text", "text/plain")})
    assert refused.status_code == 422 and "no audio file" in refused.text
    assert store.greeting("1001") == greeting                            # the old one stays
    assert site.client.post("/voicemail/greeting", data={"csrf": csrf, "mailbox": "1002"},
                            files={"file": ("hello.wav", recorded.getvalue(), "audio/wav")}).status_code == 403
    assert store.greeting("1002") is None
    removed = site.client.post("/voicemail/greeting", data={"csrf": csrf, "mailbox": "1001", "remove": "1"},
                               follow_redirects=False)
    assert removed.status_code == 303 and store.greeting("1001") is None
