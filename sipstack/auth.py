"""SIP digest authentication (RFC 3261 §22, RFC 2617 qop=auth, RFC 8760 SHA-256).

Sans-IO: everything here works on header *values* (strings) and plain data, and
time is passed in as ``now`` (seconds, monotonic). The server side is
``DigestAuthenticator`` (challenge, then verify) over a ``NonceManager`` whose
nonces validate themselves with an HMAC, so no table of issued nonces is kept;
the client side (trunks registering upstream) is ``DigestChallenge.parse`` and
``build_authorization``.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import secrets
import struct
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from native.sipscan import (
    AUTH_NO_SPACE,
    AUTH_NO_VALUE,
    AUTH_NOT_DIGEST,
    AUTH_UNEXPECTED,
    AUTH_UNTERMINATED,
    NameTable,
    parse_auth_params,
)

from sipstack.errors import SipParseError

__all__ = [
    "AuthResult",
    "DigestAlgorithm",
    "DigestAuthenticator",
    "DigestChallenge",
    "DigestCredentials",
    "NonceManager",
    "NonceStatus",
    "build_authorization",
    "compute_ha1",
    "digest_response",
    "select_challenge",
]

# An Authorization value holds a username, a realm, a nonce, a request URI and
# a few short hex strings: well under 1 KiB in practice. 8 KiB leaves room for
# long SIP URIs while refusing a header built to make the tokenizer work.
MAX_AUTH_HEADER = 8192


class DigestAlgorithm(enum.Enum):
    """The digest algorithms we speak (RFC 3261 §22.4 MD5, RFC 8760 §2.1 SHA-256).

    The ``-sess`` variants are not offered: RFC 8760 §2.5 keeps them only for
    backward compatibility and no SIP phone we serve needs them.
    """

    MD5 = "MD5"
    SHA256 = "SHA-256"

    @classmethod
    def from_token(cls, token: str) -> DigestAlgorithm:
        """Map an ``algorithm=`` token (case-insensitive, RFC 7616 §3.3) to a member."""
        member = _ALGORITHM_BY_TOKEN.get(token.strip().upper())
        if member is not None:
            return member
        raise SipParseError(f"Bad Request: unsupported digest algorithm {token!r}")

    def hash_hex(self, data: str) -> str:
        """H(data) as lowercase hex (RFC 2617 §3.2.1: strings are hashed as UTF-8)."""
        raw = data.encode("utf-8")
        if self is DigestAlgorithm.MD5:
            return hashlib.md5(raw).hexdigest()
        return hashlib.sha256(raw).hexdigest()


_ALGORITHM_BY_TOKEN = {member.value: member for member in DigestAlgorithm}


# ---------------------------------------------------------------------------
# auth-param lists (RFC 3261 §25.1 digest-response / challenge grammar)

_NC_RE = re.compile(r"[0-9A-Fa-f]{8}")


# The auth-param names of RFC 3261 §25.1 challenges and credentials (and RFC 7616's
# userhash): the native parser hands out these very strings instead of new ones.
_PARAM_NAMES = NameTable({name: name for name in (
    "username", "realm", "nonce", "uri", "response", "algorithm", "cnonce", "opaque", "qop", "nc",
    "stale", "domain", "userhash")})


def _parse_auth_params(value: str, what: str) -> dict[str, str]:
    """Split ``Digest name=value, name="quoted", ...`` into a lowercase-keyed dict.

    Tolerant of spacing, of the case of ``Digest`` and of names, and of values
    that should be quoted but are not (and the reverse); strict about what would
    make the meaning ambiguous: another scheme, an unterminated quoted-string, a
    parameter given twice (RFC 7235 §2.1: each name at most once).
    The character walk is native (native.sipscan.parse_auth_params); the words
    of each refusal are here.
    """
    if len(value) > MAX_AUTH_HEADER:
        raise SipParseError(f"Bad Request: malformed {what}: longer than {MAX_AUTH_HEADER} bytes")
    result = parse_auth_params(value.strip(), _PARAM_NAMES)
    if type(result) is dict:
        return result
    code, detail = result
    if code == AUTH_NOT_DIGEST:
        problem = "not a Digest value"
    elif code == AUTH_NO_SPACE:
        problem = "no space after Digest"
    elif code == AUTH_UNEXPECTED:
        problem = f"unexpected {detail!r}"
    elif code == AUTH_NO_VALUE:
        problem = f"parameter {detail!r} has no value"
    elif code == AUTH_UNTERMINATED:
        problem = f"unterminated quoted {detail!r}"
    else:
        problem = f"parameter {detail!r} given twice"
    raise SipParseError(f"Bad Request: malformed {what}: {problem}")


def _quote(value: str) -> str:
    """A quoted-string (RFC 3261 §25.1), escaping backslash and double quote."""
    if "\\" in value or '"' in value:
        value = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{value}"'


# ---------------------------------------------------------------------------
# The digest computation (RFC 2617 §3.2.2.1-3, RFC 3261 §22.4)


def compute_ha1(algorithm: DigestAlgorithm, username: str, realm: str, password: str) -> str:
    """HA1 = H(username ":" realm ":" password) (RFC 2617 §3.2.2.2); storable instead of passwords."""
    return algorithm.hash_hex(f"{username}:{realm}:{password}")


def _nc_text(nc: int | str) -> str:
    if isinstance(nc, str):
        return nc
    if not 0 < nc <= 0xFFFFFFFF:
        raise ValueError(f"nonce-count {nc} outside 1..0xffffffff")
    return f"{nc:08x}"


def digest_response(
    algorithm: DigestAlgorithm,
    *,
    username: str,
    realm: str,
    password: str | None = None,
    ha1: str | None = None,
    method: str,
    uri: str,
    nonce: str,
    nc: int | str | None = None,
    cnonce: str | None = None,
    qop: str | None = None,
) -> str:
    """The request-digest as lowercase hex.

    Give ``password`` or a stored ``ha1``. With ``qop="auth"``, ``nc`` (an int,
    formatted as 8 lowercase hex digits, or the exact text the client sent) and
    ``cnonce`` are required (RFC 2617 §3.2.2.1); without qop this is the RFC 2069
    form H(HA1:nonce:HA2). ``auth-int`` is refused: nothing in SIP we serve uses it.
    """
    if ha1 is None:
        if password is None:
            raise ValueError("digest_response needs a password or an ha1")
        ha1 = compute_ha1(algorithm, username, realm, password)
    # RFC 2617 §3.2.2.3 with qop=auth: A2 = Method ":" digest-uri-value.
    ha2 = algorithm.hash_hex(f"{method}:{uri}")
    if qop is None:
        return algorithm.hash_hex(f"{ha1}:{nonce}:{ha2}")
    if qop.lower() != "auth":
        raise ValueError(f"unsupported qop {qop!r}")
    if nc is None or cnonce is None:
        raise ValueError("qop=auth needs nc and cnonce")
    return algorithm.hash_hex(f"{ha1}:{nonce}:{_nc_text(nc)}:{cnonce}:{qop}:{ha2}")


# ---------------------------------------------------------------------------
# Header values


@dataclass
class DigestChallenge:
    """One WWW-Authenticate / Proxy-Authenticate value (RFC 3261 §22.1, RFC 2617 §3.2.1)."""

    realm: str
    nonce: str
    algorithm: DigestAlgorithm
    qop: str | None = "auth"
    opaque: str | None = None
    stale: bool = False

    def to_header(self) -> str:
        header = f"Digest realm={_quote(self.realm)}, nonce={_quote(self.nonce)}, algorithm={self.algorithm.value}"
        if self.qop is not None:
            header += f", qop={_quote(self.qop)}"
        if self.opaque is not None:
            header += f", opaque={_quote(self.opaque)}"
        if self.stale:
            # RFC 2617 §3.2.1: the client may retry with the new nonce without
            # asking the user for the password again.
            header += ", stale=true"
        return header

    @classmethod
    def parse(cls, value: str) -> DigestChallenge:
        """Parse a challenge received from a server (client side, trunk registration).

        ``qop`` becomes ``"auth"`` when the server offers it (among e.g.
        ``"auth,auth-int"``), None when the server sent no qop (RFC 2069 mode).
        A challenge offering only ``auth-int`` or naming an unknown algorithm
        raises SipParseError: we cannot answer it.
        """
        params = _parse_auth_params(value, "WWW-Authenticate")
        realm = params.get("realm")
        nonce = params.get("nonce")
        if realm is None or nonce is None:
            raise SipParseError("Bad Request: malformed WWW-Authenticate: realm and nonce are required")
        algorithm = DigestAlgorithm.from_token(params.get("algorithm", "MD5"))
        qop: str | None = None
        if "qop" in params:
            offered = {item.strip().lower() for item in params["qop"].split(",")}
            if "auth" not in offered:
                raise SipParseError(f"Bad Request: unsupported qop {params['qop']!r} in challenge")
            qop = "auth"
        return cls(
            realm=realm,
            nonce=nonce,
            algorithm=algorithm,
            qop=qop,
            opaque=params.get("opaque"),
            stale=params.get("stale", "false").strip().lower() == "true",
        )


def select_challenge(values: Sequence[str]) -> DigestChallenge:
    """The challenge to answer among several header values.

    RFC 8760 §2.3: the client uses the topmost challenge whose algorithm it
    supports, skipping the others. Raises SipParseError when none is usable.
    """
    errors: list[str] = []
    for value in values:
        try:
            return DigestChallenge.parse(value)
        except SipParseError as exc:
            errors.append(exc.reason)
    detail = "; ".join(errors) if errors else "no challenge"
    raise SipParseError(f"Bad Request: no usable digest challenge ({detail})")


@dataclass
class DigestCredentials:
    """One Authorization / Proxy-Authorization value (RFC 3261 §22.2, §25.1 digest-response)."""

    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: DigestAlgorithm
    cnonce: str | None
    nc: int | None
    qop: str | None
    opaque: str | None
    # The nonce-count exactly as sent: the digest is computed over this text,
    # so a client writing upper-case hex still verifies.
    nc_text: str | None = None

    @classmethod
    def parse(cls, value: str) -> DigestCredentials:
        """Parse a client's credentials; raises SipParseError(400) when unusable."""
        what = "Authorization"
        params = _parse_auth_params(value, what)
        missing = [n for n in ("username", "realm", "nonce", "uri", "response") if n not in params]
        if missing:
            raise SipParseError(f"Bad Request: malformed {what}: missing {', '.join(missing)}")
        # RFC 2617 §3.2.2: algorithm absent means MD5.
        algorithm = DigestAlgorithm.from_token(params.get("algorithm", "MD5"))
        qop = params.get("qop")
        nc: int | None = None
        nc_text: str | None = None
        cnonce = params.get("cnonce")
        if qop is not None:
            qop = qop.strip().lower()
            if qop != "auth":
                raise SipParseError(f"Bad Request: malformed {what}: unsupported qop {qop!r}")
            # RFC 2617 §3.2.2: with a qop, cnonce and nc MUST be present.
            if cnonce is None or "nc" not in params:
                raise SipParseError(f"Bad Request: malformed {what}: qop=auth without nc and cnonce")
            nc_text = params["nc"].strip()
            if _NC_RE.fullmatch(nc_text) is None:
                raise SipParseError(f"Bad Request: malformed {what}: nc must be 8 hex digits")
            nc = int(nc_text, 16)
            if nc == 0:
                raise SipParseError(f"Bad Request: malformed {what}: nc starts at 00000001")
        return cls(
            username=params["username"],
            realm=params["realm"],
            nonce=params["nonce"],
            uri=params["uri"],
            response=params["response"],
            algorithm=algorithm,
            cnonce=cnonce,
            nc=nc,
            qop=qop,
            opaque=params.get("opaque"),
            nc_text=nc_text,
        )

    def to_header(self) -> str:
        header = (f"Digest username={_quote(self.username)}, realm={_quote(self.realm)}, "
                  f"nonce={_quote(self.nonce)}, uri={_quote(self.uri)}, "
                  f"response={_quote(self.response)}, algorithm={self.algorithm.value}")
        if self.cnonce is not None:
            header += f", cnonce={_quote(self.cnonce)}"
        if self.opaque is not None:
            header += f", opaque={_quote(self.opaque)}"
        if self.qop is not None:
            # RFC 3261 §25.1: message-qop and nonce-count are unquoted tokens.
            header += f", qop={self.qop}"
        if self.nc is not None:
            header += f", nc={self.nc_text or _nc_text(self.nc)}"
        return header


