"""The realtime server's own Prometheus registry and its JSONL frame log (audio elided)."""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger("callwright.realtime")

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.45, 0.7, 1.0, 1.5, 2.5, 5.0)
# Client event types counted by name; anything else is counted as "other" (bounded label values).
KNOWN_CLIENT_EVENTS = frozenset(
    {
        "session.update",
        "input_audio_buffer.append",
        "input_audio_buffer.commit",
        "input_audio_buffer.clear",
        "conversation.item.create",
        "conversation.item.truncate",
        "conversation.item.delete",
        "conversation.item.retrieve",
        "response.create",
        "response.cancel",
    }
)


class _PoolCollector(Collector):
    def __init__(self, stats: Callable[[], dict[str, Any]]) -> None:
        self._stats = stats

    def collect(self) -> Iterable[GaugeMetricFamily]:
        fam = GaugeMetricFamily("callwright_realtime_pool", "Engine pool state", labels=["pool", "field"])
        for pool, stats in self._stats().items():
            if not isinstance(stats, dict):
                continue
            for name, value in stats.items():
                if isinstance(value, int | float) and not isinstance(value, bool):
                    fam.add_metric([pool, name], float(value))
        yield fam


class RealtimeMetrics:
    def __init__(self, pool_stats: Callable[[], dict[str, Any]]) -> None:
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.sessions_active = Gauge("callwright_realtime_sessions_active", "Open realtime sessions", registry=r)
        self.sessions_total = Counter(
            "callwright_realtime_sessions_total", "Realtime sessions opened", ["dialect"], registry=r
        )
        self.refused = Counter(
            "callwright_realtime_handshakes_refused_total", "Handshakes refused", ["reason"], registry=r
        )
        self.events_in = Counter("callwright_realtime_client_events_total", "Client events", ["type"], registry=r)
        self.errors = Counter("callwright_realtime_errors_total", "error events sent", ["code"], registry=r)
        self.responses_started = Counter("callwright_realtime_responses_total", "Responses started", registry=r)
        self.responses_done = Counter(
            "callwright_realtime_responses_done_total", "Responses finished", ["status"], registry=r
        )
        self.first_audio = Histogram(
            "callwright_realtime_first_audio_seconds",
            "speech_stopped → first response audio delta",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.barge_in = Histogram(
            "callwright_realtime_barge_in_seconds",
            "speech_started → response.done(cancelled)",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.release = Histogram(
            "callwright_realtime_session_release_seconds",
            "socket closed → the session's tasks stopped and its engines handed back",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        r.register(_PoolCollector(pool_stats))

    def count_in(self, kind: str) -> None:
        self.events_in.labels(kind if kind in KNOWN_CLIENT_EVENTS else "other").inc()


def elide(event: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``event`` with base64 audio replaced by its length."""
    out = dict(event)
    for key in ("audio", "delta"):
        value = out.get(key)
        if isinstance(value, str) and (key == "audio" or str(out.get("type", "")).endswith("audio.delta")):
            out[key] = f"<{len(value) * 3 // 4} bytes>"
    return out


class FrameLog:
    """One JSONL file per session in ``directory``; lines are written by a background thread."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._queue: queue.Queue[tuple[str, str] | None] = queue.Queue(maxsize=100_000)
        self._thread = threading.Thread(target=self._write, name="realtime-frame-log", daemon=True)
        self._thread.start()
        self.dropped = 0

    def record(self, session_id: str, direction: str, event: dict[str, Any]) -> None:
        line = json.dumps({"t": round(time.time(), 4), "dir": direction, "msg": elide(event)}, default=str)
        try:
            self._queue.put_nowait((session_id, line))
        except queue.Full:  # never block the event loop for the log
            self.dropped += 1

    def path(self, session_id: str) -> Path:
        return self.directory / f"{session_id}.jsonl"

    def flush(self, timeout: float = 2.0) -> None:
        """Wait until every queued line is on disk (tests read the files)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)

    def close(self) -> None:
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=1.0)
        self._thread.join(timeout=2.0)

    def _write(self) -> None:
        while True:
            entry = self._queue.get()
            try:
                if entry is None:
                    return
                session_id, line = entry
                try:
                    with open(self.path(session_id), "a", encoding="utf-8") as fh:
                        fh.write(line + "\n")
                except OSError:
                    log.exception("frame log: cannot write %s", self.path(session_id))
            finally:
                self._queue.task_done()
