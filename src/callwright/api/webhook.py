"""``/api/v1/call-events``: the one webhook for Event Grid and ACS callbacks.

Thin by design: authenticate (headers and query only), read a bounded body, parse, hand the good events
to the processor, answer at once.

Status codes follow Event Grid's retry semantics (Event Grid retries 5xx, 408 and timeouts; it does not
retry 400, 401, 403 or 413, which dead-letter the delivery):

- **200** when the well-formed events were taken. Per-event rejections (a bad event beside good ones)
  are listed in the body under ``rejected``; retrying would not make them valid, and a retry of the whole
  batch must not be provoked by one bad event, so the good ones are never held hostage.
- **400** only when nothing in the body is usable: not JSON, nested deeper than the limit, not an object
  or array, empty, or every event in it rejected.
- **401** before the body is read, when neither a valid ACS JWT nor the Event Grid secret is presented.
- **413** for a body over ``WEBHOOK_MAX_BODY_BYTES`` (refused from Content-Length without reading it, or
  as soon as the streamed body passes the cap) or more than ``WEBHOOK_MAX_EVENTS`` events.
- **503** when the processor's queues are full: the events not taken were not marked as seen, so Event
  Grid's retry delivers them and the ones already taken are dropped as duplicates.

Between parsing and the processor sits the cross-replica routing (``scale/routing.py``): with Redis, a
delivery another replica already had is a duplicate, and an event whose call's media socket another live
replica holds runs there (counted under ``accepted`` and ``forwarded``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Literal

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from callwright.acs.auth import AuthError, secret_matches
from callwright.acs.events import (
    ACSEventTypes,
    CallEvent,
    DeliveryTooLarge,
    EventParseError,
    parse_delivery,
)
from callwright.api.bodies import BodyTooLarge, read_body_capped

log = logging.getLogger("callwright.events")
router = APIRouter()

SECRET_PARAMS = ("secret", "code")
DEFAULT_MAX_BODY_BYTES = 1_048_576
DEFAULT_MAX_EVENTS = 5_000
# Bodies above this are parsed on a worker thread, so a 1 MB JSON parse never holds the loop in one piece.
PARSE_INLINE_BYTES = 65_536
# An authenticated sender's oversized body is read and dropped up to this much (and this long) before the
# 413, so the sender reads the 413 rather than a connection reset (a client still writing when the server
# closes gets RST, and Event Grid would retry a delivery it should dead-letter). Past it: close at once.
DISCARD_MAX_BYTES = 16 * 1_048_576
DISCARD_SECONDS = 5.0
LOGGED_REJECTIONS = 10


async def authenticate_delivery(request: Request) -> Literal["jwt", "secret", "off"]:
    """ACS callbacks carry an RS256 JWT; Event Grid deliveries carry the secret query parameter. Returns
    which one authenticated the request (``off`` with ACS_AUTH_ENABLED=false).

    Uses headers and the query string only, so an unauthenticated sender never gets its body read.
    """
    st = request.app.state
    settings = st.settings
    if not settings.acs_auth_enabled:
        return "off"
    authorization = request.headers.get("authorization")
    if authorization:
        if st.token_verifier is None:
            raise AuthError("bearer token presented but ACS_JWT_AUDIENCE is not configured")
        await st.token_verifier.verify_header(authorization)
        return "jwt"
    expected = settings.eventgrid_secret.get_secret_value() if settings.eventgrid_secret else None
    presented = next((request.query_params[p] for p in SECRET_PARAMS if p in request.query_params), None)
    if presented is None:
        raise AuthError("no bearer token and no Event Grid secret parameter")
    if not secret_matches(expected, presented):
        raise AuthError("Event Grid secret does not match EVENTGRID_SECRET")
    return "secret"


async def discard_rest(request: Request, max_bytes: int = DISCARD_MAX_BYTES, seconds: float = DISCARD_SECONDS) -> bool:
    """Read and drop what is left of a refused body, within bounds; True when all of it was read."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        return False
    seen = 0
    try:
        async with asyncio.timeout(seconds):
            while True:  # the raw ASGI receive: the body stream was partly consumed already
                message = await request.receive()
                if message["type"] != "http.request":
                    return False
                seen += len(message.get("body", b""))
                if seen > max_bytes:
                    return False
                if not message.get("more_body", False):
                    return True
    except TimeoutError:
        return False


@router.options("/api/v1/call-events")
async def abuse_protection_handshake(request: Request) -> Response:
    """CloudEvents webhook validation (Event Grid with the CloudEvents schema)."""
    origin = request.headers.get("webhook-request-origin", "*")
    headers = {"WebHook-Allowed-Origin": origin, "Allow": "POST, OPTIONS"}
    if "webhook-request-rate" in request.headers:
        headers["WebHook-Allowed-Rate"] = "*"
    return Response(status_code=200, headers=headers)


