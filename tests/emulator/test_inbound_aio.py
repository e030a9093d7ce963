"""A whole inbound call driven by the unmodified async SDK: Event Grid, answer, media ops, JWTs, hang-up."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import jwt
import pytest
from azure.communication.callautomation import (
    AudioFormat,
    MediaStreamingAudioChannelType,
    MediaStreamingContentType,
    MediaStreamingOptions,
    PhoneNumberIdentifier,
    StreamingTransportType,
    TextSource,
)
from azure.communication.callautomation.aio import CallAutomationClient
from azure.core.credentials import AzureKeyCredential
from emu_support import FakePhone, Webhook, serve
from fastapi import FastAPI, Request, Response

from callwright.emulator.service import Emulator

CALLER = "+15551230001"
APP_NUMBER = "+15551230000"


async def answer_inbound(
    emu: Emulator, webhook: Webhook, client: CallAutomationClient, phone: FakePhone, **answer_kwargs: Any
) -> tuple[Any, Any]:
    placing = asyncio.create_task(emu.place_inbound_call(phone, from_number=CALLER, to_number=APP_NUMBER))
    await webhook.wait_for(lambda: webhook.incoming)
    event = webhook.incoming[-1].body[0]
    props = await client.answer_call(event["data"]["incomingCallContext"], webhook.callback_url, **answer_kwargs)
    call = await asyncio.wait_for(placing, 20)
    return call, props


def verify(token: str, emu: Emulator, jwks: jwt.PyJWKClient) -> dict[str, Any]:
    key = jwks.get_signing_key_from_jwt(token)
    return jwt.decode(token, key.key, algorithms=["RS256"], audience=emu.resource_id, issuer=emu.issuer)


@pytest.mark.filterwarnings("ignore:The method 'play_media_to_all' is deprecated:DeprecationWarning")
async def test_inbound_call_through_async_sdk(emulator: Emulator, webhook: Webhook) -> None:
    emu = emulator
    phone = FakePhone()
    media = MediaStreamingOptions(
        transport_url="wss://app.example/ws",
        transport_type=StreamingTransportType.WEBSOCKET,
        content_type=MediaStreamingContentType.AUDIO,
        audio_channel_type=MediaStreamingAudioChannelType.MIXED,
        start_media_streaming=True,
        enable_bidirectional=True,
        audio_format=AudioFormat.PCM24_K_MONO,
    )
    async with CallAutomationClient(emu.endpoint, AzureKeyCredential(emu.access_key)) as client:
        call, props = await answer_inbound(emu, webhook, client, phone, media_streaming=media, operation_context="ans")
        assert props.call_connection_id == call.call_connection_id

        # Event Grid: validated once, IncomingCall in Event Grid schema with aeg headers and the secret kept.
        assert len(webhook.validations) == 1
        delivery = webhook.incoming[0]
        assert delivery.headers["aeg-event-type"] == "Notification"
        assert "secret=s3cret" in delivery.path
        incoming = delivery.body[0]
        assert incoming["eventType"] == "Microsoft.Communication.IncomingCall"
        assert incoming["data"]["from"]["rawId"] == f"4:{CALLER}"
        assert incoming["data"]["to"]["phoneNumber"]["value"] == APP_NUMBER

        await webhook.wait_callback("MediaStreamingStarted")
        assert webhook.callback_types()[:3] == ["CallConnected", "ParticipantsUpdated", "MediaStreamingStarted"]
        connected = webhook.callbacks[0].body[0]
        assert connected["source"] == f"calling/callConnections/{call.call_connection_id}"
        assert connected["specversion"] == "1.0"
        assert connected["data"]["correlationId"] == incoming["data"]["correlationId"]
        assert connected["data"]["version"] == "2026-03-12"
        assert connected["data"]["operationContext"] == "ans"
        assert "token=abc" in webhook.callbacks[0].path

        # The phone was asked to open media with ACS's headers, a 24 h JWT and the negotiated format.
        (m,) = phone.media_calls
        assert (m["url"], m["rate"], m["bidi"]) == ("wss://app.example/ws", 24000, True)
        assert m["headers"]["x-ms-call-connection-id"] == call.call_connection_id
        assert m["headers"]["x-ms-call-correlation-id"] == call.correlation_id

        conn = client.get_call_connection(call.call_connection_id)
        got = await conn.get_call_properties()
        assert got.call_connection_state == "connected"
        assert got.correlation_id == call.correlation_id
        participants = [p.identifier.raw_id async for p in conn.list_participants()]
        assert f"4:{CALLER}" in participants
        # aio quirk: the raw id is signed percent-encoded but sent with a literal ':'.
        one = await conn.get_participant(PhoneNumberIdentifier(CALLER))
        assert one.identifier.raw_id == f"4:{CALLER}"

        await conn.play_media_to_all(TextSource(text="Hello, how can I help?"), operation_context="p1")
        done = await webhook.wait_callback("PlayCompleted")
        assert done["data"]["operationContext"] == "p1"
        assert webhook.callback_types().index("PlayStarted") < webhook.callback_types().index("PlayCompleted")
        assert phone.prompts and phone.prompts[0] > 16000  # about a second of 16 kHz speech at least
        # To one participant (the caller): the phone hears it too.
        await conn.play_media(
            TextSource(text="Just you."), play_to=[PhoneNumberIdentifier(CALLER)], operation_context="p2"
        )
        await webhook.wait_for(lambda: webhook.callback_types().count("PlayCompleted") == 2)
        assert len(phone.prompts) == 2

        await conn.start_continuous_dtmf_recognition(PhoneNumberIdentifier(CALLER), operation_context="cd")
        call.dtmf_from_phone("5")
        tone = await webhook.wait_callback("ContinuousDtmfRecognitionToneReceived")
        assert (tone["data"]["tone"], tone["data"]["sequenceId"], tone["data"]["operationContext"]) == ("five", 1, "cd")
        await conn.stop_continuous_dtmf_recognition(PhoneNumberIdentifier(CALLER))

        await conn.start_recognizing_media(
            "dtmf", PhoneNumberIdentifier(CALLER), dtmf_max_tones_to_collect=3, dtmf_stop_tones=["pound"],
            initial_silence_timeout=10, operation_context="rec",
        )  # fmt: skip
        await asyncio.sleep(0.2)
        for ch in "12#":
            call.dtmf_from_phone(ch)
        rec = await webhook.wait_callback("RecognizeCompleted")
        assert rec["data"]["dtmfResult"]["tones"] == ["one", "two", "pound"]
        assert rec["data"]["resultInformation"]["subCode"] == 8514

        # Speech recognize is served; the FakePhone never speaks, so it ends in the initial-silence timeout.
        await conn.start_recognizing_media(
            "speech", PhoneNumberIdentifier(CALLER), speech_language="en-US", initial_silence_timeout=1,
            operation_context="speech",
        )  # fmt: skip
        failed = await webhook.wait_callback("RecognizeFailed")
        assert (failed["data"]["operationContext"], failed["data"]["resultInformation"]["subCode"]) == ("speech", 8510)

        await conn.stop_media_streaming(operation_context="stop")
        stopped = await webhook.wait_callback("MediaStreamingStopped")
        assert stopped["data"]["mediaStreamingUpdate"]["mediaStreamingStatus"] == "mediaStreamingStopped"
        assert phone.stopped == 1

        await conn.hang_up(is_for_everyone=False)
        gone = await webhook.wait_callback("CallDisconnected")
        assert gone["data"]["resultInformation"]["subCode"] == 7000
        assert phone.disconnected == "app_hangup"

    # Every callback carried a fresh RS256 JWT that verifies against the emulator's JWKS over http.
    jwks = jwt.PyJWKClient(emu.jwks_url)
    for d in webhook.callbacks:
        scheme, _, token = d.headers["authorization"].partition(" ")
        assert scheme == "Bearer"
        claims = await asyncio.to_thread(verify, token, emu, jwks)
        assert claims["exp"] - claims["iat"] == 300
    media_claims = await asyncio.to_thread(verify, m["headers"]["Authorization"].split(" ", 1)[1], emu, jwks)
    assert media_claims["exp"] - media_claims["iat"] == 24 * 3600
    # The phone saw the same events, in the same order.
    assert [t for t, _ in phone.events] == webhook.callback_types()


async def test_openid_configuration_points_at_jwks(emulator: Emulator) -> None:
    async with httpx.AsyncClient() as http:
        cfg = (await http.get(emulator.openid_config_url)).json()
        assert cfg["issuer"] == "https://acscallautomation.communication.azure.com"
        assert cfg["jwks_uri"] == emulator.jwks_url
        keys = (await http.get(cfg["jwks_uri"])).json()["keys"]
        assert keys[0]["kty"] == "RSA" and keys[0]["kid"]


async def test_media_failure_reports_media_streaming_failed(emulator: Emulator, webhook: Webhook) -> None:
    phone = FakePhone(media_fails=True)
    media = MediaStreamingOptions(
        transport_url="ws://127.0.0.1:9/ws",
        transport_type=StreamingTransportType.WEBSOCKET,
        content_type=MediaStreamingContentType.AUDIO,
        audio_channel_type=MediaStreamingAudioChannelType.MIXED,
        start_media_streaming=True,
    )
    async with CallAutomationClient(emulator.endpoint, AzureKeyCredential(emulator.access_key)) as client:
        await answer_inbound(emulator, webhook, client, phone, media_streaming=media)
        failed = await webhook.wait_callback("MediaStreamingFailed")
    update = failed["data"]["mediaStreamingUpdate"]
    assert update["mediaStreamingStatusDetails"] == "initialWebSocketConnectionFailed"
    assert phone.media_calls[0]["rate"] == 16000


async def test_rejected_call_raises_for_the_phone(emulator: Emulator, webhook: Webhook) -> None:
    from callwright.emulator.service import InboundCallError

    phone = FakePhone()
    placing = asyncio.create_task(emulator.place_inbound_call(phone, from_number=CALLER, to_number=APP_NUMBER))
    await webhook.wait_for(lambda: webhook.incoming)
    ctx = webhook.incoming[0].body[0]["data"]["incomingCallContext"]
    async with CallAutomationClient(emulator.endpoint, AzureKeyCredential(emulator.access_key)) as client:
        await client.reject_call(ctx)
    with pytest.raises(InboundCallError, match="rejected"):
        await asyncio.wait_for(placing, 10)


async def test_asynchronous_event_grid_validation(webhook: Webhook) -> None:
    """A webhook that answers 200 without a body and GETs validationUrl instead (Event Grid's async mode)."""
    app = FastAPI()
    seen: list[str] = []

    @app.post("/eg")
    async def eg(request: Request) -> Response:
        body = await request.json()
        url = body[0]["data"]["validationUrl"]
        seen.append(url)

        async def confirm() -> None:
            async with httpx.AsyncClient() as http:
                await http.get(url)

        asyncio.get_running_loop().create_task(confirm())
        return Response(status_code=200)

    async with serve(app) as base, Emulator(webhook_url=f"{base}/eg") as emu:
        assert await emu.validate_webhook()
    assert seen and "/emulator/eventgrid/validate?id=" in seen[0]
