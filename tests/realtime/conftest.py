"""The ``rt`` fixture: a realtime server with the embedded engines on an ephemeral loopback port."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from rt_support import realtime_server


@pytest.fixture
async def rt() -> AsyncIterator[tuple[str, Any]]:
    async with realtime_server() as server:
        yield server
