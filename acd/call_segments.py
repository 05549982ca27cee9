"""A call's CDR segments: one row per segment, a new segment after each completed transfer,
each with the parties bridged during it (acd.cdr). A part of `Call` (a mixin), kept apart so
each file stays readable.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from acd.cdr import CdrRecord, Disposition
from sipstack.offer_answer import NegotiatedMedia
from sipstack.trunk_manager import Trunk

if TYPE_CHECKING:
    from acd.calls import CallManager


class Segments:
    # What this part of the call uses of the rest of `Call` (acd.calls, acd.transfer).
    manager: CallManager
    id: str
    caller: str
    caller_name: str
    dialled: str
    did: str
    trunk_name: str
    from_trunk: Trunk | None
    segment: int
    started_at: float
    answered_at: float | None
    status: int
    codec_a: NegotiatedMedia | None
    recording_ref: str
    _parties: dict[str, str]

    if TYPE_CHECKING:  # defined by Call and its other parts
        @property
        def answered_by(self) -> str: ...
        def party_number(self, side: str | None, *, other: bool = False) -> str: ...

    def close_segment(self, side: str, cause: str) -> None:
        """A transfer completed: the CDR of the segment that ends now (its parties, its times),
        and a new segment of the same call from now on, between the parties bridged now."""
        now = time.time()
        self.manager.write_cdr(self.segment_record(side, cause, now))
        self.segment += 1
        self.started_at = self.answered_at = now

    def segment_record(self, side: str, cause: str, ended: float | None = None) -> CdrRecord:
        """The CDR of the current (answered) segment if it ended now, hung up by `side`."""
        return self._record(ended or time.time(), Disposition.ANSWERED, side, cause, self.status, None)

    def _record(self, ended: float, disposition: Disposition, side: str, cause: str, status: int,
                loss: float | None) -> CdrRecord:
        m = self.manager
        caller, callee = self.caller, self.dialled
        if self.segment > 1:
            # After a transfer the segment is between whoever is bridged on each side now.
            caller, callee = self.party_number("a"), self.party_number("b")
        caller_ext = m.directory.get(caller) if self.from_trunk is None or caller != self.caller else None
        return CdrRecord(
            call_id=self.id, segment=self.segment, caller=caller, callee=callee, started_at=self.started_at,
            ended_at=ended, disposition=disposition, hangup_side=side, hangup_cause=cause,
            # Who joined by an attended transfer or a take-over, else whoever answered the
            # number dialled (or transferred to).
            answered_by=(self._parties.get("joined") or self.answered_by) if self.answered_at else "",
            answered_at=self.answered_at, sip_status=status, did=self.did, trunk=self.trunk_name,
            caller_name=caller_ext.display_name if caller_ext else (
                self.caller_name if caller == self.caller else ""),
            codec=self.codec_a.codec.name if self.codec_a else "", rtp_loss_pct=loss,
            recording_ref=self.recording_ref,
        )
