"""The figures' arithmetic on hand-made reports, and the decision-lag calibration on real flite audio."""

from __future__ import annotations

from callwright.bench.calibrate import decision_lags
from callwright.bench.runner import server_timings
from callwright.bench.stats import barge_in_figures, percentile, probe_figures, response_latencies
from callwright.config import Settings
from callwright.emulator.phone.audio import default_tts_cache_dir, flite_say_blocking


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 21)]
    assert percentile(values, 50) == 10.0
    assert percentile(values, 95) == 19.0
    assert percentile([], 50) is None


def test_response_latencies_skip_turns_where_the_agent_was_still_talking() -> None:
    report = {
        "turns": [
            {"kind": "speech", "agent_speaking_at_end": False, "response_latency_ms": 250.0},
            {"kind": "speech", "agent_speaking_at_end": True, "response_latency_ms": 10.0},
            {"kind": "dtmf", "agent_speaking_at_end": False, "response_latency_ms": 20.0},
            {"kind": "speech", "agent_speaking_at_end": False, "response_latency_ms": None},
        ]
    }
    assert response_latencies([report]) == [250.0]


def test_barge_ins_count_only_interruptions_of_audible_agent_audio() -> None:
    report = {
        "barge_ins": [
            {
                "agent_playing_at_onset": True,
                "scripted": True,
                "stopped": True,
                "silenced_ms": 110.0,
                "latency_ms": 90.0,
                "leaked_ms": 0.0,
            },
            {
                "agent_playing_at_onset": True,
                "scripted": False,
                "stopped": False,
                "latency_ms": None,
                "leaked_ms": 40.0,
            },
            {"agent_playing_at_onset": False, "scripted": True, "stopped": False, "latency_ms": None, "leaked_ms": 0.0},
        ]
    }
    fig = barge_in_figures([report])
    assert fig["latency"]["n"] == 1 and fig["missed"] == 1 and fig["leaked_ms_total"] == 40.0
    assert fig["silenced"]["n"] == 1 and fig["silenced"]["p50"] == 110.0


def test_probe_that_stopped_the_agent_counts_and_resumption_is_seen() -> None:
    report = {
        "turns": [],
        "transcript": [
            {"speaker": "agent", "start_ms": 1000.0, "end_ms": 2100.0},
            {"speaker": "agent", "start_ms": 2600.0, "end_ms": 6000.0},
        ],
        "false_barge_in_probes": [
            {
                "caller": "uh-huh",
                "onset_ms": 2000.0,
                "during_agent_speech": True,
                "stopped": True,
                "stop_latency_ms": 100.0,
            },
            {"caller": "<click>", "onset_ms": 3000.0, "during_agent_speech": True, "stopped": False},
            {"caller": "<click>", "onset_ms": 9000.0, "during_agent_speech": False, "stopped": False},
        ],
    }
    fig = probe_figures([report])
    assert (fig["played"], fig["stopped"], fig["resumed_after_stop"], fig["rate"]) == (2, 1, 1, 0.5)


def test_server_timings_are_histogram_means_in_ms() -> None:
    text = (
        "# TYPE callwright_turn_response_seconds histogram\n"
        'callwright_turn_response_seconds_bucket{le="+Inf"} 2.0\n'
        "callwright_turn_response_seconds_sum 0.6\n"
        "callwright_turn_response_seconds_count 2.0\n"
    )
    assert server_timings(text) == {"turn_response_mean_ms": 300.0}


def test_decision_lags_replay_the_servers_segmenter_on_the_phones_audio() -> None:
    settings = Settings(_env_file=None, endpoint_silence_ms=300, barge_in_min_speech_ms=120)  # type: ignore[call-arg]
    pcm = flite_say_blocking("What are your opening hours?", "slt", default_tts_cache_dir())
    lags = decision_lags(pcm, settings)
    # The server declares the end after 300 ms of unvoiced frames by its stricter VAD, so somewhat
    # less than 300 ms after the phone's last voiced frame; onset needs at least 120 ms of voice.
    assert lags.end_lag_ms is not None and 0 < lags.end_lag_ms <= 300
    assert lags.onset_lag_ms is not None and lags.onset_lag_ms >= 100
    longer = decision_lags(pcm, Settings(_env_file=None, endpoint_silence_ms=600))  # type: ignore[call-arg]
    assert longer.end_lag_ms == lags.end_lag_ms + 300
