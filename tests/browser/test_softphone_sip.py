"""The browser agent through the real server with a real SIP caller (issue #7).

The server is the real one (`callcenter.app.Application`, as `callcenter demo` runs it: SIP,
B2BUA, media engine, WebRTC worker processes, CRM, web UI) in a thread of this process, on free
ports of 127.0.0.1. A customer calls from their mobile through the provider's trunk: a baresip
phone that the server knows as the trunk by its address and port, sending a 1 kHz tone and
recording what it hears, dials the DID that leads to extension 1001, where agent1's browser
(Chromium, its fake microphone a 1.4 kHz tone) is registered. The CRM knows the customer's
number, so the ring shows the member's name beside it. The agent answers in the page; each side
hears the other's tone; the page's keypad reaches the phone as RFC 4733 events; Hold in the page
gives the phone music on hold until Resume; Hang up in the page ends the phone's call and
leaves a CDR.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from playwright.sync_api import Page, expect, sync_playwright

from bench.baresip import Baresip, BaresipControl
from bench.sipp import free_port
from callcenter.app import Application
from callcenter.cli import build_parser, make_config
from crm.access import SYSTEM
from tests.browser.test_pages import ARTIFACTS
from tests.browser.test_softphone import HEARD, launch
from tests.browser.threaded_site import ThreadedSite
from tests.peers.test_baresip_transfer import runs, who_speaks
from tests.peers.test_dialplan import rows

pytestmark = [pytest.mark.timeout(120), pytest.mark.peers]

PASSWORD = "agent-pass-1"
AGENT_EXTENSION = "1001"           # agent1's extension in the demo (a directory extension)
DID = "4008001234"                 # the number customers dial; the trunk maps it to the agent
CUSTOMER = "13812345678"           # the customer's mobile, a member's number in the CRM
CALLER_HZ = 1000.0                 # the customer's tone
BROWSER_HZ = 1400.0                # the agent's fake microphone: far from the hold music's notes
DESK_PHONE = "1002"                # a colleague's desk phone
DESK_HZ = 2000.0


class CallCenter(ThreadedSite):
    """The whole server in a thread of its own, with agent1 and one member in its CRM."""

    def __init__(self, tmp: Path, config: str) -> None:
        super().__init__(tmp / "data")
        self.config_path = tmp / "callcenter.toml"
        # The CRM's demo data (hundreds of members) is of no use here, and seeding it would
        # compete for the CPU with the call.
        self.config_path.write_text("demo_crm = false\n" + config)
        self.app: Application | None = None
        self.sip_port = 0

    async def _serve(self) -> None:
        args = build_parser().parse_args(["demo", "--config", str(self.config_path), "--data", str(self.data),
                                          "--bind", "127.0.0.1", "--sip-port", "0", "--sip-tls-port", "0",
                                          "--http-port", "0"])
        app = self.app = Application(make_config(args))
        try:
            await app.start()
            assert app.calls is not None and app.calls.browser_agents is not None and app.crm is not None
            assert app.calls.browser_agents.caller_info is not None   # wired by the composition root
            await app.crm.org.create_user(SYSTEM, "agent1", "林晓", PASSWORD, roles=["agent"],
                                          extension=AGENT_EXTENSION)
            await app.crm.members.create(SYSTEM, "王芳", phones=[CUSTOMER], level="gold")
            self.port, self.sip_port = app.ports["http"], app.ports["sip_udp"]
            self.ready.set()
            assert self._stop is not None
            await self._stop.wait()
        finally:
            await app.stop()

    def cdrs(self, caller: str) -> list[dict]:
        return asyncio.run(rows(self.data / "callcenter.db", "SELECT * FROM cdr WHERE caller = ?", (caller,)))


def tone(path: Path, frequency: float, rate: int, seconds: float) -> Path:
    t = np.arange(int(rate * seconds)) / rate
    sf.write(path, (0.3 * np.sin(2 * np.pi * frequency * t)).astype(np.float32), rate, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def provider_port() -> int:
    """Where the customer's phone (the provider's side of the trunk) sends from."""
    return free_port("127.0.0.1")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, provider_port: int) -> Iterator[CallCenter]:
    trunk = (f'[[trunks]]\nname = "carrier"\nhost = "127.0.0.1"\nport = {provider_port}\nqualify = 0\n'
             f'ip_auth = ["127.0.0.1:{provider_port}"]\n[trunks.dids]\n"{DID}" = "{AGENT_EXTENSION}"\n')
    served = CallCenter(tmp_path_factory.mktemp("site"), trunk)
    served.start()
    try:
        yield served
    finally:
        served.stop()


@contextmanager
def baresip_phone(directory: Path, account: str, frequency: float, **options: int) -> Iterator[tuple[Baresip, BaresipControl]]:
    """A baresip phone sending a steady tone as its microphone, dumping what it hears to WAV,
    driven through ctrl_tcp."""
    ctrl_port = free_port("127.0.0.1")
    phone = Baresip(directory, account, source=tone(directory.parent / f"{directory.name}.wav", frequency, 8000, 60),
                    ctrl_port=ctrl_port, **options)
    phone.start(quit_after=100)
    ctrl = None
    try:
        ctrl = BaresipControl(ctrl_port)
        yield phone, ctrl
    finally:
        if ctrl is not None:
            ctrl.close()
        phone.stop()
        phone.wait(5)


@pytest.fixture
def customer(tmp_path: Path, site: CallCenter, provider_port: int) -> Iterator[tuple[Baresip, BaresipControl]]:
    """The customer's phone: calls from CUSTOMER without registering, as the provider would
    deliver it."""
    with baresip_phone(tmp_path / "customer", f"<sip:{CUSTOMER}@127.0.0.1:{site.sip_port};transport=udp>;regint=0",
                       CALLER_HZ, sip_port=provider_port) as phone:
        yield phone


@pytest.fixture
def desk_phone(tmp_path: Path, site: CallCenter) -> Iterator[tuple[Baresip, BaresipControl]]:
    """A colleague's desk phone, registered as extension DESK_PHONE."""
    account = f"<sip:{DESK_PHONE}@127.0.0.1:{site.sip_port};transport=udp>;auth_pass=demo{DESK_PHONE};answermode=auto"
    with baresip_phone(tmp_path / "desk", account, DESK_HZ) as (phone, ctrl):
        deadline = time.monotonic() + 10
        while "OK" not in ctrl.command("reginfo")["data"]:
            assert time.monotonic() < deadline, f"{DESK_PHONE} did not register"
            time.sleep(0.1)
        yield phone, ctrl


