r"""The dialplan, sans-IO: given the dialled number, the caller and the time, where does a call go?

Rules are tried in the order configured; the first whose `match` takes the whole dialled
number wins. `match` uses Asterisk's extension patterns, the syntax PBX users already know:

    "9196"          exactly these digits
    "_9XXXXXXX"     a pattern (leading `_`): X = 0-9, Z = 1-9, N = 2-9, [1-5] = a set or range,
                    `.` = one or more of anything, `!` = zero or more; other characters literal

A destination is written `kind:target`; `${EXTEN}` in a target is the dialled number and
`${EXTEN:N}` the dialled number without its first N characters (Asterisk's substring):

    "extension:1001"   ring an extension (its DND and forwards apply)
    "group:600"        a ring group (`[[ring_groups]]`)
    "queue:8001"       an ACD queue
    "outbound:${EXTEN:1}"  out through the outbound routes (never for callers from a trunk)
    "echo"             the echo test
    "ivr:main"         an IVR flow
    "hangup:486"       refuse with this SIP status (480 when none is given)
    "time:office"      a time condition (`[[time_conditions]]`): its `open` or `closed` destination
    "voicemail:1001"   leave a message in a mailbox (acd.voicemail)
    "voicemailmain"    listen to a mailbox: asks for its number and PIN (`voicemailmain:1001`: that one)
    "8001"             a bare number: routed again as if it had been dialled

Built in after the configured rules: `*97` listens to the caller's own mailbox and `*98` to any
mailbox (FreePBX's codes), the echo test's number (9196).

A number no rule takes is routed by the caller's `default` (the built-in plan: queue numbers,
ring groups, extensions, outbound routes). Time conditions read weekly opening hours in the
site's time zone, and holidays: closed days, and working days (China's 调休) that open a day
which would be closed — a working Saturday follows a weekday's hours.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

#: Destinations followed for one call before giving up: a `time:` whose `closed` points back
#: at a number routed to the same condition would otherwise loop for ever.
MAX_STEPS = 8
DEFAULT_TIMEZONE = "Asia/Shanghai"
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_EXTEN_RE = re.compile(r"\$\{EXTEN(?::(\d{1,2}))?\}")
_PATTERN_CHARS = {"X": "[0-9]", "Z": "[1-9]", "N": "[2-9]", ".": ".+", "!": ".*"}
#: Feature codes of the mailboxes (FreePBX's): the caller's own, and any (number and PIN asked).
VOICEMAIL_OWN = "*97"
VOICEMAIL_ANY = "*98"
_HOURS_RE = re.compile(r"^\s*(?P<days>[a-z,\-]+)\s+(?P<start>\d{1,2}:\d\d)\s*-\s*(?P<end>\d{1,2}:\d\d)\s*$")


class DialplanError(ValueError):
    """A dialplan, ring group, time condition or holiday that cannot be used, with the reason."""


class Kind(enum.Enum):
    EXTENSION = "extension"
    GROUP = "group"
    QUEUE = "queue"
    OUTBOUND = "outbound"
    ECHO = "echo"
    IVR = "ivr"
    CONFERENCE = "conference"
    VOICEMAIL = "voicemail"             # leave a message (Asterisk's VoiceMail)
    VOICEMAIL_MAIN = "voicemailmain"    # listen to messages (Asterisk's VoiceMailMain)
    HANGUP = "hangup"
    TIME = "time"
    NUMBER = "number"   # a bare number: routed again


#: Kinds a call can act on; TIME and NUMBER are followed by the dialplan itself.
TERMINAL = frozenset({Kind.EXTENSION, Kind.GROUP, Kind.QUEUE, Kind.OUTBOUND, Kind.ECHO, Kind.IVR, Kind.CONFERENCE,
                      Kind.VOICEMAIL, Kind.VOICEMAIL_MAIN, Kind.HANGUP})


@dataclass(frozen=True)
class Destination:
    kind: Kind
    #: The extension, group, queue, number, IVR or time-condition name (may hold ${EXTEN}).
    target: str = ""
    #: For HANGUP: the SIP status the caller gets.
    status: int = 0

    @classmethod
    def parse(cls, text: str) -> Destination:
        if not isinstance(text, str) or not text.strip():
            raise DialplanError("a destination must be a non-empty string such as 'extension:1001'")
        text = text.strip()
        kind_name, sep, target = text.partition(":")
        if not sep:
            if kind_name in ("echo", "hangup", "voicemailmain"):
                return cls(Kind(kind_name), status=480 if kind_name == "hangup" else 0)
            if re.fullmatch(r"[0-9*#+]+|\$\{EXTEN(:\d{1,2})?\}", text):
                return cls(Kind.NUMBER, text)
            raise DialplanError(f"destination {text!r}: expected kind:target (extension, group, queue, outbound, "
                                "ivr, conference, voicemail, voicemailmain, hangup, time), echo, or a number")
        try:
            kind = Kind(kind_name)
        except ValueError:
            raise DialplanError(f"destination {text!r}: unknown kind {kind_name!r}") from None
        if kind is Kind.HANGUP:
            if not target.isdigit() or not 400 <= int(target) <= 699:
                raise DialplanError(f"destination {text!r}: hangup takes a SIP status 400-699")
            return cls(kind, status=int(target))
        if kind in (Kind.VOICEMAIL, Kind.VOICEMAIL_MAIN) and not re.fullmatch(
                r"[0-9]{2,10}|\$\{EXTEN(:\d{1,2})?\}", target):
            raise DialplanError(f"destination {text!r}: {kind.value} takes a mailbox number (2-10 digits)")
        if kind is Kind.ECHO or not target:
            raise DialplanError(f"destination {text!r}: {kind.value} takes {'no' if kind is Kind.ECHO else 'a'} target")
        return cls(kind, target)

    def expand(self, dialled: str) -> Destination:
        """The destination with ${EXTEN} and ${EXTEN:N} filled in from the dialled number."""
        if "${" not in self.target:
            return self
        return Destination(self.kind, _EXTEN_RE.sub(lambda m: dialled[int(m.group(1) or 0):], self.target),
                           self.status)

    def __str__(self) -> str:
        if self.kind is Kind.HANGUP:
            return f"hangup:{self.status}"
        if self.kind is Kind.ECHO or (self.kind is Kind.VOICEMAIL_MAIN and not self.target):
            return self.kind.value
        return self.target if self.kind is Kind.NUMBER else f"{self.kind.value}:{self.target}"


def compile_pattern(text: str) -> re.Pattern[str]:
    """An Asterisk extension pattern (`_` prefix) or an exact number, as a regular expression."""
    if not isinstance(text, str) or not text:
        raise DialplanError("match must be a number or an Asterisk pattern such as '_9XXXXXXX'")
    if not text.startswith("_"):
        return re.compile(re.escape(text))
    out, i = [], 1
    while i < len(text):
        char = text[i]
        upper = char.upper()
        if upper in _PATTERN_CHARS:
            out.append(_PATTERN_CHARS[upper])
        elif char == "[":
            end = text.find("]", i)
            inner = text[i + 1:end] if end > i else ""
            if not inner or not re.fullmatch(r"[0-9*#](-[0-9])?([0-9*#](-[0-9])?)*", inner):
                raise DialplanError(f"pattern {text!r}: a set must look like [1-5] or [137]")
            out.append("[" + inner.replace("*", r"\*").replace("#", r"\#") + "]")
            i = end
        elif char.isdigit() or char in "*#+":
            out.append(re.escape(char))
        else:
            raise DialplanError(f"pattern {text!r}: {char!r} is not X, Z, N, [..], '.', '!' or a digit")
        i += 1
    if len(out) == 0:
        raise DialplanError(f"pattern {text!r} is empty")
    return re.compile("".join(out))


@dataclass(frozen=True)
class Rule:
    match: str
    pattern: re.Pattern[str]
    destination: Destination
    #: Only for callers whose number matches (an Asterisk pattern too); None: everyone.
    caller: re.Pattern[str] | None = None

    def takes(self, dialled: str, caller: str) -> bool:
        return self.pattern.fullmatch(dialled) is not None and (
            self.caller is None or self.caller.fullmatch(caller) is not None)


class Strategy(enum.Enum):
    RINGALL = "ringall"    # every member at once, for `ring_timeout` in all
    HUNT = "hunt"          # one member after the other, `ring_timeout` each (Asterisk's linear)


@dataclass(frozen=True)
class RingGroup:
    number: str
    name: str
    strategy: Strategy
    members: tuple[str, ...]
    #: Ringall: seconds the group rings; hunt: seconds each member rings.
    ring_timeout: float
    #: Where the call goes when no member answered.
    fallback: Destination

    @classmethod
    def from_table(cls, table: dict[str, Any]) -> RingGroup:
        _only(table, {"number", "name", "strategy", "members", "ring_timeout", "fallback"}, "ring group")
        number = str(table.get("number", ""))
        if not re.fullmatch(r"[0-9]{2,10}", number):
            raise DialplanError(f"ring group {number!r}: number must be 2 to 10 digits")
        strategy_name = str(table.get("strategy", "ringall"))
        strategy_name = {"linear": "hunt", "sequential": "hunt"}.get(strategy_name, strategy_name)
        try:
            strategy = Strategy(strategy_name)
        except ValueError:
            raise DialplanError(f"ring group {number}: strategy must be ringall or hunt (linear)") from None
        members = table.get("members")
        if not isinstance(members, list) or not members or not all(
                isinstance(m, str) and m.isdigit() for m in members):
            raise DialplanError(f"ring group {number}: members must list extension numbers")
        if len(set(members)) != len(members):
            raise DialplanError(f"ring group {number}: a member is listed twice")
        timeout = table.get("ring_timeout", 20)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 1 <= timeout <= 600:
            raise DialplanError(f"ring group {number}: ring_timeout must be 1-600 seconds")
        fallback = Destination.parse(table.get("fallback", "hangup:480"))
        return cls(number, str(table.get("name", number)), strategy, tuple(members), float(timeout), fallback)


@dataclass(frozen=True)
class Holiday:
    """A closed day, or a working day (调休) that opens a weekend day, from `start` to `end`."""

    name: str
    start: dt.date
    end: dt.date
    workday: bool = False

    @classmethod
    def from_table(cls, table: dict[str, Any]) -> Holiday:
        _only(table, {"name", "date", "until", "workday"}, "holiday")
        name = str(table.get("name", ""))
        start = _date(table.get("date"), f"holiday {name!r}: date")
        end = _date(table.get("until", start), f"holiday {name!r}: until")
        if end < start:
            raise DialplanError(f"holiday {name!r}: until {end} is before date {start}")
        workday = table.get("workday", False)
        if not isinstance(workday, bool):
            raise DialplanError(f"holiday {name!r}: workday must be true or false")
        return cls(name, start, end, workday)

    def covers(self, day: dt.date) -> bool:
        return self.start <= day <= self.end


@dataclass(frozen=True)
class OpeningHours:
    """One `hours` line such as "mon-fri 09:00-18:00": days (0 = Monday) and minutes of the day."""

    days: frozenset[int]
    start: int
    end: int

    @classmethod
    def parse(cls, text: str) -> OpeningHours:
        match = _HOURS_RE.match(text.lower()) if isinstance(text, str) else None
        if match is None:
            raise DialplanError(f"hours {text!r}: expected 'DAYS HH:MM-HH:MM' such as 'mon-fri 09:00-18:00'")
        days: set[int] = set()
        for part in match.group("days").split(","):
            first, _, last = part.partition("-")
            if first not in DAYS or (last and last not in DAYS):
                raise DialplanError(f"hours {text!r}: days are {', '.join(DAYS)}")
            a, b = DAYS.index(first), DAYS.index(last or first)
            if b < a:
                raise DialplanError(f"hours {text!r}: a day range runs from Monday towards Sunday")
            days.update(range(a, b + 1))
        start, end = _minutes(match.group("start"), text), _minutes(match.group("end"), text)
        if end <= start:
            raise DialplanError(f"hours {text!r}: the end must be after the start (split a night in two lines)")
        return cls(frozenset(days), start, end)

    def open_at(self, weekday: int, minute: int) -> bool:
        return weekday in self.days and self.start <= minute < self.end


@dataclass(frozen=True)
class TimeCondition:
    name: str
    hours: tuple[OpeningHours, ...]
    tz: ZoneInfo
    open: Destination
    closed: Destination
    #: Whether the site's holidays (closed days and 调休 working days) apply.
    holidays: bool = True
    #: The weekday whose hours a 调休 working day keeps (0 = Monday).
    workday_hours: int = 0

    @classmethod
    def from_table(cls, table: dict[str, Any], default_tz: str) -> TimeCondition:
        _only(table, {"name", "hours", "timezone", "open", "closed", "holidays", "workday_hours"}, "time condition")
        name = table.get("name")
        if not isinstance(name, str) or not name:
            raise DialplanError("each [[time_conditions]] needs a name")
        hours = table.get("hours")
        if not isinstance(hours, list) or not hours:
            raise DialplanError(f"time condition {name!r}: hours must list lines such as 'mon-fri 09:00-18:00'")
        workday = str(table.get("workday_hours", "mon"))
        if workday not in DAYS:
            raise DialplanError(f"time condition {name!r}: workday_hours must be one of {', '.join(DAYS)}")
        holidays = table.get("holidays", True)
        if not isinstance(holidays, bool):
            raise DialplanError(f"time condition {name!r}: holidays must be true or false")
        return cls(name, tuple(OpeningHours.parse(h) for h in hours), _zone(table.get("timezone", default_tz)),
                   Destination.parse(table.get("open", "")), Destination.parse(table.get("closed", "")),
                   holidays, DAYS.index(workday))

    def is_open(self, now: dt.datetime, holidays: Sequence[Holiday] = ()) -> bool:
        """Open at `now` (an aware datetime)? A holiday closes the whole day; a working day
        (调休) keeps the hours of `workday_hours` whatever day of the week it falls on."""
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        local = now.astimezone(self.tz)
        weekday, minute = local.weekday(), local.hour * 60 + local.minute
        if self.holidays:
            for holiday in holidays:
                if holiday.covers(local.date()):
                    if not holiday.workday:
                        return False
                    weekday = self.workday_hours
                    break
        return any(h.open_at(weekday, minute) for h in self.hours)


@dataclass(frozen=True)
class Resolution:
    destination: Destination
    #: What was followed, in order (rules, time conditions): for logs and the CDR trail.
    trail: tuple[str, ...] = ()


#: How a number no rule takes is routed (queues, ring groups, extensions, outbound routes).
DefaultRoute = Callable[[str], Destination]


@dataclass
class Dialplan:
    rules: list[Rule] = field(default_factory=list)
    groups: dict[str, RingGroup] = field(default_factory=dict)
    conditions: dict[str, TimeCondition] = field(default_factory=dict)
    holidays: list[Holiday] = field(default_factory=list)
    #: The echo test's number (a built-in rule after the configured ones; "" for none).
    echo_number: str = "9196"

    def resolve(self, dialled: str, caller: str, now: dt.datetime, default: DefaultRoute) -> Resolution:
        """Follow rules, bare numbers and time conditions from `dialled` to what the call does."""
        trail: list[str] = []
        destination = self._route_number(dialled, caller, trail, default)
        return self.follow(destination, dialled, caller, now, default, trail)

    def follow(self, destination: Destination, dialled: str, caller: str, now: dt.datetime,
               default: DefaultRoute, trail: list[str] | None = None) -> Resolution:
        """Follow `destination` (a group's fallback, a time condition) to a terminal one."""
        trail = [] if trail is None else trail
        for _ in range(MAX_STEPS):
            destination = destination.expand(dialled)
            if destination.kind in TERMINAL:
                return Resolution(destination, tuple(trail))
            if destination.kind is Kind.TIME:
                condition = self.conditions.get(destination.target)
                if condition is None:
                    trail.append(f"time:{destination.target}?")
                    return Resolution(Destination(Kind.HANGUP, status=404), tuple(trail))
                is_open = condition.is_open(now, self.holidays)
                trail.append(f"time:{condition.name}={'open' if is_open else 'closed'}")
                destination = condition.open if is_open else condition.closed
            else:   # a bare number: routed again
                dialled = destination.target
                destination = self._route_number(dialled, caller, trail, default)
        trail.append("loop")
        return Resolution(Destination(Kind.HANGUP, status=482), tuple(trail))   # RFC 3261 §21.4.20 Loop Detected

    def is_open(self, name: str, now: dt.datetime) -> bool:
        """Is time condition `name` open at `now` (holidays included)? An IVR branches on it.
        Raises KeyError for a name no `[[time_conditions]]` has."""
        return self.conditions[name].is_open(now, self.holidays)

    def _route_number(self, dialled: str, caller: str, trail: list[str], default: DefaultRoute) -> Destination:
        for index, rule in enumerate(self.rules):
            if rule.takes(dialled, caller):
                trail.append(f"rule {index + 1} {rule.match}")
                return rule.destination.expand(dialled)
        if self.echo_number and dialled == self.echo_number:
            trail.append("echo")
            return Destination(Kind.ECHO)
        if dialled in (VOICEMAIL_OWN, VOICEMAIL_ANY):
            trail.append(dialled)
            # *97: the caller's own mailbox (a caller who is no extension has none: 404 later).
            return Destination(Kind.VOICEMAIL_MAIN, caller if dialled == VOICEMAIL_OWN else "")
        if dialled in self.groups:
            trail.append(f"group {dialled}")
            return Destination(Kind.GROUP, dialled)
        destination = default(dialled)
        if destination.kind is Kind.NUMBER:
            raise ValueError("the default route must not answer with a bare number")
        return destination

    # ------------------------------------------------------------- configuration

    @classmethod
    def from_config(cls, dialplan: dict[str, Any] | None, ring_groups: Sequence[dict[str, Any]] = (),
                    time_conditions: Sequence[dict[str, Any]] = (),
                    holidays: Sequence[dict[str, Any]] = ()) -> Dialplan:
        """`[dialplan]` (timezone, echo_number, `[[dialplan.rules]]`), `[[ring_groups]]`,
        `[[time_conditions]]` and `[[holidays]]`, checked together: every group, condition and
        number a destination names must exist."""
        dialplan = dict(dialplan or {})
        _only(dialplan, {"timezone", "echo_number", "rules"}, "[dialplan]")
        timezone = dialplan.get("timezone", DEFAULT_TIMEZONE)
        _zone(timezone)
        echo_number = dialplan.get("echo_number", "9196")
        if not isinstance(echo_number, str) or (echo_number and not re.fullmatch(r"[0-9*#]{2,10}", echo_number)):
            raise DialplanError("[dialplan] echo_number must be digits (or \"\" for no echo test)")
        for name, value in (("rules", dialplan.get("rules", [])), ("ring_groups", ring_groups),
                            ("time_conditions", time_conditions), ("holidays", holidays)):
            if not isinstance(value, (list, tuple)) or not all(isinstance(t, dict) for t in value):
                raise DialplanError(f"{name} must be an array of tables ([[{name}]])")
        rules = []
        for index, table in enumerate(dialplan.get("rules", [])):
            _only(table, {"match", "destination", "caller"}, f"dialplan rule {index + 1}")
            caller = table.get("caller")
            rules.append(Rule(str(table.get("match", "")), compile_pattern(table.get("match", "")),
                              Destination.parse(table.get("destination", "")),
                              compile_pattern(caller) if caller is not None else None))
        groups = [RingGroup.from_table(t) for t in ring_groups]
        conditions = [TimeCondition.from_table(t, timezone) for t in time_conditions]
        plan = cls(rules, {g.number: g for g in groups}, {c.name: c for c in conditions},
                   [Holiday.from_table(t) for t in holidays], echo_number)
        if len(plan.groups) != len(groups):
            raise DialplanError("two ring groups share a number")
        if len(plan.conditions) != len(conditions):
            raise DialplanError("two time conditions share a name")
        named = [(f"rule {r.match!r}", r.destination) for r in rules]
        named += [(f"ring group {g.number}", g.fallback) for g in groups]
        named += [(f"time condition {c.name!r}", d) for c in conditions for d in (c.open, c.closed)]
        for where, destination in named:
            if destination.kind is Kind.TIME and destination.target not in plan.conditions:
                raise DialplanError(f"{where}: no time condition is named {destination.target!r}")
            if destination.kind is Kind.GROUP and "${" not in destination.target and \
                    destination.target not in plan.groups:
                raise DialplanError(f"{where}: no ring group has number {destination.target!r}")
        return plan


def _only(table: dict[str, Any], known: set[str], where: str) -> None:
    if not isinstance(table, dict):
        raise DialplanError(f"{where} must be a table")
    unknown = sorted(set(table) - known)
    if unknown:
        raise DialplanError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})")


def _zone(name: Any) -> ZoneInfo:
    if not isinstance(name, str) or not name:
        raise DialplanError("timezone must be an IANA name such as 'Asia/Shanghai'")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise DialplanError(f"timezone {name!r} is not a known IANA time zone") from None


def _date(value: Any, where: str) -> dt.date:
    if isinstance(value, dt.datetime):
        raise DialplanError(f"{where} must be a date (2026-10-01), not a date and time")
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    raise DialplanError(f"{where} must be a date such as 2026-10-01")


def _minutes(text: str, line: str) -> int:
    hours, minutes = (int(x) for x in text.split(":"))
    if hours > 24 or minutes > 59 or (hours == 24 and minutes):
        raise DialplanError(f"hours {line!r}: {text} is no time of day")
    return hours * 60 + minutes
