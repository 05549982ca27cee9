"""The ACD end to end with real peers: customers (SIPp) call queues through a trunk, agents' phones
(SIPp uas with auto-answer, registered as extensions, logged in with *61) take the calls.

One server for the module. Six queues, one per strategy, each with six agents of their own, take
30 callers each at the same time; agent k's phone answers after k×100 ms and hangs up after 1 s,
so at every arrival (one each 0.5 s) about three agents are still busy and the strategies show:
linear keeps the first agents busy, rrmemory/leastrecent/fewestcalls go round all six, random
spreads without order, ringall rings every free agent and the quickest phone wins. Meanwhile VIP
members from the CRM overtake earlier callers, callers who waited too long in one queue
overflow to another, and a returning customer gets the agent who served them last. Every check reads what the server recorded: its queue log and CDRs.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from acd.directory import Extension, ExtensionDirectory
from bench.server import ServerProcess
from bench.sipp import SCENARIOS, SippResult, free_port, read_result, run_sipp, sipp_command
from callcenter.app import schemas
from callcenter.database import apply_all, open_database
from crm.access import SYSTEM
from crm.db import Database
from crm.service import Crm

pytestmark = pytest.mark.peers

STRATEGIES = ("ringall", "leastrecent", "fewestcalls", "random", "rrmemory", "linear")
CALLERS = 30
AGENTS = 6
RATE = 2.0  # callers a second, per queue
VIP_QUEUE, OVERFLOW_QUEUE, OVERFLOW_TARGET = "8107", "8108", "8109"
VIP_AGENT, IDLE_AGENT, OVERFLOW_AGENT = "2701", "2801", "2901"
STICKY_QUEUE, STICKY_AGENTS = "8110", ["3001", "3002"]
MAX_WAIT = 2

# The VIP queue's callers in order of arrival: (number, who).
VIP_CALLERS = [("13912340001", "walk-in 1"), ("13600136000", "blacklisted diamond"), ("13912340002", "walk-in 2"),
               ("13912340003", "walk-in 3"), ("13800138000", "gold"), ("13700137000", "diamond")]
OVERFLOW_CALLERS = ["13912350001", "13912350002", "13912350003"]
# A first caller keeps the first agent busy, so the returning customer is served by the second;
# when the customer calls again, linear would pick the first agent, sticky picks the second.
FIRST_CALLER, RETURNING = "13912360001", "13912360002"


def queue_number(strategy: str) -> str:
    return f"810{STRATEGIES.index(strategy) + 1}"


def agents_of(strategy: str) -> list[str]:
    """The strategy's agents in member order; agent k answers after k×100 ms."""
    return [f"2{STRATEGIES.index(strategy) + 1}0{k}" for k in range(1, AGENTS + 1)]


def did(queue: str) -> str:
    return f"0216000{queue}"


def password(extension: str) -> str:
    return f"pw{extension}"


def credentials(extension: str) -> str:
    """An injection-file field SIPp answers digest challenges with for this line's call."""
    return f"[authentication username={extension} password={password(extension)}]"


@dataclass
class Site:
    tmp: Path
    server: ServerProcess | None = None
    phones: list[subprocess.Popen[bytes]] = field(default_factory=list)
    callers: dict[str, tuple[subprocess.Popen[bytes], Path]] = field(default_factory=dict)
    results: dict[str, SippResult] = field(default_factory=dict)
    supervisor_token: str = ""

    @property
    def target(self) -> str:
        assert self.server is not None
        return f"127.0.0.1:{self.server.sip_port}"

    @property
    def db(self) -> Path:
        return self.tmp / "data" / "callcenter.db"

    def close(self) -> None:
        for proc in [*self.phones, *(p for p, _ in self.callers.values())]:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        if self.server is not None and self.server.proc is not None:
            self.server.stop()


async def prepare_database(db: Path, extensions: list[str]) -> str:
    """The site's data before the server starts: agents' extensions, CRM members with levels, and
    a supervisor with an API token (returned)."""
    conn = await open_database(db)
    try:
        await apply_all(conn, schemas())
        directory = ExtensionDirectory(conn)
        for extension in extensions:
            await directory.upsert(Extension(extension, f"坐席 {extension}", password(extension)))
        crm = Crm.build(Database(conn))
        await crm.members.create(SYSTEM, "王芳", phones=["13800138000"], level="gold")
        await crm.members.create(SYSTEM, "赵敏", phones=["13700137000"], level="diamond")
        pest = await crm.members.create(SYSTEM, "李强", phones=["13600136000"], level="diamond")
        await crm.members.set_blacklist(SYSTEM, pest.id, True, "骚扰电话")
        hq = await crm.org.create_department(SYSTEM, "总部")
        supervisor = await crm.org.create_user(SYSTEM, "sup", "主管", "secret-pass-1", roles=["supervisor"],
                                               department_id=hq.id)
        return (await crm.tokens.create(SYSTEM, name="wallboard", user_id=supervisor.id)).secret
    finally:
        await conn.close()


