"""The caller's-ear report: latencies, barge-ins, leaks, gaps and a transcript, from wire times.

Definitions (all times are the phone's monotonic clock at the wire, reported in ms from media start):

- a caller utterance *ends* when its last voiced frame is sent; its *onset* is its first voiced frame;
- ``response_latency_ms``: utterance end → the first voiced agent frame *received* after it (before the
  caller's next utterance); ``agent_speaking_at_end`` flags turns where the agent was still audible in
  the last 200 ms of the caller's turn, whose figure is not a response time (benchmarks skip them);
- ``barge_ins[].silenced_ms``: onset of caller speech that began while agent audio was playing (or a
  ``barge_in`` step) → the end of the last voiced agent frame played at the caller's ear while the
  caller was talking — when the caller hears the agent stop, whatever stopped it;
  ``latency_ms``: the same onset → StopAudio received; ``leaked_ms``: voiced agent audio received after
  that StopAudio while the caller was still talking (without StopAudio: all agent audio received during
  the caller's speech);
- ``false_barge_in_probes``: each noise/click/backchannel probe, and whether StopAudio came within 1 s;
- ``gaps``: the playout FIFO ran dry between two voiced frames of one agent utterance (≤ 1 s apart, no
  StopAudio, no caller turn and no media gap in between).
- ``media_sessions``: each media WebSocket of the call (ACS opens a new one on every start of streaming):
  ``opened_at_ms``, ``closed_at_ms``, ``end`` (why) and ``dropped`` (the app's side closed or broke it);
  ``media_session_count`` is their number;
- ``media_gaps``: one per socket the app's side dropped, and per stop that streaming later resumed from:
  ``dropped_at_ms`` (socket gone), ``reconnected_at_ms`` (the next socket open, or null),
  ``last_agent_audio_ms`` (end of the last voiced agent frame played at the caller's ear before the next
  socket opened — buffered audio still plays after a drop, so a voiced run that goes on across the opening
  is counted as the old socket's), ``resumed_at_ms`` (start of the first voiced agent frame played after
  it, before the next gap; null if the agent was not heard again),
  ``agent_silence_ms`` = resumed − last agent audio (what the caller lived through; null if either is
  unknown), ``socket_down_ms`` = reconnected − dropped.
"""

from __future__ import annotations

import bisect
import itertools
from dataclasses import dataclass
from typing import Any

from callwright.emulator.phone.media import DRY, PLAYED_VOICED, TICK_S, CallerUtterance, MediaSession, Timeline

PROBE_STOP_WINDOW_S = 1.0
GAP_CONTEXT_TICKS = 50  # voiced agent frames up to 1 s apart may be one utterance with an underrun
SEGMENT_JOIN_TICKS = 35  # agent pauses shorter than 700 ms stay inside one transcript segment


@dataclass(frozen=True, slots=True)
class AgentSegment:
    start_tick: int
    end_tick: int  # inclusive


def agent_segments(tl: Timeline) -> list[AgentSegment]:
    """Agent speech as heard, split at pauses of ≥ 700 ms."""
    out: list[AgentSegment] = []
    start = last = None
    for i, st in enumerate(tl.agent_state):
        if st != PLAYED_VOICED:
            continue
        if start is None:
            start = last = i
        elif last is not None and i - last > SEGMENT_JOIN_TICKS:
            out.append(AgentSegment(start, last))
            start = i
        last = i
    if start is not None and last is not None:
        out.append(AgentSegment(start, last))
    return out


def _ms(tl: Timeline, t: float | None) -> float | None:
    return None if t is None else round((t - tl.t0) * 1000, 1)


def _tick_ms(tl: Timeline, i: int) -> float:
    t = tl.tick_t[i] if i < len(tl.tick_t) else tl.t0 + i * TICK_S
    return round((t - tl.t0) * 1000, 1)


def _turns(tl: Timeline, utts: list[CallerUtterance]) -> list[dict[str, Any]]:
    turn_utts = [u for u in utts if not u.probe and u.onset_t is not None and u.end_t is not None]
    turn_utts.sort(key=lambda u: u.onset_t or 0.0)
    turns = []
    for k, u in enumerate(turn_utts):
        assert u.end_t is not None
        horizon = turn_utts[k + 1].onset_t if k + 1 < len(turn_utts) else None
        first = next((t for t, v in tl.rx_frames if v and t > u.end_t and (horizon is None or t < horizon)), None)
        end_tick = u.end_tick if u.end_tick is not None else 0
        # The agent was still audible when the caller stopped: the 'latency' then is not a response time.
        talking = any(s == PLAYED_VOICED for s in tl.agent_state[max(0, end_tick - 10) : end_tick + 1])
        turns.append(
            {
                "index": k,
                "agent_speaking_at_end": talking,
                "kind": u.kind,
                "caller": u.label,
                "barge_in": u.barge_in,
                "caller_end_ms": _ms(tl, u.end_t),
                "agent_start_ms": _ms(tl, first),
                "response_latency_ms": None if first is None else round((first - u.end_t) * 1000, 1),
            }
        )
    return turns


