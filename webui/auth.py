"""Who is asking: the session cookie, the CSRF check, and sign-in throttling."""

from __future__ import annotations

import hmac
import time
from collections import defaultdict, deque
from dataclasses import dataclass

from starlette.requests import Request

from crm.access import Actor
from webui.ip_allow import address_of
from webui.sessions import Session

SESSION_COOKIE = "cc_session"
#: Before sign-in there is no session to hold a CSRF token: the login form uses a
#: double-submit cookie instead.
LOGIN_CSRF_COOKIE = "cc_login_csrf"

# Sign-in throttling: this many failures for one user name, or from one address, within the
# window lock further attempts for the lock time. Slow enough to stop guessing, short enough
# that an agent who mistyped is back within a coffee break.
MAX_FAILURES = 5
FAILURE_WINDOW = 600.0
LOCK_TIME = 900.0


@dataclass
class Viewer:
    """The signed-in user of a request."""

    actor: Actor
    session: Session
    display_name: str
    #: Internal messages not read yet, shown in the header.
    unread_messages: int = 0


def csrf_ok(expected: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(expected.encode(), (given or "").encode())


class LoginThrottle:
    """Counts failed sign-ins per user name and per source address; memory stays bounded
    because each key keeps at most MAX_FAILURES timestamps and idle keys are dropped."""

    def __init__(self) -> None:
        self._failures: dict[str, deque[float]] = defaultdict(lambda: deque(maxlen=MAX_FAILURES))

    def locked_for(self, keys: list[str], now: float | None = None) -> float:
        """Seconds until sign-in is allowed again for these keys (0 when allowed)."""
        now = time.time() if now is None else now
        wait = 0.0
        for key in keys:
            failures = self._failures.get(key)
            if failures and len(failures) >= MAX_FAILURES and now - failures[0] <= FAILURE_WINDOW:
                wait = max(wait, failures[-1] + LOCK_TIME - now)
        return max(0.0, wait)

    def failed(self, keys: list[str], now: float | None = None) -> None:
        now = time.time() if now is None else now
        for key in keys:
            self._failures[key].append(now)
        if len(self._failures) > 100_000:
            for key in [k for k, v in self._failures.items() if now - v[-1] > FAILURE_WINDOW]:
                del self._failures[key]

    def succeeded(self, keys: list[str]) -> None:
        for key in keys:
            self._failures.pop(key, None)


def client_address(request: Request) -> str:
    """The socket peer, or the client a trusted proxy names (webui.ip_allow decides)."""
    return address_of(request) or "unknown"
