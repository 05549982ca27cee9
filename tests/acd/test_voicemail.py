"""Voicemail without a call: the store on a real SQLite file, the phone menu as a state machine,
and the dialplan's `voicemail:` / `voicemailmain` destinations and *97 / *98."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import numpy as np
import pytest
import soundfile

from acd.dialplan import Destination, Dialplan, DialplanError, Kind
from acd.directory import Extension, ExtensionDirectory
from acd.prompt_catalogue import texts
from acd.schema import MIGRATIONS
from acd.voicemail import (
    MailboxSettings,
    Message,
    VoicemailConfig,
    VoicemailError,
    VoicemailStore,
    keep_message,
    play_order,
    repair_messages,
)
from acd.voicemail_calls import Stage, VoicemailCalls, load_message
from acd.voicemail_menu import (
    MAX_TRIES,
    DeleteMessage,
    Hangup,
    LoadMessages,
    MailboxMenu,
    MarkHeard,
    PlayMessage,
    Say,
    StartTimer,
    Step,
)
from callcenter.database import apply_migrations, open_database
from mediacore.engine import Endpoint
from mediacore.recording import RecordingFile, RecordingInfo, RepairAction
from tests.acd.conftest import EVENT_PT

NOW = dt.datetime(2026, 11, 23, 10, 0, tzinfo=dt.UTC)


async def open_store(tmp_path: Path, config: VoicemailConfig | None = None):
    conn = await open_database(tmp_path / "callcenter.db")
    await apply_migrations(conn, "acd", MIGRATIONS)
    store = VoicemailStore(conn, tmp_path / "voicemail", config)
    await store.load()
    return conn, store


def record(store: VoicemailStore, mailbox: str, seconds: float, call_id: str = "c1") -> RecordingInfo:
    """A message as the engine writes it: stereo, the caller left, silence right."""
    path = store.new_message_path(mailbox, call_id, NOW.timestamp())
    file = RecordingFile.create(path)
    t = np.arange(int(8000 * seconds)) / 8000
    file.write(np.round(6000 * np.sin(2 * np.pi * 600 * t)).astype(np.int16), None)
    return file.close()


# ------------------------------------------------------------------ the store


async def test_a_message_is_indexed_with_the_engines_checksum_and_listed_newest_first(tmp_path: Path) -> None:
    conn, store = await open_store(tmp_path)
    try:
        first = await store.add("1001", caller="13800138000", caller_name="王芳", call_id="c1",
                                received_at=100.0, recording=record(store, "1001", 2.0, "c1"))
        second = await store.add("1001", caller="1002", caller_name="前台", call_id="c2",
                                 received_at=200.0, recording=record(store, "1001", 1.5, "c2"))
        await store.add("1003", caller="1002", caller_name="", call_id="c3", received_at=300.0,
                        recording=record(store, "1003", 1.2, "c3"))
        listed = await store.messages("1001")
        assert [m.id for m in listed] == [second.id, first.id]
        assert listed[1].caller_name == "王芳" and listed[1].duration == pytest.approx(2.0, abs=0.05)
        assert len(await store.messages()) == 3
        path = store.audio_path(listed[1])
        assert path.parent == (tmp_path / "voicemail" / "1001").resolve()
        assert listed[1].size_bytes == path.stat().st_size and len(listed[1].sha256) == 64
        assert await store.counts("1001") == (2, 0)
    finally:
        await conn.close()


async def test_heard_and_soft_deleted_messages_survive_a_restart(tmp_path: Path) -> None:
    conn, store = await open_store(tmp_path)
    try:
        a = await store.add("1001", caller="1002", caller_name="", call_id="a", received_at=1.0,
                            recording=record(store, "1001", 1.2, "a"))
        b = await store.add("1001", caller="1003", caller_name="", call_id="b", received_at=2.0,
                            recording=record(store, "1001", 1.2, "b"))
        assert await store.mark_heard(a.id)
        assert await store.delete(b.id, by="agent1")
        assert not await store.delete(b.id, by="agent1")          # once only
        assert not await store.mark_heard(b.id)                   # a deleted message stays deleted
    finally:
        await conn.close()
    conn, store = await open_store(tmp_path)
    try:
        assert await store.counts("1001") == (0, 1)
        assert [m.id for m in await store.messages("1001")] == [a.id]
        kept = await store.get(b.id)
        assert kept is not None and kept.deleted and kept.deleted_by == "agent1"
        assert store.audio_path(kept).exists()                     # soft delete: the file stays
        assert [m.id for m in await store.messages("1001", include_deleted=True)] == [b.id, a.id]
    finally:
        await conn.close()


async def test_mailbox_settings_pin_and_fallback_default(tmp_path: Path) -> None:
    conn, store = await open_store(tmp_path, VoicemailConfig(fallback=True))
    try:
        assert store.fallback("1001") and not store.pin_matches("1001", "")    # no PIN: never opens by PIN
        await store.save_settings(MailboxSettings("1001", pin="2468", fallback=False))
        with pytest.raises(VoicemailError):
            store.save_settings(MailboxSettings("1001", pin="12"))
        with pytest.raises(VoicemailError):
            store.save_settings(MailboxSettings("10a1"))
    finally:
        await conn.close()
    conn, store = await open_store(tmp_path)
    try:
        assert not store.fallback("1001") and not store.fallback("1002")      # default off; 1001 chose off
        assert store.pin_matches("1001", "2468") and not store.pin_matches("1001", "2469")
    finally:
        await conn.close()
    with pytest.raises(VoicemailError):
        VoicemailConfig(max_seconds=2).check()


async def test_paths_never_leave_the_mailbox_folder(tmp_path: Path) -> None:
    conn, store = await open_store(tmp_path)
    try:
        message = await store.add("1001", caller="1002", caller_name="", call_id="x", received_at=1.0,
                                  recording=record(store, "1001", 1.2, "x"))
        await conn.execute("UPDATE voicemail_messages SET path = '../../callcenter.db' WHERE id = ?", (message.id,))
        tampered = await store.get(message.id)
        assert tampered is not None
        with pytest.raises(VoicemailError):
            store.audio_path(tampered)
        elsewhere = record(store, "1002", 1.2, "y")                 # 1002's file offered as 1001's
        with pytest.raises(VoicemailError):
            await store.add("1001", caller="1", caller_name="", call_id="y", received_at=1.0, recording=elsewhere)
        with pytest.raises(VoicemailError):
            store.folder("../1001")
    finally:
        await conn.close()


def test_short_recordings_are_no_message_and_a_crash_leaves_a_playable_file(tmp_path: Path) -> None:
    assert not keep_message(0.6) and keep_message(1.0)
    store = VoicemailStore.__new__(VoicemailStore)     # only the file layout is used here
    store.root, store._files = tmp_path, 0
    path = store.new_message_path("1001", "crash", NOW.timestamp())
    file = RecordingFile.create(path)
    t = np.arange(16000) / 8000
    file.write(np.round(6000 * np.sin(2 * np.pi * 600 * t)).astype(np.int16), None)
    file.flush()
    with open(path, "r+b") as raw:          # a kill between the audio and the header rewrite
        raw.seek(40)
        raw.write((0).to_bytes(4, "little"))
    (path.parent / "greeting.wav").write_bytes(b"not engine audio")
    reports = repair_messages(tmp_path)
    assert [r.path for r in reports] == [path]
    assert reports[0].action is not RepairAction.INTACT
    pcm = load_message(path)
    assert len(pcm) == 16000 and not pcm.flags.writeable
    data, rate = soundfile.read(path, always_2d=True)
    assert rate == 8000 and data.shape == (16000, 2)


# ------------------------------------------------------------------ the phone menu


def message(id_: int, received_at: float, heard: bool = False) -> Message:
    return Message(id_, "1001", "1002", "", f"c{id_}", received_at, 2.0, f"1001/m{id_}.wav", 100, "0" * 64,
                   heard, False)


def test_new_messages_play_first_each_oldest_first() -> None:
    box = [message(1, 10, heard=True), message(2, 30), message(3, 20), message(4, 5, heard=True)]
    assert [m.id for m in play_order(box)] == [3, 2, 4, 1]


def test_own_mailbox_opens_without_pin_counts_plays_and_deletes() -> None:
    menu = MailboxMenu("1001", trusted=True, language="zh-CN", opens=lambda box, pin: False)
    assert menu.start() == [LoadMessages("1001")]
    box = [message(1, 10, heard=True), message(2, 20)]
    first = menu.messages_loaded(box)
    assert first[0] == PlayMessage(box[1], ("vm/you-have", "num/1", "vm/new-messages"))
    assert first[1] == MarkHeard(2)
    assert menu.prompt_done() == [Say(("vm/message-menu",))]
    assert isinstance(menu.prompt_done()[0], StartTimer)            # the menu played: a key is awaited
    assert menu.digit("1") == [PlayMessage(menu.messages[0], ())]   # replay: heard already, not marked again
    deleted = menu.digit("7")
    assert deleted == [DeleteMessage(2), PlayMessage(box[0], ("vm/deleted",))]
    assert menu.digit("2") == [Say(("vm/no-more", "vm/goodbye"))]
    assert menu.prompt_done() == [Hangup("voicemail_done")]


def test_an_empty_mailbox_says_so_and_hash_leaves_at_once() -> None:
    menu = MailboxMenu("1001", trusted=True, language="en", opens=lambda box, pin: False)
    menu.start()
    assert menu.messages_loaded([]) == [Say(("vm/no-messages", "vm/goodbye"))]
    menu = MailboxMenu("1001", trusted=True, language="en", opens=lambda box, pin: False)
    menu.start()
    menu.messages_loaded([message(1, 1, heard=True)])
    assert menu.digit("#") == [Say(("vm/goodbye",))] and menu.step is Step.GOODBYE


def test_any_mailbox_asks_number_and_pin_and_never_tells_which_was_wrong() -> None:
    pins = {"1001": "2468"}
    menu = MailboxMenu("", trusted=True, language="zh-CN",
                       opens=lambda box, pin: pins.get(box) == pin)
    assert menu.start() == [Say(("vm/enter-mailbox",))]
    for key in "1009#":
        said = menu.digit(key)
    assert said == [Say(("vm/enter-pin",))]
    for key in "2468#":                                             # the right PIN, a mailbox that is not
        said = menu.digit(key)
    assert said == [Say(("vm/wrong-pin", "vm/enter-mailbox"))]
    for key in "1001#2468#":
        said = menu.digit(key)
    assert said == [LoadMessages("1001")]


def test_three_wrong_pins_or_silences_end_the_call() -> None:
    menu = MailboxMenu("1001", trusted=False, language="zh-CN", opens=lambda box, pin: False)
    assert menu.start() == [Say(("vm/enter-pin",))]
    for _ in range(MAX_TRIES - 1):
        assert menu.digit("0") == [] and menu.digit("#") == [Say(("vm/wrong-pin", "vm/enter-pin"))]
    assert menu.digit("#") == [Say(("vm/wrong-pin", "vm/goodbye"))]
    silent = MailboxMenu("1001", trusted=False, language="zh-CN", opens=lambda box, pin: False)
    silent.start()
    timer = silent.prompt_done()[0]
    assert isinstance(timer, StartTimer)
    assert silent.timeout(timer.token - 1) == []                   # a stale timer is no news
    assert silent.timeout(timer.token) == [Say(("ivr/no-input", "vm/enter-pin"))]


# ------------------------------------------------------------------ the dialplan


def test_voicemail_destinations_parse_and_print() -> None:
    assert Destination.parse("voicemail:1001") == Destination(Kind.VOICEMAIL, "1001")
    assert Destination.parse("voicemailmain") == Destination(Kind.VOICEMAIL_MAIN)
    assert str(Destination.parse("voicemailmain")) == "voicemailmain"
    assert str(Destination.parse("voicemailmain:1001")) == "voicemailmain:1001"
    assert Destination.parse("voicemail:${EXTEN:1}").expand("81001") == Destination(Kind.VOICEMAIL, "1001")
    for bad in ("voicemail", "voicemail:", "voicemail:12ab", "voicemail:../x"):
        with pytest.raises(DialplanError):
            Destination.parse(bad)


def test_star_97_opens_the_callers_mailbox_and_star_98_asks() -> None:
    plan = Dialplan.from_config({"rules": [{"match": "_8XXXX", "destination": "voicemail:${EXTEN:1}"}]})

    def default(number: str) -> Destination:
        return Destination(Kind.EXTENSION, number)

    assert plan.resolve("*97", "1001", NOW, default).destination == Destination(Kind.VOICEMAIL_MAIN, "1001")
    assert plan.resolve("*98", "1001", NOW, default).destination == Destination(Kind.VOICEMAIL_MAIN)
    assert plan.resolve("81002", "1001", NOW, default).destination == Destination(Kind.VOICEMAIL, "1002")


# ------------------------------------------------------------------ on a real media engine


class LiveCall:
    """What the voicemail uses of a call (acd.calls.Call): its id, the caller's endpoint and
    number, and hanging up, which here ends the call at once as the server's CallEnded would."""

    def __init__(self, calls: VoicemailCalls, endpoint: Endpoint, caller: str) -> None:
        self.calls = calls
        self.id = f"call-{endpoint.id}"
        self.endpoint_a = endpoint
        self.caller = caller
        self.caller_name = ""
        self.from_trunk = None
        self.ended: list[str] = []

    def hangup(self, reason: str, *, side: str) -> None:
        self.ended.append(reason)
        self.calls.ended(self.id)


