"""Shared fixtures: a real redis-server, and the tests/support helpers on the import path."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from callwright.localredis import LocalRedis, RedisUnavailable


class RedisServer(LocalRedis):
    def start(self, timeout: float = 15.0) -> None:
        try:
            super().start(timeout)
        except RedisUnavailable as exc:
            pytest.fail(str(exc))


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()
