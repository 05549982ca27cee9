"""Fixtures of the tests with real peers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest


@pytest.fixture
async def browsers() -> AsyncIterator[list[Any]]:
    """Browser-style agents (aiortc clients on /ws/agent) a test signs in: closed at the end."""
    started: list[Any] = []
    yield started
    for agent in started:
        await agent.close()
