"""The dialplan with real phones (SIPp): a hunt group passes an unanswered call to its next
member, do-not-disturb set from the desk phone refuses calls with 486, forward-on-no-answer
takes the call to another extension, so does forward-always, a ringall group nobody takes falls
back to its fallback, and 9196 echoes the caller's own audio.

One server serves the whole module (starting one costs seconds); each test uses extensions of
its own, so no test sees another's phones, settings or CDRs."""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.server import ServerProcess
from bench.sipp import SCENARIOS, SippResult, free_port, read_result, run_sipp, sipp_command
from callcenter.database import open_database
from tests.peers.test_calls import RtpPeer, dominant_frequency, sdp_port_sent, tone

pytestmark = pytest.mark.peers

CONFIG = """
[calls]
ring_timeout = 2

[[ring_groups]]
number = "600"
name = "前台"
strategy = "hunt"
members = ["1002", "1003"]
ring_timeout = 2
fallback = "hangup:480"

[[ring_groups]]
number = "601"
strategy = "ringall"
members = ["1010", "1011"]
ring_timeout = 5
fallback = "extension:1012"
"""


async def rows(db: Path, sql: str, args: tuple = ()) -> list[dict]:
    conn = await open_database(db)
    try:
        async with conn.execute(sql, args) as cur:
            return [dict(r) for r in await cur.fetchall()]
    finally:
        await conn.close()


