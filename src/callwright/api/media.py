"""``/api/v1/media/stream``: the ACS media WebSocket (ACS is the client).

The receive loop only parses and dispatches; handlers do their work elsewhere, so a slow engine can
never stall the socket. Bad frames are counted (``callwright_media_frames_rejected_total{reason}``), logged at
most once per reason every 10 s and skipped; the socket stays up. Audio of any frame length, at 16 or
24 kHz, reaches the handler as 20 ms 16 kHz frames (``voice/framing.py``). A socket that sends no
AudioMetadata/AudioData within MEDIA_START_TIMEOUT_SECONDS, or nothing for MEDIA_IDLE_TIMEOUT_SECONDS, is
closed.

With several replicas the socket's replica claims the call in the call directory (events for the call are
routed to it, scale/routing.py) and releases it when the socket ends; a draining replica sends new sockets
elsewhere (1013) while another replica can take them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from callwright.acs.auth import AuthError
from callwright.acs.identifiers import is_call_connection_id
from callwright.acs.media import (
    SAMPLE_RATE,
    AudioData,
    AudioMetadata,
    DtmfData,
    MediaFrameError,
    frame_bytes,
    parse_inbound,
)
from callwright.events.handlers import ensure_call
from callwright.logs import LogLimiter, call_scope
from callwright.scale.routing import release_if_held
from callwright.sessions.store import StoreUnavailable
from callwright.voice.factory import UnsupportedMode
from callwright.voice.framing import InboundReframer
from callwright.voice.health import media_health
from callwright.voice.transport import AcsMediaTransport

log = logging.getLogger("callwright.media")
router = APIRouter()

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY_VIOLATION = 1008
CLOSE_TRY_AGAIN_LATER = 1013


def _call_id(ws: WebSocket) -> str | None:
    return (
        ws.headers.get("x-ms-call-connection-id")
        or ws.query_params.get("callConnectionId")
        or ws.query_params.get("call_connection_id")
    )


async def _authenticate(ws: WebSocket) -> None:
    st = ws.app.state
    if not st.settings.acs_auth_enabled:
        return
    if st.token_verifier is None:
        raise AuthError("ACS_JWT_AUDIENCE is not configured")
    await st.token_verifier.verify_header(ws.headers.get("authorization"))


async def _refuse(ws: WebSocket, outcome: str, reason: str) -> None:
    ws.app.state.metrics.media_connections_total.labels(outcome).inc()
    await ws.accept()
    await ws.close(code=CLOSE_POLICY_VIOLATION, reason=reason[:120])


@router.websocket("/api/v1/media/stream")
async def media_stream(ws: WebSocket) -> None:
    call_id = _call_id(ws)
    if call_id is not None and not is_call_connection_id(call_id):
        # Checked before anything logs it: the id is chosen by whoever connects (never logged raw).
        log.warning("media WebSocket refused: the call connection id is not a valid id (%d characters)", len(call_id))
        await _refuse(ws, "refused_bad_call_id", "invalid call connection id")
        return
    with call_scope(call_id):
        try:
            await _authenticate(ws)
        except AuthError as exc:
            log.warning("media WebSocket refused: %s", exc)
            await _refuse(ws, "refused_auth", str(exc))
            return
        if not call_id:
            log.warning("media WebSocket refused: no x-ms-call-connection-id header or callConnectionId parameter")
            await _refuse(ws, "refused_no_call", "missing call connection id")
            return
        if await _elsewhere_while_draining(ws):
            return
        await ws.accept()
        await _serve(ws, call_id)


async def _elsewhere_while_draining(ws: WebSocket) -> bool:
    """A draining replica takes no new media socket while another live, non-draining replica exists: 1013
    (try again later) makes ACS reconnect, and the load balancer sends the retry elsewhere. Alone, it accepts
    as before (the call would have nowhere else to go)."""
    st = ws.app.state
    routing = getattr(st, "routing", None)
    if not getattr(st, "draining", False) or routing is None:
        return False
    other = await routing.other_ready_replica()
    if other is None:
        return False
    log.warning("media WebSocket refused: this replica is draining (replica %s takes it)", other)
    st.metrics.media_connections_total.labels("refused_draining").inc()
    await ws.accept()
    await ws.close(code=CLOSE_TRY_AGAIN_LATER, reason="draining")
    return True


async def _claim(st: Any, call_id: str) -> bool:
    """Record this replica as the holder of the call's media (events for it are routed here from now on)
    and tell whoever held it before. False when the directory is unreachable (the call goes on here)."""
    directory = getattr(st, "directory", None)
    if directory is None:
        return False
    try:
        previous = await directory.claim(call_id)
    except StoreUnavailable as exc:
        log.warning("media owner not recorded (%s): events reaching other replicas run there", exc)
        return False
    routing = getattr(st, "routing", None)
    if routing is not None:
        await routing.claimed(call_id, previous)
    if previous:
        log.info("media of the call moved here from replica %s", previous)
    record = st.calls.get(call_id)
    if record is not None:
        # Events handled elsewhere before this claim (CallConnected on the replica that answered) are in the
        # directory: take them into the record held here, which answers for the call from now on.
        await st.calls.publish(record)
    return True


async def _release(st: Any, call_id: str) -> None:
    # While draining (or shutting down) the ownership stays: a survivor finds the call among this replica's
    # when its heartbeat stops, and takes it over.
    if getattr(st, "draining", False):
        return
    directory = st.directory
    try:
        owner = (await directory.owners([call_id])).get(call_id)
    except StoreUnavailable as exc:
        log.warning("media owner not checked (%s): it expires with the call's entry", exc)
        return
    if owner and owner != directory.replica_id:
        # The call's socket reached another replica (ACS reconnected there), which holds the call now; this
        # replica's copy must not linger (its reaper or shutdown would end a live call).
        release_if_held(st, call_id, owner)
        return
    if call_id in {r.call_connection_id for r in st.calls.active()}:
        # Still ours and still up here: its events (the CallDisconnected ACS sends after closing the socket
        # on a hang-up) must keep coming here, where its record lives. Ownership moves when another
        # replica's socket claims the call (a restart), and ends with the call.
        return
    try:
        await directory.release(call_id)
    except StoreUnavailable as exc:
        log.warning("media owner not cleared (%s): it expires with the call's entry", exc)


class _Inbound:
    """One socket's inbound side: re-framing to 20 ms at 16 kHz, counting, rate-limited complaints."""

    def __init__(self, st: object, limiter: LogLimiter) -> None:
        self._metrics = st.metrics  # type: ignore[attr-defined]
        self._limiter = limiter
        self.reframer = InboundReframer()
        self.rejected = 0

    def reject(self, reason: str, detail: str) -> None:
        self.rejected += 1
        self._metrics.media_frames_rejected_total.labels(reason).inc()
        self._limiter.warning(reason, "media frame skipped (%s): %s", reason, detail)

    def set_rate(self, rate: int) -> None:
        self.reframer.set_rate(rate)

    def frames(self, frame: AudioData) -> list[AudioData]:
        r = self.reframer
        if not frame.pcm:
            self.reject("empty", "AudioData without samples")
            return []
        expected = frame_bytes(r.in_rate)
        if len(frame.pcm) != expected:
            self._metrics.media_frames_reframed_total.inc()
            self._limiter.warning(
                "reframed", "media frame of %d bytes at %d Hz (expected %d): re-cut to 20 ms frames",
                len(frame.pcm), r.in_rate, expected,
            )  # fmt: skip
        if r.in_rate != SAMPLE_RATE:
            self._metrics.media_frames_resampled_total.inc()
        who = frame.participant_raw_id
        return [AudioData(f.pcm, f.silent, frame.timestamp, who) for f in r.push(frame.pcm, frame.silent)]


