"""Fixtures for the agent tests: a real MemoManager over the in-memory store, the shipped scenarios."""

from __future__ import annotations

import pytest

from callwright.agents.base import CallInfo
from callwright.agents.scenario import Scenario, load_scenario
from callwright.config import Settings
from callwright.sessions.memo import MemoManager
from callwright.sessions.store import InMemorySessionStore


@pytest.fixture
def settings() -> Settings:
    return Settings(_env_file=None)  # type: ignore[call-arg]


@pytest.fixture
def insurance(settings: Settings) -> Scenario:
    return load_scenario(settings)


@pytest.fixture
def memo() -> MemoManager:
    return MemoManager("call-1", InMemorySessionStore(ttl_seconds=600))


@pytest.fixture
def call() -> CallInfo:
    return CallInfo("call-1", caller="+15551230001", callee="+15550001000")