def _validation_event(events: list[CallEvent]) -> CallEvent | None:
    return next((e for e in events if e.type == ACSEventTypes.SUBSCRIPTION_VALIDATION), None)


def _refuse(
    st: object, status: int, reason: str, error: str, detail: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    st.metrics.webhook_rejected_total.labels(reason).inc()  # type: ignore[attr-defined]
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


@router.post("/api/v1/call-events")
async def call_events(request: Request) -> Response:
    st = request.app.state
    settings = st.settings
    try:
        authenticated_by = await authenticate_delivery(request)
    except AuthError as exc:
        log.warning("webhook delivery refused: %s", exc)
        return _refuse(st, 401, "auth", "unauthorized", str(exc))
    max_bytes = getattr(settings, "webhook_max_body_bytes", DEFAULT_MAX_BODY_BYTES)
    max_events = getattr(settings, "webhook_max_events", DEFAULT_MAX_EVENTS)
    # The Event Grid secret travels in a URL (proxy and Event Grid logs); it admits Event Grid's own
    # notifications, never what only ACS may say about a call in progress.
    callbacks_allowed = authenticated_by != "secret"
    try:
        body = await read_body_capped(request, max_bytes)
    except BodyTooLarge as exc:
        log.warning("webhook delivery refused: %s (WEBHOOK_MAX_BODY_BYTES)", exc)
        await discard_rest(request)
        # Close the connection either way: an unread rest must never be parsed as a next request.
        return _refuse(st, 413, "too_large", "payload_too_large", str(exc), {"Connection": "close"})
    try:
        if len(body) > PARSE_INLINE_BYTES:
            delivery = await asyncio.to_thread(
                parse_delivery, body, max_events=max_events, callbacks_allowed=callbacks_allowed
            )
        else:
            delivery = parse_delivery(body, max_events=max_events, callbacks_allowed=callbacks_allowed)
    except DeliveryTooLarge as exc:
        log.warning("webhook delivery refused: %s (WEBHOOK_MAX_EVENTS)", exc)
        return _refuse(st, 413, "too_many_events", "payload_too_large", str(exc))
    except EventParseError as exc:
        log.warning("webhook delivery rejected: %s", exc)
        return _refuse(st, 400, "malformed", "bad_request", str(exc))
    except (RecursionError, MemoryError, ValueError, TypeError):  # a parser bug must still not be a 500
        log.exception("webhook delivery could not be parsed")
        return _refuse(st, 400, "malformed", "bad_request", "the body could not be parsed")

    for n, rejection in enumerate(delivery.rejections):
        if n < LOGGED_REJECTIONS:  # a body of 5,000 bad events logs a handful of lines, not 5,000
            log.warning("webhook event rejected: %s", rejection.reason)
        st.processor.count_rejected(rejection.type)
    if len(delivery.rejections) > LOGGED_REJECTIONS:
        log.warning("webhook: %d more events of this delivery rejected", len(delivery.rejections) - LOGGED_REJECTIONS)
    rejected = [r.to_dict() for r in delivery.rejections]
    if not delivery.events:
        detail = "; ".join(r.reason for r in delivery.rejections[:5])
        st.metrics.webhook_rejected_total.labels("malformed").inc()
        return JSONResponse({"error": "bad_request", "detail": detail, "rejected": rejected[:100]}, status_code=400)

    validation = _validation_event(delivery.events)
    if validation is not None:
        log.info("Event Grid subscription validation answered")
        return JSONResponse({"validationResponse": validation.data["validationCode"]})

    # With several replicas (Redis), routing dedups across them and sends each event to the replica holding
    # its call's media (scale/routing.py); alone, it is the processor's process_events.
    routing = getattr(st, "routing", None)
    if routing is not None:
        routed = await routing.route(delivery.events)
        result, forwarded = routed.result, routed.forwarded
    else:
        result, forwarded = await st.processor.process_events(delivery.events, st), 0
    out = result.to_dict()
    if forwarded:
        out["forwarded"] = forwarded
    if rejected:
        out["rejected"] = rejected[:100]
    if result.deferred:
        log.warning(
            "webhook delivery partly deferred: %d events not taken (queues full); asking for a retry", result.deferred
        )
        st.metrics.webhook_rejected_total.labels("busy").inc()
        return JSONResponse(out, status_code=503, headers={"Retry-After": "10"})
    return JSONResponse(out)
