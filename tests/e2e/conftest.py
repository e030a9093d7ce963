"""Whole calls: the emulator and the Callwright server in one process, talking over real sockets."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator

import pytest

from callwright.localstack import LocalStack, local_stack


@pytest.fixture
async def stack() -> AsyncIterator[LocalStack]:
    async with local_stack(stt_pool_warm=1, tts_pool_warm=1, stt_pool_size=4, tts_pool_size=4) as s:
        yield s


def lane_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("recognition:")]


def history(stack: LocalStack, call_id: str) -> list[dict]:
    record = stack.state.calls.get(call_id)
    assert record is not None, f"the server never saw call {call_id}"
    return record.memo.history


def said(entries: list[dict], role: str) -> list[str]:
    return [m["content"] for m in entries if m["role"] == role]
