"""The IVR flow editor against the running demo server over HTTP: versions listed, a broken
edit refused with every problem named and nothing stored, a good edit saved as the next live
version, an old version made live again and exported; only administrators may."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bench.server import ServerProcess
from bench.web import sign_in

ADMIN_PASSWORD = "ivr-admin-pw-1"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("ivr") / "data", env={"CALLCENTER_ADMIN_PASSWORD": ADMIN_PASSWORD})
    proc.start()
    try:
        deadline = time.monotonic() + 90
        while "demo data seeded" not in proc.log() and time.monotonic() < deadline:
            time.sleep(0.2)
        yield proc
    finally:
        proc.stop()


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found is not None
    return found.group(1)


def test_flows_are_edited_as_versions_and_broken_ones_are_refused(server: ServerProcess, tmp_path: Path) -> None:
    with httpx.Client(base_url=server.http_url, timeout=30) as client:
        sign_in(client, ADMIN_PASSWORD)
        page = client.get("/admin/ivr?name=main")
        assert page.status_code == 200 and "v1" in page.text and "survey" in page.text
        flow = client.get("/admin/ivr/main/1.json")
        assert flow.status_code == 200 and "attachment" in flow.headers["content-disposition"]
        body = flow.json()
        assert body["nodes"]["menu"]["type"] == "menu"

        broken = json.loads(json.dumps(body))
        broken["nodes"]["menu"]["options"]["1"] = "nowhere"
        broken["nodes"]["menu"]["timeout"] = 0
        refused = client.post("/admin/ivr", data={"csrf": csrf_of(page.text), "body": json.dumps(broken),
                                                  "publish": "1"})
        assert refused.status_code == 422
        assert "nowhere" in refused.text and "menu.timeout" in refused.text
        assert "v2" not in client.get("/admin/ivr?name=main").text            # nothing stored
        assert client.post("/admin/ivr", data={"csrf": csrf_of(page.text), "body": "{nodes:"}).status_code == 422

        body["nodes"]["menu"]["timeout"] = 8
        saved = client.post("/admin/ivr", data={"csrf": csrf_of(page.text), "body": json.dumps(body, ensure_ascii=False),
                                                "publish": "1"}, follow_redirects=False)
        assert saved.status_code == 303 and saved.headers["location"].endswith("version=2")
        assert client.get("/admin/ivr/main/2.json").json()["nodes"]["menu"]["timeout"] == 8
        listing = client.get("/admin/ivr?name=main").text
        assert re.search(r'data-version="2" class="live"', listing)

        back = client.post("/admin/ivr/main/1/publish", data={"csrf": csrf_of(listing)}, follow_redirects=False)
        assert back.status_code == 303
        assert re.search(r'data-version="1" class="live"', client.get("/admin/ivr?name=main").text)
        assert client.post("/admin/ivr/main/1/publish", data={"csrf": "forged"}).status_code == 403
        assert client.get("/admin/ivr/main/9.json").status_code == 404

    with httpx.Client(base_url=server.http_url, timeout=30) as agent:
        sign_in(agent, "demo1234", "agent1")
        assert agent.get("/admin/ivr").status_code == 403
