"""The realtime leg failing: the service dies mid-reply (1011) or refuses the key at the start. The caller
hears an apology and is transferred (the insurance scenario has a person); nothing is left running."""

from __future__ import annotations

import asyncio

import httpx

from callwright.localstack import LocalStack

from .conftest import handler_tasks, history, voice_live_stack

DIES = """
name: realtime leg dies
direction: inbound
from: "+15551230003"
to: "+15550001000"
timeout_s: 90
steps:
  - wait: {agent_done: 900, timeout_s: 40}
  - say: "What are your opening hours?"
  - wait: {disconnected: true, timeout_s: 40}
"""

REFUSED = """
name: realtime leg refused
direction: inbound
from: "+15551230003"
to: "+15550001000"
timeout_s: 60
steps:
  - wait: {disconnected: true, timeout_s: 40}
"""


async def _inject_close_mid_response(stack: LocalStack) -> None:
    """Once the greeting has played: the server closes with 1011 in its next reply (the answer)."""
    for _ in range(6000):
        for record in stack.state.calls.active():
            handler = record.media_handler
            greeted = record.memo is not None and any(m["role"] == "assistant" for m in record.memo.history)
            if handler is not None and getattr(handler, "conn", None) is not None and greeted:
                await handler.conn.send({"type": "callwright.fault", "fault": "close_mid_response"})
                return
        await asyncio.sleep(0.005)
    raise AssertionError("the voice_live call never connected to the realtime server")


async def _assert_apologised_and_transferred(stack: LocalStack, report: dict, reason: str) -> None:
    assert report["ok"], report.get("error")
    assert "CallTransferAccepted" in report["events"], report["events"]
    [transfer] = stack.emulator.transfers
    assert "+15550009999" in str(transfer)
    heard = " ".join(e["text"] for e in report["transcript"] if e["speaker"] == "agent").lower()
    assert any(w in heard for w in ("sorry", "trouble", "colleague")), heard  # the apology reached the ear
    entries = history(stack, report["call_id"])
    assert entries[-1]["agent"] == "system" and "colleague" in entries[-1]["content"]
    record = stack.state.calls.get(report["call_id"])
    assert record.context["voice_live_failure"] == reason
    async with httpx.AsyncClient(timeout=10) as http:
        metrics = (await http.get(f"{stack.url}/metrics", headers=stack.operator_headers)).text
        ready = (await http.get(f"{stack.url}/ready")).json()
    assert f'callwright_voice_live_failures_total{{reason="{reason}"}} 1.0' in metrics
    realtime = ready["checks"]["pools"]["realtime"]
    assert realtime["in_use"] == 0 and realtime["failed_calls"] == 1, realtime
    for _ in range(100):  # the handler's tasks end with the call
        if not handler_tasks():
            break
        await asyncio.sleep(0.05)
    assert not handler_tasks(), handler_tasks()


async def test_service_closing_with_1011_mid_reply_apologises_and_transfers(stack):
    injector = asyncio.create_task(_inject_close_mid_response(stack))
    report = await stack.call(DIES)
    await injector
    await _assert_apologised_and_transferred(stack, report, "died")
    server = stack.state.voice_live.local_app.state.realtime
    assert not server.sessions  # the server side was released too


async def test_service_refusing_the_key_at_start_apologises_and_transfers():
    async with voice_live_stack(realtime_api_key="the-right-key", azure_voicelive_api_key="a-wrong-key") as stack:
        report = await stack.call(REFUSED)
        await _assert_apologised_and_transferred(stack, report, "start_auth")
