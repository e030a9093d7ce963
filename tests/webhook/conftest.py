"""The webhook tests reuse the edge server of tests/server: Callwright + a JWT issuer + an ACS stand-in."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from server.conftest import EVENTGRID_SECRET, Edge, edge_server

__all__ = ["EVENTGRID_SECRET", "Edge", "edge_server"]


@pytest.fixture
async def edge() -> AsyncIterator[Edge]:
    async with edge_server() as e:
        yield e
