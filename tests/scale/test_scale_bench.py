"""The scale bench's pieces that need no running server: its plans, the take-over script (the kill
lands while the phone waits for the agent's answer), the estimate and the report lines."""

from __future__ import annotations

from callwright.bench.scale import (
    KILL_STEP,
    ScalePlan,
    remote_generator_estimate,
    scale_lines,
    takeover_script,
)
from callwright.emulator.phone import parse_script
from callwright.scale.workers import usable_cores


def test_plans_cover_one_two_and_every_core_and_enough_take_overs() -> None:
    full = ScalePlan.full()
    assert {1, 2, usable_cores()} == set(full.worker_counts)
    assert full.takeover_calls >= 10
    tiny = ScalePlan.tiny()
    assert tiny.takeover_calls >= 1 and tiny.instant_steps and max(tiny.worker_counts) >= 2


def test_the_kill_step_is_the_wait_for_the_interrupted_answer() -> None:
    spec = parse_script(takeover_script(5001))
    step = spec.steps[KILL_STEP - 1]  # _step_no is 1-based
    assert type(step).__name__ == "Wait" and step.kind == "agent_done" and step.timeout_s >= 60
    assert type(spec.steps[KILL_STEP - 2]).__name__ == "Say"  # the question whose answer the kill cuts


def test_estimate_and_lines() -> None:
    step = {
        "calls": 10,
        "gaps": {"count": 0},
        "server_cpu_pct_per_call": 8.0,
        "load_generator_cpu_pct_per_call": 4.0,
        "response_latency_ms": {"p50": 300.0, "p95": 700.0, "n": 30},
    }
    assert remote_generator_estimate(step, 2) == 20  # 2 cores × 80 % / 8 % per call
    assert remote_generator_estimate(None, 2) is None
    result = {
        "cores": 2,
        "calls_dropped": 0,
        "sustained": {
            "instant_2w": {
                "max_sustained_calls": 10,
                "engines": "instant",
                "workers": 2,
                "topology": "workers",
                "at_max": step,
                "limit_reached": False,
                "remote_generator_estimate": 20,
                "calls_dropped": 0,
            }
        },
        "takeover": {
            "workers": 2,
            "timed_calls": 10,
            "agent_silence_ms": {"p50": 1200.0, "p95": 2500.0, "max": 2600.0},
            "target_p95_ms": 3000.0,
            "met": True,
            "calls_affected": 12,
            "calls_not_resumed": 0,
            "calls_dropped": 0,
            "calls": 24,
        },
    }
    text = "\n".join(scale_lines(result))
    assert "| instant | 2 workers | 10 (≥) | 700.0 | 0 | 8.0 | 4.0 | 20 | 0 |" in text
    assert "p95 2500.0 ms" in text and "met" in text
    assert scale_lines(None) == []
    failed = {**step, "calls": 3, "gaps": {"count": 6}}
    result["sustained"] = {
        "instant_2r_haproxy": {
            "engines": "instant",
            "workers": 2,
            "topology": "haproxy",
            "max_sustained_calls": 0,
            "at_max": None,
            "limit_reached": True,
            "steps": [failed],
            "calls_dropped": 0,
        }
    }
    assert "| instant | 2 replicas + HAProxy | 0 (failed at 3) | 700.0 | 6 |" in "\n".join(scale_lines(result))