def build_authorization(
    challenge: DigestChallenge,
    *,
    username: str,
    password: str,
    method: str,
    uri: str,
    nc: int = 1,
    cnonce: str | None = None,
) -> str:
    """Answer a server's challenge (client side): the Authorization header value.

    ``nc`` counts the requests sent with this nonce (RFC 2617 §3.2.2); the
    caller increments it when reusing a nonce. ``cnonce`` defaults to 64 random bits.
    """
    if challenge.qop is not None:
        cnonce = cnonce if cnonce is not None else secrets.token_hex(8)
        response = digest_response(
            challenge.algorithm,
            username=username,
            realm=challenge.realm,
            password=password,
            method=method,
            uri=uri,
            nonce=challenge.nonce,
            nc=nc,
            cnonce=cnonce,
            qop=challenge.qop,
        )
        credentials = DigestCredentials(
            username, challenge.realm, challenge.nonce, uri, response,
            challenge.algorithm, cnonce, nc, challenge.qop, challenge.opaque,
        )
    else:
        response = digest_response(
            challenge.algorithm,
            username=username,
            realm=challenge.realm,
            password=password,
            method=method,
            uri=uri,
            nonce=challenge.nonce,
        )
        credentials = DigestCredentials(
            username, challenge.realm, challenge.nonce, uri, response,
            challenge.algorithm, None, None, None, challenge.opaque,
        )
    return credentials.to_header()


