"""SIP trunks end to end, with SIPp playing the provider: registration with digest (checked by
SIPp's <verifyauth>), a customer's call to a DID, an extension's call out through a route with
the caller ID rewritten and the provider's 407 answered, and failover when a trunk stops
answering OPTIONS."""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.server import ServerProcess
from bench.sipp import SCENARIOS, SippResult, free_port, read_result, run_sipp, sipp_command
from callcenter.database import open_database

pytestmark = pytest.mark.peers

ACCOUNT, PASSWORD = "02161234567", "s3cret"  # as in bench/scenarios/trunk_*.xml
BASE_CONFIG = "demo_crm = false\n"


async def cdr_rows(db: Path, table: str = "cdr") -> list[dict]:
    conn = await open_database(db)
    try:
        async with conn.execute(f"SELECT * FROM {table} ORDER BY id") as cur:
            return [dict(row) for row in await cur.fetchall()]
    finally:
        await conn.close()


class Provider:
    """A SIPp uas on its own port playing the provider's side of `scenario`."""

    def __init__(self, workdir: Path, scenario: str, *, calls: int = 1, keys: dict[str, str] | None = None) -> None:
        self.port = free_port("127.0.0.1")
        self.dir = workdir
        self.dir.mkdir(parents=True)
        # The target is unused: a uas answers whoever sends to it.
        self.proc = subprocess.Popen(
            sipp_command(scenario, "127.0.0.1:9", local_port=self.port, calls=calls, timeout=40, keys=keys),
            cwd=self.dir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def result(self, timeout: float = 20) -> SippResult:
        out, _ = self.proc.communicate(timeout=timeout)
        return read_result(self.dir, self.proc.returncode, out)

    def finished(self) -> bool:
        return self.proc.poll() is not None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


class Site:
    """Everything one test starts, ended in reverse order whatever happens."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.providers: list[Provider] = []
        self.others: list[subprocess.Popen[bytes]] = []
        self.server: ServerProcess | None = None

    def provider(self, name: str, scenario: str, **options: object) -> Provider:
        provider = Provider(self.tmp / name, scenario, **options)  # type: ignore[arg-type]
        self.providers.append(provider)
        return provider

    def start_server(self, config: str) -> ServerProcess:
        path = self.tmp / "callcenter.toml"
        path.write_text(BASE_CONFIG + config, encoding="utf-8")
        self.server = ServerProcess(self.tmp / "data", extra_args=["--config", str(path), "--sip-trace"])
        self.server.start()
        return self.server

    @property
    def target(self) -> str:
        assert self.server is not None
        return f"127.0.0.1:{self.server.sip_port}"

    def extension_1001(self) -> None:
        """A SIPp uas answering calls for extension 1001, registered like a phone."""
        port = free_port("127.0.0.1")
        workdir = self.tmp / "ext1001"
        workdir.mkdir()
        self.others.append(subprocess.Popen(
            sipp_command("uas_answer.xml", self.target, local_port=port, timeout=40,
                         keys={"rtp_port": str(free_port("127.0.0.1"))}),
            cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
        reg = run_sipp("register_contact.xml", self.target, self.tmp / "reg1001", service="1001",
                       auth=("1001", "demo1001"), keys={"contact_port": str(port)}, timeout=20)
        assert reg.successful == 1, reg.output

    def close(self) -> None:
        for proc in self.others:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        for provider in self.providers:
            provider.close()
        if self.server is not None and self.server.proc is not None:
            self.server.stop()


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    s = Site(tmp_path)
    try:
        yield s
    finally:
        s.close()


def wait_for(condition, what: str, server: ServerProcess, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}\n{server.log()}")


def trunk_toml(name: str, port: int, **extra: str) -> str:
    lines = [f'[[trunks]]\nname = "{name}"\nhost = "127.0.0.1"\nport = {port}',
             f'username = "{ACCOUNT}"\npassword = "{PASSWORD}"',
             # The provider's exact source, so extensions on this same host stay extensions.
             f'ip_auth = ["127.0.0.1:{port}"]']
    lines += [f"{key} = {value}" for key, value in extra.items()]
    return "\n".join(lines) + "\n"


def sent_messages(log: str, first_line: str) -> list[str]:
    """The SIP messages the server sent whose first line starts with `first_line`."""
    found = []
    for block in log.split("sipstack.trace: send ")[1:]:
        block = re.split(r"^\d{4}-\d\d-\d\d \d\d:", block, maxsplit=1, flags=re.M)[0]
        message = block.split("\n", 1)[1] if "\n" in block else ""
        if message.startswith(first_line):
            found.append(message)
    return found


def test_registration_is_challenged_verified_by_the_provider_and_ended_with_expires_0(site: Site) -> None:
    registrar = site.provider("registrar", "trunk_registrar.xml")
    server = site.start_server(trunk_toml("carrier", registrar.port, register="true", qualify="0"))
    labels = '{trunk="carrier"}'
    wait_for(lambda: server.metric("callcenter_trunk_registered", labels) == 1, "the registration", server)
    assert server.metric("callcenter_trunk_registration_state", '{trunk="carrier",state="registered"}') == 1
    assert server.metric("callcenter_trunk_registration_state", '{trunk="carrier",state="failed"}') == 0
    # Shutting down un-registers (Expires: 0, credentials checked again by the provider).
    assert server.stop() == 0
    result = registrar.result()
    assert result.successful == 1, result.output


def test_a_customer_calling_a_did_reaches_its_extension_with_a_cdr(site: Site) -> None:
    provider_port = free_port("127.0.0.1")
    server = site.start_server(trunk_toml("carrier", provider_port, qualify="0") +
                               f'dids = {{ "{ACCOUNT}" = "1001" }}\n')
    site.extension_1001()
    common = dict(local_port=provider_port, timeout=30, keys={"caller": "13912345678", "rtp_port": "4000"})
    call = run_sipp("trunk_uac_inbound.xml", site.target, site.tmp / "in", service=ACCOUNT,
                    extra=["-d", "500"], **common)  # type: ignore[arg-type]
    assert call.successful == 1, call.output + server.log()
    unknown = run_sipp("trunk_uac_unknown_did.xml", site.target, site.tmp / "unknown", service="02100000000",
                       **common)  # type: ignore[arg-type]
    assert unknown.successful == 1, unknown.output
    # The same INVITE from a source that is not the trunk's must authenticate like a phone.
    scenario = site.tmp / "expect_407.xml"
    scenario.write_text((SCENARIOS / "trunk_uac_unknown_did.xml").read_text().replace('"404"', '"407"'))
    stranger = run_sipp(str(scenario), site.target, site.tmp / "stranger", service=ACCOUNT, timeout=30,
                        keys={"caller": "13912345678", "rtp_port": "4000"})
    assert stranger.successful == 1, stranger.output
    # The extension's phone sees the customer's number as the caller.
    [invite, *_] = sent_messages(server.log(), "INVITE sip:1001@")
    assert re.search(r'^From: "?Customer"? <sip:13912345678@', invite, re.M), invite
    server.stop()

    answered, refused = asyncio.run(cdr_rows(site.tmp / "data" / "callcenter.db"))
    assert (answered["caller"], answered["caller_name"], answered["callee"], answered["did"], answered["trunk"],
            answered["disposition"]) == ("13912345678", "Customer", "1001", ACCOUNT, "carrier", "ANSWERED")
    assert (refused["did"], refused["trunk"], refused["sip_status"], refused["disposition"]) == (
        "02100000000", "carrier", 404, "FAILED")
    # Both trunk calls are on the CRM's interaction timeline (the customer's history).
    timeline = asyncio.run(cdr_rows(site.tmp / "data" / "callcenter.db", "calls"))
    assert [(c["call_uuid"], c["direction"], c["caller"], c["callee"], c["disposition"]) for c in timeline] == [
        (f"{answered['call_id']}:1", "inbound", "13912345678", "1001", "ANSWERED"),
        (f"{refused['call_id']}:1", "inbound", "13912345678", "02100000000", "FAILED")]


def outbound_route(*trunks: str) -> str:
    names = ", ".join(f'"{t}"' for t in trunks)
    # Mobile numbers dialled with the long-distance 0 go out without it.
    return ("[[outbound_routes]]\nname = \"long distance\"\npattern = '^0(1[3-9]\\d{9})$'\nreplace = '\\1'\n"
            f"trunks = [{names}]\ncaller_id = '\"Acme Ltd\" <{ACCOUNT}>'\n")


def call_out(site: Site, number: str) -> SippResult:
    return run_sipp("uac_call.xml", site.target, site.tmp / "uac", service=number, auth=("1001", "demo1001"),
                    timeout=30, keys={"caller": "1001", "rtp_port": "4002"}, extra=["-d", "500"])


def test_an_extension_calls_out_through_the_route_with_the_company_caller_id(site: Site) -> None:
    provider = site.provider("carrier", "trunk_provider.xml", keys={"rtp_port": "4004"})
    server = site.start_server(trunk_toml("carrier", provider.port, qualify="0") + outbound_route("carrier"))
    result = call_out(site, "013912345678")
    assert result.successful == 1, result.output + server.log()
    # The provider saw sip:13912345678@, From "Acme Ltd" <sip:02161234567@...>, and valid
    # credentials on the INVITE it challenged (CSeq 2): else it would not have answered.
    provider_result = provider.result()
    assert provider_result.successful == 1, provider_result.output
    server.stop()
    [cdr] = asyncio.run(cdr_rows(site.tmp / "data" / "callcenter.db"))
    assert (cdr["caller"], cdr["callee"], cdr["trunk"], cdr["did"], cdr["disposition"]) == (
        "1001", "013912345678", "carrier", "", "ANSWERED")


def test_a_trunk_that_stops_answering_options_is_skipped_for_the_next(site: Site) -> None:
    first = site.provider("first", "trunk_options.xml", calls=1)  # answers one probe, then is gone
    second = site.provider("second", "trunk_provider.xml", keys={"rtp_port": "4006"})
    server = site.start_server(trunk_toml("first", first.port, qualify="1", qualify_timeout="1") +
                               trunk_toml("second", second.port, qualify="0") + outbound_route("first", "second"))
    answered = first.result()
    assert answered.successful == 1, answered.output  # the first trunk did answer OPTIONS...
    wait_for(lambda: server.metric("callcenter_trunk_up", '{trunk="first"}') == 0, "the first trunk down", server)
    assert server.metric("callcenter_trunk_up", '{trunk="second"}') == 1
    result = call_out(site, "013912345678")  # ...and now the call goes to the second
    assert result.successful == 1, result.output + server.log()
    assert second.result().successful == 1
    invites = sent_messages(server.log(), "INVITE sip:13912345678@")
    assert invites and not any(f"INVITE sip:13912345678@127.0.0.1:{first.port} " in m for m in invites)
    server.stop()
    [cdr] = asyncio.run(cdr_rows(site.tmp / "data" / "callcenter.db"))
    assert (cdr["trunk"], cdr["disposition"]) == ("second", "ANSWERED")


def test_a_trunk_refusing_with_503_hands_the_call_to_the_next(site: Site) -> None:
    first = site.provider("first", "trunk_uas_unavailable.xml")
    second = site.provider("second", "trunk_provider.xml", keys={"rtp_port": "4008"})
    server = site.start_server(trunk_toml("first", first.port, qualify="0") +
                               trunk_toml("second", second.port, qualify="0") + outbound_route("first", "second"))
    result = call_out(site, "013912345678")
    assert result.successful == 1, result.output + server.log()
    assert first.result().successful == 1  # it was asked first, and said 503
    assert second.result().successful == 1
    server.stop()
    [cdr] = asyncio.run(cdr_rows(site.tmp / "data" / "callcenter.db"))
    assert (cdr["trunk"], cdr["disposition"]) == ("second", "ANSWERED")


def test_no_trunk_up_gives_the_caller_503(site: Site) -> None:
    server = site.start_server(trunk_toml("dead", free_port("127.0.0.1"), qualify="1", qualify_timeout="1") +
                               outbound_route("dead"))
    wait_for(lambda: server.metric("callcenter_trunk_up", '{trunk="dead"}') == 0, "the trunk down", server)
    scenario = site.tmp / "expect_503.xml"
    scenario.write_text((SCENARIOS / "uac_busy.xml").read_text().replace('"486"', '"503"'))
    result = run_sipp(str(scenario), site.target, site.tmp / "uac", service="013912345678",
                      auth=("1001", "demo1001"), keys={"caller": "1001", "rtp_port": "4000"}, timeout=15)
    assert result.successful == 1, result.output
    server.stop()
    [cdr] = asyncio.run(cdr_rows(site.tmp / "data" / "callcenter.db"))
    assert (cdr["sip_status"], cdr["disposition"]) == (503, "FAILED")
