"""A queue's `[[queues]]` table as an operator writes it: what a waiting caller hears, queued
callback settings, agents' skills; skills an IVR asks for reaching the queue; callbacks booked
by the IVR; and booked callbacks surviving a restart in a real SQLite file."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from acd.callbacks import CallbackStore
from acd.distributor import CallbackChanged, Offer
from acd.queue_calls import QueueConfigError, QueueDefinition, QueueRouter
from acd.queues import CallbackStatus, QueuedCall
from acd.schema import MIGRATIONS
from callcenter.config import ConfigError, parse_queues
from callcenter.database import apply_migrations, open_database


class Phone:
    """The call-control side of a queue call as the router sees it."""

    def __init__(self, call_id: str, caller: str) -> None:
        self.id, self.caller = call_id, caller
        self.rang: list[str] = []
        self.hung_up: list[str] = []

    def ring_agent(self, agent: str) -> bool:
        self.rang.append(agent)
        return True

    def stop_ringing(self, agent: str) -> None:
        pass

    def overflow(self, destination: str, reason: str) -> None:
        pass

    def hangup(self, reason: str, *, side: str) -> None:
        self.hung_up.append(reason)


def test_defaults_keep_ringback_and_every_treatment_key_is_read() -> None:
    plain = QueueDefinition.from_table({"number": "8001", "members": ["1001"]})
    assert plain.config.treatment.answer is False and plain.config.treatment.callback_key == ""
    assert (plain.config.callback_attempts, plain.config.callback_retry_delay) == (3, 300.0)
    full = QueueDefinition.from_table({
        "number": "8002", "members": ["1001", "1002:2"], "answer": True, "language": "en",
        "announce_position": True, "announce_frequency": 45, "periodic_announce": "queue/hold",
        "periodic_announce_frequency": 90, "callback_key": "#", "callback_attempts": 5,
        "callback_retry_delay": 120, "overflow": "callback",
        "skills": {"1001": {"vip": 5, "en": 3}, "1002": {"en": 7}}})
    t = full.config.treatment
    assert (t.answer, t.language, t.announce_position, t.announce_frequency) == (True, "en", True, 45.0)
    assert (t.periodic_announce, t.periodic_announce_frequency, t.callback_key) == ("queue/hold", 90.0, "#")
    assert (full.config.callback_attempts, full.config.callback_retry_delay) == (5, 120.0)
    assert full.skills == {"1001": {"vip": 5, "en": 3}, "1002": {"en": 7}}


@pytest.mark.parametrize(("key", "value", "says"), [
    ("answer", "yes", "answer must be true or false"),
    ("callback_key", "12", "callback_key must be one key"),
    ("language", "fr", "language must be zh-CN or en"),
    ("announce_frequency", -1, "announce_frequency must be a number of seconds"),
    ("periodic_announce", "../etc/passwd", "periodic_announce must be a prompt name"),
    ("moh", "/no/such/music.wav", "is no file"),
    ("callback_attempts", 0, "callback_attempts must be 1-20"),
    ("skills", {"1001": {"vip": 11}}, "must be a level 1-10"),
    ("skills", {"1001": 5}, "must be a table of skill = level"),
])
def test_a_wrong_key_is_refused_with_the_reason(key: str, value: object, says: str) -> None:
    with pytest.raises(QueueConfigError, match=says):
        QueueDefinition.from_table({"number": "8001", key: value})


def test_an_agents_skill_level_must_agree_across_queues() -> None:
    with pytest.raises(ConfigError, match="skill 'vip' of 1001 is 5 in queue 8001 but 3 in queue 8002"):
        parse_queues([{"number": "8001", "members": ["1001"], "skills": {"1001": {"vip": 5}}},
                      {"number": "8002", "members": ["1001"], "skills": {"1001": {"vip": 3}}}])


async def test_skills_from_config_and_from_the_ivr_route_the_call() -> None:
    queue = QueueDefinition.from_table({"number": "8100", "members": ["1001", "1002"], "joinempty": True,
                                        "strategy": "linear", "skills": {"1002": {"vip": 5}}})
    router = QueueRouter([queue], names=lambda ext: ext)
    assert router.acd.agents["1002"].skills == {"vip": 5} and router.acd.agents["1001"].skills == {}
    now = time.time()
    for agent in ("1001", "1002"):
        router.feature(agent, "*61", now)
    vip = Phone("vip", "13800138000")
    router.require_skills("vip", {"vip": 5})      # what the IVR's queue node asked for
    router.enqueue(vip, "8100", now)               # type: ignore[arg-type]
    assert vip.rang == ["1002"]                    # linear would have rung 1001 first
    plain = Phone("plain", "13900139000")
    router.enqueue(plain, "8100", now)             # type: ignore[arg-type]
    assert plain.rang == ["1001"] and router.acd.waiting["plain"].skills == {}


async def test_the_ivr_books_a_callback_into_a_queue(tmp_path: Path) -> None:
    router = QueueRouter([QueueDefinition.from_table({"number": "8100", "members": ["1001"]})],
                         names=lambda ext: ext)
    now = time.time()
    assert not router.book_callback("8999", "13800138000", now)   # no such queue
    assert not router.book_callback("8100", "anonymous", now)     # nothing to call
    assert router.book_callback("8100", "13800138000", now)
    [entry] = router.acd.callbacks("8100")
    assert entry.callback == "13800138000"
    assert router.wallboard.snapshot(now)["queues"][0]["callbacks"] == 1
    assert router.wallboard.snapshot(now)["queues"][0]["waiting"] == 0


async def test_booked_callbacks_survive_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "callcenter.db"
    conn = await open_database(db)
    try:
        await apply_migrations(conn, "acd", MIGRATIONS)
        store = CallbackStore(conn)
        queue = {"number": "8100", "members": ["1001"], "callback_retry_delay": 60}
        router = QueueRouter([QueueDefinition.from_table(queue)], names=lambda ext: ext)
        router._store = store   # what attach() sets, without an engine
        now = time.time()
        router.book_callback("8100", "13800138000", now - 30)
        store.save(CallbackChanged("old", "8100", "1005", CallbackStatus.DONE, 1, 0.0, now - 900, 0))
        await store.close()
        [row] = await store.rows(CallbackStatus.PENDING)
        assert (row.queue, row.number, row.attempts) == ("8100", "13800138000", 0)

        # A failed try moves the row on: one attempt, the next not before the delay.
        router.acd.login("1001", now)   # the ACD's offer, without phones to ring
        entry_id = row.call_id
        router.acd.answered(entry_id, "1001", now)
        router.acd.callback_dialling(entry_id, now)
        router.callback_failed(router.acd.connected[entry_id].call, "busy")
        await store.close()
        [row] = await store.rows(CallbackStatus.PENDING)
        assert row.attempts == 1 and row.not_before >= now + 59

        # The next process: the callback is back in its place, with its try counted.
        restarted = QueueRouter([QueueDefinition.from_table(queue)], names=lambda ext: ext)
        restarted._store = store
        assert await restarted.restore() == 1
        [entry] = restarted.acd.callbacks("8100")
        assert (entry.call_id, entry.callback, entry.attempts, entry.entered_at) == (
            row.call_id, "13800138000", 1, row.entered_at)
        restarted.feature("1001", "*61", now)
        assert not [e for e in restarted.acd.dispatch(now) if isinstance(e, Offer)]   # still waiting out the delay
        assert [e.call_id for e in restarted.acd.tick(row.not_before) if isinstance(e, Offer)] == [row.call_id]
    finally:
        await conn.close()


def test_a_callback_entry_is_an_ordinary_queued_call_with_a_number() -> None:
    entry = QueuedCall("c", "q", 1.0, callback="1005")
    assert entry.attempts == 0 and entry.not_before == 0.0
