"""The local realtime server: VoiceLive and OpenAI Realtime over WebSocket, on Callwright's engines.

``create_realtime_app(settings)`` is an ASGI app; its lifespan builds the long-lived parts (engine pools,
the recognition and TTS executors, the metrics registry, the frame log) on ``app.state.realtime``. The
handshake picks the dialect from the path (realtime-protocol.md §1, §10), checks the key, the session
limit and the engine pools, and refuses with a plain HTTP status (401, 404, 503) rather than a dead socket.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import hmac
import logging
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from callwright.config import Settings
from callwright.realtime.model import scenario_tools
from callwright.realtime.observe import FrameLog, RealtimeMetrics
from callwright.realtime.protocol import dialect_for, scenario_from
from callwright.realtime.session import RealtimeSession

log = logging.getLogger("callwright.realtime")

_ESPEAK_VOICE = re.compile(r"^[a-z]{2,3}(-[a-z0-9]{2,8})*(\+[a-z0-9]+)?$")
_SCENARIO_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,63}$")


@dataclass
class Faults:
    """Fault injection for tests (only when REALTIME_FAULT_INJECTION is on)."""

    refuse: bool = False
    close_mid_response: bool = False
    delay_done_ms: int = 0

    @classmethod
    def from_query(cls, value: str) -> Faults:
        faults = cls()
        for part in filter(None, (p.strip() for p in value.split(","))):
            faults.apply({"fault": part.split("=")[0], "delay_ms": part.partition("=")[2] or 0})
        return faults

    def apply(self, event: dict[str, Any]) -> None:
        kind = event.get("fault")
        if kind == "refuse":
            self.refuse = True
        elif kind == "close_mid_response":
            self.close_mid_response = True
        elif kind == "delay_done":
            try:
                self.delay_done_ms = max(0, min(int(event.get("delay_ms") or 0), 60_000))
            except (TypeError, ValueError):
                self.delay_done_ms = 0


class RealtimeServer:
    """What every session shares; built in the app's lifespan, kept on ``app.state.realtime``."""

    def __init__(self, settings: Settings, engines: Any) -> None:
        self.settings = settings
        self.engines = engines
        self.pace = settings.realtime_audio_pace
        self.burst_ms = float(settings.realtime_audio_burst_ms)
        self.max_sessions = settings.realtime_max_sessions
        self.faults_enabled = settings.realtime_fault_injection
        self.recognition_executor = concurrent.futures.ThreadPoolExecutor(
            settings.realtime_recognition_threads, thread_name_prefix="realtime-recognition"
        )
        self.tts_executor = concurrent.futures.ThreadPoolExecutor(
            settings.realtime_tts_threads, thread_name_prefix="realtime-tts"
        )
        self.metrics = RealtimeMetrics(engines.stats)
        self.frame_log = FrameLog(settings.realtime_frame_log_dir) if settings.realtime_frame_log_dir else None
        self.sessions: dict[str, RealtimeSession] = {}
        self.reserved = 0
        self.release_seconds: collections.deque[float] = collections.deque(maxlen=100)  # recent, for tests
        self._scenarios: dict[str, Any] = {}
        self.llm_client: Any = None
        if settings.agent_engine == "llm":
            from callwright.agents.llm_client import make_llm_client

            self.llm_client = make_llm_client(settings)

    async def close(self, *, close_engines: bool = True) -> None:
        for session in list(self.sessions.values()):
            await session.close_socket(1001)
        self.recognition_executor.shutdown(wait=False, cancel_futures=True)
        self.tts_executor.shutdown(wait=False, cancel_futures=True)
        if close_engines:
            await self.engines.close()
        if self.frame_log is not None:
            self.frame_log.close()

    async def scenario(self, name: str) -> Any:
        from callwright.agents.scenario import ScenarioError, load_scenario

        if not _SCENARIO_NAME.match(name):
            raise ScenarioError(f"scenario: invalid name {name!r}")
        if name not in self._scenarios:
            settings = self.settings.model_copy(update={"scenario": name})
            self._scenarios[name] = await asyncio.to_thread(load_scenario, settings)
        return self._scenarios[name]

    def authorized(self, ws: WebSocket) -> bool:
        key = self.settings.realtime_api_key
        if key is None:
            return True
        offered = ws.headers.get("api-key") or ws.query_params.get("api-key") or ""
        auth = ws.headers.get("authorization", "")
        if not offered and auth.lower().startswith("bearer "):
            offered = auth[7:].strip()
        return hmac.compare_digest(offered.encode(), key.get_secret_value().encode())

    def engine_voice(self, voice: str | None) -> str | None:
        """The session's voice if the TTS engine has it; else the configured one (OpenAI/Azure voice
        names mean nothing to espeak-ng)."""
        if self.settings.tts_engine == "espeak" and voice and _ESPEAK_VOICE.match(voice):
            return voice
        return self.settings.tts_voice

    def release_engines(self, recognizer: Any, synthesizer: Any, synth_jobs: set[asyncio.Future[Any]]) -> None:
        self.engines.stt_pool.release(recognizer)
        if not synth_jobs:
            self.engines.tts_pool.release(synthesizer)
            return
        # a synthesis thread still runs (it stops at its next chunk): hand the engine back after it
        remaining = set(synth_jobs)

        def done(job: asyncio.Future[Any]) -> None:
            remaining.discard(job)
            if not remaining:
                self.engines.tts_pool.release(synthesizer)

        for job in synth_jobs:
            job.add_done_callback(done)

    def observe_in(self, session: RealtimeSession, event: dict[str, Any]) -> None:
        self.metrics.count_in(str(event.get("type")))
        if self.frame_log is not None:
            self.frame_log.record(session.id, "in", event)

    def observe_out(self, session: RealtimeSession, event: dict[str, Any]) -> None:
        if self.frame_log is not None:
            self.frame_log.record(session.id, "out", event)


