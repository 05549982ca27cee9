"""Session timers (RFC 4028) for INVITE sessions, on both sides of a B2BUA call.

A session with a timer must be refreshed (re-INVITE or UPDATE) within its interval, or it
ends: that is how a call whose far end vanished without a BYE (a phone unplugged, a crashed
provider) stops being billed and stops holding an agent. `SessionTimer` is the negotiated
result, pure data; `SessionTimerLeg` runs it for a leg (`sipstack.legs.Leg` mixes it in):
the refresher sends the refresh at half the interval, the other side ends the session with
BYE when no refresh came in time (§10).

Who refreshes is said in `refresher` as the INVITE's roles: "uac" is the side that sent the
INVITE, "uas" the side that answered it. An inbound leg is the UAS, an outbound leg the UAC.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sipstack.errors import SipParseError

if TYPE_CHECKING:
    from sipstack.addressing import Address
    from sipstack.dialog import Dialog
    from sipstack.message import Request, Response
    from sipstack.server import SipServer
    from sipstack.transaction_layer import ResponseReceived, StrayResponse, TransactionTimeout

log = logging.getLogger(__name__)

#: RFC 4028 §4: no session interval may be shorter than 90 s; the shortest we accept (Min-SE).
MIN_SE = 90
#: The session interval we ask for on our INVITEs, and set when a caller supports timers but
#: asked for none (§9; the RFC's recommended default).
DEFAULT_SESSION_EXPIRES = 1800
#: Reason of the Ended event when the session was not refreshed in time (§10).
SESSION_EXPIRED = "session timer expired"


class SessionIntervalTooSmall(Exception):
    """RFC 4028 §9: answer 422 with Min-SE."""


def option_tags(message: Request | Response, name: str) -> set[str]:
    """The option tags or methods of a comma-separated header (Supported, Require, Allow), lower case."""
    return {tag.strip().lower() for value in message.headers.get_all(name) for tag in value.split(",")}


def _parse_session_expires(value: str) -> tuple[int, str]:
    """`delta-seconds *(;param)` → (interval, refresher or "")."""
    delta, _, params = value.partition(";")
    if not delta.strip().isdigit():
        raise SipParseError("Bad Request: Session-Expires must be delta-seconds")
    refresher = ""
    for param in params.split(";"):
        name, _, val = param.partition("=")
        if name.strip().lower() == "refresher":
            refresher = val.strip().lower()
    return int(delta), refresher


@dataclass(frozen=True)
class SessionTimer:
    """RFC 4028: how long the session lasts without a refresh, and who refreshes it."""

    interval: int
    refresher: str   # "uac" or "uas", as the INVITE's sender and receiver
    #: The far end accepts UPDATE (RFC 3311), the light refresh; otherwise we refresh with a
    #: re-INVITE carrying our current SDP unchanged.
    update_allowed: bool = field(default=True, compare=False)

    @classmethod
    def negotiate(cls, request: Request) -> SessionTimer | None:
        """The UAS's choice for an INVITE (§9), or None for no session timer. Raises
        `SessionIntervalTooSmall` when the caller supports timers but asked for an interval
        below `MIN_SE` (it must retry with a longer one, §9)."""
        supported = option_tags(request, "Supported")
        update_allowed = "update" in option_tags(request, "Allow")
        value = request.headers.get("Session-Expires")
        if value is None:
            # Nobody asked: a caller that refreshes gets the default, one that cannot, none
            # (we would have to refresh it, and media timeouts already end dead calls).
            return cls(DEFAULT_SESSION_EXPIRES, "uac", update_allowed) if "timer" in supported else None
        interval, refresher = _parse_session_expires(value)
        if interval < MIN_SE:
            if "timer" in supported:
                raise SessionIntervalTooSmall()
            interval = MIN_SE  # §9 (erratum 1687): the caller cannot retry; raise it ourselves
        if "timer" not in supported:
            return None  # only the caller could refresh, and it does not know how
        if refresher == "uas":
            # The caller wants us to refresh (§9: its choice stands). We refresh with UPDATE
            # (RFC 3311), which it must allow; otherwise no session timer (§7.2: a 2xx without
            # Session-Expires means none).
            return cls(interval, "uas", True) if update_allowed else None
        return cls(interval, "uac", update_allowed)

    @classmethod
    def from_answer(cls, response: Response) -> SessionTimer | None:
        """What the UAS decided, read from the 2xx to our INVITE (§7.2): no Session-Expires
        means no timer. A refresher the UAS left out is ours: the 2xx must name one, and a
        session someone refreshes beats one that ends by mistake."""
        value = response.headers.get("Session-Expires")
        if value is None:
            return None
        try:
            interval, refresher = _parse_session_expires(value)
        except SipParseError:
            log.info("2xx with a malformed Session-Expires %r: no session timer", value)
            return None
        return cls(max(interval, MIN_SE), refresher if refresher == "uas" else "uac",
                   "update" in option_tags(response, "Allow"))

    def header(self) -> str:
        return f"{self.interval};refresher={self.refresher}"


def offer_headers(interval: int = DEFAULT_SESSION_EXPIRES) -> list[tuple[str, str]]:
    """What our INVITEs carry (§7.1): timers supported, the interval we want, and no refresher
    so the UAS picks the side that can refresh."""
    return [("Supported", "timer"), ("Session-Expires", str(max(interval, MIN_SE))), ("Min-SE", str(MIN_SE))]


def min_se_of(response: Response) -> int | None:
    """The Min-SE of a 422 (§7.4: retry with at least that), or None when it has none usable."""
    value = (response.headers.get("Min-SE") or "").partition(";")[0].strip()
    return int(value) if value.isdigit() else None


class SessionTimerLeg:
    """The running session timer of a leg. The leg provides the attributes below; `_we_refresh`
    says which `refresher` value is us (the UAS for an inbound leg, the UAC for an outbound one)."""

    if TYPE_CHECKING:
        dialog: Dialog | None
        remote: Address | None
        server: SipServer
        local_sdp: bytes
        state: object

        def _send_bye(self) -> None: ...
        def _expire(self) -> None: ...
        def on_response(self, event: ResponseReceived | StrayResponse | TransactionTimeout) -> None: ...
        def _in_dialog_headers(self) -> tuple[str, str]: ...

    session_timer: SessionTimer | None = None
    _expiry: asyncio.TimerHandle | None = None
    _we_refresh: str = "uas"

    def _arm_expiry(self) -> None:
        """When the far end refreshes: without a refresh the session ends a little before the
        interval is over, min(32 s, interval/3) before (§10). When we do: refresh at half the
        interval (§10)."""
        if self.session_timer is None or not self._answered():
            return
        self._cancel_expiry()
        interval = self.session_timer.interval
        loop = asyncio.get_running_loop()
        if self.session_timer.refresher == self._we_refresh:
            self._expiry = loop.call_later(interval / 2, self._refresh)
        else:
            self._expiry = loop.call_later(interval - min(32, interval / 3), self._timer_expired)

    def _cancel_expiry(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None

    def _refresh(self) -> None:
        """Our session refresh: an UPDATE without SDP (§7.4, RFC 3311), or a re-INVITE with our
        SDP unchanged when the far end does not take UPDATE (§7.4 allows either)."""
        self._expiry = None
        timer = self.session_timer
        if not self._answered() or self.dialog is None or self.remote is None or timer is None:
            return
        via, contact = self._in_dialog_headers()
        extra = [("Session-Expires", timer.header()), ("Supported", "timer")]
        if timer.update_allowed:
            request = self.dialog.create_request("UPDATE", via=via, contact=contact, extra=extra)
        else:
            request = self.dialog.create_request("INVITE", via=via, contact=contact, extra=extra,
                                                 body=self.local_sdp, content_type="application/sdp")
        # Should the refresh fail without ending the dialog, the session still ends when its
        # interval is over.
        interval = timer.interval
        self._expiry = asyncio.get_running_loop().call_later(max(0.0, interval / 2 - min(32, interval / 3)),
                                                             self._timer_expired)

        def answered(event: ResponseReceived | TransactionTimeout) -> None:
            status = getattr(getattr(event, "response", None), "status", 408)
            if status in (408, 481):
                self._timer_expired()   # §10: a refresh timing out or 408/481 ends the session
            elif 200 <= status < 300:
                self.on_response(event)  # type: ignore[arg-type]
                if request.method == "INVITE" and self.dialog is not None and self.remote is not None:
                    # RFC 3261 §13.2.2.4: the UAC ACKs every 2xx to its re-INVITE.
                    ack = self.dialog.create_request("ACK", via=self._in_dialog_headers()[0])
                    self.server.send_stateless(ack.to_bytes(), self.remote)
                self._arm_expiry()

        self.server.send_request(request, self.remote, on_response=answered)

    def _timer_expired(self) -> None:
        self._cancel_expiry()
        if self._answered():
            log.info("session %s not refreshed in %d s: ending it",
                     self.dialog.id.call_id if self.dialog else "?",
                     self.session_timer.interval if self.session_timer else 0)
            self._send_bye()
            self._expire()

    def _refreshed(self, request: Request) -> list[tuple[str, str]]:
        """A re-INVITE or UPDATE from the far end refreshes the session (§10); our 2xx says so."""
        if self.session_timer is None:
            return []
        value = request.headers.get("Session-Expires")
        if value is not None:
            # §10: the refresh may renegotiate the interval, never below our minimum.
            delta = value.partition(";")[0].strip()
            if delta.isdigit() and int(delta) >= MIN_SE:
                self.session_timer = SessionTimer(int(delta), self.session_timer.refresher,
                                                  self.session_timer.update_allowed)
        self._arm_expiry()
        headers = [("Session-Expires", self.session_timer.header())]
        if "timer" in option_tags(request, "Supported"):
            headers.append(("Require", "timer"))   # §9: it supports timers, so it must apply ours
        return headers

    def _answered(self) -> bool:
        raise NotImplementedError
