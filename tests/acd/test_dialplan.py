"""The dialplan and per-extension features as pure decisions: a fake clock, no sockets."""

from __future__ import annotations

import datetime as dt
import tomllib
from pathlib import Path

import pytest

from acd.dialplan import (
    Destination,
    Dialplan,
    DialplanError,
    Kind,
    OpeningHours,
    compile_pattern,
)
from acd.features import (
    MAX_FORWARD_HOPS,
    ExtensionFeatures,
    FeatureCode,
    FeatureError,
    FeatureStore,
    ForwardChain,
    apply_feature_code,
    parse_feature_code,
)
from acd.schema import MIGRATIONS
from callcenter.database import apply_migrations, open_database

SHANGHAI = dt.timezone(dt.timedelta(hours=8))

PLAN = """
[dialplan]
timezone = "Asia/Shanghai"

[[dialplan.rules]]
match = "_9XXXXXXXX"
destination = "outbound:${EXTEN:1}"

[[dialplan.rules]]
match = "400"
destination = "time:office"

[[dialplan.rules]]
match = "_6[0-4]X"
caller = "_10XX"
destination = "hangup:403"

[[ring_groups]]
number = "600"
strategy = "hunt"
members = ["1001", "1002"]
ring_timeout = 5
fallback = "queue:8001"

[[time_conditions]]
name = "office"
hours = ["mon-fri 09:00-12:00", "mon-fri 13:30-18:00", "sat 09:00-12:00"]
workday_hours = "mon"
open = "600"
closed = "hangup:480"

[[holidays]]
name = "国庆节"
date = 2026-10-01
until = 2026-10-07

[[holidays]]
name = "国庆节调休"
date = 2026-10-11
workday = true
"""


def default(number: str) -> Destination:
    """The built-in plan of the site under test: 8001 a queue, 10xx extensions, else 404."""
    if number == "8001":
        return Destination(Kind.QUEUE, number)
    if number.startswith("10") and len(number) == 4:
        return Destination(Kind.EXTENSION, number)
    return Destination(Kind.HANGUP, status=404)


def plan_from(text: str) -> Dialplan:
    raw = tomllib.loads(text)
    return Dialplan.from_config(raw.get("dialplan"), raw.get("ring_groups", []),
                                raw.get("time_conditions", []), raw.get("holidays", []))


def at(year: int, month: int, day: int, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=SHANGHAI)


def test_asterisk_patterns_match_whole_numbers() -> None:
    assert compile_pattern("_9XXXXXXXX").fullmatch("913812345678") is None
    assert compile_pattern("_9XXXXXXXX").fullmatch("912345678")
    assert compile_pattern("_NXX").fullmatch("200") and not compile_pattern("_NXX").fullmatch("100")
    assert compile_pattern("_1[2-4]Z").fullmatch("131") and not compile_pattern("_1[2-4]Z").fullmatch("130")
    assert compile_pattern("_0.").fullmatch("0211") and not compile_pattern("_0.").fullmatch("0")
    assert compile_pattern("_0!").fullmatch("0")
    assert compile_pattern("*72").fullmatch("*72") and not compile_pattern("9196").fullmatch("91960")
    for bad in ("_9Q", "_[a]", "", "_"):
        with pytest.raises(DialplanError):
            compile_pattern(bad)


def test_rules_rewrite_the_dialled_number_with_exten() -> None:
    plan = plan_from(PLAN)
    result = plan.resolve("902112345", "1001", at(2026, 11, 23, 10), default)
    assert result.destination == Destination(Kind.OUTBOUND, "02112345")


def test_echo_test_ring_groups_and_the_default_plan() -> None:
    plan = plan_from(PLAN)
    now = at(2026, 11, 23, 10)
    assert plan.resolve("9196", "1001", now, default).destination.kind is Kind.ECHO
    assert plan.resolve("600", "2001", now, default).destination == Destination(Kind.GROUP, "600")
    assert plan.resolve("1005", "1001", now, default).destination == Destination(Kind.EXTENSION, "1005")
    assert plan.resolve("7777", "1001", now, default).destination == Destination(Kind.HANGUP, status=404)