async def _deny(ws: WebSocket, status: int, message: str) -> None:
    log.info("realtime handshake refused (%d): %s", status, message)
    body = JSONResponse({"error": {"type": "invalid_request_error", "code": str(status), "message": message}}, status)
    if "websocket.http.response" in ws.scope.get("extensions", {}):
        await ws.send_denial_response(body)
    else:
        await ws.close(1008, reason=message[:120])


async def realtime_endpoint(ws: WebSocket) -> None:
    server: RealtimeServer = ws.app.state.realtime
    metrics = server.metrics
    dialect = dialect_for(ws.url.path, ws.headers.get("openai-beta"))
    if dialect is None:
        metrics.refused.labels("path").inc()
        return await _deny(ws, 404, f"no realtime endpoint at {ws.url.path}")
    if not server.authorized(ws):
        metrics.refused.labels("auth").inc()
        return await _deny(ws, 401, "missing or wrong key (api-key header, ?api-key= or Authorization: Bearer)")
    faults = Faults.from_query(ws.query_params.get("fault", "")) if server.faults_enabled else Faults()
    if faults.refuse:
        metrics.refused.labels("fault").inc()
        return await _deny(ws, 503, "handshake refused by fault injection")
    if server.reserved >= server.max_sessions:
        metrics.refused.labels("full").inc()
        return await _deny(ws, 503, f"the server is at its session limit ({server.max_sessions})")
    server.reserved += 1  # before any await, so concurrent handshakes cannot overshoot the limit
    try:
        await _serve(ws, server, dialect, faults)
    finally:
        server.reserved -= 1