@pytest.fixture
def sounds(tmp_path: Path) -> Path:
    """The voicemail's prompts as short tones (0.1 s, none near the messages' 600 Hz), so calls
    run fast; prompts not written here are skipped as missing."""
    root = tmp_path / "sounds"
    names = [n for n in texts("zh-CN") if n.startswith("vm/")] + ["num/1", "ivr/no-input"]
    for index, name in enumerate(names):
        path = root / "zh-CN" / f"{name}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        t = np.arange(800) / 8000
        soundfile.write(path, (8000 * np.sin(2 * np.pi * (300 + 13 * index) * t)).astype(np.int16), 8000)
    return root


async def live_voicemail(tmp_path: Path, engine, sounds, config: VoicemailConfig | None = None):
    conn, store = await open_store(tmp_path, config)
    directory = ExtensionDirectory(conn)
    for number, name in (("1001", "分机 1001"), ("1002", "前台")):
        await directory.upsert(Extension(number, name, f"demo{number}"))
    changed: list[str] = []
    store.on_change = changed.append
    calls = VoicemailCalls(engine, store, directory, sound_dirs=(sounds,))
    engine.set_event_handler(calls.on_media_event)
    return conn, store, calls, changed


def answered(engine, calls: VoicemailCalls, caller, number: str) -> LiveCall:
    endpoint = engine.create_endpoint("PCMU", 0, telephone_event_pt=EVENT_PT)
    engine.set_remote(endpoint, "127.0.0.1", caller.port)
    return LiveCall(calls, endpoint, number)


