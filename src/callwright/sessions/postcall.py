"""The post-call record: what happened on a call, computed from its CallRecord and session.

Everything comes from what the media handlers and agents already keep in the session (MemoManager):
history entries (user turns, DTMF input, the agent's replies as heard — ``interrupted`` with the
``full_text`` — with their ``response_ms``, tool results), metrics (``turn``, ``barge_in``, ``dtmf``,
``tool``, ``handoff``, ``hang_up``, ``transfer``) and context (``transfer``, ``end_reason``,
``server_recording`` and ACS's ``recording`` state). :func:`build_record` works on a live call (outcome
``in_progress``) as on a finished one; :func:`store_record` saves it under the session context key
``post_call_record`` when the call ends.

Schema (all keys always present; times are Unix seconds, durations seconds unless named ``_ms``)::

    {"call_connection_id", "direction", "mode", "caller", "target",
     "started_at", "connected_at", "ended_at", "duration_s",
     "outcome": hung_up_by_caller | hung_up_by_agent | transferred | failed | server_shutdown | reaped
                | in_progress,
     "end_reason": str | None,
     "turns": [{"index", "kind": greeting | speech | dtmf, "user", "agent", "agent_name", "interrupted",
                "heard_of", "response_ms", "tool_calls": [{"name", "arguments", "result"}],
                "handoff": {"from", "to"} | None, "ts"}],
     "caller_turns": int,            # turns the caller started by speaking
     "barge_ins": int,               # confirmed interruptions (speech or a key over the agent)
     "barge_in_events": [{"ts", "outcome", "why"}],  # confirmed and resumed (backchannels) alike
     "dtmf": [{"tone", "ts"}], "dtmf_inputs": [str],
     "tool_calls": int, "handoffs": [{"from", "to", "ts"}],
     "transfer": {"target", "accepted"} | None,
     "hang_up": {"by", "reason"} | None,
     "recording": {"available", "url", "seconds"},
     "acs_recording": {"state", "recording_id"} | None,
     "version": 1}
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from callwright.sessions.registry import CallRecord

CONTEXT_KEY = "post_call_record"
SCHEMA_VERSION = 1
HANDOFF_PREFIX = "handoff_to_"  # the realtime leg's handoff tools (voice/realtime/session.py)
_ACTIVE_STATES = frozenset({"initiating", "connecting", "connected", "transferring"})


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _decode(content: Any) -> Any:
    if not isinstance(content, str):
        return content
    try:
        return json.loads(content)
    except ValueError:
        return content


def _outcome(record: CallRecord, ctx: dict[str, Any], metrics: list[dict[str, Any]]) -> str:
    reason = (record.end_reason or ctx.get("end_reason") or "").lower()
    ended = record.ended_at is not None or record.state in ("disconnected", "failed")
    if not ended:
        return "in_progress"
    if record.state == "failed" or ctx.get("call_state") == "failed":
        return "failed"
    if reason == "server shutdown":
        return "server_shutdown"
    if reason == "reaped":
        return "reaped"
    transfer = ctx.get("transfer")
    if (isinstance(transfer, dict) and transfer.get("accepted")) or "transferred" in reason or "7015" in reason:
        return "transferred"
    if any(m.get("name") == "hang_up" for m in metrics) or "server bot" in reason or "7000" in reason:
        return "hung_up_by_agent"
    return "hung_up_by_caller"


OnDisk = tuple[bool, float | None]  # (the call's WAV exists, its length in seconds)


def probe_recording(directory: Path, call_id: str) -> OnDisk:
    """Whether the call's recording is on disk, and its length (blocking: run it off the event loop)."""
    from callwright.voice.recording import recording_path, wav_seconds

    path = recording_path(directory, call_id)
    return (True, wav_seconds(path)) if path.is_file() else (False, None)


