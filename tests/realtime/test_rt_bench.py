"""The realtime bench runs end to end and reports its figures (their values are not asserted)."""

from __future__ import annotations

import pytest

from callwright.bench.realtime_bench import run_realtime_bench


@pytest.mark.slow
async def test_realtime_bench_reports_figures() -> None:
    result = await run_realtime_bench(turns=3, max_sessions=1, max_p95_s=30.0)
    latency = result["latency"]
    assert latency["end_of_speech_to_first_audio"]["n"] == 3
    assert latency["end_of_speech_to_first_audio"]["p50_ms"] > 0
    assert latency["speech_start_to_cancelled_done"]["n"] >= 1  # each later question barges in
    assert result["sessions"]["levels"][0]["sessions"] == 1
    assert result["sessions"]["sustained"] == 1