# ---------------------------------------------------------------------------
# Server side: nonces


class NonceStatus(enum.Enum):
    VALID = "valid"
    STALE = "stale"  # ours and intact, but expired: re-challenge with stale=true
    INVALID = "invalid"  # not issued by us (or tampered with)
    REPLAY = "replay"  # nonce-count not above the highest already accepted


_STAMP = struct.Struct(">d")
_RANDOM_BYTES = 8
_MAC_BYTES = 16
_NONCE_HEX_LEN = 2 * (_STAMP.size + _RANDOM_BYTES + _MAC_BYTES)
# A nonce used without qop has no nonce-count: it is recorded as if it had
# used every count, so any later use of it is a replay.
_SINGLE_USE = 1 << 32


class NonceManager:
    """Issues self-validating nonces and enforces nonce-count replay protection.

    A nonce is hex(issue time | 8 random bytes | HMAC-SHA256(secret, both)[:16]):
    any process holding ``secret`` can tell its own nonces and their age without
    a table, so a restart or a million outstanding challenges cost nothing.
    Replay protection (RFC 2617 §3.2.2) does need memory, but only for nonces
    that were *used*; it is bounded by ``max_tracked`` and forgets nonces once
    they expire (an expired nonce is STALE whatever its count).

    Without qop there is no nonce-count, so the server cannot tell a replay
    from a fresh request (RFC 2617 §4.5 suggests one-time nonces for this):
    such a nonce is accepted once, and a second use is a REPLAY. Clients using
    qop=auth (all current phones) reuse a nonce by incrementing nc.

    Counts must strictly increase: a request whose nc is not above the highest
    accepted one for that nonce is a REPLAY. UDP retransmissions of one request
    never reach here (the server transaction absorbs them, RFC 3261 §17.2).
    """

    def __init__(self, secret: bytes, lifetime: float = 300.0, max_tracked: int = 100_000) -> None:
        if not secret:
            raise ValueError("NonceManager needs a non-empty secret")
        if lifetime <= 0:
            raise ValueError("nonce lifetime must be positive")
        if max_tracked < 1:
            raise ValueError("max_tracked must be at least 1")
        self._secret = bytes(secret)
        # Keyed once: each MAC starts from a copy of this (RFC 2104 HMAC, the same result
        # as hmac.digest(secret, ...) without preparing the key every time).
        self._keyed = hmac.new(self._secret, None, "sha256")
        self.lifetime = float(lifetime)
        self.max_tracked = max_tracked
        # nonce -> (issue time, highest nonce-count accepted), in order of first use.
        self._seen: OrderedDict[str, tuple[float, int]] = OrderedDict()
        # Nonces issued at or before this time whose tracking was evicted to keep
        # memory bounded: they are answered STALE rather than risk a replay.
        self._forgotten_before = float("-inf")
        self._next_sweep = float("-inf")

    def _mac(self, body: bytes) -> bytes:
        mac = self._keyed.copy()
        mac.update(body)
        return mac.digest()[:_MAC_BYTES]

    def issue(self, now: float) -> str:
        body = _STAMP.pack(float(now)) + secrets.token_bytes(_RANDOM_BYTES)
        return (body + self._mac(body)).hex()

    def _issued_at(self, nonce: str) -> float | None:
        """The issue time if the nonce is ours and intact, else None."""
        if len(nonce) != _NONCE_HEX_LEN:
            return None
        try:
            raw = bytes.fromhex(nonce)
        except ValueError:
            return None
        body, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
        if not hmac.compare_digest(mac, self._mac(body)):
            return None
        return _STAMP.unpack_from(body)[0]

    def _classify(self, nonce: str, now: float) -> tuple[NonceStatus, float]:
        issued = self._issued_at(nonce)
        if issued is None:
            return NonceStatus.INVALID, 0.0
        age = now - issued
        # A negative age means the nonce predates a reboot (the monotonic clock
        # restarted): ours, but of unknown age, so treat it as expired.
        if age < 0 or age > self.lifetime:
            return NonceStatus.STALE, issued
        if issued <= self._forgotten_before and nonce not in self._seen:
            return NonceStatus.STALE, issued
        return NonceStatus.VALID, issued

    def status(self, nonce: str, now: float) -> NonceStatus:
        """VALID, STALE or INVALID without recording a use (no replay check)."""
        return self._classify(nonce, now)[0]

    def check(self, nonce: str, nc: int | None, now: float) -> NonceStatus:
        """Validate a nonce and record its use with nonce-count ``nc``."""
        state, issued = self._classify(nonce, now)
        return self._record_use(nonce, nc, now, state, issued)

    def _record_use(self, nonce: str, nc: int | None, now: float, state: NonceStatus,
                    issued: float) -> NonceStatus:
        """check() once the nonce is classified (``state``, ``issued`` from _classify at ``now``)."""
        if state is not NonceStatus.VALID:
            return state
        count = _SINGLE_USE if nc is None else nc
        previous = self._seen.get(nonce)
        if previous is not None:
            if nc is None or count <= previous[1]:
                return NonceStatus.REPLAY
            self._seen[nonce] = (issued, count)
            return NonceStatus.VALID
        self._remember(nonce, issued, count, now)
        return NonceStatus.VALID

    def _remember(self, nonce: str, issued: float, count: int, now: float) -> None:
        if now >= self._next_sweep:
            self._sweep(now)
        while len(self._seen) >= self.max_tracked:
            _, (evicted_issued, _) = self._seen.popitem(last=False)
            self._forgotten_before = max(self._forgotten_before, evicted_issued)
        self._seen[nonce] = (issued, count)

    def _sweep(self, now: float) -> None:
        # Expired nonces are STALE before their count is looked at: forget them.
        horizon = now - self.lifetime
        expired = [n for n, (issued, _) in self._seen.items() if issued < horizon or issued > now]
        for n in expired:
            del self._seen[n]
        self._next_sweep = now + self.lifetime / 2

    @property
    def tracked(self) -> int:
        """How many used nonces are remembered for replay protection."""
        return len(self._seen)


