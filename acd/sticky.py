"""Sticky agent: the agent who last served a caller, so a queue can offer them the call first.

The answer comes from the records the system writes anyway: the caller's calls are found by the
CDR's indexed `caller` column, and who had the caller at the end of each is read from that
call's queue log (indexed by call): the CONNECT's agent, unless a later TRANSFER handed the
caller to another extension, which then served them last. The CDR's own `answered_by` names the
first agent even after a transfer, so it alone would be wrong. Both tables live in the shared
database, so every node of a multi-node site sees the same answer.
"""

from __future__ import annotations

import time

import aiosqlite

SECONDS_PER_DAY = 86400.0

# The newest CONNECT or TRANSFER among the caller's calls since a moment: two index probes
# (cdr_caller, then queue_log_call per call), never a scan of the queue log.
_LAST_AGENT_SQL = (
    "SELECT q.agent, q.event, q.data FROM cdr c JOIN queue_log q ON q.call_id = c.call_id"
    " WHERE c.caller = ? AND c.started_at >= ? AND q.event IN ('CONNECT', 'TRANSFER')"
    " ORDER BY q.at DESC, q.id DESC LIMIT 1"
)


def cdr_time(t: float) -> str:
    """A moment in the CDR's `started_at` form (ISO 8601 UTC with milliseconds), which sorts
    as text in time order."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int((t % 1) * 1000):03d}Z"


class StickyAgents:
    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def last_agent(self, caller: str, since: float) -> str | None:
        """The agent (extension) who last served `caller` in a call that started at or after
        `since` (seconds since the epoch), or None."""
        if not caller:
            return None
        async with self._conn.execute(_LAST_AGENT_SQL, (caller, cdr_time(since))) as cur:
            row = await cur.fetchone()
        if row is None:
            return None
        agent, event, data = row[0], row[1], row[2]
        if event == "TRANSFER":
            # TRANSFER(extension|context|holdtime|calltime): the extension has the caller now.
            target = str(data).split("|", 1)[0]
            return target or None
        return str(agent) or None

    async def preferred(self, caller: str, days: float, now: float) -> str | None:
        """The sticky agent for a queue keeping callers with their agent for `days` (0: off)."""
        if days <= 0:
            return None
        return await self.last_agent(caller, now - days * SECONDS_PER_DAY)
