"""Outbound routes: which trunk a number dialled by an extension leaves through, as what number,
and with which caller ID (Asterisk's outbound routes / FreeSWITCH's dialplan conditions).

Routes are tried in the order configured; the first whose `pattern` matches the whole dialled
number wins. The number sent is rewritten by `strip`/`prepend` or by a regex replacement, and
the route's trunks are tried in order, skipping those that are down.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

#: What may be sent to a provider as a number: digits, '*', '#', and E.164's leading '+'.
DIALLABLE_RE = re.compile(r"^\+?[0-9*#]{1,32}$")
_CALLER_ID_RE = re.compile(r'^\s*(?:"(?P<quoted>[^"]*)"|(?P<bare>[^"<]*?))\s*<(?P<number>[^<>]*)>\s*$')
_GROUP_REF_RE = re.compile(r"\\(\d{1,2})|\\g<([^>]*)>")


class RouteConfigError(ValueError):
    """An outbound route that cannot be used, with the reason."""


@dataclass(frozen=True)
class CallerId:
    """The identity presented to the far end (From user and display name)."""

    number: str
    name: str | None = None

    @classmethod
    def parse(cls, text: str) -> CallerId:
        """Asterisk's `callerid` syntax: `"Name" <number>`, `Name <number>` or `number`."""
        match = _CALLER_ID_RE.match(text)
        if match:
            name = match.group("quoted") if match.group("quoted") is not None else match.group("bare")
            number = match.group("number").strip()
        else:
            name, number = None, text.strip()
        if not DIALLABLE_RE.match(number):
            raise RouteConfigError(f"caller_id {text!r}: the number must be digits (optionally after '+')")
        if name is not None and any(c in name for c in '"\\\r\n'):
            raise RouteConfigError(f"caller_id {text!r}: the name may not contain quotes or line breaks")
        return cls(number, name.strip() or None if name is not None else None)


@dataclass(frozen=True)
class OutboundRoute:
    name: str
    pattern: re.Pattern[str]
    #: Trunk names, in failover order.
    trunks: tuple[str, ...]
    #: Digits dropped from the front of the dialled number, then `prepend` put before it.
    strip: int = 0
    prepend: str = ""
    #: A replacement template (`\\1`, `\\g<name>`) applied to the pattern's match instead.
    replace: str | None = None
    caller_id: CallerId | None = None

    def rewrite(self, dialled: str) -> str | None:
        """The number to send for `dialled`, or None when this route does not take it."""
        match = self.pattern.fullmatch(dialled)
        if match is None:
            return None
        if self.replace is not None:
            number = match.expand(self.replace)
        else:
            number = self.prepend + dialled[self.strip:]
        return number if DIALLABLE_RE.match(number) else None

    @classmethod
    def from_table(cls, table: dict[str, Any], index: int) -> OutboundRoute:
        if not isinstance(table, dict):
            raise RouteConfigError("each [[outbound_routes]] entry must be a table")
        known = {"name", "pattern", "trunks", "strip", "prepend", "replace", "caller_id"}
        unknown = sorted(set(table) - known)
        name = table.get("name", f"route {index + 1}")
        if not isinstance(name, str) or not name:
            raise RouteConfigError(f"outbound route {index + 1}: name must be a non-empty string")
        where = f"outbound route {name!r}"
        if unknown:
            raise RouteConfigError(f"{where}: unknown key {unknown[0]!r}")
        raw = table.get("pattern")
        if not isinstance(raw, str) or not raw:
            raise RouteConfigError(f"{where}: pattern (a regular expression on the dialled number) is required")
        try:
            pattern = re.compile(raw)
        except re.error as exc:
            raise RouteConfigError(f"{where}: pattern {raw!r} is not a regular expression: {exc}") from None
        trunks = table.get("trunks")
        if isinstance(trunks, str):
            trunks = [trunks]
        if not isinstance(trunks, list) or not trunks or not all(isinstance(t, str) and t for t in trunks):
            raise RouteConfigError(f"{where}: trunks must list at least one trunk name")
        strip = table.get("strip", 0)
        if isinstance(strip, bool) or not isinstance(strip, int) or not 0 <= strip <= 32:
            raise RouteConfigError(f"{where}: strip must be a number of digits, 0-32")
        prepend = table.get("prepend", "")
        if not isinstance(prepend, str) or (prepend and not DIALLABLE_RE.match(prepend)):
            raise RouteConfigError(f"{where}: prepend must be digits")
        replace = table.get("replace")
        if replace is not None:
            if not isinstance(replace, str):
                raise RouteConfigError(f"{where}: replace must be a string such as '\\1'")
            if strip or prepend:
                raise RouteConfigError(f"{where}: use either replace or strip/prepend, not both")
            for number, group_name in _GROUP_REF_RE.findall(replace):
                ref = number or group_name
                if ref.isdigit() and int(ref) > pattern.groups or (not ref.isdigit() and ref not in pattern.groupindex):
                    raise RouteConfigError(f"{where}: replace refers to group {ref!r}, which pattern {raw!r} lacks")
        caller_id = table.get("caller_id")
        if caller_id is not None and not isinstance(caller_id, str):
            raise RouteConfigError(f"{where}: caller_id must be a string such as '\"Company\" <02161234567>'")
        return cls(name=name, pattern=pattern, trunks=tuple(trunks), strip=strip, prepend=prepend,
                   replace=replace, caller_id=CallerId.parse(caller_id) if caller_id else None)


def select_route(routes: Sequence[OutboundRoute], dialled: str) -> tuple[OutboundRoute, str] | None:
    """The first route that takes `dialled`, with the number to send; None when none does."""
    for route in routes:
        number = route.rewrite(dialled)
        if number is not None:
            return route, number
    return None