def sign_in_to_softphone(page: Page, site: CallCenter) -> None:
    page.goto(f"{site.http_url}/login")
    page.get_by_label("用户名").fill("agent1")
    page.get_by_label("密码").fill(PASSWORD)
    page.get_by_role("button", name="登录").click()
    page.wait_for_url(f"{site.http_url}/")
    page.goto(f"{site.http_url}/softphone")
    expect(page.locator("#softphone")).to_have_attribute("data-registered", "true", timeout=15_000)
    expect(page.locator("#sp-extension")).to_have_text(f"分机 {AGENT_EXTENSION}")


def wait_for(page: Page, condition, what: str, timeout_ms: int = 10_000) -> None:  # type: ignore[no-untyped-def]
    for _ in range(timeout_ms // 100):
        if condition():
            return
        page.wait_for_timeout(100)
    raise AssertionError(f"no {what}")


def test_a_customer_calls_through_the_trunk_and_the_agent_takes_the_call_in_the_browser(
        site: CallCenter, customer: tuple[Baresip, BaresipControl], tmp_path: Path) -> None:
    phone, ctrl = customer
    with sync_playwright() as p:
        browser = launch(p, "--use-fake-ui-for-media-stream",
                         f"--use-file-for-fake-audio-capture={tone(tmp_path / 'agent.wav', BROWSER_HZ, 48000, 60)}")
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 900})
            sign_in_to_softphone(page, site)
            page.locator("#sp-processing").uncheck()   # a steady tone would be "noise" to suppress

            # The customer dials the company's number; the agent's page rings with their number
            # and, from the CRM, their name (a gold member: VIP).
            ctrl.command("dial", f"sip:{DID}@127.0.0.1:{site.sip_port}")
            expect(page.locator("#sp-incoming")).to_be_visible(timeout=10_000)
            expect(page.locator("#sp-incoming-number")).to_have_text(CUSTOMER)
            expect(page.locator("#sp-incoming-name")).to_have_text(re.compile(r"^王芳 · VIP"))
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "softphone-ringing-member.png"))

            page.locator("#sp-answer").click()
            ctrl.wait_event("CALL_ESTABLISHED", 15)
            expect(page.locator("#sp-status")).to_have_text("音频已接通", timeout=15_000)
            expect(page.locator("#sp-peer-name")).to_have_text(re.compile(r"^王芳 · VIP"))

            # The customer's tone in the page (WebAudio analyser on what the agent hears).
            heard: dict | None = None

            def hears_customer() -> bool:
                nonlocal heard
                heard = page.evaluate(HEARD)
                return bool(heard and heard["db"] > -60 and abs(heard["frequency"] - CALLER_HZ) < 15)

            wait_for(page, hears_customer, "customer's tone in the page", 15_000)

            # The keypad reaches the phone as RFC 4733 events.
            since = len(ctrl.events)
            page.locator(".sp-key[data-key='5']").click()
            dtmf = ctrl.wait_event("CALL_DTMF_START", 10, after=since)
            assert dtmf.get("param") == "5", dtmf

            # Talk, hold (the customer hears music on hold), resume (the agent again), hang up.
            page.wait_for_timeout(2000)
            page.locator("#sp-hold").click()
            expect(page.locator("#sp-hold")).to_have_text("恢复")
            page.wait_for_timeout(2500)
            page.locator("#sp-hold").click()
            expect(page.locator("#sp-hold")).to_have_text("保持")
            wait_for(page, hears_customer, "customer's tone after resuming")
            page.wait_for_timeout(2000)
            since = len(ctrl.events)
            page.get_by_role("button", name="挂断").click()
            expect(page.locator("#sp-status")).to_contain_text("通话结束")
            ctrl.wait_event("CALL_CLOSED", 10, after=since)
        finally:
            browser.close()

    # The CDR of the call: answered by the agent's extension, hung up on the agent's side.
    deadline = time.monotonic() + 10
    while not (cdrs := site.cdrs(CUSTOMER)) and time.monotonic() < deadline:
        time.sleep(0.1)
    [cdr] = cdrs
    assert cdr["disposition"] == "ANSWERED" and cdr["answered_by"] == AGENT_EXTENSION, cdr
    assert cdr["trunk"] == "carrier" and cdr["did"] == DID and cdr["hangup_side"] == "callee", cdr

    # What the customer heard: the agent's tone, then music while held, then the agent again.
    dump = phone.received_audio()
    assert dump is not None, "the customer's phone recorded nothing"
    audio, rate = sf.read(dump, dtype="float64")
    assert rate == 8000
    outline = runs(who_speaks(audio, {"agent": BROWSER_HZ}))
    # A blip under 0.6 s (a late packet on a busy machine) is left out of the outline, which
    # may then show the same party twice in a row: once is what counts.
    parties = [label for i, (label, _) in enumerate(outline) if i == 0 or outline[i - 1][0] != label]
    assert parties == ["agent", "music", "agent"], outline
    assert max(n for label, n in outline if label == "music") >= 8, outline   # most of the 2.5 s of hold