# ---------------------------------------------------------------------------
# Server side: the authenticator


class AuthResult(enum.Enum):
    OK = "ok"
    STALE = "stale"  # right password, expired nonce: re-challenge with stale=true
    FAILED = "failed"  # counts towards a ban (sipstack.security.FloodGuard.auth_failed)


class DigestAuthenticator:
    """Challenges requests and verifies the credentials that come back.

    ``algorithms`` is the server's order of preference: one challenge per
    algorithm, most preferred first (RFC 8760 §2.4; clients answer the topmost
    they support). Clients that break on seeing SHA-256 first can be served by
    passing ``(DigestAlgorithm.MD5,)``.
    """

    def __init__(
        self,
        realm: str,
        nonces: NonceManager,
        algorithms: Sequence[DigestAlgorithm] = (DigestAlgorithm.SHA256, DigestAlgorithm.MD5),
    ) -> None:
        if not algorithms:
            raise ValueError("DigestAuthenticator needs at least one algorithm")
        self.realm = realm
        self.nonces = nonces
        self.algorithms: tuple[DigestAlgorithm, ...] = tuple(dict.fromkeys(algorithms))

    def challenge_headers(self, now: float, *, stale: bool = False) -> list[str]:
        """WWW-Authenticate (or Proxy-Authenticate) values for a 401 (or 407).

        One nonce serves every algorithm, as in RFC 8760 §3's example.
        """
        nonce = self.nonces.issue(now)
        return [
            DigestChallenge(self.realm, nonce, algorithm, qop="auth", stale=stale).to_header()
            for algorithm in self.algorithms
        ]

    def verify(
        self,
        credentials: DigestCredentials,
        *,
        method: str,
        password: str | None,
        now: float,
        ha1: str | None = None,
    ) -> AuthResult:
        """Check credentials for a request with ``method``.

        ``password`` (or a stored ``ha1`` for ``credentials.algorithm``) is the
        user's secret, None for an unknown user. Whether ``credentials.uri``
        matches the Request-URI is the caller's business (RFC 3261 §22.4).
        """
        if credentials.realm != self.realm or credentials.algorithm not in self.algorithms:
            return AuthResult.FAILED
        # Classified once: recording the use below needs the same answer (same nonce, same
        # now, and the replay table is only changed by that recording).
        nonce_state, issued = self.nonces._classify(credentials.nonce, now)
        if nonce_state is NonceStatus.INVALID:
            return AuthResult.FAILED
        known_user = password is not None or ha1 is not None
        # An unknown user costs the same hashing as a known one, so response
        # times do not reveal which usernames exist.
        secret = password if known_user else secrets.token_hex(16)
        try:
            expected = digest_response(
                credentials.algorithm,
                username=credentials.username,
                realm=credentials.realm,
                password=secret,
                ha1=ha1,
                method=method,
                uri=credentials.uri,
                nonce=credentials.nonce,
                nc=credentials.nc_text or credentials.nc,
                cnonce=credentials.cnonce,
                qop=credentials.qop,
            )
        except ValueError:
            return AuthResult.FAILED
        given = credentials.response.strip().lower().encode("utf-8", "replace")
        # Constant time, so the response cannot be guessed byte by byte.
        matches = hmac.compare_digest(expected.encode("ascii"), given)
        if not (matches and known_user):
            return AuthResult.FAILED
        if nonce_state is NonceStatus.STALE:
            # RFC 2617 §3.2.1: stale only when the digest itself was right.
            return AuthResult.STALE
        # Record the nonce-count only now: a forged request with a wrong digest
        # must not be able to burn a legitimate client's counts.
        outcome = self.nonces._record_use(credentials.nonce, credentials.nc, now, nonce_state, issued)
        if outcome is NonceStatus.VALID:
            return AuthResult.OK
        if outcome is NonceStatus.STALE:
            return AuthResult.STALE
        return AuthResult.FAILED