def config(caller_ports: list[int], provider_port: int) -> str:
    sources = ", ".join(f'"127.0.0.1:{p}"' for p in caller_ports)
    queues = [*(queue_number(s) for s in STRATEGIES), VIP_QUEUE, OVERFLOW_QUEUE, OVERFLOW_TARGET, STICKY_QUEUE]
    dids = ", ".join(f'"{did(q)}" = "{q}"' for q in queues)
    lines = ["[calls]", "rtp_timeout = 60.0", "",
             "[[trunks]]", 'name = "carrier"', 'host = "127.0.0.1"', f"port = {provider_port}", "qualify = 0",
             f"ip_auth = [{sources}]", f"dids = {{ {dids} }}", ""]
    for strategy in STRATEGIES:
        members = ", ".join(f'"{a}"' for a in agents_of(strategy))
        lines += ["[[queues]]", f'number = "{queue_number(strategy)}"', f'strategy = "{strategy}"',
                  f"members = [{members}]", "wrapuptime = 0", "ring_timeout = 10", ""]
    lines += ["[[queues]]", f'number = "{VIP_QUEUE}"', 'strategy = "linear"', f'members = ["{VIP_AGENT}"]',
              "wrapuptime = 0", "joinempty = true", 'blacklist = "last"', "",
              "[[queues]]", f'number = "{OVERFLOW_QUEUE}"', f'members = ["{IDLE_AGENT}"]', "joinempty = true",
              f"max_wait = {MAX_WAIT}", f'overflow = "{OVERFLOW_TARGET}"', "",
              "[[queues]]", f'number = "{OVERFLOW_TARGET}"', f'members = ["{OVERFLOW_AGENT}"]', "wrapuptime = 0", "",
              "[[queues]]", f'number = "{STICKY_QUEUE}"', 'strategy = "linear"', "wrapuptime = 0", "sticky_days = 1",
              "members = [" + ", ".join(f'"{a}"' for a in STICKY_AGENTS) + "]", ""]
    return "\n".join(lines)


def injection(path: Path, rows: list[str]) -> Path:
    path.write_text("SEQUENTIAL\n" + "".join(f"{r}\n" for r in rows))
    return path


def start_callers(site: Site, name: str, queue: str, numbers: list[str], port: int, rate: float) -> None:
    workdir = site.tmp / f"callers-{name}"
    workdir.mkdir()
    numbers_file = injection(workdir / "numbers.csv", numbers)
    cmd = sipp_command("acd_caller.xml", site.target, service=did(queue), calls=len(numbers), rate=rate,
                       local_port=port, timeout=90, keys={"rtp_port": str(free_port("127.0.0.1"))},
                       extra=["-inf", str(numbers_file)])
    site.callers[name] = (subprocess.Popen(cmd, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT),
                          workdir)


def feature_codes(site: Site, name: str, rows: list[tuple[str, str]]) -> None:
    workdir = site.tmp / name
    workdir.mkdir()
    inf = injection(workdir / "codes.csv", [f"{ext};{credentials(ext)};{code}" for ext, code in rows])
    result = run_sipp("acd_login.xml", site.target, workdir, calls=len(rows), rate=50, timeout=30,
                      keys={"rtp_port": str(free_port("127.0.0.1"))}, extra=["-inf", str(inf)])
    assert result.successful == len(rows), result.output


async def query(db: Path, sql: str, params: tuple = ()) -> list[dict]:
    conn = await open_database(db)
    try:
        async with conn.execute(sql, params) as cur:
            return [dict(r) for r in await cur.fetchall()]
    finally:
        await conn.close()


def rows(db: Path, sql: str, params: tuple = ()) -> list[dict]:
    return asyncio.run(query(db, sql, params))