def _recording(record: CallRecord, ctx: dict[str, Any], on_disk: OnDisk | None) -> dict[str, Any]:
    info = ctx.get("server_recording") if isinstance(ctx.get("server_recording"), dict) else None
    seconds = _num(info.get("seconds")) if info else None
    available = info is not None
    if on_disk is not None:
        available = on_disk[0]
        if available and seconds is None:
            seconds = on_disk[1]
    return {
        "available": available,
        "url": f"/api/v1/calls/{record.call_connection_id}/recording" if available else None,
        "seconds": seconds,
    }


def _turns(history: list[dict[str, Any]], metrics: list[dict[str, Any]]) -> list[dict[str, Any]]:
    turns: list[dict[str, Any]] = []

    def new_turn(kind: str, user: str | None, ts: Any) -> dict[str, Any]:
        turn = {
            "index": len(turns),
            "kind": kind,
            "user": user,
            "agent": None,
            "agent_name": None,
            "interrupted": False,
            "heard_of": None,
            "response_ms": None,
            "tool_calls": [],
            "handoff": None,
            "ts": _num(ts),
        }
        turns.append(turn)
        return turn

    current: dict[str, Any] | None = None
    for entry in history:
        if not isinstance(entry, dict):
            continue
        role, content = entry.get("role"), entry.get("content")
        if role == "user":
            current = new_turn("dtmf" if entry.get("kind") == "dtmf" else "speech", str(content or ""), entry.get("ts"))
        elif role == "assistant":
            if current is None:
                current = new_turn("greeting", None, entry.get("ts"))
            text = str(content or "")
            current["agent"] = f"{current['agent']} {text}".strip() if current["agent"] else text
            current["agent_name"] = current["agent_name"] or entry.get("agent")
            if entry.get("interrupted"):
                current["interrupted"] = True
                current["heard_of"] = entry.get("full_text")
            if current["response_ms"] is None and _num(entry.get("response_ms")) is not None:
                current["response_ms"] = _num(entry.get("response_ms"))
        elif role == "tool":
            if current is None:
                current = new_turn("greeting", None, entry.get("ts"))
            current.setdefault("_tool_results", []).append((entry.get("name"), _decode(content)))

    def turn_at(ts: float | None) -> dict[str, Any] | None:
        found = None
        for turn in turns:
            if turn["ts"] is not None and ts is not None and turn["ts"] <= ts:
                found = turn
        return found or (turns[0] if turns else None)

    for m in metrics:
        name = m.get("name")
        if name == "tool":
            turn = turn_at(_num(m.get("ts")))
            if turn is None:
                continue
            call = {"name": m.get("tool"), "arguments": m.get("arguments"), "result": m.get("result")}
            # The same call's tool history entry (the realtime leg and the LLM agent write one): its result
            # when the metric has none, and never listed a second time.
            pending = turn.get("_tool_results") or []
            for i, (tool_name, result) in enumerate(pending):
                if tool_name == call["name"]:
                    if "result" not in m:
                        call["result"] = result
                    del pending[i]
                    break
            turn["tool_calls"].append(call)
            tool = str(call["name"] or "")
            if tool.startswith(HANDOFF_PREFIX) and turn["handoff"] is None:
                turn["handoff"] = {"from": turn["agent_name"], "to": tool.removeprefix(HANDOFF_PREFIX)}
        elif name == "handoff":
            turn = turn_at(_num(m.get("ts")))
            if turn is not None:
                turn["handoff"] = {"from": m.get("from_agent"), "to": m.get("to_agent")}
    for turn in turns:
        # Tool history entries without a metric (an orchestrator that records only history) still show.
        for tool_name, result in turn.pop("_tool_results", []):
            turn["tool_calls"].append({"name": tool_name, "arguments": None, "result": result})
    return turns


