"""The FastAPI app factory. Every long-lived object is built in the lifespan and kept on ``app.state``."""

from __future__ import annotations

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
from callwright.api import calls, health, media, ui, webhook
from callwright.config import Settings, load_settings
from callwright.events.handlers import register_default_handlers
from callwright.events.processor import CallEventProcessor
from callwright.logs import configure_logging
from callwright.metrics import Metrics
from callwright.sessions.registry import CallRegistry
from callwright.sessions.store import build_store
from callwright.voice.factory import MediaHandlerFactory

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


def create_app(settings: Settings | None = None, *, configure_media: Any = None) -> FastAPI:
    """Build the server. ``configure_media(app_state, factory)`` may register extra media handlers."""
    settings = settings or load_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(settings)
        st = app.state
        st.settings = settings
        st.metrics = Metrics()
        st.calls = CallRegistry()
        st.pending_outbound = {}
        st.store = build_store(
            settings.redis_url, prefix=settings.session_key_prefix, ttl_seconds=settings.session_ttl_seconds
        )
        st.http = httpx.AsyncClient(timeout=5.0, verify=settings.tls_verify())
        st.token_verifier = _build_verifier(settings, st.http)
        st.automation = _build_automation(settings)
        st.processor = register_default_handlers(CallEventProcessor(metrics=st.metrics))
        st.media_factory = MediaHandlerFactory()
        st.pool_stats = lambda: {}
        from callwright.voice.setup import setup_media

        cleanup = await setup_media(st, st.media_factory, settings)
        if configure_media is not None:
            configure_media(st, st.media_factory)
        st.metrics.watch_pools(lambda: st.pool_stats())
        # Everything built so far (modules, models, pools) lives as long as the server. Left in the
        # collector's oldest generation, each full collection walked ~250,000 such objects on the event
        # loop — 50-110 ms stalls that playback (60 ms ahead) heard as gaps at 20 calls. Frozen, they are
        # never scanned again; per-call garbage is collected as before.
        gc.collect()
        gc.freeze()
        log.info("callwright %s ready (mode=%s, store=%s)", __version__, settings.acs_streaming_mode, st.store.kind)
        try:
            yield
        finally:
            for record in st.calls.active():
                if record.media_handler is not None:
                    try:
                        await record.media_handler.stop()
                    except Exception:
                        log.exception("media handler failed to stop at shutdown")
                if record.memo is not None:
                    await record.memo.final_persist(give_up_after=2.0)
            await st.processor.close()
            await cleanup()
            if st.automation is not None:
                await st.automation.close()
            await st.http.aclose()
            await st.store.close()

    app = FastAPI(title="Callwright", version=__version__, lifespan=lifespan)
    app.include_router(webhook.router)
    app.include_router(calls.router)
    app.include_router(media.router)
    app.include_router(health.router)
    app.include_router(ui.router)
    return app
