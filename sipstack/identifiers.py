"""The identifiers a SIP element makes up: tags, Via branches and Call-IDs (RFC 3261 §8.1.1.4,
§8.1.1.7, §19.3).

The random parts come from os.urandom, the source the secrets module draws on (called directly:
a tag is drawn for nearly every response).
"""

from __future__ import annotations

import os

__all__ = ["BRANCH_MAGIC_COOKIE", "generate_branch", "generate_call_id", "generate_tag"]

# RFC 3261 §8.1.1.7: branches created by RFC 3261 elements start with this.
BRANCH_MAGIC_COOKIE = "z9hG4bK"


def generate_tag() -> str:
    """A From/To tag with 64 random bits (RFC 3261 §19.3 asks for at least 32)."""
    return os.urandom(8).hex()


def generate_branch() -> str:
    """A Via branch: the magic cookie then 96 random bits (RFC 3261 §8.1.1.7)."""
    return BRANCH_MAGIC_COOKIE + os.urandom(12).hex()


def generate_call_id(host: str) -> str:
    """A globally unique Call-ID, ``random@host`` (RFC 3261 §8.1.1.4)."""
    local = os.urandom(16).hex()
    host = host.strip("[]")
    if not host:
        return local
    if ":" in host:
        host = f"[{host}]"
    return f"{local}@{host}"
