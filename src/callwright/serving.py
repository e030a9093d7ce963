"""The HTTP server around the app: uvicorn with bounded edges and a graceful, call-aware shutdown.

Used by ``callwright serve`` and by :func:`callwright.localstack.serve_asgi` (tests, demo, bench), so both
behave the same.

Bounded edges (uvicorn has a keep-alive timeout and ``limit_concurrency`` but no header or body deadline):

- :class:`GuardedHttpToolsProtocol` closes a connection that has not sent complete request headers within
  ``SERVER_HEADER_TIMEOUT_SECONDS`` (slowloris, idle sockets that never send a byte) and one whose body is
  still trickling ``SERVER_BODY_TIMEOUT_SECONDS`` after its headers.
- It also caps open sockets at ``SERVER_MAX_CONNECTIONS``. At the cap a new connection does not get
  refused outright: the stalest connection still waiting for its headers (or idle between keep-alive
  requests) is dropped to make room, and only if every socket is busy with a request or a call's media
  stream is the newcomer closed. So a flood of idle/slow sockets can never lock out health checks or ACS.
- uvicorn's ``limit_concurrency`` (answer 503 once connections or tasks reach it) counts idle sockets
  too, so set at the cap it would answer /health with 503 exactly while slow sockets hold the cap. It sits
  above the cap (``+ LIMIT_HEADROOM``): a backstop for a pile-up of in-flight requests, not the socket cap.

Graceful shutdown: uvicorn on SIGTERM stops listening and closes every connection — media WebSockets
included, leaving callers in dead air — before the lifespan's shutdown runs. :class:`CallwrightServer`
therefore intercepts the first SIGTERM/SIGINT: it runs the app's ``drain()`` (``app.state.drain``, built
in the lifespan: /ready → 503, no new calls, grace for active calls, goodbye, hang-up, save) while still
serving (ACS's CallDisconnected callbacks must get in), and only then lets uvicorn proceed
(``timeout_graceful_shutdown`` = ``SERVER_SHUTDOWN_TIMEOUT_SECONDS`` bounds what is left). A second
signal skips the drain: calls still up are hung up at once (no goodbye) and saved, then uvicorn stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from dataclasses import dataclass
from types import FrameType
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from callwright.logs import LogLimiter

log = logging.getLogger("callwright.server")

LIMIT_HEADROOM = 64
MAX_INCOMPLETE_EVENT_BYTES = 64 * 1024  # h11's bound on a header block (we use httptools; kept for h11)


@dataclass(frozen=True)
class ServerLimits:
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    keep_alive: int = 5
    max_connections: int = 1000
    shutdown_timeout: float = 10.0

    @classmethod
    def from_settings(cls, settings: Any) -> ServerLimits:
        return cls(
            header_timeout=settings.server_header_timeout_seconds,
            body_timeout=settings.server_body_timeout_seconds,
            keep_alive=settings.server_keep_alive_seconds,
            max_connections=settings.server_max_connections,
            shutdown_timeout=settings.server_shutdown_timeout_seconds,
        )


class _GuardState:
    """Per-server bookkeeping shared by every connection (kept on uvicorn's ServerState)."""

    def __init__(self) -> None:
        # Connections waiting for request headers, oldest first (dicts keep insertion order).
        self.waiting: dict[GuardedHttpToolsProtocol, None] = {}
        self.counts: dict[str, int] = dict.fromkeys(
            ("header_timeout", "body_timeout", "evicted", "refused", "header_too_large"), 0
        )
        self._log_limiter = LogLimiter(log)

    def note(self, what: str, message: str) -> None:
        """Count and log, at most one line per 10 s: a flood of slow sockets must not flood the log."""
        self.counts[what] += 1
        self._log_limiter.warning("edges", "%s; totals %s", message, self.counts)


def guard_state(server_state: Any) -> _GuardState:
    state = getattr(server_state, "callwright_guard", None)
    if state is None:
        state = _GuardState()
        server_state.callwright_guard = state
    return state


# What the websockets library accepts in an upgrade request (websockets.http11 MAX_LINE_LENGTH and
# MAX_NUM_HEADERS).
WS_MAX_HEADER_LINE = 8192
WS_MAX_HEADERS = 128


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol plus a header deadline, a body deadline and a socket cap."""

    def __init__(self, config: Any, server_state: Any, app_state: dict[str, Any], _loop: Any = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._limits: ServerLimits = getattr(config, "callwright_limits", None) or ServerLimits()
        self._guard = guard_state(server_state)
        self._header_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None

    # -- connection lifecycle ----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self._limits.max_connections:
            victim = next(iter(self._guard.waiting), None)
            if victim is not None:
                self._guard.note(
                    "evicted", "connection cap reached: dropped the stalest connection still sending headers"
                )
                victim._drop()
            else:
                self._guard.note(
                    "refused", "connection cap reached and every connection is busy: new connection closed"
                )
                self.connections.discard(self)
                transport.close()
                return
        self._await_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timers()
        super().connection_lost(exc)

    def handle_websocket_upgrade(self) -> None:
        self._stop_timers()  # the WebSocket protocol takes over the transport
        headers = self.scope["headers"]
        if len(headers) > WS_MAX_HEADERS or any(len(n) + len(v) + 4 > WS_MAX_HEADER_LINE for n, v in headers):
            # The WebSocket protocol re-parses the request with these limits and, past them, neither
            # answers nor closes (uvicorn asserts on a close that was never sent): answer here instead.
            self._guard.note("header_too_large", "refused a WebSocket upgrade with an oversized header (431)")
            self.transport.write(
                b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; charset=utf-8\r\n"
                b"content-length: 33\r\nconnection: close\r\n\r\nrequest header fields too large\r\n"
            )
            self.transport.close()
            return
        super().handle_websocket_upgrade()

    # -- request phases ----------------------------------------------------------------------------
    def on_headers_complete(self) -> None:
        self._guard.waiting.pop(self, None)
        self._cancel("_header_timer")
        super().on_headers_complete()
        if not (self.parser.should_upgrade() and self._should_upgrade()):
            self._cancel("_body_timer")
            self._body_timer = self.loop.call_later(self._limits.body_timeout, self._body_timed_out)

    def on_message_complete(self) -> None:
        self._cancel("_body_timer")
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and not self.pipeline:
            self._await_headers()  # idle on keep-alive until the next request's headers arrive

    # -- internals ---------------------------------------------------------------------------------
    def _await_headers(self) -> None:
        self._guard.waiting.pop(self, None)
        self._guard.waiting[self] = None
        self._cancel("_header_timer")
        self._header_timer = self.loop.call_later(self._limits.header_timeout, self._headers_timed_out)

    def _headers_timed_out(self) -> None:
        self._header_timer = None
        if self in self._guard.waiting:
            self._guard.note(
                "header_timeout",
                f"closed a connection that sent no complete request headers within {self._limits.header_timeout:g}s",
            )
            self._drop()

    def _body_timed_out(self) -> None:
        self._body_timer = None
        self._guard.note(
            "body_timeout",
            f"closed a connection whose request body was not complete within {self._limits.body_timeout:g}s",
        )
        self._drop()

    def _drop(self) -> None:
        self._stop_timers()
        if not self.transport.is_closing():
            self.transport.close()

    def _cancel(self, name: str) -> None:
        timer = getattr(self, name)
        if timer is not None:
            timer.cancel()
            setattr(self, name, None)

    def _stop_timers(self) -> None:
        self._guard.waiting.pop(self, None)
        self._cancel("_header_timer")
        self._cancel("_body_timer")


def build_config(app: Any, *, host: str, port: int, limits: ServerLimits) -> uvicorn.Config:
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        http=GuardedHttpToolsProtocol,
        # Per-message deflate costs CPU and event-loop time on every 20 ms audio frame for ~nothing.
        ws="websockets-sansio",
        ws_per_message_deflate=False,
        lifespan="on",
        timeout_keep_alive=limits.keep_alive,
        limit_concurrency=limits.max_connections + LIMIT_HEADROOM,
        timeout_graceful_shutdown=limits.shutdown_timeout,  # type: ignore[arg-type]
        h11_max_incomplete_event_size=MAX_INCOMPLETE_EVENT_BYTES,
    )
    config.callwright_limits = limits  # type: ignore[attr-defined]
    return config


class CallwrightServer(uvicorn.Server):
    """uvicorn.Server whose first exit signal drains calls (``app.state.drain``) before shutting down."""

    def __init__(self, config: uvicorn.Config, *, app_state: Any = None) -> None:
        super().__init__(config)
        self._app_state = app_state
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain_requested = False
        self.drain_task: asyncio.Task[None] | None = None

    async def startup(self, sockets: Any = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().startup(sockets)
        if self._app_state is not None:
            self._app_state.http_server = self  # tests reach the server (begin_drain) through the app

    async def shutdown(self, sockets: Any = None) -> None:
        # A second signal cut the drain short: stop it, then hang up (no goodbye) and save the calls it
        # left while still serving — uvicorn's shutdown would otherwise cut their media sockets first.
        task = self.drain_task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        end_calls = getattr(self._app_state, "end_calls_now", None)
        if end_calls is not None:
            try:
                await end_calls()
            except Exception:
                log.exception("ending the remaining calls failed")
        await super().shutdown(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if not self._drain_requested and self.begin_drain(signal.Signals(sig).name):
            self._captured_signals.append(sig)  # re-raised by uvicorn after a clean exit, as it does itself
            return
        super().handle_exit(sig, frame)  # second signal, or nothing to drain: uvicorn's own behaviour

    def begin_drain(self, why: str = "exit requested") -> bool:
        """Start the drain (safe from a signal handler or from the loop); False when there is none."""
        drain = getattr(self._app_state, "drain", None)
        if drain is None or self._loop is None or not self.started or self.should_exit or self._loop.is_closed():
            return False
        if self._drain_requested:
            return True
        self._drain_requested = True
        self._loop.call_soon_threadsafe(self._start_drain, drain, why)
        return True

    def _start_drain(self, drain: Any, why: str) -> None:
        if self.drain_task is None:
            self.drain_task = asyncio.get_running_loop().create_task(self._drain_then_exit(drain, why), name="drain")

    async def _drain_then_exit(self, drain: Any, why: str) -> None:
        log.warning("%s: draining calls before shutting down (a second signal skips the drain)", why)
        try:
            await drain()
        except Exception:
            log.exception("the drain failed; shutting down anyway")
        finally:
            self.should_exit = True


def build_server(app: Any, *, host: str, port: int, limits: ServerLimits | None = None) -> CallwrightServer:
    state = getattr(app, "state", None)
    if limits is None:
        settings = getattr(state, "settings", None)
        limits = ServerLimits.from_settings(settings) if settings is not None else ServerLimits()
    return CallwrightServer(build_config(app, host=host, port=port, limits=limits), app_state=state)