async def until(predicate, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


async def test_a_hang_up_ends_the_message_and_keeps_it(tmp_path: Path, engine, sounds, make_caller) -> None:
    conn, store, calls, changed = await live_voicemail(tmp_path, engine, sounds)
    try:
        caller = make_caller()
        call = answered(engine, calls, caller, "1002")
        calls.leave(call, "1001")           # type: ignore[arg-type]
        run = calls._leaving[call.id]
        await until(lambda: run.stage is Stage.RECORDING)
        await caller.speak(call.endpoint_a.local_port, 1.6, frequency=600.0)
        calls.ended(call.id)                 # the caller hung up
        await calls.drain()
        [message] = await store.messages("1001")
        assert (message.caller, message.caller_name) == ("1002", "前台")
        assert 1.2 <= message.duration <= 2.5 and changed == ["1001"]
        assert call.id not in calls._leaving and call.ended == []       # nothing played to a gone caller
    finally:
        engine.destroy(call.endpoint_a)
        await conn.close()


async def test_a_hang_up_at_the_beep_leaves_no_message(tmp_path: Path, engine, sounds, make_caller) -> None:
    conn, store, calls, changed = await live_voicemail(tmp_path, engine, sounds)
    try:
        caller = make_caller()
        call = answered(engine, calls, caller, "1002")
        calls.leave(call, "1001")           # type: ignore[arg-type]
        await until(lambda: calls._leaving[call.id].stage is Stage.RECORDING)
        await caller.speak(call.endpoint_a.local_port, 0.3)
        calls.ended(call.id)
        await calls.drain()
        assert await store.messages("1001", include_deleted=True) == [] and changed == []
        assert not any((tmp_path / "voicemail" / "1001").glob("msg-*.wav"))
    finally:
        engine.destroy(call.endpoint_a)
        await conn.close()


async def test_the_mailboxs_own_greeting_plays_and_hash_ends_the_message(tmp_path: Path, engine, sounds,
                                                                          make_caller) -> None:
    conn, store, calls, _ = await live_voicemail(tmp_path, engine, sounds)
    try:
        greeting = store.folder("1001") / "greeting.wav"
        greeting.parent.mkdir(parents=True)
        t = np.arange(4000) / 8000
        soundfile.write(greeting, (8000 * np.sin(2 * np.pi * 900 * t)).astype(np.int16), 8000)
        caller = make_caller()
        call = answered(engine, calls, caller, "1002")
        calls.leave(call, "1001")           # type: ignore[arg-type]
        await until(lambda: calls._leaving[call.id].stage is Stage.RECORDING)
        heard = caller.heard()
        assert abs(dominant_frequency(heard[:4000]) - 900) < 20          # the uploaded greeting
        await caller.speak(call.endpoint_a.local_port, 1.5)
        caller.press("#", call.endpoint_a.local_port)
        await until(lambda: call.ended == ["voicemail_saved"])           # "saved, goodbye", then hung up
        assert len(await store.messages("1001")) == 1
    finally:
        engine.destroy(call.endpoint_a)
        await conn.close()


async def test_any_mailbox_by_number_and_pin_plays_its_message(tmp_path: Path, engine, sounds,
                                                                make_caller) -> None:
    conn, store, calls, changed = await live_voicemail(tmp_path, engine, sounds)
    try:
        await store.save_settings(MailboxSettings("1001", pin="2468"))
        await store.add("1001", caller="1002", caller_name="", call_id="old", received_at=1.0,
                        recording=record(store, "1001", 1.2, "old"))
        caller = make_caller()
        call = answered(engine, calls, caller, "1002")
        calls.listen(call, "")              # type: ignore[arg-type]
        menu = calls._listening[call.id].menu
        for key in "1001#2468#":
            caller.press(key, call.endpoint_a.local_port)
            await asyncio.sleep(0.03)
        await until(lambda: menu.step is Step.MESSAGES and menu._playing == "menu")
        assert abs(dominant_frequency(caller.heard()) - 600) < 20          # the message's tone, loudest
        caller.press("#", call.endpoint_a.local_port)
        await until(lambda: call.ended == ["voicemail_done"])
        assert await store.counts("1001") == (0, 1) and changed == ["1001", "1001"]   # left, then heard
    finally:
        engine.destroy(call.endpoint_a)
        await conn.close()


def dominant_frequency(samples: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(float) * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / 8000)[int(np.argmax(spectrum))])
