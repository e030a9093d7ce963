"""``/api/v1/calls``: place outbound calls (mode chosen per call), list, inspect and hang up calls;
``/api/v1/audit``: who placed and hung up what.

Every route needs operator credentials (:mod:`callwright.security.operator`): ``viewer`` reads,
``operator`` places and hangs up. Placing a call also passes the toll-fraud guard
(:mod:`callwright.security.tollfraud`): destination prefixes, per-credential and global rate limits, a
cap on outbound calls in progress, a bounded ``context``, and no new calls while the server drains.
"""

from __future__ import annotations

import contextlib
import json
import logging
import uuid
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError, field_validator

from callwright.acs.call_control import CallControlError
from callwright.acs.identifiers import IdentifierError, is_call_connection_id, raw_id_for
from callwright.api.bodies import BodyTooLarge, read_body_capped
from callwright.events.handlers import ensure_call
from callwright.security.operator import OperatorRoute, operator_lifespan, require_role, security_of
from callwright.security.principal import Principal
from callwright.sessions.store import StoreUnavailable

log = logging.getLogger("callwright.calls")
# The lifespan builds app.state.operator_security inside the app's own lifespan (after the settings).
router = APIRouter(prefix="/api/v1", route_class=OperatorRoute, lifespan=operator_lifespan)

# Room for target and mode on top of the context's own cap.
_BODY_OVERHEAD = 4096


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


def _shown(target: str | None) -> str | None:
    """A raw id as people write it: ``4:+1555…`` → ``+1555…`` (ACS user ids stay as they are)."""
    return target[2:] if target is not None and target.startswith("4:") else target


def _error(status: int, error: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The body, or None once it is longer than ``limit`` (read after authentication, never unbounded)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def _outbound_in_progress(st: Any) -> int:
    """Outbound calls up or being placed, on every replica (the cap is the deployment's)."""
    calls = await st.calls.everywhere()
    active = sum(1 for c in calls if c.direction == "outbound" and c.state not in ("disconnected", "failed"))
    try:
        pending = await st.directory.pending_count()
    except StoreUnavailable:
        pending = 0
    return active + pending


@router.post(
    "/calls",
    status_code=201,
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": PlaceCall.model_json_schema()}}}
    },
)
async def place_call(request: Request, who: Principal = Depends(require_role("operator"))) -> JSONResponse:
    st = request.app.state
    sec = security_of(request)
    client = request.client.host if request.client else None

    def refuse(status: int, error: str, detail: str, target: str | None = None, **headers: str) -> JSONResponse:
        sec.audit.record(
            actor=who.id,
            action="place",
            target=_shown(target),
            outcome=f"refused:{error}",
            detail=detail,
            client=client,
        )
        return _error(status, error, detail, headers or None)

    try:
        raw = await read_body_capped(request, sec.context_max_bytes + _BODY_OVERHEAD)
    except BodyTooLarge:
        return refuse(413, "body_too_large", f"the request body is over {sec.context_max_bytes + _BODY_OVERHEAD} bytes")
    try:
        body = PlaceCall.model_validate_json(raw or b"null")
    except ValidationError as exc:
        # The same shape FastAPI gives its own 422s, so clients (and the page) read one format.
        errors = [
            {**e, "loc": ["body", *e.get("loc", ())]} for e in exc.errors(include_url=False, include_context=False)
        ]
        sec.audit.record(actor=who.id, action="place", outcome="refused:invalid_request", client=client)
        return JSONResponse({"detail": jsonable_encoder(errors)}, status_code=422)
    context_size = len(json.dumps(body.context, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "replace"))
    if context_size > sec.context_max_bytes:
        return refuse(
            422,
            "context_too_large",
            f"context is {context_size} bytes of JSON; the limit is {sec.context_max_bytes} "
            "(OUTBOUND_CONTEXT_MAX_BYTES)",
            body.target,
        )
    if getattr(st, "draining", False):
        return refuse(503, "draining", "the server is shutting down and places no new calls", body.target)
    if st.automation is None:
        return refuse(
            503, "not_configured", "ACS_CONNECTION_STRING is not set; outbound calls are unavailable", body.target
        )
    why = sec.policy.refusal(body.target)
    if why is not None:
        return refuse(403, "destination_not_allowed", why, body.target)
    in_progress = await _outbound_in_progress(st)
    if in_progress >= sec.max_concurrent:
        return refuse(
            429,
            "too_many_calls",
            f"{in_progress} outbound calls are in progress; the cap is {sec.max_concurrent} (OUTBOUND_MAX_CONCURRENT)",
            body.target,
            **{"Retry-After": "5"},
        )
    limited = sec.rates.acquire(who.id)
    if limited is not None:
        setting, retry_after = limited
        return refuse(
            429,
            "rate_limited",
            f"outbound call rate exceeded ({setting}); retry in {retry_after} s",
            body.target,
            **{"Retry-After": str(retry_after)},
        )

    mode = body.mode or st.settings.acs_streaming_mode
    op_ctx = f"callwright-outbound-{uuid.uuid4()}"
    # CallConnected can arrive before create_call returns — at any replica; it finds the call's mode here.
    try:
        await st.directory.put_pending(op_ctx, {"mode": mode, "target": body.target, "context": body.context})
    except StoreUnavailable as exc:
        return refuse(503, "store_unavailable", f"the call directory is unreachable: {exc}", body.target)
    try:
        try:
            # Bounded by ACS_REQUEST_TIMEOUT_SECONDS inside CallAutomation; refused or hung ACS arrives
            # here as a CallControlError naming the cause.
            created = await st.automation.create(body.target, operation_context=op_ctx)
        except Exception as exc:  # CallControlError, or anything unforeseen: never a 500 with a pending entry
            if isinstance(exc, CallControlError):
                detail = str(exc)
            else:
                detail = f"create_call failed: {type(exc).__name__}: {str(exc)[:300]}"
            log.error("outbound call failed: %s", detail)
            sec.audit.record(actor=who.id, action="place", target=_shown(body.target), outcome="failed", detail=detail)
            return _error(502, "create_call_failed", detail)
        record = await ensure_call(
            st,
            created.call_connection_id,
            publish=True,
            direction="outbound",
            mode=mode,
            target=body.target,
            server_call_id=created.server_call_id,
            correlation_id=created.correlation_id,
        )
    finally:
        # Whatever happened (including cancellation when the client went away), the entry goes.
        with contextlib.suppress(StoreUnavailable):
            await st.directory.drop_pending(op_ctx)
    record.direction = "outbound"
    record.mode = mode
    record.context.update(body.context)
    await st.calls.publish(record)
    if record.memo is not None:
        record.memo.update_context({"direction": "outbound", "callee": body.target, **body.context})
        record.memo.persist_background()
    sec.audit.record(
        actor=who.id,
        action="place",
        target=_shown(body.target),
        call_id=record.call_connection_id,
        outcome="placed",
        client=client,
    )
    log.info("outbound call placed (mode=%s)", mode, extra={"call_id": record.call_connection_id})
    return JSONResponse(record.to_api(detail=True), status_code=201)


