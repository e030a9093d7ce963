"""Barge-in on a voice_live call: the agent goes silent at the ear, StopAudio, the item is truncated to
what was played, and history holds only the heard part."""

from __future__ import annotations

from .conftest import history

BARGE_IN = """
name: voice_live barge-in
direction: inbound
from: "+15551230002"
to: "+15550001000"
timeout_s: 120
steps:
  - wait: {agent_done: 900, timeout_s: 40}
  - say: "What are your opening hours?"
  - barge_in: {at_ms: 1000, of: next, timeout_s: 40, say: "Sorry, where is your office?"}
  - wait: {agent_done: 900, timeout_s: 40}
  - hangup
"""


async def test_barge_in_cuts_the_reply_truncates_it_and_keeps_the_heard_part(stack):
    report = await stack.call(BARGE_IN)
    assert report["ok"], report.get("error")
    [barge] = report["barge_ins"]
    assert barge["stopped"] is True  # StopAudio reached the phone
    assert barge["leaked_ms"] == 0
    assert 0 < barge["latency_ms"] < 3000  # voice onset -> StopAudio: the service's VAD, then the confirmation
    assert 0 < barge["silenced_ms"] < 1000  # the caller heard the agent stop (held) well before that
    entries = history(stack, report["call_id"])
    [interrupted] = [m for m in entries if m.get("interrupted")]
    heard, full = interrupted["content"], interrupted["full_text"]
    assert full.startswith("We're open Monday to Friday")
    assert heard and full.startswith(heard) and len(heard) < len(full) / 2, (heard, full)
    record = stack.state.calls.get(report["call_id"])
    [cut] = [m for m in record.memo.metrics if m["name"] == "barge_in"]
    # truncate went out with what the caller heard: never beyond what was played or received
    assert 0 < cut["audio_end_ms"] <= cut["played_ms"] + 1 and cut["audio_end_ms"] <= cut["received_ms"] + 1, cut
    [summary] = [m for m in record.memo.metrics if m["name"] == "voice_live"]
    assert summary["events"].get("conversation.item.truncated") == 1, summary  # accepted by the service
    assert not any(k.startswith("error:") for k in summary["events"]), summary
    # The interruption became the next turn and was answered.
    users = [m["content"] for m in entries if m["role"] == "user"]
    assert "office" in users[-1]
    assert "Harbor Street" in entries[-1]["content"]