class Site:
    """A server with a configuration, and SIPp phones registered as extensions."""

    def __init__(self, tmp: Path, config: str = "") -> None:
        self.tmp = tmp
        # The CRM's demo data is of no use here, and seeding it would compete for the CPU.
        (tmp / "callcenter.toml").write_text("demo_crm = false\n" + config)
        self.server = ServerProcess(tmp / "data", extra_args=["--sip-trace", "--config", str(tmp / "callcenter.toml")])
        self.server.start()
        self.target = f"127.0.0.1:{self.server.sip_port}"
        self.phones: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}
        self._runs = itertools.count(1)

    def log(self) -> str:
        """The server's whole log (its SIP trace included)."""
        return self.server.log_path.read_text(errors="replace")

    def workdir(self, name: str) -> Path:
        return self.tmp / f"{name}-{next(self._runs)}"

    def phone(self, extension: str, scenario: str, rtp_port: int | None = None,
              extra: list[str] | None = None) -> None:
        """A SIPp uas playing `scenario` once, registered as `extension`, offering RTP at
        `rtp_port`."""
        port = free_port("127.0.0.1")
        workdir = self.workdir(f"phone{extension}")
        workdir.mkdir()
        proc = subprocess.Popen(
            sipp_command(scenario, self.target, local_port=port, timeout=40,
                         keys={"rtp_port": str(rtp_port or free_port("127.0.0.1"))}, extra=extra),
            cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.phones[extension] = (proc, workdir)
        reg = run_sipp("register_contact.xml", self.target, self.workdir(f"reg{extension}"), service=extension,
                       auth=(extension, f"demo{extension}"), keys={"contact_port": str(port)}, timeout=20)
        assert reg.successful == 1, reg.output

    def dial(self, caller: str, number: str, scenario: str = "uac_call.xml", rtp_port: int | None = None,
             talk_ms: int = 1000, keys: dict[str, str] | None = None) -> SippResult:
        return run_sipp(scenario, self.target, self.workdir(f"{caller}-{number}"), service=number,
                        auth=(caller, f"demo{caller}"), timeout=40,
                        keys={"caller": caller, "rtp_port": str(rtp_port or free_port("127.0.0.1")), **(keys or {})},
                        extra=["-d", str(talk_ms)])

    def phone_result(self, extension: str) -> SippResult:
        proc, workdir = self.phones.pop(extension)
        out, _ = proc.communicate(timeout=30)
        return read_result(workdir, proc.returncode, out)

    def cdrs(self, caller: str, count: int) -> list[dict]:
        """The CDRs of calls from `caller`, once `count` of them are written (they are written
        just after a call ends)."""
        db = self.tmp / "data" / "callcenter.db"
        sql = "SELECT * FROM cdr WHERE call_id IN (SELECT call_id FROM cdr WHERE caller = ?) ORDER BY id"
        deadline = time.monotonic() + 10
        found: list[dict] = []
        while time.monotonic() < deadline:
            found = asyncio.run(rows(db, sql, (caller,)))
            if len(found) >= count:
                break
            time.sleep(0.05)
        return found

    def wait_for_rows(self, sql: str, expected: list[dict]) -> None:
        """Wait until `sql` reads `expected` (settings are written just after a feature call)."""
        deadline = time.monotonic() + 10
        while (found := asyncio.run(rows(self.tmp / "data" / "callcenter.db", sql))) != expected:
            assert time.monotonic() < deadline, found
            time.sleep(0.05)

    def hang_up_phones(self) -> None:
        """End the phones a failed test left behind."""
        for proc, _ in self.phones.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self.phones.clear()

    def close(self) -> None:
        self.hang_up_phones()
        self.server.stop()


def site_fixture(config: str) -> object:
    @pytest.fixture(scope="module")
    def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
        site = Site(tmp_path_factory.mktemp("site"), config)
        try:
            yield site
        finally:
            site.close()

    return site


site = site_fixture(CONFIG)


@pytest.fixture(autouse=True)
def _phones_hung_up(site: Site) -> Iterator[None]:
    yield
    site.hang_up_phones()


def test_a_hunt_group_rings_the_second_member_when_the_first_does_not_answer(site: Site) -> None:
    site.phone("1002", "uas_ring.xml")     # rings until the server CANCELs it
    site.phone("1003", "uas_answer.xml")
    result = site.dial("1001", "600")
    assert result.successful == 1, result.output
    assert site.phone_result("1002").successful == 1   # it was CANCELled after its 2 s
    assert site.phone_result("1003").successful == 1
    [cdr] = site.cdrs("1001", 1)
    assert (cdr["callee"], cdr["answered_by"], cdr["disposition"]) == ("600", "1003", "ANSWERED")


def test_do_not_disturb_from_the_desk_phone_gives_486_until_toggled_off(site: Site, tmp_path: Path) -> None:
    expect_480 = tmp_path / "expect_480.xml"   # uac_busy.xml expecting 480 instead of 486
    expect_480.write_text((SCENARIOS / "uac_busy.xml").read_text().replace('"486"', '"480"'))
    assert site.dial("1004", "*76", "uac_feature.xml").successful == 1
    busy = site.dial("1005", "1004", "uac_busy.xml")
    assert busy.successful == 1, busy.output
    assert site.dial("1004", "*76", "uac_feature.xml").successful == 1
    # DND off: 1004 has no phone registered, so the caller now hears it is unavailable.
    unavailable = site.dial("1005", "1004", str(expect_480))
    assert unavailable.successful == 1, unavailable.output
    cdrs = site.cdrs("1005", 2)
    assert [(c["callee"], c["sip_status"], c["disposition"]) for c in cdrs] == [
        ("1004", 486, "BUSY"), ("1004", 480, "FAILED")]
    site.wait_for_rows("SELECT dnd FROM extension_features WHERE extension = '1004'", [{"dnd": 0}])


def test_forward_on_no_answer_takes_the_call_to_the_target(site: Site) -> None:
    site.phone("1006", "uas_ring.xml")
    site.phone("1007", "uas_answer.xml")
    assert site.dial("1006", "*521007", "uac_feature.xml").successful == 1
    result = site.dial("1008", "1006")
    assert result.successful == 1, result.output
    assert site.phone_result("1006").successful == 1   # rang for the 2 s, then CANCELled
    assert site.phone_result("1007").successful == 1
    [cdr] = site.cdrs("1008", 1)
    assert (cdr["callee"], cdr["answered_by"], cdr["disposition"]) == ("1006", "1007", "ANSWERED")


def test_the_echo_test_returns_the_callers_own_audio(site: Site) -> None:
    rtp = RtpPeer()
    stop = threading.Event()
    results: dict[str, SippResult] = {}
    uac = threading.Thread(target=lambda: results.setdefault(
        "uac", site.dial("1009", "9196", rtp_port=rtp.port, talk_ms=2500)))
    uac.start()
    try:
        deadline = time.monotonic() + 15
        port = None
        while port is None and time.monotonic() < deadline:
            _, invite, since = site.log().rpartition("INVITE sip:9196@")   # this test's call only
            port = sdp_port_sent(since, "SIP/2.0 200 OK") if invite else None
            time.sleep(0.05)
        assert port, site.log()
        rtp.talk(("127.0.0.1", port), tone(700, 75), stop)
    finally:
        stop.set()
        uac.join(timeout=40)
    assert results["uac"].successful == 1, results["uac"].output
    assert len(rtp.received) >= 70
    assert abs(dominant_frequency(rtp.received) - 700) < 10
    [cdr] = site.cdrs("1009", 1)
    assert (cdr["callee"], cdr["answered_by"], cdr["disposition"]) == ("9196", "echo", "ANSWERED")


def test_a_ringall_group_nobody_takes_goes_to_its_fallback(site: Site) -> None:
    site.phone("1010", "uas_busy.xml")   # 486; 1011 has no phone registered at all
    site.phone("1012", "uas_answer.xml")
    result = site.dial("1020", "601")
    assert result.successful == 1, result.output
    assert site.phone_result("1010").successful == 1
    assert site.phone_result("1012").successful == 1
    [cdr] = site.cdrs("1020", 1)
    assert (cdr["callee"], cdr["answered_by"], cdr["disposition"]) == ("601", "1012", "ANSWERED")


def test_forward_always_set_with_star_72_sends_every_call_on(site: Site) -> None:
    site.phone("1014", "uas_answer.xml")
    assert site.dial("1013", "*721014", "uac_feature.xml").successful == 1
    result = site.dial("1015", "1013")   # 1013 has no phone: forward-always does not need one
    assert result.successful == 1, result.output
    assert site.phone_result("1014").successful == 1
    assert site.dial("1013", "*73", "uac_feature.xml").successful == 1
    [cdr] = site.cdrs("1015", 1)
    assert (cdr["callee"], cdr["answered_by"]) == ("1013", "1014")
    site.wait_for_rows("SELECT forward_always FROM extension_features WHERE extension = '1013'",
                       [{"forward_always": ""}])   # *73 cancelled it
