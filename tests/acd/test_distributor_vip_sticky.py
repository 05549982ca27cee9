"""Who goes first: VIP ranks from the CRM, blacklisted callers, and the agent who served the caller
last (sticky agent) — the ACD's decisions, and the queue router asking a real CRM and a real queue
log on SQLite before a caller joins."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from acd.agents import Agent, AgentState, Membership, NotReadyReason
from acd.cdr import CdrRecord, CdrWriter, Disposition
from acd.distributor import Acd, Overflowed, QueueLogEntry
from acd.lookups import CallerInfo
from acd.queue_calls import (
    LOOKUP_TIMEOUT,
    NotFound,
    QueueConfigError,
    QueueDefinition,
    QueueRouter,
    SupervisorRefused,
)
from acd.queue_log import QueueLogWriter
from acd.queues import BlacklistTreatment, QueueConfig, QueuedCall, Strategy
from acd.schema import MIGRATIONS as ACD_MIGRATIONS
from acd.sticky import StickyAgents
from callcenter.crm_bridge import CrmBridge
from callcenter.database import apply_all, open_database
from crm.access import SYSTEM
from crm.db import Database
from crm.passwords import ScryptParams
from crm.schema import MIGRATIONS as CRM_MIGRATIONS
from crm.service import Crm

DAY = 86400.0


# ---------------------------------------------------------------- the ACD alone

def one_agent_on_break(**queue: object) -> Acd:
    acd = Acd()
    acd.add_queue(QueueConfig("q", "q", Strategy.LINEAR, **queue))  # type: ignore[arg-type]
    acd.add_agent(Agent("a0", "a0", queues={"q": Membership()}))
    acd.login("a0", 0)
    acd.not_ready("a0", NotReadyReason.BREAK, 0)
    return acd


def test_blacklisted_callers_by_the_queues_treatment() -> None:
    normal = one_agent_on_break()
    normal.enqueue(QueuedCall("bad", "q", 0, caller="1", blacklisted=True), 1)
    normal.enqueue(QueuedCall("good", "q", 0, caller="2"), 2)
    assert normal.position("bad") == 1  # "normal": served in arrival order

    last = one_agent_on_break(blacklist=BlacklistTreatment.LAST)
    last.enqueue(QueuedCall("bad", "q", 0, caller="1", blacklisted=True, priority=30), 1)
    last.enqueue(QueuedCall("good", "q", 0, caller="2"), 2)
    assert last.position("good") == 1 and last.position("bad") == 2  # even a diamond member goes last
    assert [e.data for e in last.log if e.event == "ENTERQUEUE"] == [("1", "-1"), ("2", "0")]

    reject = one_agent_on_break(blacklist=BlacklistTreatment.REJECT)
    assert reject.enqueue(QueuedCall("bad", "q", 0, caller="1", blacklisted=True), 1) == [
        Overflowed("bad", "", "blacklist")]
    assert "bad" not in reject.waiting and reject.log[-1].event == "BLACKLISTED"


def test_arrival_before_the_crm_answered_keeps_the_callers_place() -> None:
    acd = one_agent_on_break()
    # The first caller's look-up took longer: it joins second but arrived first.
    acd.enqueue(QueuedCall("second", "q", 5.0), 5.1)
    acd.enqueue(QueuedCall("first", "q", 4.9), 5.2)
    assert acd.position("first") == 1 and acd.waiting["first"].entered_at == 4.9
    # An arrival "in the future" is no arrival: the join time counts.
    acd.enqueue(QueuedCall("odd", "q", 99.0), 6.0)
    assert acd.waiting["odd"].entered_at == 6.0


def test_ringall_logs_who_else_rang_when_one_answers() -> None:
    acd = Acd()
    acd.add_queue(QueueConfig("q", "q", Strategy.RINGALL))
    for i in range(3):
        acd.add_agent(Agent(f"a{i}", f"a{i}", queues={"q": Membership()}))
        acd.login(f"a{i}", 0)
    acd.enqueue(QueuedCall("c", "q", 0), 1.0)
    acd.answered("c", "a1", 3.5)
    canceled = [(e.agent_id, e.data) for e in acd.log if e.event == "RINGCANCELED"]
    assert canceled == [("a0", ("2500",)), ("a2", ("2500",))]


def test_transfer_is_logged_in_asterisks_layout() -> None:
    acd = Acd()
    acd.add_queue(QueueConfig("q", "q", Strategy.LINEAR, wrapuptime=5))
    acd.add_agent(Agent("a0", "a0", queues={"q": Membership()}))
    acd.login("a0", 0)
    acd.enqueue(QueuedCall("c", "q", 0), 0)
    acd.answered("c", "a0", 3)
    acd.transferred("c", 63, "1009")
    [transfer] = [e for e in acd.log if e.event == "TRANSFER"]
    assert transfer.agent_id == "a0" and transfer.data == ("1009", "", "3", "60")
    assert acd.agents["a0"].state is AgentState.WRAP_UP


# ---------------------------------------------------------------- configuration

def test_queue_options_blacklist_and_sticky_days() -> None:
    q = QueueDefinition.from_table({"number": "8100", "blacklist": "last", "sticky_days": 7})
    assert q.config.blacklist is BlacklistTreatment.LAST and q.config.sticky_days == 7
    assert QueueDefinition.from_table({"number": "8100"}).config.blacklist is BlacklistTreatment.NORMAL
    with pytest.raises(QueueConfigError, match="blacklist must be one of"):
        QueueDefinition.from_table({"number": "8100", "blacklist": "drop"})
    for bad in (-1, "7", True):
        with pytest.raises(QueueConfigError, match="sticky_days"):
            QueueDefinition.from_table({"number": "8100", "sticky_days": bad})


# ---------------------------------------------------------------- the router, with real storage

class Phone:
    """The call-control side of one queue call as the router sees it: records what it is told."""

    def __init__(self, call_id: str, caller: str) -> None:
        self.id = call_id
        self.caller = caller
        self.rang: list[str] = []
        self.stopped: list[str] = []
        self.overflowed: list[tuple[str, str]] = []
        self.hung_up: list[str] = []
        self.router: QueueRouter | None = None

    def ring_agent(self, agent: str) -> bool:
        self.rang.append(agent)
        return True

    def stop_ringing(self, agent: str) -> None:
        self.stopped.append(agent)

    def overflow(self, destination: str, reason: str) -> None:
        self.overflowed.append((destination, reason))

    def hangup(self, reason: str, *, side: str) -> None:
        self.hung_up.append(reason)
        if self.router is not None:
            self.router.ended(self, side, time.time())  # type: ignore[arg-type]


@pytest.fixture
async def conn(tmp_path: Path):
    conn = await open_database(tmp_path / "callcenter.db")
    try:
        await apply_all(conn, {"acd": ACD_MIGRATIONS, "crm": CRM_MIGRATIONS})
        yield conn
    finally:
        await conn.close()


@pytest.fixture
def crm(conn) -> Crm:
    return Crm.build(Database(conn), password_params=ScryptParams(log2_n=4, r=8, p=1))


async def joined(router: QueueRouter) -> None:
    """Until every call's look-ups are done and it is in the ACD (or refused)."""
    for _ in range(200):
        if not router._joining:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the look-ups never finished")


