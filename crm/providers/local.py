"""A provider that delivers nowhere: the message stays in the outbox, marked sent by `local`.

For the demo and for sites that have not configured a gateway yet: bulk sends, greetings and
retries run their whole course and the outbox shows what would have gone out, but no SMS or
e-mail leaves the machine. The last messages are also kept in memory for a quick look.
"""

from __future__ import annotations

from collections import deque

from crm.providers import OutgoingMessage

#: Enough for a look at what a bulk send produced; the outbox keeps everything anyway.
KEEP_LAST = 1000


class LocalProvider:
    name = "local"

    def __init__(self) -> None:
        self.delivered: deque[OutgoingMessage] = deque(maxlen=KEEP_LAST)

    async def send(self, message: OutgoingMessage) -> str:
        self.delivered.append(message)
        return f"local-{message.id}"
