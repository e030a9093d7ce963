"""Whole ``voice_live`` calls: the emulator, the Callwright server and its in-process local realtime server."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from callwright.localstack import LocalStack, local_stack

BASE = {"stt_pool_warm": 1, "tts_pool_warm": 1, "stt_pool_size": 4, "tts_pool_size": 4}


@contextlib.asynccontextmanager
async def voice_live_stack(**overrides: Any) -> AsyncIterator[LocalStack]:
    values: dict[str, Any] = {**BASE, "acs_streaming_mode": "voice_live", "realtime_fault_injection": True}
    values.update(overrides)
    async with local_stack(**values) as stack:
        yield stack


@pytest.fixture
async def stack() -> AsyncIterator[LocalStack]:
    async with voice_live_stack() as s:
        yield s


def history(stack: LocalStack, call_id: str) -> list[dict[str, Any]]:
    record = stack.state.calls.get(call_id)
    assert record is not None, f"the server never saw call {call_id}"
    return record.memo.history


def said(entries: list[dict[str, Any]], role: str) -> list[str]:
    return [m["content"] for m in entries if m["role"] == role]


async def place_outbound(stack: LocalStack, script: str, mode: str, timeout_s: float = 120.0) -> dict[str, Any]:
    """An outbound call placed through the calls API with an explicit ``mode`` (LocalStack.call posts none)."""
    from callwright.emulator.phone import build_phone_from_script

    phone = build_phone_from_script(script, transcriber=stack.transcriber)
    stack.emulator.register_phone(phone.number, phone, phone.outbound_behaviour)
    try:
        waiter = stack.emulator.expect_outbound_call(phone.number)
        async with httpx.AsyncClient(timeout=30) as http:
            resp = await http.post(
                f"{stack.url}/api/v1/calls", json={"target": phone.number, "mode": mode}, headers=stack.operator_headers
            )
            resp.raise_for_status()
        call = await asyncio.wait_for(waiter, timeout_s)
        await call.connected.wait()
        return await asyncio.wait_for(phone.run(call), timeout_s)
    finally:
        stack.emulator.unregister_phone(phone.number)


def handler_tasks() -> list[asyncio.Task[Any]]:
    """Tasks still running code of the voice_live handler (none may outlive a call)."""
    out = []
    for task in asyncio.all_tasks():
        coro = task.get_coro()
        name = getattr(coro, "__qualname__", "")
        if name.startswith("RealtimeHandler."):
            out.append(task)
    return out