@router.get("/calls")
async def list_calls(request: Request, who: Principal = Depends(require_role("viewer"))) -> dict[str, Any]:
    calls = request.app.state.calls
    return {
        "active": [c.to_api() for c in await calls.everywhere()],  # every replica's, with a shared directory
        "recent": [c.to_api() for c in calls.recent()],
    }


def _no_call(call_id: str) -> JSONResponse:
    shown = call_id if call_id.isprintable() and len(call_id) <= 100 else "(unprintable id)"
    return _error(404, "not_found", f"no call {shown}")


@router.get("/calls/{call_id}")
async def get_call(call_id: str, request: Request, who: Principal = Depends(require_role("viewer"))) -> JSONResponse:
    # lookup also finds calls held only in the store: ended before a restart, or on another replica.
    record = await request.app.state.calls.lookup(call_id) if is_call_connection_id(call_id) else None
    if record is None:
        return _no_call(call_id)
    return JSONResponse(record.to_api(detail=True))


@router.delete("/calls/{call_id}")
async def hang_up(call_id: str, request: Request, who: Principal = Depends(require_role("operator"))) -> JSONResponse:
    st = request.app.state
    sec = security_of(request)
    client = request.client.host if request.client else None
    # lookup: a call held by another replica is hung up from here too (ACS tells its owner).
    record = await st.calls.lookup(call_id) if is_call_connection_id(call_id) else None
    if record is None:
        sec.audit.record(actor=who.id, action="hang_up", call_id=call_id, outcome="refused:not_found", client=client)
        return _no_call(call_id)
    target = _shown(record.target if record.direction == "outbound" else record.caller)
    if record.state in ("disconnected", "failed"):
        return JSONResponse({"call_connection_id": call_id, "status": record.state})
    if st.automation is None:
        return _error(503, "not_configured", "ACS_CONNECTION_STRING is not set")
    try:
        await st.automation.actions(call_id).hang_up()  # bounded by ACS_REQUEST_TIMEOUT_SECONDS
    except Exception as exc:  # CallControlError (ACS refused, unreachable or too slow) or anything unforeseen
        detail = str(exc)[:300] if isinstance(exc, CallControlError) else f"hang_up failed: {type(exc).__name__}"
        sec.audit.record(
            actor=who.id, action="hang_up", target=target, call_id=call_id, outcome="failed", detail=detail
        )
        return _error(502, "hang_up_failed", detail)
    sec.audit.record(
        actor=who.id, action="hang_up", target=target, call_id=call_id, outcome="hanging_up", client=client
    )
    return JSONResponse({"call_connection_id": call_id, "status": "hanging_up"}, status_code=202)


@router.get("/audit")
async def audit_log(
    request: Request, limit: int = 200, who: Principal = Depends(require_role("operator"))
) -> dict[str, Any]:
    """The newest audit entries first (the in-memory tail; the full record is the callwright.audit log)."""
    return {"entries": security_of(request).audit.entries(max(1, min(limit, 10_000)))}
