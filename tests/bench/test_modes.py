"""The per-mode figures (bench/modes.py) and their side-by-side rendering, on canned phone reports and a
canned ``run_bench`` result: no server, so this runs in well under a second."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from callwright.bench.modes import media_figures, mode_figures, voice_live_env, voice_live_steps
from callwright.bench.report import modes_lines, render_modes
from callwright.bench.runner import BenchPlan


def _density(calls: int, rss: float) -> dict[str, Any]:
    step = {"calls": calls, "passed": True, "failed_calls": 0, "first_failure": None,
            "response_latency_ms": {"p50": 500.0, "p95": 600.0, "n": 4}, "gaps": {"count": 0, "total_ms": 0.0},
            "rss_mb_per_call": rss, "server_cpu_pct": 30.0, "server_cpu_pct_per_call": 15.0}  # fmt: skip
    return {"max_concurrent_calls": calls, "at_max": step, "limit_reached": False, "steps": [step]}


def _media_result() -> dict[str, Any]:
    return {
        "plan": {"latency_calls": 1, "probe_calls": 1},
        "latency_calls_failed": 0,
        "response_latency_ms": {"p50": 280.0, "p95": 410.0, "n": 3},
        "barge_in_latency_ms": {"p50": 90.0, "p95": 120.0, "n": 3},
        "barge_in_stop_audio_ms": {"p50": 80.0, "p95": 110.0, "n": 3},
        "barge_in_missed": 0,
        "leaked_ms": 0.0,
        "leaked_ms_max": 0.0,
        "false_barge_in_rate": 0.25,
        "false_barge_ins": {"played": 4, "stopped": 1, "paused_and_resumed": 1, "taken_as_turns": 0, "by_probe": {}},
        "density_embedded": _density(2, 3.5),
    }


def test_media_figures_come_from_the_embedded_phase() -> None:
    fig = media_figures(_media_result())
    assert fig["response_latency_ms"]["p95"] == 410.0
    assert fig["barge_in_stop_audio_ms"]["p50"] == 80.0
    assert fig["false_barge_ins"] == {"played": 4, "stopped": 1, "paused_and_resumed": 1, "taken_as_turns": 0}
    assert fig["density"]["rss_mb_per_call"] == 3.5
    assert fig["density"]["lower_bound"] is True  # the ramp never failed: a lower bound, not a limit


def test_mode_figures_from_phone_reports() -> None:
    # One conversation: two answered turns (one was still being spoken over: not a response latency)
    # and one barge-in that drew StopAudio with 40 ms of agent audio after it; one failed probe call.
    convo = {
        "ok": True,
        "turns": [
            {"kind": "speech", "caller": "a", "response_latency_ms": 300.0, "agent_speaking_at_end": False},
            {"kind": "speech", "caller": "b", "response_latency_ms": 500.0, "agent_speaking_at_end": False},
            {"kind": "speech", "caller": "c", "response_latency_ms": 9999.0, "agent_speaking_at_end": True},
        ],
        "barge_ins": [
            {
                "caller": "a",
                "agent_playing_at_onset": True,
                "silenced_ms": 150.0,
                "latency_ms": 200.0,
                "leaked_ms": 40.0,
                "stopped": True,
            },
        ],
    }
    probe_call = {"ok": False, "error": "call not connected: boom", "turns": [], "barge_ins": [],
                  "false_barge_in_probes": []}  # fmt: skip
    fig = mode_figures([convo], [probe_call], taken_as_turns=0, paused_and_resumed=None, density=_density(1, 0.2))
    assert fig["response_latency_ms"]["n"] == 2
    assert fig["response_latency_ms"]["p50"] is not None and 300.0 <= fig["response_latency_ms"]["p50"] <= 500.0
    assert fig["barge_in_latency_ms"]["p50"] == 150.0 and fig["barge_in_stop_audio_ms"]["p50"] == 200.0
    assert fig["leaked_ms"] == 40.0 and fig["barge_in_missed"] == 0
    assert fig["calls"] == 2 and fig["calls_failed"] == 0  # the failed call is a probe call
    assert fig["first_failure"] == "call not connected: boom"
    assert fig["false_barge_ins"]["played"] == 0
    assert fig["density"]["max_concurrent_calls"] == 1


def test_modes_table_puts_the_modes_side_by_side() -> None:
    vl = media_figures(_media_result())
    vl["response_latency_ms"] = {"p50": 721.7, "p95": 783.7, "n": 3}
    result = {"modes": {"media": media_figures(_media_result()), "voice_live": vl}}
    lines = modes_lines(result)
    assert lines[0] == "| figure | `media` | `voice_live` |"
    latency = next(ln for ln in lines if ln.startswith("| response latency"))
    assert "280 / 410 (n=3)" in latency and "721.7 / 783.7 (n=3)" in latency
    assert any("1 of 4 (25.0 %)" in ln for ln in lines)
    assert any(ln.startswith("| RSS MB per call") and "3.5" in ln for ln in lines)
    # Every row has one cell per mode.
    assert all(ln.count("|") == 4 for ln in lines if ln.startswith("|"))


def test_a_mode_that_could_not_run_says_why() -> None:
    result = {"modes": {"media": media_figures(_media_result()), "voice_live": {"error": "StackError: no"}}}
    lines = modes_lines(result)
    assert any("`voice_live` did not run: StackError: no" in ln for ln in lines)
    assert modes_lines({}) == []


def test_voice_live_stack_settings_and_steps() -> None:
    env = voice_live_env(BenchPlan.full())
    assert env["ACS_STREAMING_MODE"] == "voice_live" and env["VOICELIVE_BACKEND"] == "local"
    assert int(env["REALTIME_MAX_SESSIONS"]) >= 10  # room for the largest density step
    assert voice_live_steps(BenchPlan.full()) == (2, 5, 10)
    assert voice_live_steps(BenchPlan.quick()) == (2,)
    assert voice_live_steps(BenchPlan.tiny()) == (1,)


def test_console_table_has_a_column_per_mode() -> None:
    console = Console(record=True, width=160)
    render_modes(console, {"modes": {"media": media_figures(_media_result()), "voice_live": {"error": "no"}}})
    text = console.export_text()
    assert "media" in text and "voice_live" in text and "280 / 410 (n=3)" in text
    assert "`voice_live` did not run: no" in text