def test_a_colleagues_desk_phone_rings_the_agent_with_its_extension_and_cancels(
        site: CallCenter, desk_phone: tuple[Baresip, BaresipControl]) -> None:
    """An internal caller: the ring shows the extension and its name from the directory, the
    CRM is asked for nothing it could know (an extension is nobody's phone number), and the
    caller giving up stops the ring (CANCEL reaches the browser)."""
    _, ctrl = desk_phone
    with sync_playwright() as p:
        browser = launch(p, "--use-fake-ui-for-media-stream")
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 900})
            sign_in_to_softphone(page, site)
            ctrl.command("dial", f"sip:{AGENT_EXTENSION}@127.0.0.1:{site.sip_port}")
            expect(page.locator("#sp-incoming")).to_be_visible(timeout=10_000)
            expect(page.locator("#sp-incoming-number")).to_have_text(DESK_PHONE)
            expect(page.locator("#sp-incoming-name")).to_have_text(f"分机 {DESK_PHONE}")
            assert site.app is not None and site.app.calls is not None and site.app.calls.browser_agents is not None
            announcer = site.app.calls.browser_agents.caller_info
            assert announcer is not None
            asyncio.run_coroutine_threadsafe(announcer.drain(), site.loop).result(10)
            expect(page.locator("#sp-incoming-name")).to_have_text(f"分机 {DESK_PHONE}")

            since = len(ctrl.events)
            ctrl.command("hangup")
            ctrl.wait_event("CALL_CLOSED", 10, after=since)
            expect(page.locator("#sp-incoming")).to_be_hidden(timeout=10_000)
            expect(page.locator("#sp-status")).to_contain_text("通话结束")
        finally:
            browser.close()