class _Clock:
    """When the socket started and last spoke, for the watchdog."""

    def __init__(self) -> None:
        self.opened = self.last = time.monotonic()
        self.started = False


async def _watchdog(st: Any, clock: _Clock) -> tuple[int, str]:
    """Returns (close code, reason) once the socket has not started in time or has gone idle. One sleeping
    task per socket, rather than a timeout around every receive (a task per frame, 50 a second a call)."""
    start_timeout = float(st.settings.media_start_timeout_seconds)
    idle_timeout = float(st.settings.media_idle_timeout_seconds)
    while True:
        now = time.monotonic()
        if not clock.started:
            left = clock.opened + start_timeout - now
            if left <= 0:
                log.warning("media stream closed: no AudioMetadata or AudioData within %g s", start_timeout)
                st.metrics.media_connections_total.labels("closed_no_start").inc()
                return CLOSE_POLICY_VIOLATION, "no media"
        else:
            left = clock.last + idle_timeout - now
            if left <= 0:
                log.warning("media stream closed: no frame for %g s", idle_timeout)
                st.metrics.media_connections_total.labels("closed_idle").inc()
                return CLOSE_GOING_AWAY, "idle"
        await asyncio.sleep(min(max(left, 0.01), 1.0))


async def _receive(ws: WebSocket, handler: Any, transport: AcsMediaTransport, inbound: _Inbound, clock: _Clock) -> None:
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return
        clock.last = time.monotonic()
        text = message.get("text")
        if text is None:
            inbound.reject("binary", "binary frame (ACS sends JSON text frames)")
            continue
        try:
            frame = parse_inbound(text)
        except MediaFrameError as exc:
            inbound.reject(exc.reason, str(exc))
            continue
        if isinstance(frame, AudioData):
            if not clock.started:  # metadata lost or never sent: start with the defaults
                clock.started = True
                await handler.start(AudioMetadata(None, "PCM", SAMPLE_RATE, 1, frame_bytes(SAMPLE_RATE)))
            for piece in inbound.frames(frame):
                handler.on_audio(piece)
        elif isinstance(frame, AudioMetadata):
            if frame.sample_rate != inbound.reframer.in_rate:
                log.info("media stream at %d Hz: caller audio is resampled to 16 kHz", frame.sample_rate)
            inbound.set_rate(frame.sample_rate)
            transport.set_wire_rate(frame.sample_rate)
            if not clock.started:
                clock.started = True
                await handler.start(frame)
        elif isinstance(frame, DtmfData):
            await handler.on_dtmf(frame.tone)