async def _serve(ws: WebSocket, server: RealtimeServer, dialect: Any, faults: Faults) -> None:
    from callwright.agents.scenario import ScenarioError
    from callwright.speech.pools import PoolClosed, PoolExhausted

    settings = server.settings
    query = ws.query_params
    model = query.get("model") or query.get("deployment") or f"callwright-scenario:{settings.scenario}"
    try:
        scenario = await server.scenario(scenario_from(model, "") or settings.scenario)
    except ScenarioError as exc:
        server.metrics.refused.labels("scenario").inc()
        return await _deny(ws, 400, str(exc))
    try:
        recognizer = await server.engines.stt_pool.acquire()
    except (PoolExhausted, PoolClosed) as exc:
        server.metrics.refused.labels("engines").inc()
        return await _deny(ws, 503, f"no speech engine free: {exc}")
    try:
        synthesizer = await server.engines.tts_pool.acquire()
    except (PoolExhausted, PoolClosed) as exc:
        server.engines.stt_pool.release(recognizer)
        server.metrics.refused.labels("engines").inc()
        return await _deny(ws, 503, f"no speech engine free: {exc}")
    try:
        session = RealtimeSession(server, ws, dialect, model, scenario, recognizer, synthesizer, faults)
    except Exception:
        log.exception("realtime session could not be set up")
        server.release_engines(recognizer, synthesizer, set())
        return await _deny(ws, 500, "the session could not be set up (see the server log)")
    server.sessions[session.id] = session
    if server.frame_log is not None:  # what the client dialled, for assertions (the key itself elided)
        query = {k: ("<elided>" if k == "api-key" else v) for k, v in ws.query_params.items()}
        server.frame_log.record(session.id, "handshake", {"type": "handshake", "path": ws.url.path, "query": query,
                                "dialect": dialect, "user_agent": ws.headers.get("user-agent", "")})  # fmt: skip
    server.metrics.sessions_total.labels(dialect).inc()
    server.metrics.sessions_active.inc()
    log.info("realtime session %s opened (%s, model %s)", session.id, dialect, model)
    try:
        await ws.accept()
        await session.start()
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                break
            text = message.get("text")
            if text is None:
                text = '{"type": "binary frame"}'  # answered with an error naming the unknown event
            await session.handle_text(text)
    except WebSocketDisconnect:
        pass
    except Exception:
        log.exception("realtime session %s failed", session.id)
        await session.close_socket(1011)
    finally:
        started = time.monotonic()
        await session.close()
        server.sessions.pop(session.id, None)
        server.metrics.sessions_active.dec()
        took = time.monotonic() - started
        server.release_seconds.append(took)
        server.metrics.release.observe(took)
        log.info("realtime session %s closed (released in %.0f ms)", session.id, took * 1000)


async def _metrics(request: Request) -> Response:
    server: RealtimeServer = request.app.state.realtime
    return Response(generate_latest(server.metrics.registry), media_type=CONTENT_TYPE_LATEST)


async def _health(request: Request) -> Response:
    server: RealtimeServer = request.app.state.realtime
    return JSONResponse({"status": "ok", "sessions": len(server.sessions), "max_sessions": server.max_sessions})


async def _tools(request: Request) -> Response:
    """The scenario's tools as realtime function tools, ready for ``session.tools``."""
    from callwright.agents.scenario import ScenarioError

    server: RealtimeServer = request.app.state.realtime
    try:
        scenario = await server.scenario(request.path_params["name"])
    except ScenarioError as exc:
        return JSONResponse({"error": str(exc)}, status_code=404)
    return JSONResponse({"scenario": scenario.name, "tools": scenario_tools(scenario)})


def create_realtime_app(settings: Settings, engines: Any = None) -> Starlette:
    """The server as an ASGI app. ``engines``: share an existing ``SpeechEngines`` (else built here)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        from callwright.speech.factory import build_engines

        own = engines is None
        built = engines if engines is not None else await asyncio.to_thread(build_engines, settings)
        if own:
            built.start()
        server = RealtimeServer(settings, built)
        app.state.realtime = server
        await server.scenario(settings.scenario)  # a broken scenario stops the start, naming the problem
        try:
            yield
        finally:
            await server.close(close_engines=own)

    routes = [
        Route("/metrics", _metrics),
        Route("/health", _health),
        Route("/v1/scenarios/{name}/tools", _tools),
        WebSocketRoute("/{path:path}", realtime_endpoint),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


@contextlib.asynccontextmanager
async def running_realtime_server(
    settings: Settings, *, port: int | None = None, engines: Any = None
) -> AsyncIterator[tuple[str, Starlette]]:
    """The server in-process on 127.0.0.1 (demo, bench, tests); yields its http base URL and the app."""
    from callwright.localstack import free_port, serve_asgi

    app = create_realtime_app(settings, engines)
    async with serve_asgi(app, port or free_port()) as url:
        yield url, app


def frame_log_path(app: Starlette, session_id: str) -> Path | None:
    server: RealtimeServer = app.state.realtime
    if server.frame_log is None:
        return None
    server.frame_log.flush()
    return server.frame_log.path(session_id)
