"""Voicemail: mailboxes and the messages callers leave in them.

Every extension has a mailbox of the same number. A mailbox's settings (its PIN, whether
unanswered calls fall back to it) are kept in memory for the call path and in SQLite as the
truth; a mailbox without a row has the site's defaults (`VoicemailConfig`).

A message is the WAV file the media engine recorded, `<data>/voicemail/<mailbox>/<file>.wav`,
and one row indexing it (caller, time, duration, size, SHA-256). The file is the engine's
stereo recording unchanged: the caller on the left channel, silence on the right. Keeping it
as written means the engine's crash-safe writer (header rewritten at every flush) is what
protects the message, and the SHA-256 the engine computed while closing the file is the
checksum of the very bytes stored — no second copy that a crash could leave half written.
The price is a silent channel: 16 KB a second instead of 8 (180 s ≈ 2.9 MB).

A deleted message keeps its row and file (soft delete: who deleted it and when is audited);
the listings and the phone menu no longer show it.
"""

from __future__ import annotations

import hmac
import io
import logging
import os
import re
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiosqlite
import soundfile

from mediacore.prompts import resample
from mediacore.recording import RecordingInfo, RepairReport, repair

log = logging.getLogger(__name__)

MIGRATIONS_VOICEMAIL = """
CREATE TABLE voicemail_boxes (
    mailbox     TEXT PRIMARY KEY,
    pin         TEXT NOT NULL DEFAULT '',
    fallback    INTEGER,
    updated_at  TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE TABLE voicemail_messages (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    mailbox      TEXT NOT NULL,
    caller       TEXT NOT NULL,
    caller_name  TEXT NOT NULL DEFAULT '',
    call_id      TEXT NOT NULL,
    received_at  REAL NOT NULL,
    duration     REAL NOT NULL,
    path         TEXT NOT NULL,
    size_bytes   INTEGER NOT NULL,
    sha256       TEXT NOT NULL,
    heard        INTEGER NOT NULL DEFAULT 0,
    deleted      INTEGER NOT NULL DEFAULT 0,
    heard_at     REAL,
    deleted_at   REAL,
    deleted_by   TEXT NOT NULL DEFAULT ''
);
CREATE INDEX voicemail_by_mailbox ON voicemail_messages (mailbox, deleted, received_at);
"""

#: Mailbox numbers are extension numbers: keypad digits, 2 to 10 of them (acd.directory).
MAILBOX_RE = re.compile(r"^[0-9]{2,10}$")
#: PINs are keyed on a phone: 4 to 12 digits (Asterisk's minimum password length is 4 by default).
PIN_RE = re.compile(r"^[0-9]{4,12}$")
#: Shorter messages are a caller hanging up at the beep (Asterisk's `minsecs` is 0-3 s).
MIN_MESSAGE_SECONDS = 1.0
#: Asterisk's default `maxsecs` is 180: long enough for a message, short enough to bound a file.
DEFAULT_MAX_SECONDS = 180.0
GREETING_FILE = "greeting.wav"
#: An uploaded greeting: long enough to say who you are, short enough not to bore the caller.
MAX_GREETING_SECONDS = 60.0
MAX_GREETING_BYTES = 10 * 1024 * 1024


class VoicemailError(ValueError):
    """A mailbox setting, message or path that cannot be used, with the reason."""


@dataclass
class VoicemailConfig:
    """`[voicemail]`: the site's defaults for every mailbox."""

    #: Whether a call an extension does not take (busy, no answer, do-not-disturb, no phone)
    #: goes to its mailbox; each mailbox may say otherwise. Off: such calls are refused (480/486).
    fallback: bool = False
    #: Longest message in seconds; `#` or hanging up ends it earlier.
    max_seconds: float = DEFAULT_MAX_SECONDS
    #: The language of the voicemail prompts ("zh-CN" or "en").
    language: str = "zh-CN"

    def check(self) -> None:
        """Raise VoicemailError for a value that cannot be used (read from a TOML file)."""
        if not isinstance(self.fallback, bool):
            raise VoicemailError("[voicemail] fallback must be true or false")
        if isinstance(self.max_seconds, bool) or not isinstance(self.max_seconds, (int, float)) \
                or not 5 <= self.max_seconds <= 3600:
            raise VoicemailError("[voicemail] max_seconds must be 5-3600 seconds")
        if self.language not in ("zh-CN", "en"):
            raise VoicemailError("[voicemail] language must be zh-CN or en")