async def _serve(ws: WebSocket, call_id: str) -> None:
    st = ws.app.state
    media_health(st)  # on app.state from the first socket, so /ready can report it
    record = await ensure_call(st, call_id)
    transport = AcsMediaTransport(ws, SAMPLE_RATE)
    try:
        handler = st.media_factory.create(record, transport, st)
    except UnsupportedMode as exc:
        log.error("%s", exc)
        await ws.close(code=CLOSE_TRY_AGAIN_LATER, reason="mode unavailable")
        return
    record.media_handler = handler
    record.media_connected = True
    claimed = await _claim(st, call_id)
    st.metrics.media_connections_total.labels("accepted").inc()
    st.metrics.media_connections_active.inc()
    inbound = _Inbound(st, LogLimiter(log))
    clock = _Clock()
    close: tuple[int, str] | None = None
    log.info("media stream connected (mode=%s)", record.mode)
    loop = asyncio.get_running_loop()
    receiving = loop.create_task(_receive(ws, handler, transport, inbound, clock))
    watching = loop.create_task(_watchdog(st, clock))
    try:
        await asyncio.wait({receiving, watching}, return_when=asyncio.FIRST_COMPLETED)
        if watching.done() and not watching.cancelled() and watching.exception() is None:
            close = watching.result()
        elif receiving.done() and not receiving.cancelled():
            exc = receiving.exception()
            if exc is not None and not isinstance(exc, WebSocketDisconnect):
                log.error("media loop failed", exc_info=exc)
    finally:
        for task in (receiving, watching):
            task.cancel()
        for task in (receiving, watching):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        st.metrics.media_connections_active.dec()
        record.media_connected = False
        record.touch()  # the reaper counts a connected socket as activity; its idle time starts now
        try:
            await handler.stop()
        except Exception:
            log.exception("media handler failed to stop")
        if record.media_handler is handler:
            record.media_handler = None
        if claimed:
            await _release(st, call_id)
        if close is not None:
            await transport.close(*close)
        else:
            await transport.close()
        r = inbound.reframer
        if inbound.rejected or r.reframed:
            log.info("media stream: %d frames in, %d re-cut, %d skipped", r.frames_in, r.reframed, inbound.rejected)
        log.info("media stream closed")