def test_a_rule_may_apply_to_some_callers_only() -> None:
    plan = plan_from(PLAN)
    now = at(2026, 11, 23, 10)
    assert plan.resolve("612", "1001", now, default).destination == Destination(Kind.HANGUP, status=403)
    assert plan.resolve("612", "2001", now, default).destination.status == 404


@pytest.mark.parametrize(("when", "open_"), [
    (at(2026, 11, 23, 8, 59), False),    # Monday before opening
    (at(2026, 11, 23, 9, 0), True),
    (at(2026, 11, 23, 12, 30), False),   # lunch
    (at(2026, 11, 23, 17, 59), True),
    (at(2026, 11, 23, 18, 0), False),
    (at(2026, 11, 28, 10), True),        # Saturday morning
    (at(2026, 11, 28, 14), False),       # Saturday afternoon
    (at(2026, 11, 29, 10), False),       # Sunday
    (at(2026, 10, 2, 10), False),        # 国庆节, a Friday
    (at(2026, 10, 11, 15), True),        # 调休: a Sunday that works Monday's hours
    (at(2026, 10, 8, 10), True),         # back to work after the holiday
])
def test_office_hours_with_holidays_and_working_weekends(when: dt.datetime, open_: bool) -> None:
    plan = plan_from(PLAN)
    result = plan.resolve("400", "13800000000", when, default)
    expected = Destination(Kind.GROUP, "600") if open_ else Destination(Kind.HANGUP, status=480)
    assert result.destination == expected, result.trail


def test_opening_hours_follow_the_sites_zone_not_utc() -> None:
    plan = plan_from(PLAN)
    # 01:30 UTC is 09:30 in Shanghai.
    utc = dt.datetime(2026, 11, 23, 1, 30, tzinfo=dt.UTC)
    assert plan.resolve("400", "x", utc, default).destination.kind is Kind.GROUP


def test_a_group_fallback_is_followed_by_the_dialplan() -> None:
    plan = plan_from(PLAN)
    group = plan.groups["600"]
    assert group.members == ("1001", "1002") and group.ring_timeout == 5
    result = plan.follow(group.fallback, "600", "1001", at(2026, 11, 23, 10), default)
    assert result.destination == Destination(Kind.QUEUE, "8001")


def test_a_loop_between_numbers_ends_in_loop_detected() -> None:
    plan = plan_from('[[dialplan.rules]]\nmatch = "100"\ndestination = "200"\n'
                     '[[dialplan.rules]]\nmatch = "200"\ndestination = "100"\n')
    result = plan.resolve("100", "1001", at(2026, 11, 23, 10), default)
    assert result.destination == Destination(Kind.HANGUP, status=482)


@pytest.mark.parametrize("text", [
    '[[ring_groups]]\nnumber = "600"\nmembers = []\n',
    '[[ring_groups]]\nnumber = "600"\nmembers = ["1001"]\nstrategy = "random"\n',
    '[[ring_groups]]\nnumber = "600"\nmembers = ["1001"]\nfallback = "group:601"\n',
    '[[dialplan.rules]]\nmatch = "1"\ndestination = "time:nowhere"\n',
    '[[dialplan.rules]]\nmatch = "1"\ndestination = "teleport:1"\n',
    '[[dialplan.rules]]\nmatch = "1"\ndestination = "hangup:200"\n',
    '[dialplan]\ntimezone = "Mars/Olympus"\n',
    '[[time_conditions]]\nname = "x"\nhours = ["mon-fri 18:00-09:00"]\nopen = "1"\nclosed = "2"\n',
    '[[time_conditions]]\nname = "x"\nhours = ["weekdays 9-5"]\nopen = "1"\nclosed = "2"\n',
    '[[holidays]]\ndate = "2026-13-01"\n',
    '[[holidays]]\ndate = 2026-10-07\nuntil = 2026-10-01\n',
])
def test_bad_configuration_is_refused_with_a_reason(text: str) -> None:
    with pytest.raises(DialplanError):
        plan_from(text)


