"""The post-call record from a session alone: turns, outcomes, tool calls and handoffs of both modes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from callwright.sessions.memo import MemoManager
from callwright.sessions.postcall import CONTEXT_KEY, build_record, probe_recording, store_record, stored_or_built
from callwright.sessions.registry import CallRecord
from callwright.sessions.store import InMemorySessionStore


def call(state: str = "connected", **kw: object) -> CallRecord:
    rec = CallRecord("c-1", "inbound", "media", state=state, caller="+15551230001", **kw)  # type: ignore[arg-type]
    rec.connected_at = rec.created_at
    rec.memo = MemoManager("c-1", InMemorySessionStore(ttl_seconds=3600))
    return rec


def cascade_call() -> CallRecord:
    rec = call()
    m = rec.memo
    assert m is not None
    m.append_history("assistant", "Thank you for calling.", agent="front_desk", reply_to="greeting")
    m.append_history("user", "What are your opening hours?", agent="front_desk")
    m.record_metric("barge_in", outcome="confirmed", why="speech past 700 ms")
    m.append_history(
        "assistant", "We're open", agent="front_desk", interrupted=True, full_text="We're open Monday to Friday.",
        reason="barge-in", reply_to="speech", response_ms=640,
    )  # fmt: skip
    m.append_history("user", "Where is your office?", agent="front_desk")
    m.append_history("assistant", "Harbor Street.", agent="front_desk", reply_to="speech", response_ms=710)
    m.record_metric("barge_in", outcome="resumed", heard="uh-huh")
    for tone in "12#":
        m.record_metric("dtmf", tone=tone)
    m.append_history("user", "12#", agent="front_desk", kind="dtmf")
    m.record_metric("tool", tool="verify_policy", arguments={"policy": "12"}, result={"ok": True})
    m.record_metric("handoff", from_agent="front_desk", to_agent="claims")
    m.append_history("assistant", "Claims here.", agent="claims", reply_to="dtmf")
    return rec


def test_turns_barge_ins_keys_tools_and_handoffs_of_a_cascade_call():
    rec = cascade_call()
    r = build_record(rec)
    assert r["outcome"] == "in_progress" and r["ended_at"] is None
    assert [t["kind"] for t in r["turns"]] == ["greeting", "speech", "speech", "dtmf"]
    assert r["caller_turns"] == 2 and r["barge_ins"] == 1 and len(r["barge_in_events"]) == 2
    cut = r["turns"][1]
    assert cut["interrupted"] and cut["agent"] == "We're open" and cut["heard_of"].startswith("We're open Monday")
    assert cut["response_ms"] == 640 and r["turns"][2]["response_ms"] == 710
    assert [k["tone"] for k in r["dtmf"]] == ["1", "2", "#"] and r["dtmf_inputs"] == ["12#"]
    keys = r["turns"][3]
    assert keys["tool_calls"] == [{"name": "verify_policy", "arguments": {"policy": "12"}, "result": {"ok": True}}]
    assert keys["handoff"] == {"from": "front_desk", "to": "claims"} and r["tool_calls"] == 1
    assert [(h["from"], h["to"]) for h in r["handoffs"]] == [("front_desk", "claims")]
    assert r["recording"] == {"available": False, "url": None, "seconds": None}


def test_a_voice_live_tool_result_comes_from_its_history_entry_and_handoff_tools_count():
    rec = call()
    m = rec.memo
    assert m is not None
    m.append_history("user", "Check my claim", agent="front_desk")
    m.record_metric("tool", tool="handoff_to_claims", arguments={})
    m.append_history("tool", '{"handed_off_to": "claims"}', agent="front_desk", name="handoff_to_claims")
    m.record_metric("tool", tool="claim_status", arguments={"claim": "7"})
    m.append_history("tool", '{"status": "approved"}', agent="claims", name="claim_status")
    m.append_history("assistant", "It is approved.", agent="claims", response_ms=900)
    [turn] = build_record(rec)["turns"]
    assert [c["result"] for c in turn["tool_calls"]] == [{"handed_off_to": "claims"}, {"status": "approved"}]
    assert turn["handoff"]["to"] == "claims"


def test_a_tool_with_both_a_metric_and_a_history_entry_is_listed_once():
    rec = call()
    m = rec.memo
    assert m is not None
    m.append_history("user", "Check my claim", agent="claims")
    m.record_metric("tool", tool="claim_status", arguments={"claim": "7"}, result={"status": "open"})
    m.append_history("tool", '{"status": "open"}', agent="claims", name="claim_status")
    m.append_history("tool", '{"balance": 3}', agent="claims", name="account_balance")  # no metric: kept too
    r = build_record(rec)
    assert [(c["name"], c["result"]) for c in r["turns"][0]["tool_calls"]] == [
        ("claim_status", {"status": "open"}),
        ("account_balance", {"balance": 3}),
    ]
    assert r["tool_calls"] == 2


@pytest.mark.parametrize(
    ("state", "reason", "context", "metric", "outcome"),
    [
        ("disconnected", "The conversation has ended. DiagCode: 0#0.@", {}, None, "hung_up_by_caller"),
        ("disconnected", "Call was ended by ... a server bot. DiagCode: 0#7000.@", {}, None, "hung_up_by_agent"),
        ("disconnected", None, {}, ("hang_up", {"by": "agent", "reason": "goodbye"}), "hung_up_by_agent"),
        ("disconnected", "Call was transferred. DiagCode: 0#7015.@", {}, None, "transferred"),
        ("disconnected", None, {"transfer": {"accepted": True}}, ("transfer", {"target": "+1555"}), "transferred"),
        ("failed", "Call failed", {}, None, "failed"),
        ("disconnected", "server shutdown", {}, None, "server_shutdown"),
        ("disconnected", "reaped", {}, None, "reaped"),
    ],
)
def test_outcomes(state, reason, context, metric, outcome):
    rec = call(state=state)
    rec.ended_at, rec.end_reason = time.time(), reason
    assert rec.memo is not None
    rec.memo.update_context(context)
    if metric is not None:
        rec.memo.record_metric(metric[0], **metric[1])
    r = build_record(rec)
    assert r["outcome"] == outcome and r["end_reason"] == reason
    assert r["duration_s"] is not None and r["duration_s"] >= 0
    if metric and metric[0] == "transfer":
        assert r["transfer"] == {"target": "+1555", "accepted": True}


def test_the_record_is_stored_in_the_session_at_call_end_and_served_from_there(tmp_path: Path):
    rec = cascade_call()
    assert rec.memo is not None
    rec.memo.set_context("server_recording", {"file": "c-1.wav", "seconds": 12.5})
    (tmp_path / "c-1.wav").write_bytes(b"RIFF")
    rec.state, rec.ended_at, rec.end_reason = "disconnected", time.time(), "The conversation has ended."
    saved = store_record(rec, on_disk=probe_recording(tmp_path, "c-1"))
    assert saved is not None and rec.memo.get_context(CONTEXT_KEY) == saved and rec.memo.dirty
    assert saved["recording"] == {"available": True, "url": "/api/v1/calls/c-1/recording", "seconds": 12.5}
    rec.memo.append_history("user", "late noise")  # after the end: the saved record is what is served
    assert stored_or_built(rec, on_disk=(False, None)) == saved
