"""Aggregating phone reports into the benchmark's figures."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (no interpolation: every figure is one that was actually measured)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return round(ordered[rank - 1], 1)


def p50_p95(values: Sequence[float]) -> dict[str, Any]:
    return {"p50": percentile(values, 50), "p95": percentile(values, 95), "n": len(values)}


def response_latencies(reports: Iterable[dict[str, Any]]) -> list[float]:
    """Turns with a measured response; turns where the agent was still audible as the caller stopped
    are not response times and are left out, DTMF turns too (they end on a key, not on speech)."""
    out = []
    for r in reports:
        for t in r.get("turns") or []:
            if (
                t.get("kind") == "speech"
                and not t.get("agent_speaking_at_end")
                and t.get("response_latency_ms") is not None
            ):
                out.append(float(t["response_latency_ms"]))
    return out


def barge_in_figures(reports: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """``silenced``: onset → agent audio gone at the caller's ear; ``latency``: onset → StopAudio."""
    latencies: list[float] = []
    silenced: list[float] = []
    leaked: list[float] = []
    missed = 0
    for r in reports:
        for b in r.get("barge_ins") or []:
            if not b.get("agent_playing_at_onset") and not b.get("scripted"):
                continue
            if not b.get("agent_playing_at_onset"):
                continue  # a scripted barge-in that found the agent already silent measures nothing
            if b.get("silenced_ms") is not None:
                silenced.append(float(b["silenced_ms"]))
            if b.get("stopped") and b.get("latency_ms") is not None:
                latencies.append(float(b["latency_ms"]))
            else:
                missed += 1
            leaked.append(float(b.get("leaked_ms") or 0.0))
    return {
        "silenced": p50_p95(silenced),
        "latency": p50_p95(latencies),
        "missed": missed,
        "leaked_ms_total": round(sum(leaked), 1),
        "leaked_ms_max": round(max(leaked), 1) if leaked else 0.0,
    }


def _resumed(report: dict[str, Any], stop_ms: float, next_turn_ms: float | None) -> bool:
    """The agent spoke again within 3 s of the StopAudio, before the caller's next real turn."""
    for e in report.get("transcript") or []:
        if e.get("speaker") != "agent":
            continue
        soon = e["end_ms"] > stop_ms + 500 and e["start_ms"] <= stop_ms + 3000
        if soon and (next_turn_ms is None or e["start_ms"] < next_turn_ms):
            return True
    return False


def probe_figures(reports: Iterable[dict[str, Any]]) -> dict[str, Any]:
    played = stopped = resumed = 0
    by_kind: dict[str, dict[str, int]] = {}
    for r in reports:
        onsets = sorted(t["caller_end_ms"] for t in r.get("turns") or [] if t.get("caller_end_ms") is not None)
        for p in r.get("false_barge_in_probes") or []:
            if not p.get("during_agent_speech"):
                continue  # the agent had already finished: nothing to barge into
            played += 1
            kind = by_kind.setdefault(str(p.get("caller") or p.get("kind")), {"played": 0, "stopped": 0, "resumed": 0})
            kind["played"] += 1
            if p.get("stopped"):
                stopped += 1
                kind["stopped"] += 1
                stop_ms = float(p["onset_ms"]) + float(p.get("stop_latency_ms") or 0.0)
                later = [o for o in onsets if o > stop_ms]
                if _resumed(r, stop_ms, later[0] if later else None):
                    resumed += 1
                    kind["resumed"] += 1
    return {
        "played": played,
        "stopped": stopped,
        "resumed_after_stop": resumed,
        "rate": round(stopped / played, 4) if played else None,
        "by_probe": by_kind,
    }


def gap_figures(reports: Iterable[dict[str, Any]]) -> dict[str, Any]:
    count = 0
    total = 0.0
    for r in reports:
        g = r.get("gaps") or {}
        count += int(g.get("count", 0))
        total += float(g.get("total_ms", 0.0))
    return {"count": count, "total_ms": round(total, 1)}


def _norm(text: str) -> str:
    return " ".join("".join(c for c in text.lower() if c.isalnum() or c.isspace()).split())


def probes_taken_as_turns(server_views: Iterable[dict[str, Any] | None], questions: Iterable[str]) -> int:
    """Caller entries in the server's history that are none of the scripted questions: a probe the
    server heard as words and answered (the phone alone cannot tell that from a resumed sentence)."""
    asked = {_norm(q) for q in questions}
    taken = 0
    for view in server_views:
        for e in (view or {}).get("transcript") or []:
            if e.get("role") == "user" and _norm(str(e.get("content", ""))) not in asked:
                taken += 1
    return taken


def with_turns_taken(fig: dict[str, Any], taken: int) -> dict[str, Any]:
    """Probe figures corrected by the server's view: a probe answered as a turn did not 'resume'."""
    resumed = max(0, fig["resumed_after_stop"] - taken)
    played = fig["played"]
    return {**fig, "taken_as_turns": taken, "resumed_after_stop": resumed,
            "not_resumed_rate": round((fig["stopped"] - resumed) / played, 4) if played else None}  # fmt: skip


def edit_distance(ref: Sequence[str], hyp: Sequence[str]) -> int:
    """Word-level Levenshtein distance (substitutions + deletions + insertions)."""
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]