def test_the_agent_transfers_the_customer_blind_to_a_colleagues_desk_phone(
        site: CallCenter, customer: tuple[Baresip, BaresipControl], desk_phone: tuple[Baresip, BaresipControl],
        tmp_path: Path) -> None:
    phone, ctrl = customer
    desk, desk_ctrl = desk_phone
    with sync_playwright() as p:
        browser = launch(p, "--use-fake-ui-for-media-stream",
                         f"--use-file-for-fake-audio-capture={tone(tmp_path / 'agent.wav', BROWSER_HZ, 48000, 60)}")
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 900})
            sign_in_to_softphone(page, site)
            page.locator("#sp-processing").uncheck()
            ctrl.command("dial", f"sip:{DID}@127.0.0.1:{site.sip_port}")
            expect(page.locator("#sp-incoming")).to_be_visible(timeout=10_000)
            page.locator("#sp-answer").click()
            ctrl.wait_event("CALL_ESTABLISHED", 15)
            expect(page.locator("#sp-status")).to_have_text("音频已接通", timeout=15_000)
            wait_for(page, lambda: bool((h := page.evaluate(HEARD)) and abs(h["frequency"] - CALLER_HZ) < 15
                                        and h["db"] > -60), "customer's tone in the page", 15_000)
            page.wait_for_timeout(1000)

            # Blind transfer to the desk phone: it rings and answers (auto-answer); only then does
            # the agent's call end, and the customer and the colleague talk.
            page.locator("#sp-transfer-number").fill(DESK_PHONE)
            page.locator("#sp-blind").click()
            desk_ctrl.wait_event("CALL_ESTABLISHED", 15)
            expect(page.locator("#sp-call")).to_be_hidden(timeout=10_000)
            expect(page.locator("#sp-status")).to_contain_text("通话结束")
        finally:
            browser.close()
    time.sleep(2.5)   # the customer and the colleague talk
    since = len(ctrl.events)
    ctrl.command("hangup")
    ctrl.wait_event("CALL_CLOSED", 10, after=since)
    desk_ctrl.wait_event("CALL_CLOSED", 10)

    # The colleague heard the customer; the customer heard the agent, then the colleague.
    desk_dump, customer_dump = desk.received_audio(), phone.received_audio()
    assert desk_dump is not None and customer_dump is not None
    heard_by_desk = runs(who_speaks(sf.read(desk_dump, dtype="float64")[0], {"customer": CALLER_HZ}))
    assert max((n for label, n in heard_by_desk if label == "customer"), default=0) >= 8, heard_by_desk
    heard_by_customer = runs(who_speaks(sf.read(customer_dump, dtype="float64")[0],
                                        {"agent": BROWSER_HZ, "colleague": DESK_HZ}))
    talkers = [label for label, _ in heard_by_customer if label != "music"]   # ringback in between
    assert talkers[0] == "agent" and talkers[-1] == "colleague", heard_by_customer
    # Two CDR segments: the customer with the agent, then with the colleague.
    deadline = time.monotonic() + 10
    while len(cdrs := site.cdrs(CUSTOMER)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    segments = [c for c in cdrs if c["call_id"] == cdrs[-1]["call_id"]]
    assert [(c["segment"], c["answered_by"]) for c in segments] == [(1, AGENT_EXTENSION), (2, DESK_PHONE)], segments
