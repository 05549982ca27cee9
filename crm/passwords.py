"""Password hashing with scrypt (RFC 7914), a per-user random salt and a self-describing format.

Stored form: `scrypt$<log2 N>$<r>$<p>$<salt b64>$<key b64>`. The parameters travel with each hash,
so raising them later only needs `needs_rehash` at the next successful login; old hashes keep
verifying.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass


@dataclass(frozen=True)
class ScryptParams:
    log2_n: int
    r: int
    p: int

    @property
    def memory_bytes(self) -> int:
        # RFC 7914 §2: scrypt's working memory is 128 * r * N bytes.
        return 128 * self.r * (1 << self.log2_n)


#: OWASP's Password Storage Cheat Sheet lists N=2^14, r=8, p=5 as equal in strength to its
#: baseline N=2^17, r=8, p=1 while needing 16 MiB instead of 128 MiB per hash: on a shared
#: 2-core box, memory for concurrent logins matters more than one hash's latency (~0.2 s here).
DEFAULT_PARAMS = ScryptParams(log2_n=14, r=8, p=5)
#: 16 bytes of salt: NIST SP 800-132 asks for at least 128 bits, random per password.
SALT_BYTES = 16
#: 32-byte derived key: as long as the SHA-256 inside scrypt, longer adds nothing.
KEY_BYTES = 32
#: Refuse absurd inputs before spending a 16 MiB hash on them.
MAX_PASSWORD_CHARS = 1024
MIN_PASSWORD_CHARS = 8

_PREFIX = "scrypt"


def _derive(password: str, salt: bytes, params: ScryptParams) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"),
        salt=salt,
        n=1 << params.log2_n,
        r=params.r,
        p=params.p,
        # hashlib's default maxmem is 32 MiB; allow what the parameters need plus slack.
        maxmem=params.memory_bytes * 2 + 1024 * 1024,
        dklen=KEY_BYTES,
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str, params: ScryptParams = DEFAULT_PARAMS) -> str:
    """Hash for storage. CPU-heavy: call it from a worker thread on the event loop."""
    salt = secrets.token_bytes(SALT_BYTES)
    key = _derive(password, salt, params)
    return f"{_PREFIX}${params.log2_n}${params.r}${params.p}${_b64(salt)}${_b64(key)}"


def _parse(stored: str) -> tuple[ScryptParams, bytes, bytes] | None:
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != _PREFIX:
        return None
    try:
        params = ScryptParams(int(parts[1]), int(parts[2]), int(parts[3]))
        salt = base64.b64decode(parts[4], validate=True)
        key = base64.b64decode(parts[5], validate=True)
    except ValueError:
        return None
    if not (1 <= params.log2_n <= 22 and 1 <= params.r <= 32 and 1 <= params.p <= 16):
        return None  # a corrupted or hostile row must not make us allocate gigabytes
    return params, salt, key


def verify_password(password: str, stored: str) -> bool:
    """True when `password` matches; the comparison takes the same time wherever keys differ."""
    parsed = _parse(stored)
    if parsed is None or len(password) > MAX_PASSWORD_CHARS:
        return False
    params, salt, key = parsed
    return hmac.compare_digest(_derive(password, salt, params), key)


def needs_rehash(stored: str, params: ScryptParams = DEFAULT_PARAMS) -> bool:
    parsed = _parse(stored)
    return parsed is None or parsed[0] != params


def dummy_verify(password: str, params: ScryptParams = DEFAULT_PARAMS) -> None:
    """Spend the time of a real verification, so an unknown user name answers no faster
    than a wrong password (no user enumeration by timing)."""
    _derive(password[:MAX_PASSWORD_CHARS], b"\0" * SALT_BYTES, params)
