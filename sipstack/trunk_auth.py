"""Digest authentication as a client (RFC 3261 §22.2-22.4, RFC 2617 §3.2.2): answering the
challenges a provider puts to our REGISTERs and INVITEs on a trunk.

One `DigestClient` per account. It remembers the last challenge of each kind so that the next
request can carry credentials at once (RFC 3261 §22.3: "a UAC MAY pre-emptively send
credentials") with the nonce-count incremented (RFC 2617 §3.2.2), and it decides when a
challenge must not be answered again: a second challenge to a request whose credentials
answered a fresh challenge means the password is wrong, unless the server said `stale=true`
(RFC 2617 §3.2.1: only the nonce was old).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sipstack.auth import DigestChallenge, build_authorization, select_challenge
from sipstack.errors import SipParseError
from sipstack.message import Response

log = logging.getLogger(__name__)

#: Challenge header → the header that answers it (RFC 3261 §22.2 for 401, §22.3 for 407).
ANSWER_HEADER = {"WWW-Authenticate": "Authorization", "Proxy-Authenticate": "Proxy-Authorization"}


@dataclass(frozen=True)
class ClientCredentials:
    #: The user name in the credentials (Asterisk's `auth_username`, FreeSWITCH's `auth-username`).
    username: str
    password: str
    #: Answer only challenges of this realm; None answers any (the provider names its realm).
    realm: str | None = None


@dataclass
class _Cached:
    challenge: DigestChallenge
    #: Requests sent with this nonce so far: the next one carries nc = count + 1.
    count: int


class DigestClient:
    """The client half of digest for one account: answers challenges, counts nonce uses."""

    def __init__(self, credentials: ClientCredentials) -> None:
        self.credentials = credentials
        self._cached: dict[str, _Cached] = {}  # by challenge header name
        self._answered_fresh = False

    def begin(self) -> None:
        """A new request chain (a new registration attempt or refresh): its first challenge
        is answered again even if the last chain's was."""
        self._answered_fresh = False

    def preemptive(self, method: str, uri: str) -> list[tuple[str, str]]:
        """Credentials for a new request from the challenges of earlier ones, nc incremented
        (RFC 2617 §3.2.2: the server sees the count rise and knows it is no replay)."""
        headers = []
        for name, cached in self._cached.items():
            cached.count += 1
            headers.append((ANSWER_HEADER[name], self._build(cached, method, uri)))
        return headers

    def answer(self, response: Response, method: str, uri: str) -> list[tuple[str, str]] | None:
        """The header fields that answer a 401/407 to a request (`method`, Request-URI `uri`),
        or None when it must not be answered: no usable challenge, a realm we have no
        credentials for, or a second fresh challenge in this chain (wrong password)."""
        name = "WWW-Authenticate" if response.status == 401 else "Proxy-Authenticate"
        values = response.headers.get_all(name)
        try:
            challenge = select_challenge(values)
        except SipParseError as exc:
            log.warning("cannot answer the %d to %s: %s", response.status, method, exc.reason)
            return None
        wanted = self.credentials.realm
        if wanted is not None and challenge.realm != wanted:
            log.warning("%d to %s challenges realm %r; credentials are for realm %r",
                        response.status, method, challenge.realm, wanted)
            return None
        if not challenge.stale:
            if self._answered_fresh:
                return None  # our answer to a fresh challenge was refused: wrong credentials
            self._answered_fresh = True
        # A new challenge replaces the old one of its kind; another kind's stays (both a
        # registrar's 401 and a proxy's 407 may stand between us and the provider).
        cached = _Cached(challenge, 1)
        self._cached[name] = cached
        headers = [(ANSWER_HEADER[name], self._build(cached, method, uri))]
        for other, kept in self._cached.items():
            if other != name:
                kept.count += 1
                headers.append((ANSWER_HEADER[other], self._build(kept, method, uri)))
        return headers

    def forget(self) -> None:
        """Drop the remembered challenges (the server forgot its nonces, e.g. after a failure)."""
        self._cached.clear()

    def _build(self, cached: _Cached, method: str, uri: str) -> str:
        return build_authorization(cached.challenge, username=self.credentials.username,
                                   password=self.credentials.password, method=method, uri=uri,
                                   nc=cached.count)