def _voiced_rx_ms(tl: Timeline, after: float, until: float) -> float:
    return sum(TICK_S * 1000 for t, v in tl.rx_frames if v and after < t <= until)


def _silenced_ms(tl: Timeline, onset_t: float, end_t: float) -> float:
    first = bisect.bisect_left(tl.tick_t, onset_t)
    last = bisect.bisect_right(tl.tick_t, end_t)
    voiced = [i for i in range(first, min(last, len(tl.agent_state))) if tl.agent_state[i] == PLAYED_VOICED]
    if not voiced:
        return 0.0
    return round(max(0.0, (tl.tick_t[voiced[-1]] + TICK_S - onset_t) * 1000), 1)


def _barge_ins(tl: Timeline, utts: list[CallerUtterance]) -> list[dict[str, Any]]:
    out = []
    for u in utts:
        if u.probe or u.kind == "dtmf" or u.onset_t is None or u.end_t is None:
            continue
        if not (u.barge_in or u.agent_playing_at_onset):
            continue
        stop = next((t for t in tl.stop_audio_t if u.onset_t <= t <= u.onset_t + 5.0), None)
        if stop is not None:
            leaked = _voiced_rx_ms(tl, stop, max(u.end_t, stop))
        else:
            leaked = _voiced_rx_ms(tl, u.onset_t, u.end_t)
        out.append(
            {
                "caller": u.label,
                "scripted": u.barge_in,
                "agent_playing_at_onset": u.agent_playing_at_onset,
                "onset_ms": _ms(tl, u.onset_t),
                "stop_audio_ms": _ms(tl, stop),
                "stopped": stop is not None,
                "silenced_ms": _silenced_ms(tl, u.onset_t, u.end_t),
                "latency_ms": None if stop is None else round((stop - u.onset_t) * 1000, 1),
                "leaked_ms": round(leaked, 1),
            }
        )
    return out


def _probes(tl: Timeline, utts: list[CallerUtterance]) -> list[dict[str, Any]]:
    out = []
    for u in utts:
        if not u.probe or u.onset_t is None:
            continue
        stop = next((t for t in tl.stop_audio_t if u.onset_t <= t <= u.onset_t + PROBE_STOP_WINDOW_S), None)
        out.append(
            {
                "kind": u.kind,
                "caller": u.label,
                "onset_ms": _ms(tl, u.onset_t),
                "during_agent_speech": u.agent_playing_at_onset,
                "stopped": stop is not None,
                "stop_latency_ms": None if stop is None else round((stop - u.onset_t) * 1000, 1),
            }
        )
    return out


def _gaps(tl: Timeline, utts: list[CallerUtterance]) -> dict[str, Any]:
    states = tl.agent_state
    caller_turn = [False] * len(states)
    for u in utts:
        if u.probe or u.start_tick is None or u.end_tick is None:
            continue
        for i in range(u.start_tick, min(u.end_tick + 1, len(states))):
            caller_turn[i] = tl.caller_voiced[i] if i < len(tl.caller_voiced) else False
    voiced_idx = [i for i, s in enumerate(states) if s == PLAYED_VOICED]
    items = []
    for a, b in itertools.pairwise(voiced_idx):
        if b - a <= 1 or b - a > GAP_CONTEXT_TICKS:
            continue
        dry = [i for i in range(a + 1, b) if states[i] == DRY]
        if not dry or any(caller_turn[a:b]):
            continue
        t_a, t_b = tl.tick_t[a], tl.tick_t[b]
        if any(t_a <= t <= t_b for t in tl.stop_audio_t):
            continue
        if any(t_a <= s.opened_t <= t_b for s in tl.sessions[1:]) or any(
            s.closed_t is not None and t_a <= s.closed_t <= t_b for s in tl.sessions
        ):
            continue  # a media gap (audio buffered before a drop may play on past it), under media_gaps
        items.append({"start_ms": _tick_ms(tl, dry[0]), "ms": round(len(dry) * TICK_S * 1000, 1)})
    return {"count": len(items), "total_ms": round(sum(g["ms"] for g in items), 1), "items": items}


def _media_sessions(tl: Timeline) -> list[dict[str, Any]]:
    return [
        {"index": k, "opened_at_ms": _ms(tl, s.opened_t), "closed_at_ms": _ms(tl, s.closed_t), "end": s.end,
         "dropped": s.dropped}
        for k, s in enumerate(tl.sessions)
    ]  # fmt: skip


