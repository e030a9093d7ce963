"""``/api/v1/calls/{id}/record`` (the post-call record, JSON) and ``/api/v1/calls/{id}/recording`` (the
call's stereo WAV: caller left, agent as heard right; HTTP Range supported).

Both need operator credentials (:mod:`callwright.security.operator`, role ``viewer`` at least): a recording
is never served without them, and every recording served is written to the audit log. The router's
lifespan builds ``app.state.recordings`` (voice/recording.py: the writer threads and the retention sweep)
and, with ``ACS_RECORDING_ENABLED``, asks ACS to record each call once it connects (the official SDK's
``start_recording``); ACS's RecordingStateChanged lands in the session as context ``recording``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, JSONResponse, Response

from callwright.acs.call_control import CallControlError
from callwright.acs.events import ACSEventTypes
from callwright.acs.identifiers import is_call_connection_id
from callwright.events.context import CallEventContext
from callwright.security.operator import OperatorRoute, require_role, security_of
from callwright.security.principal import Principal
from callwright.sessions.postcall import probe_recording, store_record, stored_or_built
from callwright.voice.recording import RecordingService, recording_path, recording_service

log = logging.getLogger("callwright.recording")


def _not_found(detail: str) -> JSONResponse:
    return JSONResponse({"error": "not_found", "detail": detail}, status_code=404)


class AcsRecorder:
    """Starts ACS Call Recording for each connected call (a background task per call, so the call's
    other events are not held up by the request)."""

    def __init__(self, app_state: Any) -> None:
        self._st = app_state
        self._tasks: set[asyncio.Task[None]] = set()
        self.started: dict[str, str] = {}  # call id → recordingId

    async def on_call_connected(self, ctx: CallEventContext) -> None:
        cid = ctx.call_connection_id
        if cid is None or cid in self.started or getattr(self._st, "automation", None) is None:
            return
        self.started[cid] = ""
        task = asyncio.get_running_loop().create_task(self._start(cid), name=f"acs-recording:{cid[:8]}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _start(self, cid: str) -> None:
        record = self._st.calls.get(cid)
        memo = record.memo if record is not None else None
        try:
            recording_id, state = await self._st.automation.start_recording(cid)
        except CallControlError as exc:
            log.warning("ACS recording not started: %s", exc)
            if memo is not None:
                memo.record_metric("acs_recording", outcome="failed", detail=str(exc)[:200])
            return
        self.started[cid] = recording_id
        log.info("ACS recording %s started (%s)", recording_id[:16], state)
        if memo is not None:
            memo.record_metric("acs_recording", outcome="started", recording_id=recording_id, state=state)
            if memo.get_context("recording") is None:  # RecordingStateChanged may have landed first
                memo.set_context("recording", {"state": state, "recording_id": recording_id})
            memo.persist_background()
        if len(self.started) > 10_000:  # bounded: forget the oldest calls
            for key in list(self.started)[:5_000]:
                del self.started[key]

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


async def save_post_call_record(ctx: CallEventContext) -> None:
    """After the default CallDisconnected handler finished the call: its post-call record goes into the
    session (context ``post_call_record``) and is written at once."""
    record = ctx.call
    if record is None or record.memo is None or record.ended_at is None:
        return
    service = getattr(ctx.app_state, "recordings", None)
    on_disk = None
    if service is not None:
        loop = asyncio.get_running_loop()
        on_disk = await loop.run_in_executor(None, probe_recording, service.directory, record.call_connection_id)
    store_record(record, on_disk=on_disk)
    try:
        if not await record.memo.persist_to_redis_async():
            ctx.app_state.saver.adopt(record.memo)  # the store is down: landed later, like any final save
    except Exception:
        log.exception("the post-call record could not be saved")


def install(app_state: Any) -> RecordingService:
    """Build the recording service (and the ACS recording hook when ACS_RECORDING_ENABLED) on
    ``app_state``, and save each call's post-call record when it ends; what the router's lifespan does.
    Idempotent."""
    service = recording_service(app_state)
    settings = app_state.settings
    app_state.processor.register_handler(ACSEventTypes.CALL_DISCONNECTED, save_post_call_record)
    if getattr(settings, "acs_recording_enabled", False) and getattr(app_state, "acs_recorder", None) is None:
        app_state.acs_recorder = AcsRecorder(app_state)
        app_state.processor.register_handler(ACSEventTypes.CALL_CONNECTED, app_state.acs_recorder.on_call_connected)
    return service


async def uninstall(app_state: Any) -> None:
    app_state.processor.unregister_handler(ACSEventTypes.CALL_DISCONNECTED, save_post_call_record)
    acs = getattr(app_state, "acs_recorder", None)
    if acs is not None:
        app_state.processor.unregister_handler(ACSEventTypes.CALL_CONNECTED, acs.on_call_connected)
        await acs.close()
        app_state.acs_recorder = None
    service = getattr(app_state, "recordings", None)
    if service is not None:
        await service.close()
        app_state.recordings = None


@contextlib.asynccontextmanager
async def recordings_lifespan(app: Any) -> AsyncIterator[None]:
    service = install(app.state)
    log.info(
        "server-side recording %s (dir %s, retention %g days); ACS recording %s",
        "on" if service.enabled else "off",
        service.directory,
        service.retention_days,
        "on" if getattr(app.state.settings, "acs_recording_enabled", False) else "off",
    )
    try:
        yield
    finally:
        await uninstall(app.state)


router = APIRouter(prefix="/api/v1", route_class=OperatorRoute, lifespan=recordings_lifespan)


@router.get("/calls/{call_id}/record")
async def post_call_record(
    request: Request, call_id: str, who: Principal = Depends(require_role("viewer"))
) -> JSONResponse:
    if not is_call_connection_id(call_id):
        return _not_found("not a call connection id")
    record = await request.app.state.calls.lookup(call_id)
    if record is None:
        return _not_found(f"no call {call_id}")
    directory = recording_service(request.app.state).directory
    on_disk = await asyncio.get_running_loop().run_in_executor(None, probe_recording, directory, call_id)
    return JSONResponse(stored_or_built(record, on_disk=on_disk))


@router.get("/calls/{call_id}/recording", response_model=None)
async def call_recording(request: Request, call_id: str, who: Principal = Depends(require_role("viewer"))) -> Response:
    if not is_call_connection_id(call_id):
        return _not_found("not a call connection id")
    path = recording_path(recording_service(request.app.state).directory, call_id)
    exists = await asyncio.get_running_loop().run_in_executor(None, path.is_file)
    if not exists:
        return _not_found(f"no recording of call {call_id}")
    security_of(request).audit.record(
        actor=who.id,
        action="recording",
        outcome="served",
        call_id=call_id,
        detail=request.headers.get("range"),
        client=request.client.host if request.client else None,
    )
    # FileResponse reads in a worker thread and answers Range requests (206) itself.
    return FileResponse(path, media_type="audio/wav", filename=path.name, headers={"Cache-Control": "no-store"})
