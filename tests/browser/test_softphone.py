"""The softphone in Chromium: an agent signs in, opens the softphone, the WebSocket registers
their extension, and dialling the echo test 9196 sends the fake microphone's steady tone through
WebRTC, the server's aiortc bridge and the media engine's echo back into the page, where a
WebAudio analyser hears it. A browser refused the microphone says so plainly.

The server runs in this process (its own thread and event loop) with the real app, CRM database,
media engine and browser-agent registry, on free ports of 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile
from playwright.sync_api import Browser, Page, expect, sync_playwright

from acd.browser_ringing import SipRinging
from acd.webrtc_agents import WebRtcAgents
from callcenter.database import open_database
from mediacore.codecs import get_decoder
from mediacore.engine import MediaEngine
from tests.browser.helpers import CHROMIUM, FLAGS
from tests.browser.test_pages import ARTIFACTS
from tests.browser.threaded_site import ThreadedSite, media_healthy, softphone_crm
from tests.mediacore.test_webrtc_bridge import dominant_frequency
from tests.webui.test_softphone_ws import SipCaller
from webui.app import WebServices, create_app
from webui.sessions import SessionStore

pytestmark = pytest.mark.timeout(120)

TONE_HZ = 600
CALLER_HZ = 500
PASSWORD = "agent-pass-1"
MEDIA_FLAGS = ["--use-fake-device-for-media-stream", "--autoplay-policy=no-user-gesture-required"]


class Site(ThreadedSite):
    """The web app with browser agents, served from a thread of its own."""

    async def _serve(self) -> None:
        conn = await open_database(self.data / "callcenter.db")
        engine = MediaEngine("127.0.0.1", 39100, 39199)  # PCM ports only: no RTP socket opened
        try:
            crm = await softphone_crm(conn, PASSWORD)
            await engine.start()
            agents = self.agents = WebRtcAgents(engine)

            app = create_app(WebServices(health=media_healthy, metrics=lambda: "", crm=crm, sessions=SessionStore(conn),
                                         browser_agents=agents))
            await self.serve_app(app, before_exit=agents.close)
        finally:
            engine.close()
            await conn.close()


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    served = Site(tmp_path / "data")
    served.start()
    try:
        yield served
    finally:
        served.stop()


@pytest.fixture
def tone_file(tmp_path: Path) -> Path:
    """The fake microphone: a steady tone (ENVIRONMENT.md: the default fake device only beeps)."""
    rate = 48000
    t = np.arange(rate * 10) / rate
    path = tmp_path / "tone.wav"
    soundfile.write(path, (0.3 * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.float32), rate, subtype="PCM_16")
    return path


@pytest.fixture
def playwright_instance():
    with sync_playwright() as p:
        yield p


def launch(p, *extra: str) -> Browser:
    return p.chromium.launch(executable_path=CHROMIUM, args=[*FLAGS, *MEDIA_FLAGS, *extra])


def sign_in_to_softphone(page: Page, site: Site) -> None:
    page.goto(f"{site.http_url}/login")
    page.get_by_label("用户名").fill("agent1")
    page.get_by_label("密码").fill(PASSWORD)
    page.get_by_role("button", name="登录").click()
    page.wait_for_url(f"{site.http_url}/")
    page.goto(f"{site.http_url}/softphone")
    expect(page.locator("#softphone")).to_have_attribute("data-registered", "true", timeout=10_000)
    expect(page.locator("#sp-status")).to_have_text("就绪")
    expect(page.locator("#sp-extension")).to_have_text("分机 2001")


# Reads the analyser on what the agent hears: the strongest frequency above 100 Hz and its level.
HEARD = """() => {
  const a = window.softphoneRemote;
  if (!a) return null;
  const bins = new Float32Array(a.frequencyBinCount);
  a.getFloatFrequencyData(bins);
  const hz = a.context.sampleRate / a.fftSize;
  let best = Math.ceil(100 / hz);
  for (let i = best; i < bins.length; i++) if (bins[i] > bins[best]) best = i;
  return {frequency: best * hz, db: bins[best]};
}"""


def test_an_agent_dials_the_echo_test_and_hears_their_own_tone(site: Site, tone_file: Path, playwright_instance) -> None:
    browser = launch(playwright_instance, "--use-fake-ui-for-media-stream",
                     f"--use-file-for-fake-audio-capture={tone_file}")
    try:
        page = browser.new_page(viewport={"width": 1366, "height": 900})
        sign_in_to_softphone(page, site)
        page.locator("#sp-processing").uncheck()  # a steady tone would be "noise" to suppress
        for key in "9196":
            page.locator(f".sp-key[data-key='{key}']").click()
        expect(page.locator("#sp-number")).to_have_value("9196")
        page.get_by_role("button", name="呼叫", exact=True).click()
        expect(page.locator("#sp-call")).to_be_visible()
        expect(page.locator("#sp-call-state")).to_have_text("通话中")
        expect(page.locator("#sp-status")).to_have_text("音频已接通", timeout=15_000)

        heard = None
        for _ in range(100):  # until the echo has filled the analyser's window
            heard = page.evaluate(HEARD)
            if heard and heard["db"] > -60 and abs(heard["frequency"] - TONE_HZ) < 15:
                break
            page.wait_for_timeout(100)
        assert heard is not None and abs(heard["frequency"] - TONE_HZ) < 15, heard
        assert heard["db"] > -60, heard
        assert page.locator("#sp-mic-level").evaluate("m => m.value") > 0
        expect(page.locator("#sp-timer")).not_to_have_text("0:00", timeout=3000)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "softphone.png"))

        page.get_by_role("button", name="挂断").click()
        expect(page.locator("#sp-status")).to_contain_text("通话结束")
        expect(page.locator("#sp-call")).to_be_hidden()
    finally:
        browser.close()


def test_a_refused_microphone_is_explained_and_nothing_is_dialled(site: Site, playwright_instance) -> None:
    browser = launch(playwright_instance)  # no fake UI: the permission prompt is refused
    try:
        page = browser.new_context(permissions=[]).new_page()
        sign_in_to_softphone(page, site)
        page.locator("#sp-number").fill("9196")
        page.get_by_role("button", name="呼叫", exact=True).click()
        expect(page.get_by_role("alert")).to_contain_text("麦克风权限被拒绝")
        expect(page.locator("#sp-call")).to_be_hidden()
    finally:
        browser.close()


def test_a_sip_caller_rings_the_agent_who_answers_in_the_browser_hears_keys_and_hold(
        site: Site, tone_file: Path, playwright_instance) -> None:
    """The caller's side is what the B2BUA gives a browser agent (acd.browser_ringing.SipRinging):
    an engine RTP endpoint whose far end is a UDP socket sending a 500 Hz G.711 tone."""
    browser = launch(playwright_instance, "--use-fake-ui-for-media-stream",
                     f"--use-file-for-fake-audio-capture={tone_file}")
    caller: SipCaller | None = None
    try:
        page = browser.new_page(viewport={"width": 1366, "height": 900})
        sign_in_to_softphone(page, site)
        page.locator("#sp-processing").uncheck()

        async def ring() -> SipCaller:
            call = SipCaller(site.agents.engine, frequency=CALLER_HZ)
            assert SipRinging(site.agents).ring(call, "2001", "王女士")
            return call

        caller = asyncio.run_coroutine_threadsafe(ring(), site.loop).result(10)
        expect(page.locator("#sp-incoming")).to_be_visible()
        expect(page.locator("#sp-incoming-name")).to_have_text("王女士")
        expect(page.locator("#sp-incoming-number")).to_contain_text(caller.caller)
        page.locator("#sp-answer").click()
        expect(page.locator("#sp-status")).to_have_text("音频已接通", timeout=15_000)

        heard = None
        for _ in range(100):   # the caller's tone in the page's analyser
            heard = page.evaluate(HEARD)
            if heard and heard["db"] > -60 and abs(heard["frequency"] - CALLER_HZ) < 15:
                break
            page.wait_for_timeout(100)
        assert heard is not None and abs(heard["frequency"] - CALLER_HZ) < 15, heard
        decoder = get_decoder("PCMU")
        to_caller = np.array([], dtype=np.int16)
        for _ in range(100):   # the browser's fake microphone at the caller's socket
            packets = [p for p in caller.received[-25:] if p.payload_type == 0]
            to_caller = np.concatenate([decoder.decode(p.payload) for p in packets]) if packets else to_caller
            if len(packets) == 25 and abs(dominant_frequency(to_caller, 8000) - TONE_HZ) < 10:
                break
            page.wait_for_timeout(100)
        assert len(to_caller) and abs(dominant_frequency(to_caller, 8000) - TONE_HZ) < 10
        assert ("answered", "2001") in caller.events

        # The keypad during the call reaches the caller as RFC 4733 events.
        page.locator(".sp-key[data-key='5']").click()
        for _ in range(50):
            if any(p.payload_type == 101 for p in caller.received[-60:]):
                break
            page.wait_for_timeout(100)
        assert any(p.payload_type == 101 for p in caller.received[-60:])
        # Hold and resume reach the SIP side (which plays the caller music on hold meanwhile).
        page.locator("#sp-hold").click()
        expect(page.locator("#sp-hold")).to_have_text("恢复")
        page.locator("#sp-hold").click()
        expect(page.locator("#sp-hold")).to_have_text("保持")
        for _ in range(30):
            if ("hold", False) in caller.events:
                break
            page.wait_for_timeout(100)
        assert [e for e in caller.events if e[0] == "hold"] == [("hold", True), ("hold", False)]

        page.get_by_role("button", name="挂断").click()
        expect(page.locator("#sp-status")).to_contain_text("通话结束")
        for _ in range(50):
            if any(e[0] == "hangup" for e in caller.events):
                break
            page.wait_for_timeout(100)
        assert any(e[0] == "hangup" for e in caller.events), caller.events
    finally:
        if caller is not None:
            site.loop.call_soon_threadsafe(caller.close)
        browser.close()
