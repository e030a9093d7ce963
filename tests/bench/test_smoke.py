"""Smoke tests: ``callwright demo --json`` and ``callwright bench --quick --json`` run to the end and
produce well-formed figures. They do not check the figures against targets (that is bench/'s job)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

CLI = [sys.executable, "-m", "callwright.cli"]


def _run(
    args: list[str], cwd: Path, timeout: float, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([*CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=full_env)


def _is_ms(v: Any) -> bool:
    return isinstance(v, int | float) and v >= 0


@pytest.mark.timeout(300)
def test_demo_json_prints_the_call_report_alone(tmp_path: Path) -> None:
    proc = _run(["demo", "--json", "--record", str(tmp_path / "rec")], tmp_path, 280)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1, f"stdout must hold the report alone, got: {proc.stdout[:500]}"
    report = json.loads(lines[0])
    assert report["ok"] is True, report.get("error")
    speech = [t for t in report["turns"] if t["kind"] == "speech"]
    assert len(speech) >= 3
    assert all(_is_ms(t["response_latency_ms"]) for t in speech if not t["agent_speaking_at_end"])
    assert any(t["kind"] == "dtmf" for t in report["turns"])
    assert [d["tone"] for d in report["dtmf_sent"]] == list("1234#")
    assert report["barge_ins"] and report["barge_ins"][0]["stopped"] is True
    assert "CallDisconnected" in report["events"]
    wav, js = Path(report["recording"]["wav"]), Path(report["recording"]["json"])
    assert wav.stat().st_size > 44 and json.loads(js.read_text())["call_id"] == report["call_id"]


@pytest.mark.timeout(400)
def test_bench_quick_json_has_every_figure(tmp_path: Path) -> None:
    # CALLWRIGHT_BENCH_SIZE=tiny: every phase of --quick, each at the smallest size that yields a figure.
    out, md = tmp_path / "results.json", tmp_path / "RESULTS.md"
    proc = _run(["bench", "--quick", "--json", "--out", str(out), "--markdown", str(md)], tmp_path, 380,
                env={"CALLWRIGHT_BENCH_SIZE": "tiny"})  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert json.loads(out.read_text()) == result
    for key in ("response_latency_ms", "barge_in_latency_ms", "instant_response_latency_ms"):
        fig = result[key]
        assert fig["n"] >= 1 and _is_ms(fig["p50"]) and _is_ms(fig["p95"]) and fig["p50"] <= fig["p95"], key
    # Overhead is latency less a calibrated decision wait: a number, possibly slightly negative.
    overhead = result["server_overhead_ms"]
    assert overhead["n"] >= 1 and isinstance(overhead["p95"], int | float) and overhead["p50"] <= overhead["p95"]
    assert _is_ms(result["leaked_ms"])
    assert 0.0 <= result["false_barge_in_rate"] <= 1.0
    for kind in ("embedded", "instant"):
        assert isinstance(result["max_concurrent_calls"][kind], int)
        assert result[f"density_{kind}"]["steps"], kind
    assert isinstance(result["soak_rss_growth_pct"], int | float)
    assert result["soak"]["failed_calls"] == 0 and result["soak"]["end"]["calls_active"] == 0
    assert set(result["targets"]) >= {"response_p95_ms", "barge_in_p95_ms", "false_barge_in_pct"}
    text = md.read_text()
    assert result["commit"] in text and "| figure | measured | target | met |" in text