@dataclass(frozen=True)
class MailboxSettings:
    mailbox: str
    #: Digits that open the mailbox from another phone (*98); "" = only from its own extension.
    pin: str = ""
    #: Unanswered calls go to voicemail: True/False, or None for the site's default.
    fallback: bool | None = None

    def check(self) -> None:
        check_mailbox(self.mailbox)
        if self.pin and not PIN_RE.match(self.pin):
            raise VoicemailError("a voicemail PIN is 4 to 12 digits")


@dataclass(frozen=True)
class Message:
    id: int
    mailbox: str
    caller: str
    caller_name: str
    call_id: str
    received_at: float
    duration: float
    #: The file, relative to the voicemail folder.
    path: str
    size_bytes: int
    sha256: str
    heard: bool
    deleted: bool
    deleted_by: str = ""


def check_mailbox(mailbox: str) -> str:
    if not isinstance(mailbox, str) or not MAILBOX_RE.match(mailbox):
        raise VoicemailError(f"a mailbox number is 2 to 10 digits, not {mailbox!r}")
    return mailbox


def repair_messages(root: Path) -> list[RepairReport]:
    """Fix the header of messages a crash left behind their audio (mediacore.recording.repair),
    before the engine records anything; greetings are uploads, not engine recordings, and are
    left alone. Blocking: run it in a thread at start-up."""
    if not root.is_dir():
        return []
    return [repair(p) for p in sorted(root.glob("*/msg-*.wav")) if p.is_file()]


def keep_message(duration_s: float) -> bool:
    """Is a recording long enough to be a message (and not a hang-up at the beep)?"""
    return duration_s >= MIN_MESSAGE_SECONDS


def play_order(messages: list[Message]) -> list[Message]:
    """The order the phone menu plays a mailbox in: new messages first, then the ones heard
    before, each oldest first (the order they were left, as Asterisk's VoiceMailMain does)."""
    live = [m for m in messages if not m.deleted]
    return sorted(live, key=lambda m: (m.heard, m.received_at, m.id))


_COLUMNS = ("id, mailbox, caller, caller_name, call_id, received_at, duration, path, size_bytes, sha256,"
            " heard, deleted, deleted_by")


def _message(row: Any) -> Message:
    return Message(int(row[0]), row[1], row[2], row[3], row[4], float(row[5]), float(row[6]), row[7], int(row[8]),
                   row[9], bool(row[10]), bool(row[11]), row[12])


