"""``/api/v1/calls``: place outbound calls (mode chosen per call), list, inspect and hang up calls."""

from __future__ import annotations

import logging
import uuid
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, field_validator

from callwright.acs.call_control import CallControlError
from callwright.acs.identifiers import IdentifierError, raw_id_for
from callwright.events.handlers import ensure_call

log = logging.getLogger("callwright.calls")
router = APIRouter(prefix="/api/v1/calls")


class PlaceCall(BaseModel):
    target: str = Field(description="E.164 phone number (+15551230001) or ACS user id (8:acs:…)")
    mode: Literal["media", "voice_live"] | None = None
    context: dict[str, Any] = Field(default_factory=dict)

    @field_validator("target")
    @classmethod
    def _target(cls, v: str) -> str:
        try:
            return raw_id_for(v)
        except IdentifierError as exc:
            raise ValueError(str(exc)) from None


def _error(status: int, error: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status)


@router.post("", status_code=201)
async def place_call(body: PlaceCall, request: Request) -> JSONResponse:
    st = request.app.state
    if st.automation is None:
        return _error(503, "not_configured", "ACS_CONNECTION_STRING is not set; outbound calls are unavailable")
    mode = body.mode or st.settings.acs_streaming_mode
    op_ctx = f"callwright-outbound-{uuid.uuid4()}"
    # CallConnected can arrive before create_call returns; it finds the call's mode through this.
    st.pending_outbound[op_ctx] = {"mode": mode, "target": body.target, "context": body.context}
    try:
        created = await st.automation.create(body.target, operation_context=op_ctx)
    except CallControlError as exc:
        st.pending_outbound.pop(op_ctx, None)
        log.error("outbound call to %s failed: %s", body.target, exc)
        return _error(502, "create_call_failed", str(exc))
    record = await ensure_call(
        st,
        created.call_connection_id,
        direction="outbound",
        mode=mode,
        target=body.target,
        server_call_id=created.server_call_id,
        correlation_id=created.correlation_id,
    )
    st.pending_outbound.pop(op_ctx, None)
    record.direction = "outbound"
    record.mode = mode
    record.context.update(body.context)
    if record.memo is not None:
        record.memo.update_context({"direction": "outbound", "callee": body.target, **body.context})
        record.memo.persist_background()
    log.info(
        "outbound call placed to %s (mode=%s)",
        body.target,
        mode,
        extra={"call_id": record.call_connection_id},
    )
    return JSONResponse(record.to_api(detail=True), status_code=201)


@router.get("")
async def list_calls(request: Request) -> dict[str, Any]:
    calls = request.app.state.calls
    return {
        "active": [c.to_api() for c in calls.active()],
        "recent": [c.to_api() for c in calls.recent()],
    }


@router.get("/{call_id}")
async def get_call(call_id: str, request: Request) -> JSONResponse:
    record = request.app.state.calls.get(call_id)
    if record is None:
        return _error(404, "not_found", f"no call {call_id}")
    return JSONResponse(record.to_api(detail=True))


@router.delete("/{call_id}")
async def hang_up(call_id: str, request: Request) -> JSONResponse:
    st = request.app.state
    record = st.calls.get(call_id)
    if record is None:
        return _error(404, "not_found", f"no call {call_id}")
    if record.state in ("disconnected", "failed"):
        return JSONResponse({"call_connection_id": call_id, "status": record.state})
    if st.automation is None:
        return _error(503, "not_configured", "ACS_CONNECTION_STRING is not set")
    try:
        await st.automation.actions(call_id).hang_up()
    except CallControlError as exc:
        return _error(502, "hang_up_failed", str(exc))
    return JSONResponse({"call_connection_id": call_id, "status": "hanging_up"}, status_code=202)
