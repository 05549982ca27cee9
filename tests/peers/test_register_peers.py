"""Real SIP peers register with a real server process: SIPp over UDP and TCP, baresip with
refreshes, and a password-guessing source banned while others still register."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bench.baresip import Baresip
from bench.server import ServerProcess
from bench.sipp import run_sipp

pytestmark = pytest.mark.peers


@pytest.mark.parametrize("transport", ["u1", "t1"], ids=["udp", "tcp"])
def test_sipp_registers_demo_extension_with_digest(demo_server: ServerProcess, tmp_path: Path,
                                                   transport: str) -> None:
    result = run_sipp("register_auth.xml", f"127.0.0.1:{demo_server.sip_port}", tmp_path / "sipp",
                      transport=transport, service="1001", auth=("1001", "demo1001"), timeout=20)
    assert result.successful == 1 and result.failed == 0, result.output
    assert demo_server.metric("callcenter_sip_events_total", '{kind="registrations"}') == 1
    # The binding outlives SIPp's TCP connection: a plain TCP phone stays registered.
    assert demo_server.metric("callcenter_sip_registrations") == 1


def test_wrong_password_eleven_times_bans_that_source_only(demo_server: ServerProcess, tmp_path: Path) -> None:
    target = f"127.0.0.1:{demo_server.sip_port}"
    wrong = {"service": "1001", "auth": ("1001", "guess")}
    right = {"service": "1001", "auth": ("1001", "demo1001")}
    # Eleven failed attempts from 127.0.0.1: each refused with 403 (the eleventh bans).
    guessing = run_sipp("register_wrong_password.xml", target, tmp_path / "guess", calls=11, rate=20,
                        timeout=30, **wrong)
    assert guessing.successful == 11, guessing.output
    # Now even the right password from that source gets no answer at all...
    banned = run_sipp("register_auth.xml", target, tmp_path / "banned", timeout=15, **right)
    assert banned.successful == 0 and banned.failed == 1, banned.output
    # ...while another source (decided by packet address only) registers fine.
    other = run_sipp("register_auth.xml", target, tmp_path / "other", local_ip="127.0.0.2", timeout=20, **right)
    assert other.successful == 1, other.output
    assert demo_server.metric("callcenter_sip_banned_sources") == 1
    assert demo_server.metric("callcenter_sip_events_total", '{kind="security_auth_failure_ban"}') == 1


def test_baresip_registers_and_stays_registered_across_refreshes(tmp_path: Path) -> None:
    config = tmp_path / "callcenter.toml"
    # A short registration interval makes baresip refresh within the test's lifetime.
    config.write_text("[sip]\nmin_expires = 2\n")
    server = ServerProcess(tmp_path / "data", demo=True, extra_args=["--config", str(config)])
    server.start()
    phone = Baresip(tmp_path / "baresip",
                    f"\"分机 1001\" <sip:1001@127.0.0.1:{server.sip_port};transport=udp>;auth_pass=demo1001;regint=4")
    phone.start(quit_after=30)
    try:
        deadline = time.monotonic() + 25
        refreshed = False
        while time.monotonic() < deadline:
            # Each successful REGISTER counts; three means the first plus two refreshes.
            if server.metric("callcenter_sip_events_total", '{kind="registrations"}') >= 3:
                refreshed = True
                break
            time.sleep(0.5)
        assert refreshed, server.log()
        assert server.metric("callcenter_sip_registrations") == 1  # refreshed, not duplicated
    finally:
        phone.stop()
        server.stop()
