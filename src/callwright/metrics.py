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

    def watch_pools(self, stats: Callable[[], dict[str, dict[str, Any]]]) -> None:
        self.registry.register(_PoolCollector(stats))