def wait_for(condition, what: str, site: Site, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    assert site.server is not None
    raise AssertionError(f"timed out waiting for {what}\n{site.server.log()[-5000:]}")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    s = Site(tmp_path_factory.mktemp("acd"))
    try:
        run_site(s)
        yield s
    finally:
        s.close()


def run_site(site: Site) -> None:
    """Start everything, run every caller at once, and wait until they are all done."""
    strategy_agents = [a for s in STRATEGIES for a in agents_of(s)]
    extensions = [*strategy_agents, VIP_AGENT, IDLE_AGENT, OVERFLOW_AGENT, *STICKY_AGENTS]
    (site.tmp / "data").mkdir()
    site.supervisor_token = asyncio.run(prepare_database(site.db, extensions))
    caller_ports = [free_port("127.0.0.1") for _ in range(len(STRATEGIES) + 3)]
    config_file = site.tmp / "callcenter.toml"
    config_file.write_text(config(caller_ports, caller_ports[0]))
    site.server = ServerProcess(site.tmp / "data", demo=False, extra_args=["--config", str(config_file)])
    site.server.start()

    # Six phones: phone k answers for agent k of every queue after k×100 ms.
    contact: dict[str, int] = {}
    template = (SCENARIOS / "acd_agent.xml").read_text()
    for k in range(1, AGENTS + 1):
        workdir = site.tmp / f"phone{k}"
        workdir.mkdir()
        scenario = workdir / "agent.xml"
        scenario.write_text(template.replace('timeout="150"', f'timeout="{k * 100}"'))
        port = free_port("127.0.0.1")
        site.phones.append(subprocess.Popen(
            sipp_command(str(scenario), site.target, local_port=port, calls=100000, timeout=300,
                         keys={"rtp_port": str(free_port("127.0.0.1"))}),
            cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
        for strategy in STRATEGIES:
            contact[agents_of(strategy)[k - 1]] = port
    for extension in (VIP_AGENT, IDLE_AGENT, OVERFLOW_AGENT):
        contact[extension] = contact[agents_of("linear")[0]]
    for k, extension in enumerate(STICKY_AGENTS):
        contact[extension] = contact[agents_of("linear")[k]]
    reg_dir = site.tmp / "register"
    reg_dir.mkdir()
    inf = injection(reg_dir / "extensions.csv", [f"{e};{credentials(e)};{contact[e]}" for e in extensions])
    registered = run_sipp("acd_register.xml", site.target, reg_dir, calls=len(extensions), rate=50, timeout=30,
                          extra=["-inf", str(inf)])
    assert registered.successful == len(extensions), registered.output
    feature_codes(site, "login", [(a, "*61") for a in [*strategy_agents, OVERFLOW_AGENT, *STICKY_AGENTS]])

    for i, strategy in enumerate(STRATEGIES):
        numbers = [f"1391{i + 1}{n:06d}" for n in range(CALLERS)]
        start_callers(site, strategy, queue_number(strategy), numbers, caller_ports[i], RATE)
    start_callers(site, "vip", VIP_QUEUE, [n for n, _ in VIP_CALLERS], caller_ports[6], 5)
    start_callers(site, "overflow", OVERFLOW_QUEUE, OVERFLOW_CALLERS, caller_ports[7], 5)
    start_callers(site, "sticky-first", STICKY_QUEUE, [FIRST_CALLER, RETURNING], caller_ports[8], 5)

    # The VIP queue's agent logs in once every caller waits in it.
    wait_for(lambda: len(rows(site.db, "SELECT 1 FROM queue_log WHERE queue = ? AND event = 'ENTERQUEUE'",
                              (VIP_QUEUE,))) == len(VIP_CALLERS), "the VIP queue's callers", site)
    feature_codes(site, "vip-login", [(VIP_AGENT, "*61")])
    # The customer calls again once the first calls' CDRs are written.
    proc, workdir = site.callers["sticky-first"]
    out, _ = proc.communicate(timeout=60)
    site.results["sticky-first"] = read_result(workdir, proc.returncode, out)
    wait_for(lambda: len(rows(site.db, "SELECT 1 FROM cdr WHERE callee = ?", (STICKY_QUEUE,))) == 2,
             "the first calls' CDRs", site)
    start_callers(site, "sticky-again", STICKY_QUEUE, [RETURNING], caller_ports[8], 5)
    for name, (proc, workdir) in site.callers.items():
        if name in site.results:
            continue
        out, _ = proc.communicate(timeout=90)
        site.results[name] = read_result(workdir, proc.returncode, out)


def queue_calls(site: Site, queue: str) -> list[dict]:
    """Each call of the queue in order of arrival: its caller and rank, who answered, who else
    rang, when it entered (and was offered: agents were free) and when the agent's part ended."""
    entries = rows(site.db, "SELECT at, call_id, agent, event, data FROM queue_log WHERE queue = ? ORDER BY id",
                   (queue,))
    calls: dict[str, dict] = {}
    for e in entries:
        call = calls.setdefault(e["call_id"], {"caller": "", "rank": "", "agent": None, "canceled": [],
                                               "entered": 0.0, "ended": None})
        if e["event"] == "ENTERQUEUE":
            call["caller"], call["rank"] = e["data"].split("|")
            call["entered"] = e["at"]
        elif e["event"] == "CONNECT":
            call["agent"] = e["agent"]
        elif e["event"] == "RINGCANCELED":
            call["canceled"].append(e["agent"])
        elif e["event"].startswith("COMPLETE"):
            call["ended"] = e["at"]
    return [c for c in calls.values() if c["caller"]]


def expected_choice(strategy: str, agents: list[str], calls: list[dict], k: int, previous: str | None) -> str | None:
    """Who the strategy must pick for call k, replayed from the log: an agent is busy from the
    moment a call is offered to them (its entry: agents were free) until their part ends; the
    free ones are ranked as the strategy says. None when nobody was free (the call waited)."""
    t = calls[k]["entered"]
    done = [c for c in calls[:k] if c["ended"] is not None and c["ended"] < t]
    busy = {c["agent"] for c in calls[:k] if c["ended"] is None or c["ended"] >= t}
    free = [a for a in agents if a not in busy]
    if not free:
        return None
    last_end = {a: max((c["ended"] for c in done if c["agent"] == a), default=0.0) for a in agents}
    taken = Counter(c["agent"] for c in done)
    if strategy == "linear":
        return free[0]
    if strategy == "rrmemory":
        start = agents.index(previous) + 1 if previous else 0
        return min(free, key=lambda a: (agents.index(a) - start) % len(agents))
    if strategy == "leastrecent":
        return min(free, key=lambda a: (last_end[a], a))
    return min(free, key=lambda a: (taken[a], last_end[a], a))  # fewestcalls


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_thirty_callers_six_agents_distribution_follows_the_strategy(site: Site, strategy: str) -> None:
    result = site.results[strategy]
    assert result.successful == CALLERS, result.output
    calls = queue_calls(site, queue_number(strategy))
    assert len(calls) == CALLERS and all(c["agent"] for c in calls), calls
    agents = agents_of(strategy)
    order = [c["agent"] for c in calls]
    counts = [Counter(order)[a] for a in agents]
    cdrs = rows(site.db, "SELECT answered_by, disposition FROM cdr WHERE callee = ?", (queue_number(strategy),))
    assert Counter(r["answered_by"] for r in cdrs) == Counter(order)
    assert {r["disposition"] for r in cdrs} == {"ANSWERED"}
    if strategy == "ringall":
        # Every free agent rings; the quickest phone (the lowest k) among them answers.
        rung = [{c["agent"], *c["canceled"]} for c in calls]
        assert all(len(r) >= 3 for r in rung), rung
        assert any(len(r) == AGENTS for r in rung)
        quickest = sum(1 for c, r in zip(calls, rung, strict=True) if c["agent"] == min(r, key=agents.index))
        assert quickest >= CALLERS - 1, (order, rung)
        return
    assert not any(c["canceled"] for c in calls), "one agent rings at a time"
    if strategy == "random":
        # Everyone gets calls, in no order: not the first free agent each time.
        assert sum(1 for n in counts if n) >= 5 and max(counts) <= 12, counts
        linear = sum(1 for k in range(CALLERS) if expected_choice("linear", agents, calls, k, None) == order[k])
        assert linear <= CALLERS * 0.7, " ".join(order)
        return
    if strategy != "linear":
        assert all(4 <= n <= 6 for n in counts), counts  # round all six: 5 each
    # Decision by decision, the agent picked is the one the strategy ranks first among the free.
    right = waited = 0
    for k in range(CALLERS):
        expected = expected_choice(strategy, agents, calls, k, order[k - 1] if k else None)
        if expected is None:
            waited += 1
        right += expected == order[k]
    assert waited <= 2 and right >= CALLERS - waited - 1, (counts, " ".join(order))


def test_vip_members_are_answered_before_earlier_callers_and_the_blacklisted_last(site: Site) -> None:
    result = site.results["vip"]
    assert result.successful == len(VIP_CALLERS), result.output
    calls = queue_calls(site, VIP_QUEUE)
    ranks = {c["caller"]: c["rank"] for c in calls}
    assert ranks == {"13912340001": "0", "13600136000": "-1", "13912340002": "0", "13912340003": "0",
                     "13800138000": "20", "13700137000": "30"}
    connects = rows(site.db, "SELECT call_id FROM queue_log WHERE queue = ? AND event = 'CONNECT' ORDER BY id",
                    (VIP_QUEUE,))
    who = dict(VIP_CALLERS)
    served = [who[number_of(site, r["call_id"])] for r in connects]
    assert served == ["diamond", "gold", "walk-in 1", "walk-in 2", "walk-in 3", "blacklisted diamond"]


def number_of(site: Site, call_id: str) -> str:
    [row] = rows(site.db, "SELECT data FROM queue_log WHERE call_id = ? AND event = 'ENTERQUEUE'", (call_id,))
    return row["data"].split("|")[0]


def test_callers_who_wait_too_long_overflow_to_the_next_queue(site: Site) -> None:
    result = site.results["overflow"]
    assert result.successful == len(OVERFLOW_CALLERS), result.output
    entries = rows(site.db, "SELECT call_id, queue, agent, event, data FROM queue_log WHERE queue IN (?, ?) ORDER BY id",
                   (OVERFLOW_QUEUE, OVERFLOW_TARGET))
    by_call: dict[str, list[tuple[str, str]]] = {}
    for e in entries:
        by_call.setdefault(e["call_id"], []).append((e["queue"], e["event"]))
        if e["event"] == "EXITWITHTIMEOUT":
            assert int(e["data"]) >= MAX_WAIT
        if e["event"] == "CONNECT":
            assert e["agent"] == OVERFLOW_AGENT
    assert len(by_call) == len(OVERFLOW_CALLERS)
    for events in by_call.values():
        assert events == [(OVERFLOW_QUEUE, "ENTERQUEUE"), (OVERFLOW_QUEUE, "EXITWITHTIMEOUT"),
                          (OVERFLOW_TARGET, "ENTERQUEUE"), (OVERFLOW_TARGET, "CONNECT"),
                          (OVERFLOW_TARGET, "COMPLETEAGENT")]
    cdrs = rows(site.db, "SELECT answered_by, disposition FROM cdr WHERE callee = ?", (OVERFLOW_QUEUE,))
    assert [r["answered_by"] for r in cdrs] == [OVERFLOW_AGENT] * len(OVERFLOW_CALLERS)


def test_a_returning_customer_gets_the_agent_who_served_them_last(site: Site) -> None:
    assert site.results["sticky-first"].successful == 2, site.results["sticky-first"].output
    assert site.results["sticky-again"].successful == 1, site.results["sticky-again"].output
    served = [(c["caller"], c["agent"]) for c in queue_calls(site, STICKY_QUEUE)]
    # Linear would give the returning customer the first agent again; sticky gives them theirs.
    assert served == [(FIRST_CALLER, STICKY_AGENTS[0]), (RETURNING, STICKY_AGENTS[1]),
                      (RETURNING, STICKY_AGENTS[1])]


def test_a_supervisor_forces_an_agent_through_the_servers_rest_api(site: Site) -> None:
    assert site.server is not None
    headers = {"Authorization": f"Bearer {site.supervisor_token}"}
    base = f"{site.server.http_url}/api/supervisor"
    with httpx.Client(headers=headers, timeout=10) as http:
        assert http.post(f"{base}/agents/{IDLE_AGENT}/ready").json()["state"] == "ready"
        paused = http.post(f"{base}/agents/{IDLE_AGENT}/not-ready", json={"reason": "training"})
        assert paused.json() == {"agent": IDLE_AGENT, "state": "not_ready", "reason": "training"}
        assert http.post(f"{base}/agents/{IDLE_AGENT}/logout").json()["state"] == "logged_out"
        assert http.post(f"{base}/calls/no-such-call/hangup").status_code == 404
        assert http.post(f"{base}/agents/{IDLE_AGENT}/ready", headers={"Authorization": "Bearer x"}).status_code == 401
    wait_for(lambda: len(rows(site.db, "SELECT 1 FROM queue_log WHERE agent = ?", (IDLE_AGENT,))) == 3,
             "the queue log", site)
    log = rows(site.db, "SELECT event, data FROM queue_log WHERE agent = ? ORDER BY id", (IDLE_AGENT,))
    assert [(r["event"], r["data"]) for r in log] == [("ADDMEMBER", ""), ("PAUSE", "training"), ("REMOVEMEMBER", "")]
    audited = rows(site.db, "SELECT username, action FROM audit_log WHERE entity = 'agent' ORDER BY id")
    assert audited == [{"username": "sup", "action": a} for a in ("force_ready", "force_not_ready", "force_logout")]