class VoicemailStore:
    """The mailboxes' settings and messages: SQLite rows, WAV files under `root`."""

    def __init__(self, conn: aiosqlite.Connection, root: Path, config: VoicemailConfig | None = None) -> None:
        self._conn = conn
        self.root = root
        self.config = config or VoicemailConfig()
        self.config.check()
        self._boxes: dict[str, MailboxSettings] = {}
        self._files = 0
        #: Told the mailbox whose messages changed (left, heard, deleted), from a call or the
        #: web UI alike: message waiting indication listens here.
        self.on_change: Callable[[str], None] | None = None

    async def load(self) -> None:
        async with self._conn.execute("SELECT mailbox, pin, fallback FROM voicemail_boxes") as cur:
            rows = await cur.fetchall()
        self._boxes = {r[0]: MailboxSettings(r[0], r[1], None if r[2] is None else bool(r[2])) for r in rows}

    # ------------------------------------------------------------- settings

    def settings(self, mailbox: str) -> MailboxSettings:
        return self._boxes.get(mailbox) or MailboxSettings(mailbox)

    def fallback(self, mailbox: str) -> bool:
        """Does a call `mailbox`'s extension does not take go to voicemail?"""
        chosen = self.settings(mailbox).fallback
        return self.config.fallback if chosen is None else chosen

    def pin_matches(self, mailbox: str, entered: str) -> bool:
        """The PIN keyed for `mailbox` is its PIN; a mailbox without one never opens by PIN."""
        pin = self.settings(mailbox).pin
        return bool(pin) and hmac.compare_digest(pin.encode(), entered.encode())

    def save_settings(self, settings: MailboxSettings) -> Coroutine[Any, Any, None]:
        """Check and apply `settings` at once (the next call sees them); returns the database
        write for the caller to await."""
        settings.check()
        self._boxes[settings.mailbox] = settings
        return self._persist(settings)

    async def _persist(self, settings: MailboxSettings) -> None:
        await self._conn.execute(
            "INSERT INTO voicemail_boxes (mailbox, pin, fallback) VALUES (?, ?, ?) ON CONFLICT (mailbox)"
            " DO UPDATE SET pin = excluded.pin, fallback = excluded.fallback, updated_at = CURRENT_TIMESTAMP",
            (settings.mailbox, settings.pin, None if settings.fallback is None else int(settings.fallback)))

    def with_settings(self, mailbox: str, **changes: Any) -> MailboxSettings:
        return replace(self.settings(mailbox), **changes)

    # ------------------------------------------------------------- files

    def folder(self, mailbox: str) -> Path:
        return self.root / check_mailbox(mailbox)

    def greeting(self, mailbox: str) -> Path | None:
        """The mailbox's own greeting, if one was uploaded."""
        path = self.folder(mailbox) / GREETING_FILE
        return path if path.is_file() else None

    def save_greeting(self, mailbox: str, data: bytes) -> float:
        """Make `data` (an audio file: WAV, FLAC, Ogg...) the mailbox's greeting, converted once
        to 8 kHz mono 16-bit WAV; returns its length in seconds. Replaces the old one atomically
        (a caller never gets half a file). Blocking: run it in a thread."""
        folder = self.folder(mailbox)
        if not data:
            raise VoicemailError("the greeting file is empty")
        if len(data) > MAX_GREETING_BYTES:
            raise VoicemailError(f"a greeting file is at most {MAX_GREETING_BYTES // (1024 * 1024)} MB")
        try:
            audio, rate = soundfile.read(io.BytesIO(data), dtype="float64", always_2d=True)
        except (RuntimeError, soundfile.LibsndfileError, ValueError):
            raise VoicemailError("the greeting is no audio file this server reads (WAV, FLAC, Ogg)") from None
        seconds = audio.shape[0] / rate if rate else 0.0
        if not 0.5 <= seconds <= MAX_GREETING_SECONDS:
            raise VoicemailError(f"a greeting lasts 0.5 to {MAX_GREETING_SECONDS:.0f} seconds, not {seconds:.1f}")
        pcm = resample(audio.mean(axis=1), int(rate), 8000)
        folder.mkdir(parents=True, exist_ok=True)
        partial = folder / f".{GREETING_FILE}.partial"
        soundfile.write(partial, pcm, 8000, subtype="PCM_16", format="WAV")
        with open(partial, "rb") as written:
            os.fsync(written.fileno())
        os.replace(partial, folder / GREETING_FILE)
        return round(seconds, 2)

    def remove_greeting(self, mailbox: str) -> bool:
        """Back to the standard greeting; False if there was no greeting of its own."""
        path = self.folder(mailbox) / GREETING_FILE
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        return True

    def new_message_path(self, mailbox: str, call_id: str, now: float) -> Path:
        """Where the next message of `mailbox` is recorded (a new file: never overwritten)."""
        self._files += 1
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now))
        safe_call = re.sub(r"[^0-9A-Za-z]", "", call_id)[:12] or "call"
        return self.folder(mailbox) / f"msg-{stamp}-{safe_call}-{self._files}.wav"

    def audio_path(self, message: Message) -> Path:
        """The message's file, refused if its stored path leads out of the voicemail folder."""
        root = self.root.resolve()
        path = (root / message.path).resolve()
        if not path.is_relative_to(root / message.mailbox):
            raise VoicemailError(f"message {message.id}: its path leaves the voicemail folder")
        return path

    # ------------------------------------------------------------- messages

    async def add(self, mailbox: str, *, caller: str, caller_name: str, call_id: str, received_at: float,
                  recording: RecordingInfo) -> Message:
        """Index a recorded message (the file is already closed and checksummed)."""
        check_mailbox(mailbox)
        root = self.root.resolve()
        path = recording.path.resolve()
        if not path.is_relative_to(root / mailbox):
            raise VoicemailError(f"{recording.path} is not in mailbox {mailbox}'s folder")
        relative = path.relative_to(root).as_posix()
        async with self._conn.execute(
            "INSERT INTO voicemail_messages (mailbox, caller, caller_name, call_id, received_at, duration, path,"
            " size_bytes, sha256) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (mailbox, caller, caller_name, call_id, received_at, round(recording.duration_s, 3), relative,
             recording.size_bytes, recording.sha256)) as cur:
            (message_id,) = await cur.fetchone()
        self._changed(mailbox)
        return Message(int(message_id), mailbox, caller, caller_name, call_id, received_at,
                       round(recording.duration_s, 3), relative, recording.size_bytes, recording.sha256, False, False)

    async def get(self, message_id: int) -> Message | None:
        async with self._conn.execute(f"SELECT {_COLUMNS} FROM voicemail_messages WHERE id = ?",
                                      (message_id,)) as cur:
            row = await cur.fetchone()
        return _message(row) if row is not None else None

    async def messages(self, mailbox: str | None = None, *, include_deleted: bool = False,
                       limit: int = 500) -> list[Message]:
        """A mailbox's messages (every mailbox's with None), newest first."""
        where, args = ["1 = 1"], []
        if mailbox is not None:
            where.append("mailbox = ?")
            args.append(check_mailbox(mailbox))
        if not include_deleted:
            where.append("deleted = 0")
        async with self._conn.execute(
                f"SELECT {_COLUMNS} FROM voicemail_messages WHERE {' AND '.join(where)}"
                " ORDER BY received_at DESC, id DESC LIMIT ?", (*args, max(1, min(limit, 5000)))) as cur:
            return [_message(r) for r in await cur.fetchall()]

    async def counts(self, mailbox: str) -> tuple[int, int]:
        """(new, heard) messages not deleted: what the phone menu announces and MWI reports."""
        async with self._conn.execute(
                "SELECT COALESCE(SUM(1 - heard), 0), COALESCE(SUM(heard), 0) FROM voicemail_messages"
                " WHERE mailbox = ? AND deleted = 0", (check_mailbox(mailbox),)) as cur:
            new, heard = await cur.fetchone()
        return int(new), int(heard)

    async def mark_heard(self, message_id: int, heard: bool = True) -> bool:
        """True when the message exists (and is not deleted)."""
        async with self._conn.execute(
                "UPDATE voicemail_messages SET heard = ?, heard_at = ? WHERE id = ? AND deleted = 0 RETURNING mailbox",
                (int(heard), time.time() if heard else None, message_id)) as cur:
            row = await cur.fetchone()
        if row is not None:
            self._changed(row[0])
        return row is not None

    async def delete(self, message_id: int, *, by: str) -> bool:
        """Soft delete: hidden from now on, file and row kept. False if it was not there."""
        async with self._conn.execute(
                "UPDATE voicemail_messages SET deleted = 1, deleted_at = ?, deleted_by = ? WHERE id = ? AND deleted = 0"
                " RETURNING mailbox", (time.time(), by, message_id)) as cur:
            row = await cur.fetchone()
        if row is not None:
            self._changed(row[0])
        return row is not None

    def _changed(self, mailbox: str) -> None:
        if self.on_change is not None:
            try:
                self.on_change(mailbox)
            except Exception:
                log.exception("voicemail %s: change listener failed", mailbox)
