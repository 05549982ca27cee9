"""The in-process event bus: events flow up from the layers below to whoever subscribed.

Publishers never wait for subscribers: handlers are plain callables run in order, and a handler
that raises is logged and does not stop the others (one broken wallboard must not lose a CDR).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

Handler = Callable[[Any], None]


class EventBus:
    def __init__(self) -> None:
        self._handlers: dict[type, list[Handler]] = defaultdict(list)

    def subscribe(self, event_type: type, handler: Handler) -> Callable[[], None]:
        """Call `handler` for every published event that is an instance of `event_type`.
        Returns a function that removes the subscription."""
        self._handlers[event_type].append(handler)
        return lambda: self._handlers[event_type].remove(handler)

    def publish(self, event: object) -> None:
        for event_type in type(event).__mro__:
            for handler in list(self._handlers.get(event_type, ())):
                try:
                    handler(event)
                except Exception:
                    log.exception("event handler %r failed on %r", handler, event)
