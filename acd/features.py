"""Per-extension call features: do-not-disturb and call forwarding (always, on busy, on no answer
after N seconds), set from the desk phone with feature codes and kept in the database.

Feature codes (dialled like a number; the codes FreePBX users know):

    *76           toggle do-not-disturb
    *72<number>   forward every call to <number> (an extension or an outside number)
    *73           cancel forward-always
    *90<number>   forward when busy (or on do-not-disturb);  *91 cancels it
    *52<number>   forward when unanswered or no phone is registered;  *53 cancels it
    *97 / *98     listen to voicemail: your own mailbox / any mailbox (routed by acd.dialplan)

A forward always takes precedence over voicemail: a call goes to the extension's mailbox
(acd.voicemail, when its fallback is on) only where no forward for the same reason applies.

The decision of where a forwarded call goes is pure (`ForwardChain`): a chain is followed at
most `MAX_FORWARD_HOPS` hops and never back to a number it already passed, so two extensions
forwarding to each other cannot loop a call.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Coroutine
from dataclasses import dataclass, replace
from typing import Any

import aiosqlite

MIGRATIONS_FEATURES = """
    CREATE TABLE extension_features (
        extension        TEXT PRIMARY KEY,
        dnd              INTEGER NOT NULL DEFAULT 0,
        forward_always   TEXT NOT NULL DEFAULT '',
        forward_busy     TEXT NOT NULL DEFAULT '',
        forward_noanswer TEXT NOT NULL DEFAULT '',
        noanswer_timeout REAL NOT NULL DEFAULT 20,
        updated_at       TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
    );
"""

FEATURE_DND = "*76"
FEATURE_FORWARD = "*72"
FEATURE_FORWARD_CANCEL = "*73"
FEATURE_FORWARD_BUSY = "*90"
FEATURE_FORWARD_BUSY_CANCEL = "*91"
FEATURE_FORWARD_NOANSWER = "*52"
FEATURE_FORWARD_NOANSWER_CANCEL = "*53"
#: Setting codes (followed by the number) and their cancelling codes, by the field they set.
_FORWARD_CODES = {FEATURE_FORWARD: "forward_always", FEATURE_FORWARD_BUSY: "forward_busy",
                  FEATURE_FORWARD_NOANSWER: "forward_noanswer"}
_CANCEL_CODES = {FEATURE_FORWARD_CANCEL: "forward_always", FEATURE_FORWARD_BUSY_CANCEL: "forward_busy",
                 FEATURE_FORWARD_NOANSWER_CANCEL: "forward_noanswer"}
#: Hops a forward chain may take (1001 -> 1002 -> ... ); Asterisk's Dial follows 20 call
#: forwards at most, a desk phone's users rarely chain more than two.
MAX_FORWARD_HOPS = 5
#: A forward target: an extension or an outside number (E.164 '+' allowed).
TARGET_RE = re.compile(r"^\+?[0-9]{2,32}$")


class FeatureError(ValueError):
    """A feature setting that cannot be stored, with the reason."""


class ForwardReason(enum.Enum):
    ALWAYS = "always"
    BUSY = "busy"           # the phone said busy, or do-not-disturb is on
    NOANSWER = "noanswer"   # rang out, or no phone is registered


@dataclass(frozen=True)
class ExtensionFeatures:
    extension: str
    dnd: bool = False
    forward_always: str = ""
    forward_busy: str = ""
    forward_noanswer: str = ""
    #: Seconds the extension rings before forward-on-no-answer takes the call.
    noanswer_timeout: float = 20.0

    def target(self, reason: ForwardReason) -> str:
        return {ForwardReason.ALWAYS: self.forward_always, ForwardReason.BUSY: self.forward_busy,
                ForwardReason.NOANSWER: self.forward_noanswer}[reason]

    def check(self) -> None:
        for name in ("forward_always", "forward_busy", "forward_noanswer"):
            value = getattr(self, name)
            if value and not TARGET_RE.match(value):
                raise FeatureError(f"{name} must be an extension or a phone number, not {value!r}")
            if value == self.extension:
                raise FeatureError(f"{name}: an extension cannot forward to itself")
        if not 1 <= self.noanswer_timeout <= 600:
            raise FeatureError("noanswer_timeout must be 1-600 seconds")


class ForwardChain:
    """The numbers a call has been forwarded through, so it is never forwarded in a circle."""

    def __init__(self, first: str) -> None:
        self.visited = [first]

    def allows(self, target: str) -> bool:
        return bool(target) and target not in self.visited and len(self.visited) <= MAX_FORWARD_HOPS

    def take(self, target: str) -> bool:
        """Record the hop to `target`; False (and nothing recorded) when it would loop or
        exceed the hop limit."""
        if not self.allows(target):
            return False
        self.visited.append(target)
        return True


@dataclass(frozen=True)
class FeatureCode:
    """A dialled feature code: which one, and the number it carries (*72<number>)."""

    code: str
    number: str = ""


def parse_feature_code(dialled: str) -> FeatureCode | None:
    if dialled == FEATURE_DND or dialled in _CANCEL_CODES:
        return FeatureCode(dialled)
    prefix, number = dialled[:3], dialled[3:]
    if prefix in _FORWARD_CODES and TARGET_RE.match(number):
        return FeatureCode(prefix, number)
    return None


def apply_feature_code(current: ExtensionFeatures, code: FeatureCode) -> ExtensionFeatures:
    """The extension's settings after dialling `code` (pure)."""
    if code.code == FEATURE_DND:
        return replace(current, dnd=not current.dnd)
    if code.code in _CANCEL_CODES:
        return replace(current, **{_CANCEL_CODES[code.code]: ""})
    if code.number == current.extension:
        raise FeatureError("an extension cannot forward to itself")
    return replace(current, **{_FORWARD_CODES[code.code]: code.number})


class FeatureStore:
    """The extensions' feature settings: in memory for the call path, in SQLite as the truth."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn
        self._by_extension: dict[str, ExtensionFeatures] = {}

    async def load(self) -> None:
        async with self._conn.execute(
            "SELECT extension, dnd, forward_always, forward_busy, forward_noanswer, noanswer_timeout"
            " FROM extension_features"
        ) as cur:
            rows = await cur.fetchall()
        self._by_extension = {r[0]: ExtensionFeatures(r[0], bool(r[1]), r[2], r[3], r[4], float(r[5]))
                              for r in rows}

    def get(self, extension: str) -> ExtensionFeatures:
        return self._by_extension.get(extension) or ExtensionFeatures(extension)

    def save(self, features: ExtensionFeatures) -> Coroutine[Any, Any, None]:
        """Check and apply `features` at once (the next call sees them), and return the write
        to the database for the caller to await."""
        features.check()
        self._by_extension[features.extension] = features
        return self._persist(features)

    async def _persist(self, features: ExtensionFeatures) -> None:
        await self._conn.execute(
            "INSERT INTO extension_features (extension, dnd, forward_always, forward_busy, forward_noanswer,"
            " noanswer_timeout) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (extension) DO UPDATE SET"
            " dnd = excluded.dnd, forward_always = excluded.forward_always, forward_busy = excluded.forward_busy,"
            " forward_noanswer = excluded.forward_noanswer, noanswer_timeout = excluded.noanswer_timeout,"
            " updated_at = CURRENT_TIMESTAMP",
            (features.extension, int(features.dnd), features.forward_always, features.forward_busy,
             features.forward_noanswer, features.noanswer_timeout),
        )
