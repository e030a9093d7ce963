"""The Call Automation REST API as the official SDK calls it (acs-protocol.md §2.4–2.7, Appendix A).

Paths carry ACS's ``:action`` suffixes, every request is HMAC-verified, success codes are exactly the
ones the SDK accepts (a different 2xx is an error to it), and every failure is an ACS error body —
malformed input gets 400, unknown calls 404, never a 500 or a crash.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from callwright.acs.identifiers import model_from_raw_id, raw_id_from_model
from callwright.emulator.calls import EmulatedCall, MediaOptions
from callwright.emulator.errors import AcsHttpError, bad_request, call_not_found, not_supported
from callwright.emulator.hmac_auth import HmacError, verify_request

if TYPE_CHECKING:
    from callwright.emulator.service import Emulator

log = logging.getLogger("callwright.emulator.rest")


def emulator_of(request: Request) -> Emulator:
    return request.app.state.emulator  # type: ignore[no-any-return]


async def verify_signature(request: Request) -> None:
    emu = emulator_of(request)
    raw_path = request.scope.get("raw_path") or request.url.path.encode()
    query = request.scope.get("query_string", b"")
    path_and_query = raw_path.decode("latin-1") + (("?" + query.decode("latin-1")) if query else "")
    body = await request.body()
    try:
        verify_request(
            key=emu.access_key_bytes,
            method=request.method,
            path_and_query=path_and_query,
            headers=request.headers,
            body=body,
        )
    except HmacError as exc:
        log.warning("refused %s %s: %s", request.method, request.url.path, exc)
        raise AcsHttpError(401, "Unauthorized", f"Denied because the request is not properly signed: {exc}") from None
    if "api-version" not in request.query_params:
        raise AcsHttpError(400, "MissingApiVersionParameter", "The api-version query parameter is required.")


async def json_body(request: Request, *, required: bool = True) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        if required:
            raise bad_request("a JSON request body is required")
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_request(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object")
    return body


def _str(body: dict[str, Any], key: str, *, required: bool = False) -> str | None:
    value = body.get(key)
    if value is None:
        if required:
            raise bad_request(f"{key} is required")
        return None
    if not isinstance(value, str) or (required and not value):
        raise bad_request(f"{key} must be a string")
    return value


def _identifier(body: dict[str, Any], key: str) -> str:
    raw = raw_id_from_model(body.get(key))
    if raw is None:
        raise bad_request(f"{key} must be a CommunicationIdentifierModel with rawId or a typed sub-object")
    return raw


def _callback_uri(body: dict[str, Any], key: str = "callbackUri") -> str:
    uri = _str(body, key, required=True)
    assert uri is not None
    if not uri.startswith(("http://", "https://")):
        raise bad_request(f"{key} must be an http(s) URL")
    return uri


def _api_version(request: Request) -> str:
    return request.query_params.get("api-version", "2026-03-12")


def _op_url(body: dict[str, Any]) -> str | None:
    url = body.get("operationCallbackUri")
    if url is None:
        return None
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise bad_request("operationCallbackUri must be an http(s) URL")
    return url


def _call(request: Request, call_connection_id: str) -> EmulatedCall:
    call = emulator_of(request).get_call(call_connection_id)
    if call is None:
        raise call_not_found(call_connection_id)
    return call


def _json(status: int, body: Any) -> JSONResponse:
    return JSONResponse(body, status_code=status, media_type="application/json; charset=utf-8")


router = APIRouter(dependencies=[Depends(verify_signature)])


@router.post("/calling/callConnections")
async def create_call(request: Request) -> Response:
    body = await json_body(request)
    targets = body.get("targets")
    if not isinstance(targets, list) or not targets:
        raise bad_request("targets must be a non-empty array of identifiers")
    raw_targets = [raw_id_from_model(t) for t in targets]
    if any(t is None for t in raw_targets):
        raise bad_request("every target must be a CommunicationIdentifierModel with rawId or a typed sub-object")
    caller_id = body.get("sourceCallerIdNumber")
    source_number = caller_id.get("value") if isinstance(caller_id, dict) else None
    if caller_id is not None and not isinstance(source_number, str):
        raise bad_request("sourceCallerIdNumber must be {value: '+E164'}")
    call = await emulator_of(request).create_outbound_call(
        target_raw_id=str(raw_targets[0]),
        source_number=source_number,
        callback_uri=_callback_uri(body),
        api_version=_api_version(request),
        operation_context=_str(body, "operationContext"),
        media=MediaOptions.from_body(body.get("mediaStreamingOptions")),
    )
    return _json(201, call.properties())


@router.post("/calling/callConnections:{action}")
async def incoming_call_action(request: Request, action: str) -> Response:
    body = await json_body(request)
    emu = emulator_of(request)
    context = _str(body, "incomingCallContext", required=True)
    assert context is not None
    if action == "answer":
        call = emu.answer_incoming(
            context,
            callback_uri=_callback_uri(body),
            api_version=_api_version(request),
            operation_context=_str(body, "operationContext"),
            media=MediaOptions.from_body(body.get("mediaStreamingOptions")),
        )
        return _json(200, call.properties())
    if action == "reject":
        emu.reject_incoming(context, reason=_str(body, "callRejectReason") or "none")
        return Response(status_code=204)
    if action == "redirect":
        emu.redirect_incoming(context, target_raw_id=_identifier(body, "target"))
        return Response(status_code=204)
    raise not_supported(f"callConnections:{action}")


@router.get("/calling/callConnections/{call_connection_id}")
async def get_call(request: Request, call_connection_id: str) -> Response:
    return _json(200, _call(request, call_connection_id).properties())


@router.delete("/calling/callConnections/{call_connection_id}")
async def hang_up(request: Request, call_connection_id: str) -> Response:
    call = _call(request, call_connection_id)
    call.require_active()
    call.hang_up()
    return Response(status_code=204)


@router.post("/calling/callConnections/{ref}")
async def call_action(request: Request, ref: str) -> Response:
    call_connection_id, sep, action = ref.rpartition(":")
    if not sep:
        raise AcsHttpError(405, "MethodNotAllowed", "POST needs an action, e.g. /calling/callConnections/{id}:play")
    call = _call(request, call_connection_id)
    body = await json_body(request, required=False)
    call.require_active()
    ctx = _str(body, "operationContext")
    if action == "terminate":
        call.hang_up()
        return Response(status_code=204)
    if action == "play":
        call.media_ops.play(body)
        return Response(status_code=202)
    if action == "cancelAllMediaOperations":
        call.media_ops.cancel_all()
        return Response(status_code=202)
    if action == "recognize":
        call.media_ops.recognize(body)
        return Response(status_code=202)
    if action == "startContinuousDtmfRecognition":
        _identifier(body, "targetParticipant")
        call.start_continuous_dtmf(ctx, _op_url(body))
        return Response(status_code=200)
    if action == "stopContinuousDtmfRecognition":
        call.stop_continuous_dtmf(ctx, _op_url(body))
        return Response(status_code=200)
    if action == "startMediaStreaming":
        if call.media is None:
            raise bad_request("the call has no mediaStreamingOptions (set them when answering or creating it)")
        url = _op_url(body)
        call.spawn(call.start_streaming(operation_context=ctx, url=url), "start-streaming")
        return Response(status_code=202)
    if action == "stopMediaStreaming":
        url = _op_url(body)
        call.spawn(call.stop_streaming(operation_context=ctx, url=url), "stop-streaming")
        return Response(status_code=202)
    if action == "transferToParticipant":
        target = _identifier(body, "targetParticipant")
        call.transfer(target, ctx, body)
        return _json(202, {"operationContext": ctx} if ctx is not None else {})
    if action == "sendDtmfTones":
        tones = body.get("tones")
        if not isinstance(tones, list) or not tones:
            raise bad_request("tones must be a non-empty array")
        call.emit("SendDtmfTonesCompleted", operation_context=ctx, url=_op_url(body))
        return _json(202, {"operationContext": ctx} if ctx is not None else {})
    if action in ("hold", "unhold"):
        _identifier(body, "targetParticipant")
        return Response(status_code=200)
    raise not_supported(f"callConnections/{{id}}:{action}")


@router.get("/calling/callConnections/{call_connection_id}/participants")
async def list_participants(request: Request, call_connection_id: str) -> Response:
    call = _call(request, call_connection_id)
    return _json(200, {"value": [call.participant_model(p) for p in call.participants]})


@router.get("/calling/callConnections/{call_connection_id}/participants/{participant_raw_id}")
async def get_participant(request: Request, call_connection_id: str, participant_raw_id: str) -> Response:
    call = _call(request, call_connection_id)
    raw = unquote(participant_raw_id)
    if raw not in call.participants:
        raise AcsHttpError(404, "8522", f"Participant {raw} is not in call {call_connection_id}.")
    return _json(200, call.participant_model(raw))


@router.post("/calling/callConnections/{call_connection_id}/participants:{action}")
async def participant_action(request: Request, call_connection_id: str, action: str) -> Response:
    call = _call(request, call_connection_id)
    body = await json_body(request)
    call.require_active()
    ctx = _str(body, "operationContext")
    if action == "add":
        raw = _identifier(body, "participantToAdd")
        call.add_participant(raw, ctx, _op_url(body))
        reply: dict[str, Any] = {"participant": call.participant_model(raw), "invitationId": call.new_invitation_id()}
        if ctx is not None:
            reply["operationContext"] = ctx
        return _json(202, reply)
    if action == "remove":
        raw = _identifier(body, "participantToRemove")
        if raw not in call.participants:
            raise AcsHttpError(404, "8522", f"Participant {raw} is not in call {call_connection_id}.")
        if raw == call.caller_raw_id:
            call.hang_up()
        else:
            call.participants.remove(raw)
            call.emit(
                "RemoveParticipantSucceeded",
                {"participant": model_from_raw_id(raw)},
                operation_context=ctx,
                url=_op_url(body),
            )
        return _json(202, {"operationContext": ctx} if ctx is not None else {})
    raise not_supported(f"participants:{action}")


# --- Call Recording (emulator/recording.py) ---
@router.post("/calling/recordings")
async def start_recording(request: Request) -> Response:
    from callwright.emulator.recording import recordings_of

    emu = emulator_of(request)
    rec = recordings_of(emu).start(await json_body(request), emu.get_call, lambda: list(emu.calls.values()))
    return _json(200, rec.properties())


@router.get("/calling/recordings/{recording_id}")
async def get_recording(request: Request, recording_id: str) -> Response:
    from callwright.emulator.recording import recordings_of

    return _json(200, recordings_of(emulator_of(request)).get(recording_id).properties())


@router.delete("/calling/recordings/{recording_id}")
async def stop_recording(request: Request, recording_id: str) -> Response:
    from callwright.emulator.recording import recordings_of

    recordings_of(emulator_of(request)).stop(recording_id)
    return Response(status_code=204)


@router.post("/calling/recordings/{ref}")
async def recording_action(request: Request, ref: str) -> Response:
    from callwright.emulator.recording import recordings_of

    recording_id, _, action = ref.rpartition(":")
    recs = recordings_of(emulator_of(request))
    if action == "pause":
        recs.pause(recording_id)
    elif action == "resume":
        recs.resume(recording_id)
    else:
        raise not_supported(f"recordings/{{id}}:{action[:40]}")
    return Response(status_code=202)


def wellknown_router() -> APIRouter:
    """The unauthenticated OpenID configuration and JWKS (what the app's JWT verifier fetches)."""
    r = APIRouter()

    @r.get("/calling/.well-known/acsopenidconfiguration")
    async def openid_config(request: Request) -> Response:
        emu = emulator_of(request)
        return _json(
            200,
            {
                "issuer": emu.issuer,
                "jwks_uri": emu.jwks_url,
                "id_token_signing_alg_values_supported": ["RS256"],
                "token_endpoint_auth_signing_alg_values_supported": ["RS256"],
            },
        )

    @r.get("/calling/keys")
    async def jwks(request: Request) -> Response:
        return _json(200, emulator_of(request).jwks())

    return r


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AcsHttpError)
    async def _acs_error(request: Request, exc: AcsHttpError) -> Response:
        if exc.status >= 500:
            log.error("%s %s -> %d %s", request.method, request.url.path, exc.status, exc.message)
        else:
            log.info("%s %s -> %d %s", request.method, request.url.path, exc.status, exc.message)
        return _json(exc.status, exc.body())

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        return _json(400, bad_request(f"invalid request: {exc.errors()}").body())

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "NotFound", 405: "MethodNotAllowed"}.get(exc.status_code, str(exc.status_code))
        return _json(exc.status_code, {"error": {"code": code, "message": f"{exc.detail}: {request.url.path}"}})

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("emulator bug handling %s %s", request.method, request.url.path)
        return _json(500, {"error": {"code": "InternalError", "message": f"emulator error: {exc}"}})
