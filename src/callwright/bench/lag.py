"""Event-loop lag: how late a 10 ms sleep wakes up. Paced playback keeps ~100 ms of audio in flight, so
a loop (the server's or the phones') that stalls longer than that is heard as a gap."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from callwright.bench.stats import percentile

_PERIOD_S = 0.01


class LagMonitor:
    def __init__(self) -> None:
        self._lags: list[float] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="bench-loop-lag")

    async def _run(self) -> None:
        while True:
            t = time.monotonic()
            await asyncio.sleep(_PERIOD_S)
            self._lags.append((time.monotonic() - t - _PERIOD_S) * 1000)
            if len(self._lags) > 200_000:  # bounded: keep the newest half
                del self._lags[:100_000]

    def take(self) -> dict[str, Any]:
        """Lag figures since the previous ``take`` (ms), and start a new window."""
        lags, self._lags = self._lags, []
        return {"p99": percentile(lags, 99), "max": round(max(lags), 1) if lags else None,
                "over_100ms": sum(1 for v in lags if v > 100)}  # fmt: skip

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