def test_opening_hours_parse_day_lists_and_ranges() -> None:
    hours = OpeningHours.parse("mon,wed-fri 08:00-24:00")
    assert hours.days == frozenset({0, 2, 3, 4}) and (hours.start, hours.end) == (480, 1440)


# ------------------------------------------------------------------ features


def test_feature_codes_toggle_dnd_and_set_and_cancel_forwarding() -> None:
    me = ExtensionFeatures("1001")
    assert parse_feature_code("*76") == FeatureCode("*76")
    assert parse_feature_code("*7213800138000") == FeatureCode("*72", "13800138000")
    assert parse_feature_code("*72") is None and parse_feature_code("*61") is None
    me = apply_feature_code(me, FeatureCode("*76"))
    assert me.dnd
    assert not apply_feature_code(me, FeatureCode("*76")).dnd
    me = apply_feature_code(me, FeatureCode("*72", "1002"))
    assert me.forward_always == "1002"
    assert apply_feature_code(me, FeatureCode("*73")).forward_always == ""
    with pytest.raises(FeatureError):
        apply_feature_code(me, FeatureCode("*72", "1001"))


def test_busy_and_no_answer_forwards_have_codes_of_their_own() -> None:
    me = ExtensionFeatures("1001")
    me = apply_feature_code(me, parse_feature_code("*901002"))
    me = apply_feature_code(me, parse_feature_code("*52013800138000"))
    assert (me.forward_busy, me.forward_noanswer, me.forward_always) == ("1002", "013800138000", "")
    me = apply_feature_code(me, parse_feature_code("*91"))
    assert (me.forward_busy, me.forward_noanswer) == ("", "013800138000")
    assert apply_feature_code(me, parse_feature_code("*53")).forward_noanswer == ""
    assert parse_feature_code("*90") is None and parse_feature_code("*52abc") is None


def test_a_forward_chain_never_returns_to_a_number_and_stops_after_the_hop_limit() -> None:
    chain = ForwardChain("1001")
    assert not chain.take("1001")
    assert chain.take("1002") and not chain.take("1001")
    for n in range(MAX_FORWARD_HOPS - 1):
        assert chain.take(f"20{n:02d}")
    assert not chain.take("3000")
    assert len(chain.visited) == MAX_FORWARD_HOPS + 1


async def test_feature_settings_survive_a_restart_in_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "callcenter.db"
    conn = await open_database(path)
    try:
        assert await apply_migrations(conn, "acd", MIGRATIONS) == len(MIGRATIONS)
        store = FeatureStore(conn)
        await store.save(ExtensionFeatures("1001", dnd=True, forward_noanswer="1002", noanswer_timeout=4))
        with pytest.raises(FeatureError):
            await store.save(ExtensionFeatures("1003", forward_busy="1003"))
    finally:
        await conn.close()
    conn = await open_database(path)
    try:
        store = FeatureStore(conn)
        await store.load()
        assert store.get("1001") == ExtensionFeatures("1001", True, "", "", "1002", 4.0)
        assert store.get("1003") == ExtensionFeatures("1003")
    finally:
        await conn.close()


def test_an_ivr_asks_whether_a_time_condition_is_open() -> None:
    plan = plan_from(PLAN)
    assert plan.is_open("office", at(2026, 11, 23, 10))
    assert not plan.is_open("office", at(2026, 10, 1, 10))   # a holiday
    with pytest.raises(KeyError):
        plan.is_open("nowhere", at(2026, 11, 23, 10))


def test_the_configuration_file_carries_the_dialplan_and_says_what_is_wrong(tmp_path: Path) -> None:
    from callcenter.config import ConfigError, load_config

    good = tmp_path / "good.toml"
    good.write_text(PLAN)
    config = load_config(good)
    assert set(config.dialplan.groups) == {"600"} and set(config.dialplan.conditions) == {"office"}
    assert len(config.dialplan.holidays) == 2
    bad = tmp_path / "bad.toml"
    bad.write_text('[[ring_groups]]\nnumber = "600"\nmembers = ["1001"]\nfallback = "time:lunch"\n')
    with pytest.raises(ConfigError, match="no time condition is named 'lunch'"):
        load_config(bad)
