"""A small IVR built on the official ACS Call Automation SDK only: no media streaming, prompts and recognize.

It is what many existing ACS apps look like, and nothing here knows about Callwright: it answers an
incoming call without a media stream, plays a menu and recognizes the answer (a key, or the caller saying
"billing" / "support"), plays a confirmation and a closing chime (a WAV file it serves itself, played as a
FileSource) and hangs up. Point it at real ACS or at ``callwright emulator``; see README.md.

Run: ``ACS_CONNECTION_STRING=... IVR_PUBLIC_URL=http://127.0.0.1:8090 python examples/ivr_app/app.py``
"""

from __future__ import annotations

import io
import logging
import math
import os
import struct
import wave
from dataclasses import dataclass, field
from typing import Any

from azure.communication.callautomation import (
    CommunicationIdentifier,
    CommunicationUserIdentifier,
    FileSource,
    PhoneNumberIdentifier,
    RecognizeInputType,
    TextSource,
)
from azure.communication.callautomation.aio import CallAutomationClient
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import HttpResponseError
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

log = logging.getLogger("ivr_app")

MENU = "Welcome to Contoso. For billing, press one or say billing. For support, press two or say support."
CONFIRM = {
    "billing": "You chose billing. A billing specialist will call you back.",
    "support": "Connecting you to technical support.",
}
SORRY = "Sorry, I did not get that. Goodbye."
# A key press comes back as a tone name, speech as text: both map to the same menu option.
TONE_OPTION = {"one": "billing", "two": "support"}


@dataclass
class IvrState:
    """What the app saw, per call: the test (and a curious operator) read it back."""

    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    choices: dict[str, str] = field(default_factory=dict)  # call connection id → option
    # correlation id → the caller: known from IncomingCall, before the answer returns (CallConnected can
    # arrive first) and before the call connection id exists.
    callers: dict[str, CommunicationIdentifier] = field(default_factory=dict)

    def of_type(self, event_type: str) -> list[dict[str, Any]]:
        return [data for t, data in self.events if t == event_type]


def chime_wav(rate: int = 16_000) -> bytes:
    """Two short tones, 8 kHz-safe, as a 16-bit mono WAV (the closing FileSource)."""
    samples = []
    for freq, ms in ((660, 180), (0, 60), (880, 240)):
        for i in range(rate * ms // 1000):
            samples.append(int(9000 * math.sin(2 * math.pi * freq * i / rate)) if freq else 0)
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(struct.pack(f"<{len(samples)}h", *samples))
    return buf.getvalue()


def _identifier(model: dict[str, Any]) -> CommunicationIdentifier:
    if isinstance(model.get("phoneNumber"), dict):
        return PhoneNumberIdentifier(model["phoneNumber"]["value"])
    return CommunicationUserIdentifier(model.get("communicationUser", {}).get("id") or model["rawId"])


def option_from_speech(text: str) -> str | None:
    words = text.lower()
    return next((option for option in CONFIRM if option in words or option[:4] in words), None)


def parse_connection_string(connection_string: str) -> tuple[str, str]:
    """(endpoint, access key). ``from_connection_string`` would force https; the emulator may be plain http."""
    parts = dict(p.split("=", 1) for p in connection_string.split(";") if "=" in p)
    try:
        return parts["endpoint"].rstrip("/"), parts["accesskey"]
    except KeyError as exc:
        raise ValueError(f"ACS connection string has no {exc.args[0]}= part") from None


def create_app(connection_string: str, public_url: str, *, answer_timeout_s: int = 15) -> FastAPI:
    """The IVR's web app: Event Grid webhook, Call Automation callbacks and the chime WAV.

    ``answer_timeout_s``: how long the menu waits for a key or a word after it has played.
    """
    public_url = public_url.rstrip("/")
    app = FastAPI(title="Contoso IVR (ACS Call Automation SDK example)")
    state = IvrState()
    app.state.ivr = state
    chime = chime_wav()
    endpoint, access_key = parse_connection_string(connection_string)

    def client() -> CallAutomationClient:
        return CallAutomationClient(endpoint, AzureKeyCredential(access_key))

    @app.get("/prompts/chime.wav")
    async def chime_file() -> Response:
        return Response(chime, media_type="audio/wav")

    @app.post("/api/incoming")
    async def incoming(request: Request) -> Response:
        for event in await request.json():
            kind = event.get("eventType")
            if kind == "Microsoft.EventGrid.SubscriptionValidationEvent":
                return JSONResponse({"validationResponse": event["data"]["validationCode"]})
            if kind != "Microsoft.Communication.IncomingCall":
                continue
            data = event["data"]
            state.callers[data["correlationId"]] = _identifier(data["from"])
            async with client() as acs:
                # No media_streaming: this app never touches audio; ACS plays and recognizes for it.
                props = await acs.answer_call(data["incomingCallContext"], f"{public_url}/api/callbacks")
            log.info("answered %s from %s", props.call_connection_id, data["from"].get("rawId"))
        return Response(status_code=200)

    @app.post("/api/callbacks")
    async def callbacks(request: Request) -> Response:
        for event in await request.json():
            kind = str(event.get("type", "")).removeprefix("Microsoft.Communication.")
            data = event.get("data") or {}
            state.events.append((kind, data))
            try:
                await _on_event(kind, data)
            except HttpResponseError as exc:
                # Answered 200 all the same: a redelivery of the event would only repeat the failed request.
                log.error("call %s: reacting to %s failed: %s", data.get("callConnectionId"), kind, exc.message)
        return Response(status_code=200)

    async def _on_event(kind: str, data: dict[str, Any]) -> None:
        call_id = data.get("callConnectionId", "")
        async with client() as acs:
            conn = acs.get_call_connection(call_id)
            if kind == "CallConnected":
                await conn.start_recognizing_media(
                    RecognizeInputType.SPEECH_OR_DTMF,
                    state.callers[data["correlationId"]],
                    play_prompt=TextSource(text=MENU),
                    interrupt_prompt=True,
                    initial_silence_timeout=answer_timeout_s,
                    dtmf_max_tones_to_collect=1,
                    end_silence_timeout=1,
                    speech_language="en-US",
                    operation_context="menu",
                )
            elif kind == "RecognizeCompleted":
                if data.get("recognitionType") == "dtmf":
                    option = TONE_OPTION.get((data.get("dtmfResult", {}).get("tones") or [""])[0])
                else:
                    option = option_from_speech(data.get("speechResult", {}).get("speech", ""))
                if option is None:
                    await conn.play_media(TextSource(text=SORRY), operation_context="goodbye")
                    return
                state.choices[call_id] = option
                await conn.play_media(
                    [TextSource(text=CONFIRM[option]), FileSource(url=f"{public_url}/prompts/chime.wav")],
                    operation_context=f"confirm:{option}",
                )
            elif kind == "RecognizeFailed":
                await conn.play_media(TextSource(text=SORRY), operation_context="goodbye")
            elif kind in ("PlayCompleted", "PlayFailed"):
                await conn.hang_up(is_for_everyone=True)

    return app


def main() -> None:
    import uvicorn

    logging.basicConfig(level=logging.INFO)
    port = int(os.environ.get("IVR_PORT", "8090"))
    app = create_app(os.environ["ACS_CONNECTION_STRING"], os.environ.get("IVR_PUBLIC_URL", f"http://127.0.0.1:{port}"))
    uvicorn.run(app, host="127.0.0.1", port=port)


if __name__ == "__main__":
    main()
