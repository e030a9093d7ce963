"""The FastAPI app factory. Every long-lived object is built in the lifespan and kept on ``app.state``."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI

from callwright import __version__
from callwright.acs.auth import AcsTokenVerifier, JwksCache
from callwright.acs.call_control import CallAutomation
from callwright.api import calls, health, media, recordings, ui, webhook
from callwright.config import Settings, load_settings
from callwright.events.handlers import register_default_handlers
from callwright.events.processor import CallEventProcessor
from callwright.logs import configure_logging
from callwright.metrics import Metrics
from callwright.scale.routing import Routing
from callwright.scale.takeover import ReplicaMonitor
from callwright.sessions.directory import build_directory
from callwright.sessions.lifecycle import STOP_TIMEOUT_SECONDS, CallReaper, drain_calls, end_remaining_calls
from callwright.sessions.registry import CallRegistry
from callwright.sessions.saver import SessionSaver
from callwright.sessions.store import build_store
from callwright.tracing import Tracing
from callwright.voice.factory import MediaHandlerFactory
from callwright.voice.health import MediaHealth

log = logging.getLogger("callwright.app")


def _build_automation(settings: Settings) -> CallAutomation | None:
    if settings.acs_connection_string is None:
        log.warning("ACS_CONNECTION_STRING is not set: calls cannot be answered or placed")
        return None
    if not settings.callback_url or not settings.media_url:
        log.warning("ACS_CALLBACK_URL is not set: calls cannot be answered or placed")
        return None
    return CallAutomation(
        settings.acs_connection_string.get_secret_value(),
        callback_url=settings.callback_url,
        media_url=settings.media_url,
        verify=settings.tls_verify(),
        audio_channel=settings.acs_audio_channel,
        source_phone_number=settings.acs_source_phone_number,
        request_timeout=settings.acs_request_timeout_seconds,
    )


def _build_verifier(settings: Settings, http: httpx.AsyncClient) -> AcsTokenVerifier | None:
    if not settings.acs_auth_enabled:
        log.warning("ACS_AUTH_ENABLED=false: callbacks and media WebSockets are NOT authenticated")
        return None
    if not settings.acs_jwt_audience:
        log.warning("ACS_JWT_AUDIENCE is not set: every ACS callback and media connection will be refused")
        return None
    keys = JwksCache(http, openid_config_url=settings.acs_openid_config_url, jwks_url=settings.acs_jwks_url)
    return AcsTokenVerifier(keys, issuer=settings.acs_jwt_issuer, audience=settings.acs_jwt_audience)


def _notify_feed(st: Any, call_id: str) -> None:
    # The feed is built by the live-updates router's lifespan (api/live.py), which may start after this one.
    feed = getattr(st, "feed", None)
    if feed is not None:
        feed.notify(call_id)


def create_app(settings: Settings | None = None, *, configure_media: Any = None) -> FastAPI:
    """Build the server. ``configure_media(app_state, factory)`` may register extra media handlers."""
    settings = settings or load_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(settings)
        st = app.state
        st.settings = settings
        st.metrics = Metrics()
        st.media_health = MediaHealth(st.metrics)
        # True from SIGTERM on: /ready answers 503, no new call is answered or placed.
        st.draining = False
        st.store = build_store(
            settings.redis_url,
            prefix=settings.session_key_prefix,
            ttl_seconds=settings.session_ttl_seconds,
            max_connections=settings.redis_max_connections,
            pool_timeout=settings.redis_pool_timeout,
        )
        # Final saves that could not land when their call ended are retried here, spilled to disk at exit
        # and replayed at the next start (see sessions/saver.py).
        st.saver = SessionSaver(
            st.store,
            spill_dir=settings.session_spill_dir.resolve(),
            retry_seconds=settings.session_final_save_retry_seconds,
            recent_limit=settings.calls_recent_limit,
            metrics=st.metrics,
        )
        # What every replica must agree on (call entries, media owners, heartbeats, deliveries seen, calls
        # being placed): Redis when REDIS_URL is set, this process's memory otherwise (sessions/directory.py).
        st.directory = build_directory(settings)
        st.replica_id = st.directory.replica_id
        # Call → turn → recognition/agent/tool/synthesis spans; a no-op unless an OTLP endpoint is set.
        st.tracing = Tracing.from_settings(settings, replica_id=st.replica_id)
        st.calls = CallRegistry(
            settings.calls_recent_limit,
            store=st.store,
            saver=st.saver,
            directory=st.directory,
            tracing=st.tracing,
            metrics=st.metrics,
            on_change=lambda call_id: _notify_feed(st, call_id),
        )
        await st.saver.replay()
        await st.calls.restore()
        st.http = httpx.AsyncClient(timeout=5.0, verify=settings.tls_verify())
        st.token_verifier = _build_verifier(settings, st.http)
        st.automation = _build_automation(settings)
        st.processor = register_default_handlers(CallEventProcessor(metrics=st.metrics))
        # Cross-replica deduplication and the event relay to each call's media owner (scale/routing.py).
        st.routing = Routing(st)
        st.routing.start()
        st.media_factory = MediaHandlerFactory()
        st.pool_stats = lambda: {}
        from callwright.services import start_plugins
        from callwright.voice.setup import setup_media

        # Plug-ins (CALLWRIGHT_PLUGINS) register handlers, toolsets, orchestrators and engines on
        # st.services before setup_media builds engines and orchestrators from the settings.
        services = await start_plugins(st, settings)
        cleanup = await setup_media(st, st.media_factory, settings)
        if configure_media is not None:
            configure_media(st, st.media_factory)
        st.metrics.watch_pools(lambda: st.pool_stats())
        st.reaper = CallReaper(
            st, idle_seconds=settings.call_idle_reap_minutes * 60, interval=settings.call_reap_interval_seconds
        )
        st.reaper.start()
        # Heartbeats, take-over of dead replicas' calls, media streaming restarts (scale/takeover.py).
        st.replica_monitor = ReplicaMonitor(st, settings)
        st.replica_monitor.start()

        async def drain() -> None:
            await drain_calls(st, settings)

        async def end_calls_now() -> None:
            st.draining = True
            try:
                async with asyncio.timeout(settings.acs_request_timeout_seconds + STOP_TIMEOUT_SECONDS + 5):
                    await end_remaining_calls(st, settings, goodbye=False)
            except TimeoutError:
                log.error("ending the remaining calls timed out; their sessions are saved or spilled")

        # Run by callwright.serving.CallwrightServer: drain() on the first SIGTERM; end_calls_now() when
        # it shuts down anyway (drain done, cut short by a second signal, or told to exit directly) —
        # both before uvicorn closes the connections, so calls are hung up rather than cut off.
        st.drain = drain
        st.end_calls_now = end_calls_now
        # Everything built so far (modules, models, pools) lives as long as the server. Left in the
        # collector's oldest generation, each full collection walked ~250,000 such objects on the event
        # loop — 50-110 ms stalls that playback (60 ms ahead) heard as gaps at 20 calls. Frozen, they are
        # never scanned again; per-call garbage is collected as before.
        gc.collect()
        gc.freeze()
        log.info(
            "callwright %s ready (mode=%s, store=%s, replica=%s)",
            __version__, settings.acs_streaming_mode, st.store.kind, st.replica_id,
        )  # fmt: skip
        try:
            yield
        finally:
            st.draining = True
            await st.reaper.close()
            await st.replica_monitor.close()
            # Calls still up here (no drain ran: a second signal, or the server was stopped directly):
            # hang them up rather than leave callers in dead air, and save them.
            await end_calls_now()
            for record in st.calls.active():  # not ended in time: keep their sessions at least
                if record.memo is not None:
                    st.saver.adopt(record.memo)
            left = await st.saver.flush(min(settings.shutdown_save_seconds, 2.0))
            if left:
                await st.saver.spill()
            await st.saver.close()
            await st.routing.close()
            await st.processor.close()
            await services.close()
            await st.calls.close()
            await cleanup()
            if st.automation is not None:
                await st.automation.close()
            await st.http.aclose()
            await st.directory.close()
            await st.store.close()
            await st.tracing.close()

    from callwright.api import docs
    from callwright.plugins import OneLineStartupErrors

    # /docs comes from the packaged swagger-ui-bundle (api/docs.py): FastAPI's own loads it from a CDN.
    app = FastAPI(title="Callwright", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None)
    app.add_middleware(OneLineStartupErrors)  # a SettingsError at start-up is one line, not a traceback
    app.state.settings = settings  # read before start-up by callwright.serving (timeouts, connection cap)
    app.include_router(webhook.router)
    app.include_router(calls.router)
    app.include_router(recordings.router)
    app.include_router(media.router)
    app.include_router(health.router)
    app.include_router(ui.router)
    app.include_router(docs.router)
    return app