def build_record(call_record: CallRecord, *, on_disk: OnDisk | None = None) -> dict[str, Any]:
    """The post-call record of ``call_record`` (see the module docstring for the schema). ``on_disk``:
    what :func:`probe_recording` found (else the session's note of the recording decides)."""
    memo = call_record.memo
    history: list[dict[str, Any]] = list(memo.history) if memo is not None else []
    metrics: list[dict[str, Any]] = [m for m in (memo.metrics if memo is not None else []) if isinstance(m, dict)]
    ctx: dict[str, Any] = dict(memo.context) if memo is not None else {}
    turns = _turns(history, metrics)
    barge_events = [
        {"ts": _num(m.get("ts")), "outcome": m.get("outcome"), "why": m.get("why")}
        for m in metrics
        if m.get("name") == "barge_in"
    ]
    handoffs = [{"from": t["handoff"]["from"], "to": t["handoff"]["to"], "ts": t["ts"]} for t in turns if t["handoff"]]
    transfer_asked = next((m for m in reversed(metrics) if m.get("name") == "transfer"), None)
    transfer_ctx = ctx.get("transfer") if isinstance(ctx.get("transfer"), dict) else None
    transfer = None
    if transfer_asked is not None or transfer_ctx is not None:
        transfer = {
            "target": transfer_asked.get("target") if transfer_asked else None,
            "accepted": bool(transfer_ctx.get("accepted")) if transfer_ctx else None,
        }
    hang_up = next((m for m in metrics if m.get("name") == "hang_up"), None)
    started = call_record.connected_at or call_record.created_at or None
    end = call_record.ended_at if call_record.ended_at is not None else time.time()
    acs = ctx.get("recording") if isinstance(ctx.get("recording"), dict) else None
    return {
        "version": SCHEMA_VERSION,
        "call_connection_id": call_record.call_connection_id,
        "direction": call_record.direction,
        "mode": call_record.mode,
        "caller": call_record.caller,
        "target": call_record.target,
        "started_at": call_record.created_at or None,
        "connected_at": call_record.connected_at,
        "ended_at": call_record.ended_at,
        "duration_s": round(max(0.0, end - started), 2) if started else None,
        "outcome": _outcome(call_record, ctx, metrics),
        "end_reason": call_record.end_reason or ctx.get("end_reason"),
        "turns": turns,
        "caller_turns": sum(1 for t in turns if t["kind"] == "speech"),
        "barge_ins": sum(1 for b in barge_events if b["outcome"] == "confirmed"),
        "barge_in_events": barge_events,
        "dtmf": [{"tone": m.get("tone"), "ts": _num(m.get("ts"))} for m in metrics if m.get("name") == "dtmf"],
        "dtmf_inputs": [str(e.get("content")) for e in history if e.get("role") == "user" and e.get("kind") == "dtmf"],
        "tool_calls": sum(len(t["tool_calls"]) for t in turns),
        "handoffs": handoffs,
        "transfer": transfer,
        "hang_up": {"by": hang_up.get("by"), "reason": hang_up.get("reason")} if hang_up else None,
        "recording": _recording(call_record, ctx, on_disk),
        "acs_recording": {"state": acs.get("state"), "recording_id": acs.get("recording_id")} if acs else None,
    }


def store_record(call_record: CallRecord, *, on_disk: OnDisk | None = None) -> dict[str, Any] | None:
    """At call end: compute the record and keep it in the session (context ``post_call_record``). The
    caller persists the memo (CallRegistry.finish hands a dirty memo to the saver)."""
    if call_record.memo is None:
        return None
    record = build_record(call_record, on_disk=on_disk)
    call_record.memo.set_context(CONTEXT_KEY, record)
    return record


def stored_or_built(call_record: CallRecord, *, on_disk: OnDisk | None = None) -> dict[str, Any]:
    """The saved record of a finished call, else one computed now (live calls, calls saved before)."""
    memo = call_record.memo
    saved = memo.context.get(CONTEXT_KEY) if memo is not None else None
    if isinstance(saved, dict) and saved.get("outcome") not in (None, "in_progress"):
        return saved
    return build_record(call_record, on_disk=on_disk)
