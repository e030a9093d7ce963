"""``/api/v1/call-events``: the one webhook for Event Grid and ACS callbacks.

Thin by design: authenticate, parse, hand the events to the processor, answer at once.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from callwright.acs.auth import AuthError, secret_matches
from callwright.acs.events import ACSEventTypes, CallEvent, EventParseError, parse_delivery

log = logging.getLogger("callwright.events")
router = APIRouter()

SECRET_PARAMS = ("secret", "code")


async def authenticate_delivery(request: Request) -> None:
    """ACS callbacks carry an RS256 JWT; Event Grid deliveries carry the secret query parameter."""
    st = request.app.state
    settings = st.settings
    if not settings.acs_auth_enabled:
        return
    authorization = request.headers.get("authorization")
    if authorization:
        if st.token_verifier is None:
            raise AuthError("bearer token presented but ACS_JWT_AUDIENCE is not configured")
        await st.token_verifier.verify_header(authorization)
        return
    expected = settings.eventgrid_secret.get_secret_value() if settings.eventgrid_secret else None
    presented = next((request.query_params[p] for p in SECRET_PARAMS if p in request.query_params), None)
    if presented is None:
        raise AuthError("no bearer token and no Event Grid secret parameter")
    if not secret_matches(expected, presented):
        raise AuthError("Event Grid secret does not match EVENTGRID_SECRET")


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


@router.post("/api/v1/call-events")
async def call_events(request: Request) -> Response:
    st = request.app.state
    body = await request.body()
    try:
        await authenticate_delivery(request)
    except AuthError as exc:
        log.warning("webhook delivery refused: %s", exc)
        st.metrics.webhook_rejected_total.labels("auth").inc()
        return JSONResponse({"error": "unauthorized", "detail": str(exc)}, status_code=401)
    try:
        events = parse_delivery(body)
    except EventParseError as exc:
        log.warning("webhook delivery rejected: %s", exc)
        st.metrics.webhook_rejected_total.labels("malformed").inc()
        return JSONResponse({"error": "bad_request", "detail": str(exc)}, status_code=400)

    validation = _validation_event(events)
    if validation is not None:
        log.info("Event Grid subscription validation answered")
        return JSONResponse({"validationResponse": validation.data["validationCode"]})

    result = await st.processor.process_events(events, st)
    return JSONResponse(result.to_dict())
