"""Message waiting indication: the phones of a mailbox's extension light their message lamp.

When the number of new messages in a mailbox changes (a message left, one heard or deleted on
the phone or in the web UI), every contact registered for the extension gets a NOTIFY of the
`message-summary` event package (RFC 3842) with the counts. It is sent unsolicited, outside
any subscription, as PBXs do for desk phones configured for MWI without SUBSCRIBE; a phone that
does not want it answers with an error and nothing else happens.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from sipstack.headers import Headers
from sipstack.message import Request, generate_call_id, generate_tag
from sipstack.registrar import Registrar
from sipstack.session import SessionLayer
from sipstack.uri import parse_uri

log = logging.getLogger(__name__)

#: RFC 3842 §4: the event package and its body's media type.
EVENT = "message-summary"
CONTENT_TYPE = "application/simple-message-summary"


def message_summary(new: int, old: int, account: str) -> bytes:
    """The RFC 3842 §5.2 body: `Messages-Waiting` (yes while new messages exist), the account
    it is about, and the voice messages as new/old."""
    if new < 0 or old < 0:
        raise ValueError("message counts are never negative")
    lines = [f"Messages-Waiting: {'yes' if new else 'no'}", f"Message-Account: {account}",
             f"Voice-Message: {new}/{old}"]
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


class MwiNotifier:
    """Sends a mailbox's summary to its extension's registered phones when its new count changes."""

    def __init__(self, sessions: SessionLayer, registrar: Registrar,
                 counts: Callable[[str], Awaitable[tuple[int, int]]]) -> None:
        self._sessions = sessions
        self._registrar = registrar
        self._counts = counts
        #: The new-message count each mailbox's phones were last told.
        self._told: dict[str, int] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    def changed(self, mailbox: str) -> None:
        """A mailbox's messages changed: tell its phones if the new count did (in the background)."""
        task = asyncio.get_running_loop().create_task(self._update(mailbox))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _update(self, mailbox: str) -> None:
        try:
            new, old = await self._counts(mailbox)
        except Exception:
            log.exception("MWI: cannot count the messages of %s", mailbox)
            return
        if self._told.get(mailbox, 0) == new:
            return
        self._told[mailbox] = new
        self.notify(mailbox, new, old)

    def notify(self, mailbox: str, new: int, old: int) -> int:
        """NOTIFY every registered contact of `mailbox` now; returns how many were sent."""
        host = self._sessions.local_host
        account = f"sip:{mailbox}@{host}"
        body = message_summary(new, old, account)
        sent = 0
        for binding in self._registrar.lookup(mailbox):
            target = binding.target()
            headers = Headers()
            headers.add("Via", self._sessions.via(target))
            headers.add("Max-Forwards", "70")
            headers.add("From", f"<{account}>;tag={generate_tag()}")
            headers.add("To", f"<{account}>")
            headers.add("Call-ID", generate_call_id(host))
            headers.add("CSeq", "1 NOTIFY")
            headers.add("Contact", self._sessions.contact(target))
            headers.add("Event", EVENT)
            # RFC 6665 §8.2.3 (ex RFC 3265 §3.2.4): a NOTIFY carries Subscription-State.
            headers.add("Subscription-State", "active")
            headers.add("Content-Type", CONTENT_TYPE)
            request = Request("NOTIFY", parse_uri(binding.contact_uri), headers, body)
            self._sessions.server.send_request(request, target, on_response=lambda event: None)
            sent += 1
        if sent:
            log.info("MWI: %s has %d new and %d old messages; told %d phone(s)", mailbox, new, old, sent)
        return sent
