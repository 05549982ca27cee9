"""Issue #8 with real phones: an agent talking on a direct call (not a queue call) is offered no
queue call until it ends — Asterisk's queue member "in use" with ringinuse=no.

Desk phones (SIPp, auto-answering, logged in with *61): agent 1001 is on a call from extension
1005; a queue call arrives → it goes to the other ready agent 1002 (linear would pick 1001
first); the next one waits; when 1001's direct call ends, the waiting call is offered to 1001 at
once. No RINGNOANSWER for 1001 (a 486 from a busy phone would count as a missed offer) and no
PAUSE: the agent stayed ready throughout.

Browser softphone (an aiortc peer signed in like the page): agent 1003 calls desk phone 1005
from the softphone; a queue call waits meanwhile and rings the browser the moment the agent
hangs up."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from bench.server import ServerProcess
from bench.sipp import free_port
from tests.peers.seeded_server import seeded_server
from tests.peers.test_browser_dial import Softphone, desk_phone
from tests.peers.test_queue_browser_agents import feature, finished, queue_log, rows, sipp, start_sipp, until

pytestmark = [pytest.mark.peers, pytest.mark.timeout(120)]

#: How long the desk phones' direct call lasts (ms): long enough for two queue calls to arrive
#: during it on a busy machine; the waiting one is then seen to go out when it ends.
DIRECT_MS = 8000

CONFIG = "\n".join([
    # No RTP is sent by the SIPp callers: the silence must not end a call during the story.
    "[calls]", "rtp_timeout = 120.0",
    # Linear: 1001 first, 1002 after; no max_wait, so nothing but 1001 coming free can serve a
    # caller who waits while both are busy.
    "[[queues]]", 'number = "8120"', 'strategy = "linear"', 'members = ["1001", "1002"]', "wrapuptime = 0",
    "ring_timeout = 5", "max_missed = 1",
    # The browser agent's own queue.
    "[[queues]]", 'number = "8121"', 'members = ["1003"]', "wrapuptime = 0", "ring_timeout = 10",
    "max_missed = 1", ""])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("direct-busy")
    with seeded_server(root, CONFIG) as server:
        yield server




def events(server: ServerProcess, queue: str, event: str) -> list[dict[str, Any]]:
    return [r for r in queue_log(server, queue) if r["event"] == event]


def logged_at(server: ServerProcess, queue: str, event: str, agent: str) -> float:
    [row] = rows(server.data_dir / "callcenter.db",
                 f"SELECT at FROM queue_log WHERE queue = '{queue}' AND event = '{event}' AND agent = '{agent}'")
    return float(row["at"])


def direct_call(server: ServerProcess, caller: str, callee: str) -> dict[str, Any]:
    """The call's CDR, its end as epoch seconds (the CDR keeps ISO 8601 UTC, to the millisecond)."""
    [row] = rows(server.data_dir / "callcenter.db",
                 "SELECT answered_by, disposition, ended_at FROM cdr"
                 f" WHERE caller = '{caller}' AND callee = '{callee}'")
    return row | {"ended_at": datetime.fromisoformat(row["ended_at"]).timestamp()}


async def answering_phone(server: ServerProcess, tmp_path: Path, procs: list[Any], extension: str,
                          calls: int) -> Any:
    """A SIPp desk phone registered as `extension` that answers `calls` calls."""
    port = free_port("127.0.0.1")
    uas = start_sipp(procs, server, tmp_path / f"desk{extension}", "uas_answer.xml", local_port=port, calls=calls,
                     timeout=60, keys={"rtp_port": str(free_port("127.0.0.1"))})
    await sipp(server, "register_contact.xml", tmp_path / f"reg{extension}", service=extension,
               auth=(extension, f"demo{extension}"), keys={"contact_port": str(port)}, timeout=20)
    return uas


def caller(procs: list[Any], server: ServerProcess, workdir: Path, extension: str, number: str,
           talk_ms: int) -> Any:
    """A SIPp phone of `extension` calling `number`, hanging up `talk_ms` after the answer."""
    return start_sipp(procs, server, workdir, "uac_call.xml", service=number, auth=(extension, f"demo{extension}"),
                      keys={"caller": extension, "rtp_port": str(free_port("127.0.0.1"))}, timeout=60,
                      extra=["-d", str(talk_ms)])