async def test_vip_members_are_answered_before_earlier_callers(crm: Crm) -> None:
    await crm.members.create(SYSTEM, "王芳", phones=["13800138000"], level="gold")
    await crm.members.create(SYSTEM, "赵敏", phones=["13700137000"], level="diamond")
    pest = await crm.members.create(SYSTEM, "李强", phones=["13600136000"], level="diamond")
    await crm.members.set_blacklist(SYSTEM, pest.id, True, "骚扰电话")
    log: list[QueueLogEntry] = []
    table = {"number": "8100", "strategy": "linear", "members": ["1001"], "wrapuptime": 0, "joinempty": True,
             "blacklist": "last"}
    router = QueueRouter([QueueDefinition.from_table(table)], lambda ext: ext, on_log=log.append,
                         lookups=CrmBridge(crm))
    phones = [Phone("walk-in", "13912345678"), Phone("pest", "13600136000"), Phone("gold", "13800138000"),
              Phone("diamond", "+86 137 0013 7000"), Phone("desk", "1005")]
    for i, phone in enumerate(phones):
        router.enqueue(phone, "8100", 1000.0 + i)  # type: ignore[arg-type]
    await joined(router)
    ranks = {e.call_id: e.data[1] for e in log if e.event == "ENTERQUEUE"}
    assert ranks == {"walk-in": "0", "pest": "-1", "gold": "20", "diamond": "30", "desk": "0"}
    served = []
    router.feature("1001", "*61", time.time())  # the agent logs in: the ACD offers the best caller
    for _ in phones:
        ringing = [p for p in phones if p.rang and p.id not in served]
        assert len(ringing) == 1
        served.append(ringing[0].id)
        router.answered(ringing[0], "1001", time.time())  # type: ignore[arg-type]
        router.ended(ringing[0], "caller", time.time())  # type: ignore[arg-type]
    assert served == ["diamond", "gold", "walk-in", "desk", "pest"]


