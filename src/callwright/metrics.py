"""Prometheus metrics, one registry per app instance (several apps can live in one test process)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.45, 0.7, 1.0, 1.5, 2.5, 5.0)


class _PoolCollector(Collector):
    def __init__(self, stats: Callable[[], dict[str, dict[str, Any]]]) -> None:
        self._stats = stats

    def collect(self) -> Iterable[GaugeMetricFamily]:
        fam = GaugeMetricFamily("callwright_pool", "Engine pool state", labels=["pool", "field"])
        for pool, stats in self._stats().items():
            for field, value in stats.items():
                if isinstance(value, int | float) and not isinstance(value, bool):
                    fam.add_metric([pool, field], float(value))
        yield fam


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.calls_active = Gauge("callwright_calls_active", "Calls in progress", registry=r)
        self.calls_total = Counter("callwright_calls_total", "Calls started", ["direction"], registry=r)
        self.events_total = Counter(
            "callwright_events_total", "Webhook events by type and outcome", ["type", "outcome"], registry=r
        )
        self.webhook_rejected_total = Counter(
            "callwright_webhook_rejected_total", "Webhook deliveries refused", ["reason"], registry=r
        )
        self.media_connections_active = Gauge(
            "callwright_media_connections_active", "Open media WebSockets", registry=r
        )
        self.media_connections_total = Counter(
            "callwright_media_connections_total",
            "Media WebSockets accepted or refused",
            ["outcome"],
            registry=r,
        )
        self.media_frames_rejected_total = Counter(
            "callwright_media_frames_rejected_total", "Inbound media frames skipped", ["reason"], registry=r
        )
        self.turn_stt_final_seconds = Histogram(
            "callwright_turn_stt_final_seconds",
            "End of caller speech → final transcript",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.turn_agent_first_text_seconds = Histogram(
            "callwright_turn_agent_first_text_seconds",
            "Final transcript → first agent text",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.turn_tts_first_audio_seconds = Histogram(
            "callwright_turn_tts_first_audio_seconds",
            "First agent text → first audio frame out",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.turn_response_seconds = Histogram(
            "callwright_turn_response_seconds",
            "End of caller speech → first audio frame out (server side)",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.barge_in_detect_seconds = Histogram(
            "callwright_barge_in_detect_seconds",
            "Caller voice onset → barge-in decision",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.barge_in_execute_seconds = Histogram(
            "callwright_barge_in_execute_seconds",
            "Barge-in decision → agent audio paused",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.barge_in_stop_audio_seconds = Histogram(
            "callwright_barge_in_stop_audio_seconds",
            "Caller voice onset → StopAudio sent (at the confirmed interruption unless BARGE_IN_STOP_AUDIO=onset)",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.echo_frames_rejected_total = Counter(
            "callwright_echo_frames_rejected_total",
            "Caller frames taken for the agent's own audio coming back (counted at call end)",
            registry=r,
        )
        self.barge_ins_total = Counter("callwright_barge_ins_total", "Barge-ins by outcome", ["outcome"], registry=r)
        # --- media path (issue 14 item 2) ---
        self.media_frames_reframed_total = Counter(
            "callwright_media_frames_reframed_total",
            "Inbound media frames that were not one 20 ms frame at the stream's rate (re-cut to 20 ms)",
            registry=r,
        )
        self.media_frames_resampled_total = Counter(
            "callwright_media_frames_resampled_total", "Inbound media frames resampled to 16 kHz", registry=r
        )
        self.media_lane_restarts_total = Counter(
            "callwright_media_lane_restarts_total",
            "Recognition lanes restarted with fresh state after a failure",
            ["component"],
            registry=r,
        )
        self.media_degraded_calls_total = Counter(
            "callwright_media_degraded_calls_total",
            "Calls whose speech input could not be restored: apologised to, then transferred or ended",
            ["outcome"],
            registry=r,
        )
        # --- durability, reaper, shutdown ---
        self.calls_reaped_total = Counter(
            "callwright_calls_reaped_total",
            "Calls ended by the reaper after no media and no events, by what ACS said (gone/alive/unreachable)",
            ["acs"],
            registry=r,
        )
        self.calls_ended_at_shutdown_total = Counter(
            "callwright_calls_ended_at_shutdown_total", "Calls hung up by the shutdown drain", registry=r
        )
        self.sessions_deferred_total = Counter(
            "callwright_sessions_deferred_total",
            "Final session saves handed to the background saver, by outcome (landed/spilled)",
            ["outcome"],
            registry=r,
        )
        # Labels are the operator API's own error codes (a fixed set), never anything the client sent.
        self.operator_refused_total = Counter(
            "callwright_operator_refused_total", "Operator API requests refused, by reason", ["reason"], registry=r
        )
        self.outbound_total = Counter(
            "callwright_outbound_total", "Outbound call requests by outcome (placed/failed/refused:<reason>)",
            ["outcome"], registry=r,
        )  # fmt: skip

        # --- voice live (realtime handler; labels are fixed sets: mode, backend, reason) ---
        self.mode_turn_response_seconds = Histogram(
            "callwright_mode_turn_response_seconds",
            "End of the caller's speech to the agent's first audio sent, by media mode",
            ["mode"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.mode_barge_in_seconds = Histogram(
            "callwright_mode_barge_in_seconds",
            "Barge-in signal (voice onset / speech_started) to the agent silenced (StopAudio sent), by media mode",
            ["mode"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.voice_live_connections_total = Counter(
            "callwright_voice_live_connections_total",
            "Realtime backend connections by backend and outcome (connected/refused/unreachable/full)",
            ["backend", "outcome"], registry=r,
        )  # fmt: skip
        self.voice_live_failures_total = Counter(
            "callwright_voice_live_failures_total",
            "Calls whose realtime leg failed (apologised to, then transferred or ended), by reason",
            ["reason"], registry=r,
        )  # fmt: skip

    def watch_pools(self, stats: Callable[[], dict[str, dict[str, Any]]]) -> None:
        self.registry.register(_PoolCollector(stats))
