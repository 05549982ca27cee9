"""The caller's language follows the call (issue #8), with real SIP (SIPp) and RFC 4733 keys: a
caller who chooses English in the IVR of a Chinese site is then queued, and hears the queue's
callback offer and, after pressing 1, the booking's confirmation in English; a caller who dials
the same queue directly hears them in the queue's Chinese. One who chooses English and is sent
to a mailbox hears the English "leave a message" and "saved, goodbye".

What the caller heard is checked against the catalogue: the G.711 frames the engine sends for
the English prompt arrive in order, those of the Chinese one never do."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from acd.ivr_store import FlowStore
from acd.prompt_catalogue import SOUNDS, prompt_audio
from bench.server import ServerProcess
from callcenter.app import schemas
from callcenter.database import apply_all, open_database
from mediacore.prompts import PromptCache
from tests.peers.test_queue_callback import (
    HERE,
    Media,
    RtpPeer,
    encoded,
    find,
    start_sipp,
    wait_for,
)

pytestmark = pytest.mark.peers

#: A Chinese flow whose first node asks for the language, then hands the caller on.
QUEUE_FLOW = {
    "name": "lang-queue", "start": "language", "language": "zh-CN",
    "nodes": {
        "language": {"type": "language", "prompts": ["ivr/choose-language"], "options": {"1": "zh-CN", "2": "en"},
                     "timeout": 5, "retries": 2, "next": "queue"},
        "queue": {"type": "queue", "queue": "8400"},
    },
}
MAILBOX_FLOW = {
    "name": "lang-mailbox", "start": "language", "language": "zh-CN",
    "nodes": {
        "language": {"type": "language", "prompts": ["ivr/choose-language"], "options": {"1": "zh-CN", "2": "en"},
                     "timeout": 5, "retries": 2, "next": "mailbox"},
        "mailbox": {"type": "voicemail", "mailbox": "1003"},
    },
}

CONFIG = "\n".join([
    "demo_crm = false",
    "[voicemail]", 'language = "zh-CN"',
    "[dialplan]",
    "[[dialplan.rules]]", 'match = "5400"', 'destination = "ivr:lang-queue"',
    "[[dialplan.rules]]", 'match = "5401"', 'destination = "ivr:lang-mailbox"',
    # Nobody ever logs in: the caller waits, hears the callback offer, presses 1.
    "[[queues]]", 'number = "8400"', 'members = ["1001"]', "joinempty = true", "answer = true",
    'callback_key = "1"', 'language = "zh-CN"', ""])

KEY_HASH = 11   # RFC 4733 §3.2: event 11 is '#'


async def prepare(db: Path) -> None:
    conn = await open_database(db)
    try:
        await apply_all(conn, schemas())
        for flow in (QUEUE_FLOW, MAILBOX_FLOW):
            await FlowStore(conn).save(flow, by="test")
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("language")
    (root / "data").mkdir()
    asyncio.run(prepare(root / "data" / "callcenter.db"))
    config = root / "language.toml"
    config.write_text(CONFIG)
    server = ServerProcess(root / "data", extra_args=["--config", str(config)])
    server.start()
    try:
        yield server
    finally:
        server.stop()



def frames(names: list[str], language: str) -> list[bytes]:
    return encoded(prompt_audio(PromptCache(), names, language, (SOUNDS,)))


def heard(peer: RtpPeer, names: list[str], language: str) -> int:
    """Where the caller started hearing `names` in `language`; -1 if they never did."""
    return find(peer.payloads(), frames(names, language))


def call(server: ServerProcess, procs: list, workdir: Path, number: str, caller: str,  # type: ignore[type-arg]
         peer: RtpPeer):  # type: ignore[no-untyped-def]
    """`caller` dials `number` and stays on the line until the server hangs up."""
    return start_sipp(procs, workdir, str(HERE / "queue_caller_wait_bye.xml"), f"127.0.0.1:{server.sip_port}",
                      service=number, auth=(caller, f"demo{caller}"), timeout=40,
                      keys={"caller": caller, "rtp_port": str(peer.port)})


def ended(proc) -> None:  # type: ignore[no-untyped-def]
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out.decode(errors="replace")[-3000:]


def choose_english(server: ServerProcess, caller: RtpPeer) -> None:
    """Wait for the IVR's question, then key 2 (English)."""
    wait_for(lambda: heard(caller, ["ivr/choose-language"], "zh-CN") >= 0, "the language question", server)
    caller.press(2)


def test_a_caller_who_chose_english_in_the_ivr_hears_the_queue_in_english(
        server: ServerProcess, tmp_path: Path, procs: list) -> None:  # type: ignore[type-arg]
    caller = RtpPeer()
    media = Media(caller)
    try:
        proc = call(server, procs, tmp_path / "caller", "5400", "1005", caller)
        choose_english(server, caller)
        offer = ["queue/press-callback"]
        wait_for(lambda: heard(caller, offer, "en") >= 0, "the English callback offer", server)
        caller.press(1)
        ended(proc)   # "we will call you back", then the server hangs up
    finally:
        media.close()
    assert heard(caller, offer, "zh-CN") < 0, "the Chinese offer was played too"
    assert heard(caller, ["queue/callback-booked"], "en") > heard(caller, offer, "en")
    assert heard(caller, ["queue/callback-booked"], "zh-CN") < 0


def test_a_caller_who_dials_the_queue_hears_the_queues_own_language(
        server: ServerProcess, tmp_path: Path, procs: list) -> None:  # type: ignore[type-arg]
    caller = RtpPeer()
    media = Media(caller)
    try:
        proc = call(server, procs, tmp_path / "caller", "8400", "1006", caller)
        offer = ["queue/press-callback"]
        wait_for(lambda: heard(caller, offer, "zh-CN") >= 0, "the Chinese callback offer", server)
        caller.press(1)
        ended(proc)
    finally:
        media.close()
    assert heard(caller, ["queue/callback-booked"], "zh-CN") >= 0
    assert heard(caller, offer, "en") < 0 and heard(caller, ["queue/callback-booked"], "en") < 0


def test_a_caller_who_chose_english_leaves_a_message_in_english(
        server: ServerProcess, tmp_path: Path, procs: list) -> None:  # type: ignore[type-arg]
    caller = RtpPeer()
    media = Media(caller)
    try:
        proc = call(server, procs, tmp_path / "caller", "5401", "1007", caller)
        choose_english(server, caller)
        greeting = ["vm/leave-message"]
        wait_for(lambda: heard(caller, greeting, "en") >= 0, "the English greeting", server)
        # '#' skips the rest of the greeting to the beep; 1.5 s of voice, then '#': saved,
        # goodbye, hung up.
        caller.press(KEY_HASH)
        caller.talk = b"\x30\x40" * 80
        time.sleep(1.5)
        caller.talk = None
        caller.press(KEY_HASH)
        ended(proc)
    finally:
        media.close()
    assert heard(caller, greeting, "zh-CN") < 0
    assert heard(caller, ["vm/saved", "vm/goodbye"], "en") > heard(caller, greeting, "en")
