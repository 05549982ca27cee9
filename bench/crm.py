"""CRM at scale: caller-ID look-up and member search latency over a million members.

`python -m bench crm --members 1000000 --json OUT`

Seeding goes around the services on purpose: rows are written with plain sqlite3 in large
transactions (the same tables, keys and derived columns the services write: E.164 phones, name
n-grams, tags carrying the level), because a million audited service calls would take hours and
measure nothing this bench is about. The result's params say so. The measurement then goes through
the real service path (`MemberService.lookup_by_caller_id`, `MemberService.search`) on the shared
aiosqlite connection, one query at a time, as an agent's screen pop and search box would.

Goals (from the issue): caller-ID look-up p99 < 2 ms, member search p99 < 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench.common import write_result

SEED = 20261123
#: Rows per transaction while seeding: large enough that commit cost vanishes, small enough
#: that the WAL file stays a few hundred megabytes.
CHUNK = 50_000
#: Mobile prefixes the Chinese numbering plan (and phonenumbers) fully allocates.
PREFIXES = ["130", "131", "132", "135", "136", "137", "138", "139", "150", "151", "152", "158", "159", "186",
            "187", "188", "189"]  # fmt: skip
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈"
GIVEN = "丽静敏燕艳娟霞芳婷雪慧玲洁琳颖倩萍红梅莉晶欣怡佳璐瑶雯馨月悦萌露琪蕾伟强磊军勇杰涛斌超明刚平辉鹏华飞鑫波宇浩"
TAGS = ["敏感肌", "抗衰老", "美白", "祛斑", "祛痘", "补水", "产后修复", "身体SPA", "减脂塑形", "眼部护理", "高消费", "价格敏感"]
LEVELS = [("normal", 55), ("silver", 25), ("gold", 15), ("diamond", 5)]
#: Multiplier of a bijection on 0..10^8-1 (coprime with 10): member i gets a distinct mobile.
_SPREAD = 7919


def mobile_of(index: int) -> str:
    return PREFIXES[index % len(PREFIXES)] + f"{(index * _SPREAD) % 100_000_000:08d}"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[rank]


async def _create_schema(path: Path) -> None:
    from callcenter.database import apply_migrations, open_database
    from crm import schema

    conn = await open_database(path)
    try:
        await apply_migrations(conn, "crm", schema.MIGRATIONS)
        await conn.execute(
            "INSERT INTO users (id, username, display_name, created_at, updated_at) VALUES"
            " (1, 'bench-agent', 'bench', '2026-01-01T00:00:00.000000Z', '2026-01-01T00:00:00.000000Z')"
        )
        await conn.execute("INSERT INTO user_roles (user_id, role_id) VALUES (1, 3)")  # agent: scope own
    finally:
        await conn.close()


def seed(path: Path, count: int, rng: random.Random, *, first_id: int = 1) -> dict[str, Any]:
    """Bulk-insert `count` members (ids from `first_id`) with phones, tags and name n-grams;
    return what queries need."""
    from crm.members import name_grams, name_key

    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-262144")
    levels = [code for code, _ in LEVELS]
    weights = [w for _, w in LEVELS]
    names: list[str] = []
    tagged: list[tuple[str, str]] = []
    landlines: list[str] = []
    created = "2026-01-01T00:00:00.000000Z"
    for start in range(0, count, CHUNK):
        members, phones, tags, grams = [], [], [], []
        for i in range(start, min(count, start + CHUNK)):
            member_id = first_id + i
            name = rng.choice(SURNAMES) + "".join(rng.choices(GIVEN, k=rng.choice((1, 2, 2))))
            key = name_key(name)
            level = rng.choices(levels, weights)[0]
            year, month, day = rng.randint(1960, 2005), rng.randint(1, 12), rng.randint(1, 28)
            owner = 1 if rng.random() < 0.01 else None
            members.append((member_id, f"MX{100000 + member_id}", name, key, "female", f"{year}-{month:02d}-{day:02d}",
                            f"{month:02d}-{day:02d}", level, owner, rng.randint(0, 5000), created, created))  # fmt: skip
            phones.append(("+86" + mobile_of(i), member_id, "mobile", mobile_of(i), 1))
            if rng.random() < 0.15:
                landline = f"+8621{rng.randint(20_000_000, 69_999_999)}"
                phones.append((landline, member_id, "landline", landline, 0))
                if len(landlines) < 1000:
                    landlines.append(landline)
            for tag in rng.sample(TAGS, rng.randint(0, 3)):
                tags.append((member_id, tag, level))
                if len(tagged) < 1000:
                    tagged.append((tag, level))
            grams += [(g, member_id) for g in name_grams(key)]
            if len(names) < 5000:
                names.append(name)
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO members (id, card_no, name, name_key, gender, birthday, birth_md, level_code, owner_id,"
            " points_balance, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            members,
        )
        conn.executemany("INSERT OR IGNORE INTO member_phones (e164, member_id, kind, raw, is_primary) VALUES (?, ?, ?, ?, ?)",
                         phones)  # fmt: skip
        conn.executemany("INSERT INTO member_tags (member_id, tag, level_code) VALUES (?, ?, ?)", tags)
        conn.executemany("INSERT INTO member_name_grams (gram, member_id) VALUES (?, ?)", grams)
        conn.execute("COMMIT")
    conn.execute("ANALYZE")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return {"names": names, "tagged": tagged, "landlines": landlines}


async def measure(path: Path, count: int, samples: dict[str, Any], iterations: int, rng: random.Random) -> dict[str, Any]:
    from callcenter.database import open_database
    from crm.access import SYSTEM
    from crm.db import Database
    from crm.members import MemberQuery
    from crm.service import Crm

    conn = await open_database(path)
    try:
        crm = Crm.build(Database(conn))
        agent = await crm.org.actor_for_user(1)
        names: list[str] = samples["names"]

        def caller_id_form(i: int) -> str:
            number = mobile_of(i)
            return rng.choice([number, "0" + number, "+86" + number, "86" + number, f"sip:{number}@trunk.example.com"])

        def two_chars() -> str:
            name = rng.choice([n for n in names[:500] if len(n) >= 3] or names)
            start = rng.randint(0, len(name) - 2)
            return name[start : start + 2]

        def tag_level() -> MemberQuery:
            tag, level = rng.choice(samples["tagged"])
            return MemberQuery(tag=tag, level=level)

        async def found(op: Awaitable[Any]) -> bool:
            result = await op
            return bool(result.items) if hasattr(result, "items") else result is not None

        kinds: dict[str, Callable[[], Awaitable[bool]]] = {
            "caller_id": lambda: found(crm.members.lookup_by_caller_id(SYSTEM, caller_id_form(rng.randrange(count)))),
            "caller_id_agent_scope": lambda: found(
                crm.members.lookup_by_caller_id(agent, caller_id_form(rng.randrange(count)))),
            "caller_id_unknown": lambda: found(crm.members.lookup_by_caller_id(SYSTEM, "13" + f"{rng.randrange(10**9):09d}")),
            "search_full_name": lambda: found(crm.members.search(SYSTEM, MemberQuery(name=rng.choice(names)))),
            "search_name_part": lambda: found(crm.members.search(SYSTEM, MemberQuery(name=two_chars()))),
            "search_surname": lambda: found(crm.members.search(SYSTEM, MemberQuery(name=rng.choice(SURNAMES)))),
            "search_box_phone": lambda: found(crm.members.search(SYSTEM, MemberQuery(text=mobile_of(rng.randrange(count))))),
            "search_box_card": lambda: found(
                crm.members.search(SYSTEM, MemberQuery(text=f"MX{100001 + rng.randrange(count)}"))),
            "search_box_name": lambda: found(crm.members.search(SYSTEM, MemberQuery(text=rng.choice(names)))),
            "search_tag": lambda: found(crm.members.search(SYSTEM, MemberQuery(tag=rng.choice(TAGS)))),
            "search_tag_level": lambda: found(crm.members.search(SYSTEM, tag_level())),
            "search_level": lambda: found(crm.members.search(SYSTEM, MemberQuery(level=rng.choice(LEVELS)[0]))),
            "search_agent_scope_name": lambda: found(crm.members.search(agent, MemberQuery(name=two_chars()))),
            "search_agent_scope_tag_level": lambda: found(
                crm.members.search(agent, tag_level())),
        }  # fmt: skip
        per_kind: dict[str, dict[str, float]] = {}
        all_lookups: list[float] = []
        all_searches: list[float] = []
        for kind, run in kinds.items():
            for _ in range(min(20, iterations)):  # warm the page cache for this query shape
                await run()
            times: list[float] = []
            hits = 0
            for _ in range(iterations):
                t0 = time.perf_counter()
                hits += await run()
                times.append((time.perf_counter() - t0) * 1000)
            (all_lookups if kind.startswith("caller_id") else all_searches).extend(times)
            per_kind[kind] = {
                "p50_ms": round(statistics.median(times), 3),
                "p99_ms": round(percentile(times, 99), 3),
                "max_ms": round(max(times), 3),
                "hit_ratio": round(hits / iterations, 3),
            }
        return {"per_kind": per_kind, "lookups": all_lookups, "searches": all_searches}
    finally:
        await conn.close()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench crm")
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--iterations", type=int, default=300, help="queries measured per query kind")
    parser.add_argument("--data", type=Path, help="directory for the database (default: a temp dir)")
    parser.add_argument("--json", type=Path, help="result file")
    args = parser.parse_args(argv)
    if args.members < 1000:
        parser.error("--members must be at least 1000")
    rng = random.Random(SEED)
    with tempfile.TemporaryDirectory(prefix="bench-crm-", dir=args.data) as tmp:
        path = Path(tmp) / "callcenter.db"
        asyncio.run(_create_schema(path))
        t0 = time.monotonic()
        samples = seed(path, args.members, rng)
        seed_s = time.monotonic() - t0
        size_mb = path.stat().st_size / 1e6
        measured = asyncio.run(measure(path, args.members, samples, args.iterations, rng))
    lookups, searches = measured["lookups"], measured["searches"]
    results = {
        "latency_p50_ms": round(statistics.median(lookups + searches), 3),
        "latency_p99_ms": round(percentile(lookups + searches, 99), 3),
        "caller_id_p50_ms": round(statistics.median(lookups), 3),
        "caller_id_p99_ms": round(percentile(lookups, 99), 3),
        "search_p50_ms": round(statistics.median(searches), 3),
        "search_p99_ms": round(percentile(searches, 99), 3),
        "caller_id_goal_met": percentile(lookups, 99) < 2.0,
        "search_goal_met": percentile(searches, 99) < 50.0,
        "per_kind": measured["per_kind"],
        "seed_seconds": round(seed_s, 1),
        "seed_members_per_s": round(args.members / seed_s),
        "database_mb": round(size_mb, 1),
    }
    params = {
        "members": args.members,
        "iterations_per_kind": args.iterations,
        "seeding": "bulk sqlite3 inserts in transactions of 50000 members, bypassing the audited service path",
        "measured_through": "crm.members.MemberService on one aiosqlite connection, sequential queries",
        "goals": {"caller_id_p99_ms": 2.0, "search_p99_ms": 50.0},
    }
    write_result(args.json, "crm", params, results)
    return 0 if results["caller_id_goal_met"] and results["search_goal_met"] else 1


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
