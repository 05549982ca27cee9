"""Call detail records: one row per call segment, written when the segment ends.

Dispositions are Asterisk's (ANSWERED, NO ANSWER, BUSY, FAILED, CANCELLED) so reports and
habits carry over. Segments of one call share `call_id`; `segment` numbers them (transfers
add segments).

Legs the system places for a call get rows on that call's id too, in segment ranges of their
own, so a report can tell them apart (or leave them out of the caller's talk time):

    1 ..            the call itself, one segment per transfer
    100 + try       a queued callback's tries (acd.callback_calls)
    200 + n         supervisors' lines rung from the wallboard (acd.supervisor_dial)
"""

from __future__ import annotations

import enum
import logging
import time
from dataclasses import dataclass

import aiosqlite

log = logging.getLogger(__name__)

#: Where the segment ranges of the module's doc begin.
SEGMENT_CALLBACK = 100
SEGMENT_SUPERVISOR_LINE = 200

MIGRATIONS_CDR = """
CREATE TABLE cdr (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id       TEXT NOT NULL,
    segment       INTEGER NOT NULL DEFAULT 1,
    caller        TEXT NOT NULL,
    caller_name   TEXT NOT NULL DEFAULT '',
    callee        TEXT NOT NULL,
    did           TEXT NOT NULL DEFAULT '',
    trunk         TEXT NOT NULL DEFAULT '',
    answered_by   TEXT NOT NULL DEFAULT '',
    started_at    TEXT NOT NULL,
    answered_at   TEXT,
    ended_at      TEXT NOT NULL,
    duration      REAL NOT NULL,
    billsec       REAL NOT NULL,
    disposition   TEXT NOT NULL,
    hangup_side   TEXT NOT NULL,
    hangup_cause  TEXT NOT NULL,
    sip_status    INTEGER NOT NULL DEFAULT 0,
    recording_ref TEXT NOT NULL DEFAULT '',
    codec         TEXT NOT NULL DEFAULT '',
    rtp_loss_pct  REAL,
    UNIQUE (call_id, segment)
);
CREATE INDEX cdr_started ON cdr (started_at);
CREATE INDEX cdr_caller ON cdr (caller);
CREATE INDEX cdr_callee ON cdr (callee);
"""


class Disposition(enum.StrEnum):
    ANSWERED = "ANSWERED"
    NO_ANSWER = "NO ANSWER"
    BUSY = "BUSY"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


@dataclass
class CdrRecord:
    call_id: str
    caller: str
    callee: str
    started_at: float
    ended_at: float
    disposition: Disposition
    hangup_side: str
    hangup_cause: str
    segment: int = 1
    caller_name: str = ""
    did: str = ""
    trunk: str = ""
    answered_by: str = ""
    answered_at: float | None = None
    sip_status: int = 0
    #: The call's recording under the recordings directory (acd.recording_index), "" if none;
    #: every segment of a transferred call names the same file.
    recording_ref: str = ""
    codec: str = ""
    rtp_loss_pct: float | None = None

    @property
    def duration(self) -> float:
        return max(0.0, self.ended_at - self.started_at)

    @property
    def billsec(self) -> float:
        return max(0.0, self.ended_at - self.answered_at) if self.answered_at is not None else 0.0


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int((t % 1) * 1000):03d}Z"


class CdrWriter:
    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def write(self, r: CdrRecord) -> None:
        await self._conn.execute(
            "INSERT INTO cdr (call_id, segment, caller, caller_name, callee, did, trunk, answered_by,"
            " started_at, answered_at, ended_at, duration, billsec, disposition, hangup_side,"
            " hangup_cause, sip_status, recording_ref, codec, rtp_loss_pct)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (r.call_id, r.segment, r.caller, r.caller_name, r.callee, r.did, r.trunk, r.answered_by,
             _iso(r.started_at), _iso(r.answered_at) if r.answered_at is not None else None,
             _iso(r.ended_at), round(r.duration, 3), round(r.billsec, 3), str(r.disposition), r.hangup_side,
             r.hangup_cause, r.sip_status, r.recording_ref, r.codec, r.rtp_loss_pct),
        )
