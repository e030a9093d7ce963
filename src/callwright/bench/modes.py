"""The caller's-ear figures per streaming mode, side by side: ``media`` (the speech cascade, taken from
the embedded phase of :func:`callwright.bench.runner.run_bench`) and ``voice_live`` (the RealtimeHandler
talking to the in-process local realtime server, measured here with the same scripts and statistics)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from callwright.bench import scripts
from callwright.bench.runner import (
    BenchPlan,
    Note,
    _engine_env,
    _resumed_count,
    _sequential,
    density_ramp,
)
from callwright.bench.stack import split_stack
from callwright.bench.stats import (
    barge_in_figures,
    p50_p95,
    probe_figures,
    probes_taken_as_turns,
    response_latencies,
    with_turns_taken,
)

MODES = ("media", "voice_live")


def voice_live_steps(plan: BenchPlan) -> tuple[int, ...]:
    """Density steps for voice_live: the local realtime server runs recognition for every session in
    this one server process, so the steps stay small (full: 2, 5, 10)."""
    if plan.latency_calls >= BenchPlan.full().latency_calls:
        return (2, 5, 10)
    # tiny: one call, still enough for a memory-per-call reading; quick: a 2-call step.
    return (1,) if plan.turns_per_call < BenchPlan.quick().turns_per_call else (2,)


def voice_live_env(plan: BenchPlan) -> dict[str, str]:
    """The embedded-engine stack, answering inbound calls in voice_live on the local realtime server
    (VOICELIVE_BACKEND=local explicitly: an AZURE_VOICELIVE_ENDPOINT in the environment must not send
    the bench to the cloud)."""
    room = str(max((*voice_live_steps(plan), 2)) + 4)
    return {
        **_engine_env("embedded", plan),
        "ACS_STREAMING_MODE": "voice_live",
        "VOICELIVE_BACKEND": "local",
        "VOICELIVE_MAX_CONNECTIONS": room,
        "REALTIME_MAX_SESSIONS": room,
    }


def _density(d: dict[str, Any] | None) -> dict[str, Any] | None:
    if not d:
        return None
    at_max = d.get("at_max") or {}
    return {
        "max_concurrent_calls": d.get("max_concurrent_calls"),
        "lower_bound": not d.get("limit_reached"),
        "rss_mb_per_call": at_max.get("rss_mb_per_call"),
        "cpu_pct_per_call": at_max.get("server_cpu_pct_per_call"),
        "steps": [
            {
                "calls": s["calls"],
                "passed": s["passed"],
                "failed_calls": s["failed_calls"],
                "response_latency_ms": s["response_latency_ms"],
                "gaps": s["gaps"]["count"],
                "rss_mb_per_call": s["rss_mb_per_call"],
                "server_cpu_pct": s["server_cpu_pct"],
                "first_failure": s["first_failure"],
            }
            for s in d.get("steps") or []
        ],
    }


def mode_figures(
    reports: list[dict[str, Any]],
    probe_reports: list[dict[str, Any]],
    *,
    taken_as_turns: int,
    paused_and_resumed: int | None,
    density: dict[str, Any] | None,
) -> dict[str, Any]:
    """One mode's caller's-ear figures from its phones' reports (the same statistics as the media phase)."""
    barge = barge_in_figures(reports)
    probes = with_turns_taken(probe_figures(probe_reports), taken_as_turns)
    return {
        "calls": len(reports) + len(probe_reports),
        # Latency calls only, as the media phase counts them; a failed probe call shows as first_failure.
        "calls_failed": sum(1 for r in reports if not r.get("ok")),
        "first_failure": next((r.get("error") for r in (*reports, *probe_reports) if not r.get("ok")), None),
        "response_latency_ms": p50_p95(response_latencies(reports)),
        "barge_in_latency_ms": barge["silenced"],
        "barge_in_stop_audio_ms": barge["latency"],
        "barge_in_missed": barge["missed"],
        "leaked_ms": barge["leaked_ms_total"],
        "leaked_ms_max": barge["leaked_ms_max"],
        "false_barge_in_rate": probes["rate"],
        "false_barge_ins": {
            "played": probes["played"],
            "stopped": probes["stopped"],
            "paused_and_resumed": paused_and_resumed,
            "taken_as_turns": taken_as_turns,
        },
        "density": _density(density),
    }