class SlowCrm:
    """A CRM that takes far longer than any caller should wait."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def caller(self, number: str) -> CallerInfo | None:
        self.asked.append(number)
        await asyncio.sleep(30)
        return CallerInfo(1, "never", 99, False, 0)


class BrokenCrm:
    async def caller(self, number: str) -> CallerInfo | None:
        raise RuntimeError("database is locked")


async def test_a_slow_or_failing_crm_never_holds_a_caller_back() -> None:
    for crm in (SlowCrm(), BrokenCrm()):
        table = {"number": "8100", "strategy": "linear", "members": ["1001"], "wrapuptime": 0}
        router = QueueRouter([QueueDefinition.from_table(table)], lambda ext: ext, lookups=crm,  # type: ignore[arg-type]
                             lookup_timeout=0.05)
        router.feature("1001", "*61", time.time())
        phone = Phone("c1", "13912345678")
        router.enqueue(phone, "8100", time.time())  # type: ignore[arg-type]
        await joined(router)
        assert phone.rang == ["1001"]  # queued as an ordinary caller and offered
        assert router.acd.waiting["c1"].priority == 0
    assert LOOKUP_TIMEOUT <= 0.2


async def test_a_caller_who_hangs_up_during_the_look_up_never_joins_but_is_an_abandon() -> None:
    crm = SlowCrm()
    log: list[QueueLogEntry] = []
    table = {"number": "8100", "members": ["1001"], "joinempty": True}
    router = QueueRouter([QueueDefinition.from_table(table)], lambda ext: ext, on_log=log.append,
                         lookups=crm)  # type: ignore[arg-type]
    phone = Phone("c1", "13912345678")
    arrived = time.time()
    router.enqueue(phone, "8100", arrived)  # type: ignore[arg-type]
    await asyncio.sleep(0)
    left = time.time()
    router.ended(phone, "caller", left)  # type: ignore[arg-type]
    await joined(router)
    await asyncio.sleep(0.01)
    assert crm.asked == ["13912345678"] and not router.acd.waiting and not router.calls
    # Issue #8: no caller lost from a queue without an abandon or answer record.
    assert [(e.at, e.event) for e in log if e.call_id == "c1"] == [(arrived, "ENTERQUEUE"), (left, "ABANDON")]
    assert router.wallboard.counters["8100"].abandoned == 1


async def write_history(conn, rows: list[tuple[str, str, float, list[tuple[str, str, tuple[str, ...]]]]]) -> None:
    """Past calls as the system writes them: a CDR per call and its queue log entries."""
    cdr, queue_log = CdrWriter(conn), QueueLogWriter(conn)
    for call_id, caller, started, entries in rows:
        for i, (agent, event, data) in enumerate(entries):
            queue_log.append(QueueLogEntry(started + 1 + i, call_id, "8100", agent, event, data))
        await cdr.write(CdrRecord(call_id, caller, "8100", started, started + 60, Disposition.ANSWERED, "caller",
                                  "normal", answered_by=entries[0][0] if entries else "", answered_at=started + 1))
    await queue_log.close()


async def test_sticky_agent_is_who_had_the_caller_last_even_after_a_transfer(conn) -> None:
    now = time.time()
    await write_history(conn, [
        ("old", "13800138000", now - 10 * DAY, [("1002", "CONNECT", ("3",))]),
        ("recent", "13800138000", now - 2 * DAY, [("1001", "CONNECT", ("1",)),
                                                   ("1001", "TRANSFER", ("1003", "", "1", "40"))]),
        ("other", "13900139000", now - 1 * DAY, [("1002", "CONNECT", ("2",))]),
        ("plain", "13700137000", now - 1 * DAY, [("1004", "CONNECT", ("2",)),
                                                  ("1004", "COMPLETECALLER", ("2", "50"))]),
    ])
    sticky = StickyAgents(conn)
    assert await sticky.preferred("13800138000", 7, now) == "1003"   # the transfer target, not the CDR's 1001
    assert await sticky.preferred("13800138000", 1, now) is None    # outside the window
    assert await sticky.last_agent("13800138000", now - 30 * DAY) == "1003"
    assert await sticky.preferred("13700137000", 7, now) == "1004"
    assert await sticky.preferred("13900139000", 0, now) is None    # sticky_days = 0: off
    assert await sticky.preferred("", 7, now) is None


async def test_the_sticky_agent_is_offered_first_when_ready(conn) -> None:
    now = time.time()
    await write_history(conn, [("before", "13800138000", now - DAY, [("1003", "CONNECT", ("1",))])])
    table = {"number": "8100", "strategy": "linear", "members": ["1001", "1002", "1003"], "wrapuptime": 0,
             "sticky_days": 7}
    router = QueueRouter([QueueDefinition.from_table(table)], lambda ext: ext, sticky=StickyAgents(conn))
    for ext in ("1001", "1002", "1003"):
        router.feature(ext, "*61", now)
    returning = Phone("again", "13800138000")
    router.enqueue(returning, "8100", time.time())  # type: ignore[arg-type]
    await joined(router)
    assert returning.rang == ["1003"]  # linear would have rung 1001
    router.answered(returning, "1003", time.time())  # type: ignore[arg-type]
    # Busy now: the caller's next call goes by the strategy.
    again = Phone("again2", "13800138000")
    router.enqueue(again, "8100", time.time())  # type: ignore[arg-type]
    await joined(router)
    assert again.rang == ["1001"]


async def test_supervisor_forces_agent_states_and_hangs_up_calls() -> None:
    log: list[QueueLogEntry] = []
    table = {"number": "8100", "strategy": "linear", "members": ["1001", "1002"], "wrapuptime": 0}
    router = QueueRouter([QueueDefinition.from_table(table)], lambda ext: ext, on_log=log.append)
    now = time.time()
    assert router.force_ready("1001", now) is AgentState.READY  # logged out -> logged in, ready
    assert router.force_not_ready("1001", NotReadyReason.TRAINING, now) is AgentState.NOT_READY
    assert router.acd.agents["1001"].reason is NotReadyReason.TRAINING
    router.force_not_ready("1001", NotReadyReason.LUNCH, now)
    assert router.acd.agents["1001"].reason is NotReadyReason.LUNCH
    assert router.force_ready("1001", now) is AgentState.READY
    phone = Phone("c1", "13912345678")
    phone.router = router
    router.enqueue(phone, "8100", now)  # type: ignore[arg-type]
    router.answered(phone, "1001", now)  # type: ignore[arg-type]
    with pytest.raises(SupervisorRefused):
        router.force_not_ready("1001", NotReadyReason.BREAK, now)
    with pytest.raises(SupervisorRefused):
        router.force_not_ready("1002", NotReadyReason.BREAK, now)  # logged out
    with pytest.raises(NotFound):
        router.force_ready("9999", now)
    router.force_hangup("c1")
    assert phone.hung_up == ["supervisor"] and router.acd.agents["1001"].state is AgentState.READY
    with pytest.raises(NotFound):
        router.force_hangup("c1")
    assert router.force_logout("1001", now) is AgentState.LOGGED_OUT
    events = [(e.agent_id, e.event, e.data) for e in log if e.call_id == "NONE"]
    assert events == [("1001", "ADDMEMBER", ()), ("1001", "PAUSE", ("training",)), ("1001", "PAUSE", ("lunch",)),
                      ("1001", "UNPAUSE", ()), ("1001", "REMOVEMEMBER", ())]
    assert [e.event for e in log if e.call_id == "c1"] == ["ENTERQUEUE", "CONNECT", "COMPLETECALLER"]


async def test_a_completed_transfer_ends_the_agents_part_and_names_the_new_party() -> None:
    log: list[QueueLogEntry] = []
    table = {"number": "8100", "strategy": "linear", "members": ["1001"], "wrapuptime": 30}
    router = QueueRouter([QueueDefinition.from_table(table)], lambda ext: ext, on_log=log.append)
    now = time.time()
    router.feature("1001", "*61", now)
    phone = Phone("c1", "13912345678")
    router.enqueue(phone, "8100", now)  # type: ignore[arg-type]
    router.answered(phone, "1001", now + 1)  # type: ignore[arg-type]
    router.transferred(phone, "1009", now + 61)  # type: ignore[arg-type]
    assert router.acd.agents["1001"].state is AgentState.WRAP_UP  # wrap-up honoured after a transfer
    router.ended(phone, "caller", now + 90)  # type: ignore[arg-type]  # the call goes on without the queue
    assert [(e.event, e.data) for e in log if e.call_id == "c1"][-1] == ("TRANSFER", ("1009", "", "1", "60"))
    assert not router.calls and not router.acd.connected
