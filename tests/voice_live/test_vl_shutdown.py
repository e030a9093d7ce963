"""Shutdown drain mid-reply on a voice_live call: the reply gives way to the goodbye, which the service
speaks and the caller hears to the end before the hang-up."""

from __future__ import annotations

import asyncio

from callwright.sessions.lifecycle import end_call

from .conftest import handler_tasks, history

STAYS = """
name: voice_live stays on the line
direction: inbound
from: "+15551230001"
to: "+15550001000"
timeout_s: 120
steps:
  - wait: {agent_done: 900, timeout_s: 40}
  - say: "What are your opening hours?"
  - wait: {disconnected: true, timeout_s: 60}
"""
GOODBYE = "We are closing this line now. Goodbye."


async def test_goodbye_at_shutdown_is_spoken_before_the_hang_up(stack):
    call = asyncio.create_task(stack.call(STAYS))
    for _ in range(1200):  # the answer to the caller's question has started playing
        records = [r for r in stack.state.calls.active() if r.memo is not None]
        handler = records[0].media_handler if records else None
        if (
            handler is not None
            and handler.playback.audible
            and any(m["role"] == "user" for m in records[0].memo.history)
        ):
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the call never got to its first answer")
    record = records[0]
    await end_call(stack.state, record, reason="server shutdown", hang_up=True, goodbye=GOODBYE, goodbye_seconds=15)
    report = await call
    assert report["ok"], report.get("error")
    entries = history(stack, report["call_id"])
    replies = [m for m in entries if m["role"] == "assistant"]
    assert replies[-2].get("interrupted") and replies[-2]["reason"] == "server shutdown", replies
    assert replies[-1]["content"] == GOODBYE  # played to the end (recorded once heard)
    # The caller's ear got agent speech after the cut (the phone's recogniser is rough: some words).
    caller_end = max(e["start_ms"] for e in report["transcript"] if e["speaker"] == "caller")
    after = [e for e in report["transcript"] if e["speaker"] == "agent" and e["start_ms"] > caller_end]
    assert after and len(after[-1]["text"].split()) >= 3, report["transcript"]
    assert not handler_tasks()