def media_figures(result: dict[str, Any]) -> dict[str, Any]:
    """The media mode's figures, taken from the embedded phase already in ``run_bench``'s result."""
    fb = result.get("false_barge_ins") or {}
    return {
        "calls": result["plan"]["latency_calls"] + result["plan"]["probe_calls"],
        "calls_failed": result.get("latency_calls_failed"),
        "first_failure": None,
        "response_latency_ms": result["response_latency_ms"],
        "barge_in_latency_ms": result["barge_in_latency_ms"],
        "barge_in_stop_audio_ms": result["barge_in_stop_audio_ms"],
        "barge_in_missed": result["barge_in_missed"],
        "leaked_ms": result["leaked_ms"],
        "leaked_ms_max": result["leaked_ms_max"],
        "false_barge_in_rate": result["false_barge_in_rate"],
        "false_barge_ins": {k: fb.get(k) for k in ("played", "stopped", "paused_and_resumed", "taken_as_turns")},
        "density": _density(result.get("density_embedded")),
    }


async def _probe_resumes(stack: Any, before: float) -> int | None:
    try:
        return int(await _resumed_count(stack) - before)
    except Exception:  # the counter is the cascade's; a server without it has no reading, not a failure
        return None


async def run_voice_live(plan: BenchPlan, note: Note, log_dir: Path) -> dict[str, Any]:
    """The media phase's calls (conversations with barge-ins, then probe calls) and a small density
    ramp, against a server in ``ACS_STREAMING_MODE=voice_live`` on the local realtime server."""
    note("voice_live (RealtimeHandler → local realtime server, embedded engines): starting the server")
    async with split_stack(voice_live_env(plan), log_dir=log_dir / "voice_live") as stack:
        convo = [scripts.conversation(plan.turns_per_call, offset=i) for i in range(plan.latency_calls)]
        reports = await _sequential(stack, convo, note, "voice_live latency", log_dir / "voice_live" / "latency")
        probe_texts = [scripts.probes(plan.probe_replies, plan.probes_per_reply, offset=i * 3)
                       for i in range(plan.probe_calls)]  # fmt: skip
        try:
            before = await _resumed_count(stack)
        except Exception:
            before = 0.0
        probe_reports = await _sequential(
            stack, probe_texts, note, "voice_live probes", log_dir / "voice_live" / "probes"
        )
        resumed = await _probe_resumes(stack, before)
        taken = probes_taken_as_turns(_views(probe_reports), scripts.QUESTIONS)
        density = await density_ramp(stack, voice_live_steps(plan), note, "voice_live")
    return mode_figures(reports, probe_reports, taken_as_turns=taken, paused_and_resumed=resumed, density=density)


def _views(reports: Iterable[dict[str, Any]]) -> Iterable[dict[str, Any] | None]:
    return (r.get("server_view") for r in reports)


async def run_mode_comparison(
    plan: BenchPlan, note: Note, log_dir: Path, embedded: dict[str, Any] | None = None
) -> dict[str, Any]:
    """``result["modes"]``: media from ``embedded`` (``run_bench``'s result, its embedded phase), voice_live
    measured now. A voice_live stack that cannot start is reported as its error, not as a failed bench."""
    modes: dict[str, Any] = {"media": media_figures(embedded)} if embedded else {}
    try:
        modes["voice_live"] = await run_voice_live(plan, note, log_dir)
    except Exception as exc:
        note(f"voice_live: could not run: {type(exc).__name__}: {exc}")
        modes["voice_live"] = {"error": f"{type(exc).__name__}: {exc}"}
    return modes
