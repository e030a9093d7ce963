"""Helpers shared by the agent tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from callwright.agents.base import AgentEvent, TextChunk, Turn


async def collect(stream: AsyncIterator[AgentEvent]) -> list[AgentEvent]:
    return [event async for event in stream]


def spoken(events: list[AgentEvent]) -> str:
    return " ".join(e.text for e in events if isinstance(e, TextChunk))


async def say(orch: Any, text: str, kind: str = "speech") -> list[AgentEvent]:
    return await collect(orch.respond(Turn(text, kind=kind)))  # type: ignore[arg-type]
