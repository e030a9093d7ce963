"""What the media path reports about itself, for ``/ready`` and ``/metrics``.

One ``MediaHealth`` per app (kept on ``app.state.media_health``). Handlers tell it when a lane was
restarted and when a call could not be kept hearing the caller (it was apologised to and transferred or
ended): a ``degraded`` call. ``/ready`` can read ``snapshot()``; the Prometheus side is the
``callwright_media_lane_restarts_total`` and ``callwright_media_degraded_calls_total`` counters.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

# What failed, as metric label values (a fixed set).
COMPONENTS = ("recognition", "echo_guard", "synthesizer", "engine")


class MediaHealth:
    """Thread-safe counters; ``recent_window`` seconds decide what counts as 'recent' for readiness."""

    def __init__(self, metrics: Any = None, *, recent_window: float = 300.0) -> None:
        self._metrics = metrics
        self._lock = threading.Lock()
        self._window = recent_window
        self.lane_restarts = 0
        self.restart_failures = 0
        self.degraded_calls = 0  # calls that lost speech input and were apologised to and ended/transferred
        self.deaf_calls = 0  # calls left without speech input and without that fallback: must stay 0
        self._recent_degraded: deque[float] = deque(maxlen=1000)

    def lane_restarted(self, component: str) -> None:
        with self._lock:
            self.lane_restarts += 1
        if self._metrics is not None:
            self._metrics.media_lane_restarts_total.labels(_label(component)).inc()

    def restart_failed(self) -> None:
        with self._lock:
            self.restart_failures += 1

    def call_degraded(self, outcome: str) -> None:
        """``outcome``: 'transferred' or 'ended' (the caller heard an apology first), or 'deaf'."""
        with self._lock:
            if outcome == "deaf":
                self.deaf_calls += 1
            else:
                self.degraded_calls += 1
            self._recent_degraded.append(time.monotonic())
        if self._metrics is not None:
            label = outcome if outcome in ("transferred", "ended", "deaf") else "ended"
            self._metrics.media_degraded_calls_total.labels(label).inc()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            now = time.monotonic()
            recent = sum(1 for t in self._recent_degraded if now - t <= self._window)
            return {
                "lane_restarts": self.lane_restarts,
                "restart_failures": self.restart_failures,
                "degraded_calls": self.degraded_calls,
                "deaf_calls": self.deaf_calls,
                "degraded_calls_recent": recent,
                "recent_window_s": self._window,
            }


def _label(component: str) -> str:
    return component if component in COMPONENTS else "engine"


def media_health(app_state: Any) -> MediaHealth:
    """The app's MediaHealth; built on first use when the lifespan did not build one (tests, tools)."""
    health = getattr(app_state, "media_health", None)
    if not isinstance(health, MediaHealth):
        health = MediaHealth(getattr(app_state, "metrics", None))
        app_state.media_health = health
    return health