def _voiced_ticks_between(tl: Timeline, start: float, end: float | None) -> list[int]:
    n = min(len(tl.tick_t), len(tl.agent_state))
    lo = bisect.bisect_left(tl.tick_t, start, 0, n)
    hi = n if end is None else bisect.bisect_left(tl.tick_t, end, lo, n)
    return [i for i in range(lo, hi) if tl.agent_state[i] == PLAYED_VOICED]


def _media_gaps(tl: Timeline) -> list[dict[str, Any]]:
    sessions: list[MediaSession] = tl.sessions
    out = []
    for k, s in enumerate(sessions):
        nxt = sessions[k + 1] if k + 1 < len(sessions) else None
        if s.closed_t is None or not (s.dropped or nxt is not None):
            continue  # the call's last socket, closed with the call (or an app stop never resumed)
        before = _voiced_ticks_between(tl, tl.t0, None if nxt is None else nxt.opened_t)
        last_end = tl.tick_t[before[-1]] + TICK_S if before else None
        resumed = None
        if nxt is not None:
            after = _voiced_ticks_between(tl, nxt.opened_t, nxt.closed_t)
            if before and after and after[0] == before[-1] + 1:
                # Audio buffered before the drop was still playing when the new socket opened: the run it
                # belongs to is the old socket's, not the resumption (which would read as no silence).
                run = 0
                while run + 1 < len(after) and after[run + 1] == after[run] + 1:
                    run += 1
                last_end = tl.tick_t[after[run]] + TICK_S
                after = after[run + 1 :]
            resumed = tl.tick_t[after[0]] if after else None
        out.append(
            {
                "cause": "dropped" if s.dropped else "stopped",
                "reason": s.end,
                "dropped_at_ms": _ms(tl, s.closed_t),
                "reconnected_at_ms": None if nxt is None else _ms(tl, nxt.opened_t),
                "last_agent_audio_ms": _ms(tl, last_end),
                "resumed_at_ms": _ms(tl, resumed),
                "agent_silence_ms": None
                if resumed is None or last_end is None
                else round(max(0.0, resumed - last_end) * 1000, 1),
                "socket_down_ms": None if nxt is None else round((nxt.opened_t - s.closed_t) * 1000, 1),
            }
        )
    return out


def build_report(
    *,
    call_id: str,
    script_name: str,
    tl: Timeline,
    utterances: list[CallerUtterance],
    events: list[str],
    ok: bool,
    error: str | None,
    agent_texts: dict[int, str] | None,
    segments: list[AgentSegment],
) -> dict[str, Any]:
    transcript: list[dict[str, Any]] = []
    for u in utterances:
        if u.kind == "dtmf" or u.onset_t is None or u.end_t is None:
            continue
        transcript.append(
            {"speaker": "caller", "text": u.label, "start_ms": _ms(tl, u.onset_t),
             "end_ms": round((_ms(tl, u.end_t) or 0.0) + TICK_S * 1000, 1)}
        )  # fmt: skip
    for k, seg in enumerate(segments):
        transcript.append(
            {"speaker": "agent", "text": (agent_texts or {}).get(k, ""), "start_ms": _tick_ms(tl, seg.start_tick),
             "end_ms": round(_tick_ms(tl, seg.end_tick) + TICK_S * 1000, 1)}
        )  # fmt: skip
    transcript.sort(key=lambda e: e["start_ms"])
    return {
        "call_id": call_id,
        "script": script_name,
        "ok": ok,
        "error": error,
        "events": events,
        "duration_ms": round(len(tl.tick_t) * TICK_S * 1000, 1),
        "transcript": transcript,
        "agent_transcript_engine": "pocketsphinx" if agent_texts is not None else None,
        "turns": _turns(tl, utterances),
        "barge_ins": _barge_ins(tl, utterances),
        "false_barge_in_probes": _probes(tl, utterances),
        "gaps": _gaps(tl, utterances),
        "media_session_count": len(tl.sessions),
        "media_sessions": _media_sessions(tl),
        "media_gaps": _media_gaps(tl),
        "stop_audio_ms": [_ms(tl, t) for t in tl.stop_audio_t],
        "dtmf_sent": [{"tone": c, "at_ms": _ms(tl, t)} for t, c in tl.dtmf_t],
        "frames": {
            "sent": len(tl.tick_t),
            "agent_received": len(tl.rx_frames),
            "agent_voiced_received": sum(1 for _, v in tl.rx_frames if v),
            "bad_messages": tl.bad_messages,
        },
    }
