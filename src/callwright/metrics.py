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
        # One metric per figure (callwright_pool_in_use{pool="stt"}), so a dashboard sums or rates one
        # meaning at a time; counters among them (created, exhausted, ...) are still exposed as gauges,
        # being snapshots the pools keep, not increments this process observed.
        families: dict[str, GaugeMetricFamily] = {}
        for pool, stats in self._stats().items():
            for field, value in stats.items():
                if isinstance(value, int | float) and not isinstance(value, bool) and field.isidentifier():
                    fam = families.get(field)
                    if fam is None:
                        fam = families[field] = GaugeMetricFamily(
                            f"callwright_pool_{field}", f"Engine pool figure '{field}'", labels=["pool"]
                        )
                    fam.add_metric([pool], float(value))
        yield from families.values()


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

        # --- replica take-over and media restarts (scale/takeover.py) ---
        self.replica_takeovers_total = Counter(
            "callwright_replica_takeovers_total",
            "Dead replicas whose calls this replica took over, by outcome (done/partial)",
            ["outcome"], registry=r,
        )  # fmt: skip
        self.replica_takeover_seconds = Histogram(
            "callwright_replica_takeover_seconds",
            "Take-over of a dead replica's calls: won the claim to every call's media streaming restarted",
            buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0), registry=r,
        )  # fmt: skip
        self.media_restarts_total = Counter(
            "callwright_media_restarts_total",
            "Media streaming restarts asked of ACS, by trigger (failed/stopped/takeover/handover) and outcome",
            ["trigger", "outcome"], registry=r,
        )  # fmt: skip

        # --- cross-replica routing (scale/routing.py, scale/relay.py) ---
        self.events_relayed_total = Counter(
            "callwright_events_relayed_total",
            "Events relayed to the replica holding their call's media (sent) or from another replica (received)",
            ["direction"], registry=r,
        )  # fmt: skip
        self.event_relay_seconds = Histogram(
            "callwright_event_relay_seconds",
            "Relay XADD on the replica the event reached → hand-off to the owner's processor",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5), registry=r,
        )  # fmt: skip

        # --- observability (issue 15 item 3) ---
        self.call_duration_seconds = Histogram(
            "callwright_call_duration_seconds",
            "Connected → ended, by direction, mode and final state",
            ["direction", "mode", "state"],
            buckets=(5, 15, 30, 60, 120, 300, 600, 1200, 3600), registry=r,
        )  # fmt: skip
        self.llm_first_token_seconds = Histogram(
            "callwright_llm_first_token_seconds",
            "Chat completion request → first streamed chunk",
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.llm_errors_total = Counter(
            "callwright_llm_errors_total",
            "Chat completion requests that failed, by kind (timeout/rate_limited/connection/api)",
            ["kind"], registry=r,
        )  # fmt: skip
        self.tool_calls_total = Counter(
            "callwright_tool_calls_total", "Agent tool calls by outcome (ok/error)", ["outcome"], registry=r
        )
        self.transfers_total = Counter(
            "callwright_transfers_total",
            "Transfers by outcome (requested/accepted/failed)",
            ["outcome"], registry=r,
        )  # fmt: skip
        # --- recording (issue 15) ---
        self.recordings_active = Gauge("callwright_recordings_active", "Call recordings being written", registry=r)
        self.recording_seconds_total = Counter(
            "callwright_recording_seconds_total", "Seconds of call audio written to recordings", registry=r
        )
        self.recording_failures_total = Counter(
            "callwright_recording_failures_total",
            "Recordings that could not be written (disk full, read-only), by stage (open/write)",
            ["stage"], registry=r,
        )  # fmt: skip

    def watch_pools(self, stats: Callable[[], dict[str, dict[str, Any]]]) -> None:
        self.registry.register(_PoolCollector(stats))
