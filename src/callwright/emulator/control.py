"""The emulator's own control API (not part of ACS): run scripted calls from outside, inspect state.

``callwright call`` uses it: ``POST /emulator/calls`` with a phone script starts a call (inbound: the phone
dials the app; outbound: the phone waits to be dialled), ``GET /emulator/calls/{id}?wait=S`` returns its
status and, when finished, the phone's report. ``GET /emulator/info`` tells a client how to reach the
emulator. Unauthenticated on purpose: the emulator is a local development tool bound to loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from callwright.emulator.contracts import OutboundBehaviour
from callwright.emulator.errors import AcsHttpError, bad_request

if TYPE_CHECKING:
    from callwright.emulator.service import Emulator

log = logging.getLogger("callwright.emulator.control")

router = APIRouter(prefix="/emulator")


@dataclass(slots=True)
class ScriptedCall:
    id: str
    direction: str
    number: str
    status: str = "starting"  # starting | waiting | ringing | running | finished | failed
    call_connection_id: str | None = None
    error: str | None = None
    report: dict[str, Any] | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "direction": self.direction,
            "number": self.number,
            "status": self.status,
            "call_connection_id": self.call_connection_id,
            "error": self.error,
            "report": self.report,
        }


def _emu(request: Request) -> Emulator:
    return request.app.state.emulator  # type: ignore[no-any-return]


def _scripted(emu: Emulator) -> dict[str, ScriptedCall]:
    if emu.control_state is None:
        emu.control_state = {}
    return emu.control_state  # type: ignore[no-any-return]


def _transcriber(emu: Emulator) -> Any:
    """One end-of-call transcriber per emulator: its decoder costs ~0.3 s and ~90 MB to build."""
    from callwright.emulator.phone.transcribe import AgentTranscriber

    existing = getattr(emu, "_agent_transcriber", None)
    if existing is None:
        existing = AgentTranscriber()
        emu._agent_transcriber = existing  # type: ignore[attr-defined]
    return existing


async def _body(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError as exc:
        raise bad_request(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object")
    return body


@router.get("/info")
async def info(request: Request) -> JSONResponse:
    return JSONResponse(_emu(request).info())


@router.post("/webhook")
async def set_webhook(request: Request) -> JSONResponse:
    body = await _body(request)
    url = body.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise bad_request("url must be an http(s) URL")
    emu = _emu(request)
    emu.webhook_url = url
    return JSONResponse({"url": url, "validated": await emu.validate_webhook()})


@router.get("/eventgrid/validate")
async def eventgrid_validate(request: Request, id: str = "") -> Response:
    """The ``validationUrl`` of the asynchronous Event Grid handshake."""
    if _emu(request).confirm_webhook_validation(id):
        return JSONResponse({"validated": True})
    raise AcsHttpError(404, "NotFound", "unknown or expired validation code")


@router.get("/transfers")
async def transfers(request: Request) -> JSONResponse:
    return JSONResponse(_emu(request).transfers)


@router.post("/calls")
async def start_call(request: Request) -> JSONResponse:
    body = await _body(request)
    emu = _emu(request)
    script = body.get("script")
    if not isinstance(script, str) or not script.strip():
        raise bad_request("script (the phone script's YAML text) is required")
    record_dir = body.get("record_dir")
    if record_dir is not None and not isinstance(record_dir, str):
        raise bad_request("record_dir must be a path string")
    from callwright.emulator.phone import ScriptError, build_phone_from_script

    try:
        phone = build_phone_from_script(
            script, record_dir=Path(record_dir) if record_dir else None, transcriber=_transcriber(emu)
        )
    except ScriptError as exc:
        raise bad_request(f"invalid phone script: {exc}") from None
    spec = getattr(phone, "script", None)
    direction = body.get("direction") or getattr(spec, "direction", "inbound")
    if direction not in ("inbound", "outbound"):
        raise bad_request("direction must be inbound or outbound")
    timeout_s = body.get("timeout_s", 120)
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float) or timeout_s <= 0:
        raise bad_request("timeout_s must be a positive number")
    sc = ScriptedCall(id=str(uuid.uuid4()), direction=direction, number=str(phone.number))
    _scripted(emu)[sc.id] = sc
    if direction == "inbound":
        from_number = body.get("from_number") or getattr(spec, "from_number", None) or phone.number
        to_number = body.get("to_number") or getattr(spec, "to_number", None)
        if not isinstance(to_number, str):
            raise bad_request("to_number (the app's number) is required for inbound calls")
        emu.spawn(_run_inbound(emu, sc, phone, str(from_number), to_number, float(timeout_s)), f"scripted-{sc.id}")
    else:
        emu.spawn(_run_outbound(emu, sc, phone, float(timeout_s)), f"scripted-{sc.id}")
    return JSONResponse(sc.view(), status_code=201)


@router.get("/calls")
async def list_calls(request: Request) -> JSONResponse:
    return JSONResponse([sc.view() for sc in _scripted(_emu(request)).values()])


@router.get("/calls/{scripted_id}")
async def get_call(request: Request, scripted_id: str, wait: float = 0.0) -> JSONResponse:
    sc = _scripted(_emu(request)).get(scripted_id)
    if sc is None:
        raise AcsHttpError(404, "NotFound", f"no scripted call {scripted_id}")
    if wait > 0:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(sc.done.wait(), min(wait, 600.0))
    return JSONResponse(sc.view())


def _finish(sc: ScriptedCall, report: dict[str, Any] | None, error: str | None = None) -> None:
    sc.report = report
    sc.error = error
    sc.status = "finished" if error is None and (report or {}).get("ok", True) else "failed"
    sc.done.set()


async def _run_inbound(
    emu: Emulator, sc: ScriptedCall, phone: Any, from_number: str, to_number: str, timeout_s: float
) -> None:
    try:
        sc.status = "ringing"
        call = await emu.place_inbound_call(phone, from_number=from_number, to_number=to_number)
        sc.call_connection_id = call.call_connection_id
        sc.status = "running"
        _finish(sc, await asyncio.wait_for(phone.run(call), timeout_s))
    except Exception as exc:
        log.warning("scripted inbound call %s failed: %s", sc.id, exc)
        _finish(sc, getattr(phone, "report", None), f"{type(exc).__name__}: {exc}")


async def _run_outbound(emu: Emulator, sc: ScriptedCall, phone: Any, timeout_s: float) -> None:
    behaviour: OutboundBehaviour = getattr(phone, "outbound_behaviour", OutboundBehaviour())
    emu.register_phone(sc.number, phone, behaviour)
    try:
        sc.status = "waiting"
        call = await asyncio.wait_for(emu.expect_outbound_call(sc.number), timeout_s)
        sc.call_connection_id = call.call_connection_id
        sc.status = "ringing"
        if behaviour.outcome != "answer":
            await call.ended.wait()
            _finish(
                sc,
                {
                    "ok": True,
                    "call_id": call.call_connection_id,
                    "outcome": behaviour.outcome,
                    "events": list(call.events_sent),
                },
            )
            return
        await call.connected.wait()
        if call.state == "disconnected":
            raise RuntimeError(f"the call ended before it connected ({call.disconnect_reason})")
        sc.status = "running"
        _finish(sc, await asyncio.wait_for(phone.run(call), timeout_s))
    except Exception as exc:
        log.warning("scripted outbound call %s failed: %s", sc.id, exc)
        _finish(sc, getattr(phone, "report", None), f"{type(exc).__name__}: {exc}")
    finally:
        emu.unregister_phone(sc.number)
