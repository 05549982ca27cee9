"""The one error mediacore raises for bad requests (unknown endpoint, no free port, bad codec)."""

from __future__ import annotations


class MediaError(Exception):
    """A media request that cannot be carried out; the message says why."""
