"""Recording rules (issue #8): always / never / time windows in the site's zone / a sample that
decides the same for the same call every time; which rule applies to a call; where its file goes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import PurePosixPath
from zoneinfo import ZoneInfo

import pytest

from acd.recording_rules import (
    ALWAYS,
    NEVER,
    RecordingMode,
    RecordingPolicy,
    RecordingRule,
    RecordingRuleError,
    recording_ref,
    sample_point,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
# Monday 2026-11-23 10:30 in Shanghai is 02:30 UTC.
MONDAY_MORNING = datetime(2026, 11, 23, 2, 30, tzinfo=UTC)
MONDAY_NIGHT = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)        # 20:00 in Shanghai
SATURDAY_MORNING = datetime(2026, 11, 28, 2, 30, tzinfo=UTC)


def test_always_and_never_need_no_clock() -> None:
    assert RecordingRule.parse("always").records("c1", MONDAY_NIGHT, SHANGHAI)
    assert not RecordingRule.parse(" Never ").records("c1", MONDAY_MORNING, SHANGHAI)
    assert str(RecordingRule.parse("ALWAYS")) == "always"


def test_a_bare_window_applies_every_day_in_the_sites_time_zone() -> None:
    rule = RecordingRule.parse("window:09:00-18:00")
    assert rule.mode is RecordingMode.WINDOW
    assert rule.records("c", MONDAY_MORNING, SHANGHAI)
    assert rule.records("c", SATURDAY_MORNING, SHANGHAI)
    assert not rule.records("c", MONDAY_NIGHT, SHANGHAI)
    # The same instant is 02:30 in UTC: outside the window there.
    assert not rule.records("c", MONDAY_MORNING, ZoneInfo("UTC"))


def test_weekday_ranges_as_the_dialplan_writes_them() -> None:
    rule = RecordingRule.parse("window:mon-fri 09:00-18:00; sat 10:00-12:00")
    assert rule.records("c", MONDAY_MORNING, SHANGHAI)
    assert rule.records("c", SATURDAY_MORNING, SHANGHAI)          # 10:30 on Saturday
    sunday = datetime(2026, 11, 29, 2, 30, tzinfo=UTC)
    assert not rule.records("c", sunday, SHANGHAI)
    # The end is exclusive: 18:00 sharp is outside, 17:59 inside.
    assert not rule.records("c", datetime(2026, 11, 23, 10, 0, tzinfo=UTC), SHANGHAI)
    assert rule.records("c", datetime(2026, 11, 23, 9, 59, tzinfo=UTC), SHANGHAI)


def test_a_window_needs_an_aware_time() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        RecordingRule.parse("window:09:00-18:00").records("c", datetime(2026, 11, 23, 10, 0), SHANGHAI)


def test_a_sample_decides_the_same_for_the_same_call_and_takes_about_its_share() -> None:
    rule = RecordingRule.parse("sample:20")
    ids = [uuid.UUID(int=i * 7919 + 1).hex for i in range(5000)]
    first = [rule.records(c, MONDAY_MORNING, SHANGHAI) for c in ids]
    again = [rule.records(c, MONDAY_NIGHT, SHANGHAI) for c in ids]     # any time, same answer
    assert first == again
    assert 0.17 < sum(first) / len(first) < 0.23
    # A larger sample takes every call a smaller one took (one fixed point per call).
    wider = RecordingRule.parse("sample:50")
    assert all(wider.records(c, MONDAY_MORNING, SHANGHAI) for c, taken in zip(ids, first, strict=True) if taken)
    assert not any(RecordingRule.parse("sample:0").records(c, MONDAY_MORNING, SHANGHAI) for c in ids[:200])
    assert all(RecordingRule.parse("sample:100").records(c, MONDAY_MORNING, SHANGHAI) for c in ids[:200])
    assert sample_point("abc") == sample_point("abc") and 0 <= sample_point("abc") < 100


@pytest.mark.parametrize("bad", ["", "sometimes", "sample:", "sample:120", "sample:-5", "sample:2.5",
                                 "window:", "window:18:00-09:00", "window:mon-fri", "window:xyz 09:00-10:00",
                                 "window:09:00-25:00", "always:now", 20, None])
def test_bad_rules_are_refused_with_a_reason(bad: object) -> None:
    with pytest.raises(RecordingRuleError, match="recording rule"):
        RecordingRule.parse(bad)


def test_which_rule_applies_queue_then_extensions_then_trunk_then_default() -> None:
    policy = RecordingPolicy.from_config(
        {"default": "never", "extensions": {"1002": "always", "1005": "never"}, "trunks": {"telecom": "always"}},
        queues={"8001": ALWAYS, "8002": NEVER})
    decide = policy.decide
    # A queue call: the queue's rule, whoever answers.
    assert decide("c", MONDAY_MORNING, queue="8002", answered_by="1002").record is False
    assert decide("c", MONDAY_MORNING, queue="8001", answered_by="1005").source == "queue 8001"
    # A queue without a rule of its own falls through to the parties.
    assert decide("c", MONDAY_MORNING, queue="8003", answered_by="1002").source == "extension 1002"
    # Not a queue call: the answering extension before the caller's, then the trunk.
    assert decide("c", MONDAY_MORNING, answered_by="1005", caller="1002").record is False
    assert decide("c", MONDAY_MORNING, answered_by="1009", caller="1002").record is True
    assert decide("c", MONDAY_MORNING, answered_by="1009", trunk="telecom").source == "trunk telecom"
    decision = decide("c", MONDAY_MORNING, answered_by="1009", caller="1010")
    assert (decision.record, decision.source, str(decision.rule)) == (False, "default", "never")


def test_the_policy_reads_its_table_and_refuses_mistakes() -> None:
    policy = RecordingPolicy.from_config({"default": "window:09:00-18:00", "directory": "rec"},
                                         timezone="Europe/Berlin")
    assert policy.directory == "rec" and policy.tz == ZoneInfo("Europe/Berlin")
    assert RecordingPolicy.from_config({}).default == NEVER
    for table, message in (({"defualt": "always"}, "unknown keys"), ({"default": "maybe"}, "recording rule"),
                           ({"directory": ""}, "directory"), ({"extensions": ["1001"]}, "extensions"),
                           ({"trunks": {"t": "sample:101"}}, "sample"), ([], "must be a table")):
        with pytest.raises(RecordingRuleError, match=message):
            RecordingPolicy.from_config(table)
    with pytest.raises(RecordingRuleError, match="time zone"):
        RecordingPolicy.from_config({}, timezone="Mars/Olympus")


def test_a_recording_is_filed_by_day_under_its_call_id() -> None:
    started = datetime(2026, 3, 9, 23, 59, tzinfo=UTC)
    assert recording_ref("a1b2c3", started) == PurePosixPath("2026/03/09/a1b2c3.wav")
    for bad in ("", "../etc", "a/b", ".hidden", "x y"):
        with pytest.raises(ValueError):
            recording_ref(bad, started)


def test_the_configuration_file_carries_the_rules_to_the_policy(tmp_path) -> None:
    from callcenter.config import ConfigError, load_config

    path = tmp_path / "callcenter.toml"
    path.write_text('[dialplan]\ntimezone = "Europe/Berlin"\n\n'
                    '[recording]\ndefault = "sample:20"\ndirectory = "/srv/rec"\n\n'
                    '[recording.extensions]\n"1001" = "always"\n\n'
                    '[[queues]]\nnumber = "8001"\nrecording = "window:mon-fri 09:00-18:00"\n\n'
                    '[[conferences]]\nnumber = "7000"\nrecord = true\n', encoding="utf-8")
    config = load_config(path)
    policy = config.recording
    assert (str(policy.default), policy.directory, policy.tz) == ("sample:20", "/srv/rec", ZoneInfo("Europe/Berlin"))
    assert policy.extensions["1001"] == ALWAYS
    [queue] = config.queues
    assert str(queue.recording) == "window:mon-fri 09:00-18:00" and config.conferences[0].record
    assert policy.with_queues({"8001": queue.recording}).decide("c", MONDAY_MORNING, queue="8001").source == "queue 8001"
    for bad, message in (('[recording]\ndefault = "maybe"\n', "recording rule"),
                         ('[[queues]]\nnumber = "8001"\nrecording = "sample:300"\n', "queue 8001"),
                         ('[recording]\nkeep = 30\n', "unknown keys")):
        path.write_text(bad, encoding="utf-8")
        with pytest.raises(ConfigError, match=message):
            load_config(path)
