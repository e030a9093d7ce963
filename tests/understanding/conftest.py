"""Fixtures for the understanding tests: the shipped insurance scenario and a fresh agent per test."""

from __future__ import annotations

import pytest

from callwright.agents.base import CallInfo
from callwright.agents.factory import build_orchestrator
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
def orch(settings: Settings, insurance: Scenario):  # type: ignore[no-untyped-def]
    memo = MemoManager("call-13", InMemorySessionStore(ttl_seconds=600))
    return build_orchestrator(settings, insurance, CallInfo("call-13", caller="+15559990013"), memo)
