"""Whole inbound and outbound calls through the emulator: events, JWTs, media both ways, the report."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx

from .conftest import history, said

TWO_TURNS = """
name: two turns
direction: inbound
from: "+15551230001"
to: "+15550001000"
timeout_s: 90
steps:
  - wait: {agent_done: 700, timeout_s: 30}
  - say: "What are your opening hours?"
  - wait: {agent_done: 700, timeout_s: 30}
  - say: "Where is your office?"
  - wait: {agent_done: 700, timeout_s: 30}
  - hangup
"""


async def test_inbound_call_end_to_end(stack, tmp_path: Path):
    report = await stack.call(TWO_TURNS, record_dir=tmp_path)
    assert report["ok"], report.get("error")
    events = report["events"]
    assert events[0] == "CallConnected"
    assert "MediaStreamingStarted" in events
    assert events[-1] == "CallDisconnected"
    # The greeting and two replies reached the caller's ear, each after the caller stopped talking.
    agent_lines = [t for t in report["transcript"] if t["speaker"] == "agent"]
    assert len(agent_lines) >= 3
    assert len(report["turns"]) == 2
    for turn in report["turns"]:
        assert 0 < turn["response_latency_ms"] < 5000
    assert report["gaps"]["count"] == 0
    # The server recognised the caller and answered in the right order.
    entries = history(stack, report["call_id"])
    users = said(entries, "user")
    assert "opening hours" in users[0]
    assert "office" in users[1]
    replies = said(entries, "assistant")
    assert replies[0].startswith("Thank you for calling Contoso Insurance")
    assert "Monday to Friday" in replies[1]
    assert "Harbor Street" in replies[2]
    # Every callback and the media upgrade carried a JWT that the server verified (none refused).
    async with httpx.AsyncClient() as http:
        metrics = (await http.get(f"{stack.url}/metrics", headers=stack.operator_headers)).text
    assert "callwright_webhook_rejected_total{" not in metrics
    assert 'callwright_media_connections_total{outcome="accepted"} 1.0' in metrics
    # Per-turn metrics were kept in the session and exported.
    assert "callwright_turn_response_seconds_count 2.0" in metrics
    turn_metrics = [m for m in stack.state.calls.get(report["call_id"]).memo.metrics if m["name"] == "turn"]
    assert len(turn_metrics) >= 2 and all(m["response_s"] > 0 for m in turn_metrics if "response_s" in m)
    # What the caller heard was recorded.
    saved = json.loads((tmp_path / f"{report['call_id']}.json").read_text())
    assert saved["turns"] == report["turns"]
    assert (tmp_path / f"{report['call_id']}.wav").stat().st_size > 100_000


OUTBOUND = """
name: outbound answer
direction: outbound
from: "+15550001000"
to: "+15557770001"
outbound: {answer_after_s: 0.5, outcome: answer}
timeout_s: 60
steps:
  - wait: {agent_done: 700, timeout_s: 30}
  - say: "What are your opening hours?"
  - wait: {agent_done: 700, timeout_s: 30}
  - hangup
"""


async def test_outbound_call_end_to_end(stack):
    report = await stack.call(OUTBOUND)
    assert report["ok"], report.get("error")
    assert report["events"][0] == "CallConnected"
    assert report["turns"] and report["turns"][0]["response_latency_ms"] > 0
    record = stack.state.calls.get(report["call_id"])
    assert record.direction == "outbound"
    assert record.target == "4:+15557770001"
    assert record.mode == "media"
    assert "Monday to Friday" in " ".join(said(record.memo.history, "assistant"))


BUSY = """
name: busy
direction: outbound
from: "+15550001000"
to: "+15557770002"
outbound: {outcome: busy}
steps:
  - hangup
"""


async def test_outbound_call_to_a_busy_number_fails_cleanly(stack):
    report = await stack.call(BUSY)
    assert "CreateCallFailed" in report["events"]
    records: list = []
    for _ in range(200):  # the server handles the failure event asynchronously
        records = [c for c in stack.state.calls.recent() if c.target == "4:+15557770002"]
        if records:
            break
        await asyncio.sleep(0.05)
    [record] = records
    assert record.state == "failed"
    assert stack.state.calls.active() == []
