"""What every ``voice_live`` call shares: the backend choice, the bound on realtime connections, the
in-process local realtime server (backend ``local``) and the pre-rendered apologies.

Built once in the app's lifespan (voice/setup.py) and kept on ``app.state.voice_live``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from callwright.config import Settings
from callwright.voice.realtime.backends import (
    BackendError,
    BackendSpec,
    RealtimeConnection,
    backend_spec,
    open_connection,
    resolve_kind,
)

log = logging.getLogger("callwright.voice_live")

APOLOGY = "I'm sorry, I'm having trouble on my side."
APOLOGY_TRANSFER = "Let me connect you to a colleague who can help."
APOLOGY_GOODBYE = "Please call us back in a few minutes. Goodbye."


class RealtimeService:
    def __init__(self, settings: Settings, engines: Any, metrics: Any) -> None:
        self.settings = settings
        self.engines = engines
        self.metrics = metrics
        self.kind = resolve_kind(settings)
        self.max_connections = settings.voicelive_max_connections
        self.active = 0
        self.refused = 0
        self.failures = 0
        self.local_url: str | None = None
        self.local_app: Any = None
        self._local_cm: Any = None
        self._local_lock = asyncio.Lock()
        self.apology_pcm: dict[str, bytes] = {}  # "transfer" | "goodbye" -> 16 kHz PCM

    # --- lifecycle --------------------------------------------------------------------------------
    async def start(self, *, start_local: bool) -> None:
        await self._render_apologies()
        if self.kind == "local" and start_local:
            await self.ensure_local()
        log.info("voice_live backend: %s", self.kind)

    async def ensure_local(self) -> str:
        """The in-process local realtime server's URL, started on first use (it shares the app's engines)."""
        async with self._local_lock:
            if self.local_url is None:
                from callwright.realtime.server import running_realtime_server

                cm = running_realtime_server(self.settings, engines=self.engines)
                self.local_url, self.local_app = await cm.__aenter__()
                self._local_cm = cm
                log.info("local realtime server started at %s", self.local_url)
            return self.local_url

    async def close(self) -> None:
        cm, self._local_cm = self._local_cm, None
        if cm is not None:
            with contextlib.suppress(Exception):
                await cm.__aexit__(None, None, None)
            self.local_url = None

    async def _render_apologies(self) -> None:
        loop = asyncio.get_running_loop()
        synthesizer = await self.engines.tts_pool.acquire()
        try:
            for key, tail in (("transfer", APOLOGY_TRANSFER), ("goodbye", APOLOGY_GOODBYE)):
                text = f"{APOLOGY} {tail}"
                self.apology_pcm[key] = await loop.run_in_executor(None, _render, synthesizer, text)
        finally:
            self.engines.tts_pool.release(synthesizer)

    # --- connections ------------------------------------------------------------------------------
    async def spec(self) -> BackendSpec:
        local = await self.ensure_local() if self.kind == "local" else None
        return backend_spec(self.settings, local)

    async def connect(self) -> RealtimeConnection:
        """A connection slot and an open session, or :class:`BackendError` (the slot is then released)."""
        if self.active >= self.max_connections:
            self.refused += 1
            self.metrics.voice_live_connections_total.labels(self.kind, "full").inc()
            raise BackendError("full", f"all {self.max_connections} realtime connections are in use")
        self.active += 1  # claimed before any await: concurrent calls cannot overshoot the bound
        try:
            spec = await self.spec()
            async with asyncio.timeout(self.settings.voicelive_connect_timeout_seconds):
                conn = await open_connection(spec)
        except BaseException as exc:
            self.active -= 1
            if isinstance(exc, TimeoutError):
                self.metrics.voice_live_connections_total.labels(self.kind, "timeout").inc()
                raise BackendError("timeout", "the realtime service did not answer in time") from None
            if isinstance(exc, BackendError):
                outcome = "refused" if exc.reason in ("auth", "refused") else "unreachable"
                self.metrics.voice_live_connections_total.labels(self.kind, outcome).inc()
            raise
        self.metrics.voice_live_connections_total.labels(self.kind, "connected").inc()
        return conn

    def release(self) -> None:
        self.active = max(0, self.active - 1)

    def stats(self) -> dict[str, Any]:
        """For /ready and the ``callwright_pool_*{pool="realtime"}`` gauges."""
        return {"backend_local": int(self.kind == "local"), "in_use": self.active, "max_size": self.max_connections,
                "exhausted_count": self.refused, "failed_calls": self.failures}  # fmt: skip


def _render(synthesizer: Any, text: str) -> bytes:
    chunks: list[bytes] = []
    synthesizer.synthesize(text, lambda c: chunks.append(c) or True)
    return b"".join(chunks)
