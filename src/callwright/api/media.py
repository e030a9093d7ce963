"""``/api/v1/media/stream``: the ACS media WebSocket (ACS is the client).

The receive loop only parses and dispatches; handlers do their work elsewhere, so a slow engine can
never stall the socket. Bad frames are logged and skipped; the socket stays up.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from callwright.acs.auth import AuthError
from callwright.acs.media import (
    SAMPLE_RATE,
    AudioData,
    AudioMetadata,
    DtmfData,
    MediaFrameError,
    parse_inbound,
)
from callwright.events.handlers import ensure_call
from callwright.logs import call_scope
from callwright.voice.factory import UnsupportedMode
from callwright.voice.transport import AcsMediaTransport

log = logging.getLogger("callwright.media")
router = APIRouter()

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


@router.websocket("/api/v1/media/stream")
async def media_stream(ws: WebSocket) -> None:
    st = ws.app.state
    call_id = _call_id(ws)
    with call_scope(call_id):
        try:
            await _authenticate(ws)
        except AuthError as exc:
            log.warning("media WebSocket refused: %s", exc)
            st.metrics.media_connections_total.labels("refused_auth").inc()
            await ws.accept()
            await ws.close(code=CLOSE_POLICY_VIOLATION, reason=str(exc)[:120])
            return
        if not call_id:
            log.warning("media WebSocket refused: no x-ms-call-connection-id header or callConnectionId parameter")
            st.metrics.media_connections_total.labels("refused_no_call").inc()
            await ws.accept()
            await ws.close(code=CLOSE_POLICY_VIOLATION, reason="missing call connection id")
            return
        await ws.accept()
        await _serve(ws, call_id)


async def _serve(ws: WebSocket, call_id: str) -> None:
    st = ws.app.state
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
    st.metrics.media_connections_total.labels("accepted").inc()
    st.metrics.media_connections_active.inc()
    started = False
    log.info("media stream connected (mode=%s)", record.mode)
    try:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                break
            text = message.get("text")
            if text is None:
                st.metrics.media_frames_rejected_total.labels("binary").inc()
                log.warning("binary media frame skipped (ACS sends JSON text frames)")
                continue
            try:
                frame = parse_inbound(text)
            except MediaFrameError as exc:
                st.metrics.media_frames_rejected_total.labels("malformed").inc()
                log.warning("media frame skipped: %s", exc)
                continue
            if isinstance(frame, AudioData):
                if not started:  # metadata lost or never sent: start with the defaults
                    started = True
                    await handler.start(AudioMetadata(None, "PCM", SAMPLE_RATE, 1, 640))
                handler.on_audio(frame)
            elif isinstance(frame, AudioMetadata):
                if frame.sample_rate != SAMPLE_RATE:
                    log.warning("media at %d Hz; this server negotiates %d Hz", frame.sample_rate, SAMPLE_RATE)
                if not started:
                    started = True
                    await handler.start(frame)
            elif isinstance(frame, DtmfData):
                await handler.on_dtmf(frame.tone)
    except WebSocketDisconnect:
        pass
    except Exception:
        log.exception("media loop failed")
    finally:
        st.metrics.media_connections_active.dec()
        record.media_connected = False
        try:
            await handler.stop()
        except Exception:
            log.exception("media handler failed to stop")
        if record.media_handler is handler:
            record.media_handler = None
        await transport.close()
        log.info("media stream closed")