async def test_a_desk_phone_agent_on_a_direct_call_is_skipped_then_offered_the_waiting_call_when_it_ends(
        server: ServerProcess, tmp_path: Path, procs: list[Any]) -> None:
    agent1001 = await answering_phone(server, tmp_path, procs, "1001", calls=2)   # the direct call, then one
    agent1002 = await answering_phone(server, tmp_path, procs, "1002", calls=1)
    for extension in ("1001", "1002"):
        await feature(server, tmp_path, extension, "*61")

    # 1005 calls agent 1001's desk phone directly: 1001 is busy, still ready.
    direct = caller(procs, server, tmp_path / "direct", "1005", "1001", DIRECT_MS)
    await until(lambda: "agent 1001: on direct call" in server.log(), "1001 busy on the direct call", server)

    # A customer calls the queue: linear would ring 1001 first; 1002 takes it.
    first = caller(procs, server, tmp_path / "first", "1006", "8120", 60000)
    await until(lambda: events(server, "8120", "CONNECT"), "the first queue call connected", server)
    assert [r["agent"] for r in events(server, "8120", "CONNECT")] == ["1002"]

    # The next one waits: 1001 on the direct call, 1002 on the first queue call.
    second = caller(procs, server, tmp_path / "second", "1007", "8120", 1000)
    await until(lambda: len(events(server, "8120", "ENTERQUEUE")) == 2, "the second caller queued", server)
    entered = float(rows(server.data_dir / "callcenter.db",
                         "SELECT at FROM queue_log WHERE event = 'ENTERQUEUE' ORDER BY id")[-1]["at"])

    # The direct call ends: the waiting caller goes to 1001 at once (no timer would do it).
    await finished(direct, tmp_path / "direct", timeout=30)
    await finished(second, tmp_path / "second", timeout=30)
    assert [r["agent"] for r in events(server, "8120", "CONNECT")] == ["1002", "1001"]
    ended = direct_call(server, "1005", "1001")
    assert ended["answered_by"] == "1001" and ended["disposition"] == "ANSWERED"
    assert entered < ended["ended_at"] <= logged_at(server, "8120", "CONNECT", "1001")

    # Never offered while busy: no missed offer, no pause, no wrap-up of a direct call.
    agent_events = [r["event"] for r in rows(server.data_dir / "callcenter.db",
                                             "SELECT event FROM queue_log WHERE agent = '1001' ORDER BY id")]
    assert agent_events == ["ADDMEMBER", "CONNECT", "COMPLETECALLER"], agent_events
    assert "agent 1001: off direct call" in server.log()
    assert "agent 1002: on direct call" not in server.log()   # a queue call is the ACD's own
    for proc in (first, agent1001, agent1002):
        proc.kill()
        proc.wait()


async def test_a_browser_agent_calling_from_the_softphone_gets_the_waiting_queue_call_when_they_hang_up(
        server: ServerProcess, tmp_path: Path, procs: list[Any], browsers: list[Softphone]) -> None:
    agent = Softphone(server, "agent3", "1003")
    browsers.append(agent)
    await agent.register()
    await feature(server, tmp_path, "1003", "*61")
    await desk_phone(server, tmp_path, procs, "1005", "uas_answer.xml", free_port("127.0.0.1"))

    # The agent calls desk phone 1005 from the softphone.
    direct = await agent.dial("1005")
    await until(lambda: agent.state(direct) == "answered", "the softphone's call answered", server)
    await until(lambda: "agent 1003: on direct call" in server.log(), "1003 busy on the direct call", server)

    # A customer calls the agent's queue: it waits, the browser does not ring a second call.
    customer = caller(procs, server, tmp_path / "customer", "1008", "8121", 1000)
    await until(lambda: events(server, "8121", "ENTERQUEUE"), "the customer queued", server)
    assert agent.incoming == []

    # The agent hangs up: the queue call rings the browser at once, which answers it.
    await agent.hangup(direct)
    await finished(customer, tmp_path / "customer", timeout=30)
    assert len(agent.incoming) == 1
    assert [r["agent"] for r in events(server, "8121", "CONNECT")] == ["1003"]
    ended = direct_call(server, "1003", "1005")
    assert ended["disposition"] == "ANSWERED"
    assert ended["ended_at"] <= logged_at(server, "8121", "CONNECT", "1003")
    agent_events = [r["event"] for r in rows(server.data_dir / "callcenter.db",
                                             "SELECT event FROM queue_log WHERE agent = '1003' ORDER BY id")]
    assert agent_events == ["ADDMEMBER", "CONNECT", "COMPLETECALLER"], agent_events
