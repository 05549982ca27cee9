"""Which calls are recorded, sans-IO: a rule per queue (else per extension or trunk, else the
site's default), decided once per call when it is bridged to a person.

Rules, as written in the configuration (`[recording] default`, a queue's `recording` key,
`[recording.extensions]`, `[recording.trunks]`):

    "always"                              every call
    "never"                               no call
    "window:09:00-18:00"                  calls bridged between 09:00 and 18:00, any day
    "window:mon-fri 09:00-18:00; sat 10:00-14:00"
                                          weekday ranges, as the dialplan's time conditions
                                          write them; times in the site's time zone
                                          (`[dialplan] timezone`)
    "sample:20"                           20 % of calls, chosen by the call id: the same call
                                          is always chosen the same way (a re-run, a replay of
                                          the decision for an audit, another node)

Which rule applies (the first that exists): a queue call takes its queue's rule; otherwise the
extension that answered, then the calling extension, then the trunk the call came in or went
out by; otherwise `[recording] default`.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from acd.dialplan import DEFAULT_TIMEZONE, DialplanError, OpeningHours

#: Where recordings go, under the data directory, unless `[recording] directory` says otherwise.
DEFAULT_DIRECTORY = "recordings"
#: Between several windows of one rule (a comma already separates days: "mon,wed 09:00-12:00").
WINDOW_SEPARATOR = ";"


class RecordingRuleError(ValueError):
    """A recording rule or `[recording]` table that cannot be used, with the reason."""


class RecordingMode(enum.Enum):
    ALWAYS = "always"
    NEVER = "never"
    WINDOW = "window"
    SAMPLE = "sample"


@dataclass(frozen=True)
class RecordingRule:
    """One rule: record always, never, inside time windows, or a deterministic sample."""

    mode: RecordingMode
    windows: tuple[OpeningHours, ...] = ()
    "For WINDOW: the weekly windows (days, minutes of the day) in which calls are recorded."
    percent: int = 0
    "For SAMPLE: the share of calls recorded, 0-100."
    text: str = ""
    "The rule as configured (shown in logs and stored with the recording)."

    @classmethod
    def parse(cls, text: Any) -> RecordingRule:
        if not isinstance(text, str):
            raise RecordingRuleError(f"a recording rule is text such as \"always\", got {text!r}")
        spec = text.strip()
        kind, colon, argument = spec.partition(":")
        kind = kind.strip().lower()
        if not colon and kind in ("always", "never"):
            return cls(RecordingMode(kind), text=kind)
        if colon and kind == "sample":
            value = argument.strip()
            if not value.isdigit() or not 0 <= int(value) <= 100:
                raise RecordingRuleError(f"recording rule {text!r}: a sample is 0-100 (percent of calls)")
            return cls(RecordingMode.SAMPLE, percent=int(value), text=f"sample:{int(value)}")
        if colon and kind == "window":
            windows = tuple(_window(part, text) for part in argument.split(WINDOW_SEPARATOR))
            return cls(RecordingMode.WINDOW, windows=windows, text=f"window:{argument.strip()}")
        raise RecordingRuleError(
            f"recording rule {text!r}: expected \"always\", \"never\", \"window:09:00-18:00\" "
            f"(or \"window:mon-fri 09:00-18:00\") or \"sample:PERCENT\"")

    def records(self, call_id: str, now: datetime, tz: ZoneInfo) -> bool:
        """Whether a call bridged at `now` (timezone-aware) is recorded under this rule."""
        if self.mode is RecordingMode.ALWAYS:
            return True
        if self.mode is RecordingMode.NEVER:
            return False
        if self.mode is RecordingMode.SAMPLE:
            return sample_point(call_id) < self.percent
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        local = now.astimezone(tz)
        minute = local.hour * 60 + local.minute
        return any(w.open_at(local.weekday(), minute) for w in self.windows)

    def __str__(self) -> str:
        return self.text or self.mode.value


ALWAYS = RecordingRule(RecordingMode.ALWAYS, text="always")
NEVER = RecordingRule(RecordingMode.NEVER, text="never")


def _window(part: str, rule: str) -> OpeningHours:
    part = part.strip()
    if part and part[0].isdigit():
        part = "mon-sun " + part          # a bare time range: every day
    try:
        return OpeningHours.parse(part)
    except DialplanError as exc:
        raise RecordingRuleError(f"recording rule {rule!r}: {exc}") from None


def sample_point(call_id: str) -> int:
    """The call's fixed place, 0-99, in every sample: the first 8 bytes of SHA-256 of its id,
    modulo 100 (uniform enough: 2**64 is 1.8e17 times 100, the bias is below 1e-17)."""
    digest = hashlib.sha256(call_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % 100


@dataclass(frozen=True)
class Decision:
    """Whether a call is recorded, and by which rule (for the log and the recordings index)."""

    record: bool
    rule: RecordingRule
    source: str
    "Where the rule came from: 'queue 8001', 'extension 1002', 'trunk telecom' or 'default'."


@dataclass(frozen=True)
class RecordingPolicy:
    """The site's recording rules (`[recording]`) and the queues' own."""

    default: RecordingRule = NEVER
    directory: str = DEFAULT_DIRECTORY
    "Under the data directory (or absolute): where call and room recordings are written."
    extensions: Mapping[str, RecordingRule] = field(default_factory=dict)
    trunks: Mapping[str, RecordingRule] = field(default_factory=dict)
    queues: Mapping[str, RecordingRule] = field(default_factory=dict)
    tz: ZoneInfo = field(default_factory=lambda: ZoneInfo(DEFAULT_TIMEZONE))

    @classmethod
    def from_config(cls, table: Any, *, timezone: str = DEFAULT_TIMEZONE,
                    queues: Mapping[str, RecordingRule] | None = None) -> RecordingPolicy:
        """`[recording]`: default ("never" unless set), directory, and the optional
        `[recording.extensions]` / `[recording.trunks]` tables of NUMBER/NAME = RULE."""
        if not isinstance(table, dict):
            raise RecordingRuleError("[recording] must be a table")
        unknown = set(table) - {"default", "directory", "extensions", "trunks"}
        if unknown:
            raise RecordingRuleError(f"[recording]: unknown keys {sorted(unknown)}")
        directory = table.get("directory", DEFAULT_DIRECTORY)
        if not isinstance(directory, str) or not directory.strip():
            raise RecordingRuleError("[recording] directory must be a path")
        overrides: dict[str, dict[str, RecordingRule]] = {}
        for key in ("extensions", "trunks"):
            entries = table.get(key, {})
            if not isinstance(entries, dict):
                raise RecordingRuleError(f"[recording.{key}] must be a table of NAME = RULE")
            overrides[key] = {str(name): RecordingRule.parse(rule) for name, rule in entries.items()}
        try:
            tz = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise RecordingRuleError(f"timezone {timezone!r} is not a known IANA time zone") from None
        return cls(RecordingRule.parse(table.get("default", "never")), directory, overrides["extensions"],
                   overrides["trunks"], dict(queues or {}), tz)

    def with_queues(self, queues: Mapping[str, RecordingRule]) -> RecordingPolicy:
        return RecordingPolicy(self.default, self.directory, self.extensions, self.trunks, dict(queues), self.tz)

    def decide(self, call_id: str, now: datetime, *, queue: str | None = None, answered_by: str = "",
               caller: str = "", trunk: str = "") -> Decision:
        """The decision for a call bridged at `now`: by its queue's rule, else the answering
        extension's, the caller's, the trunk's, else the default."""
        candidates = (
            (queue is not None, self.queues.get(queue or ""), f"queue {queue}"),
            (bool(answered_by), self.extensions.get(answered_by), f"extension {answered_by}"),
            (bool(caller), self.extensions.get(caller), f"extension {caller}"),
            (bool(trunk), self.trunks.get(trunk), f"trunk {trunk}"),
        )
        for applies, rule, source in candidates:
            if applies and rule is not None:
                return Decision(rule.records(call_id, now, self.tz), rule, source)
        return Decision(self.default.records(call_id, now, self.tz), self.default, "default")


def recording_ref(call_id: str, started: datetime) -> PurePosixPath:
    """A call's recording, relative to the recordings directory: `<yyyy>/<mm>/<dd>/<call id>.wav`
    by the (UTC) date it started, so a directory holds one day and old days archive whole."""
    if not call_id or not all(c.isalnum() or c in "-_." for c in call_id) or call_id.startswith("."):
        raise ValueError(f"a call id names a file: letters, digits, '-', '_', '.'; got {call_id!r}")
    return PurePosixPath(f"{started:%Y}", f"{started:%m}", f"{started:%d}", f"{call_id}.wav")
