"""Outbound calls and call operations through the unmodified sync SDK (run in a thread), plus TLS."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from azure.communication.callautomation import (
    CallAutomationClient,
    FileSource,
    PhoneNumberIdentifier,
    SsmlSource,
    TextSource,
)
from azure.core.credentials import AzureKeyCredential
from emu_support import FAST_RETRY, FakePhone, Webhook, serve
from fastapi import FastAPI, Response

from callwright.emulator.contracts import OutboundBehaviour
from callwright.emulator.service import Emulator

APP = "+15551230000"
CALLEE = "+15551230001"


def sync_client(emu: Emulator) -> CallAutomationClient:
    return CallAutomationClient(emu.endpoint, AzureKeyCredential(emu.access_key))


async def dial(emu: Emulator, webhook: Webhook, number: str = CALLEE, **kwargs: Any) -> Any:
    client = sync_client(emu)
    return await asyncio.to_thread(
        client.create_call,
        PhoneNumberIdentifier(number),
        webhook.callback_url,
        source_caller_id_number=PhoneNumberIdentifier(APP),
        operation_context="create-ctx",
        **kwargs,
    )


async def test_outbound_call_play_cancel_transfer(emulator: Emulator, webhook: Webhook) -> None:
    phone = FakePhone(hold_prompts=True)
    emulator.register_phone(CALLEE, phone, OutboundBehaviour(answer_after_s=0.2))
    ringing = emulator.expect_outbound_call(CALLEE)
    result = await dial(emulator, webhook)
    props = result
    assert props.call_connection_state == "connecting"
    assert props.targets[0].raw_id == f"4:{CALLEE}"
    call = await asyncio.wait_for(ringing, 5)
    assert call.call_connection_id == props.call_connection_id
    connected = await webhook.wait_callback("CallConnected")
    assert connected["data"]["operationContext"] == "create-ctx"

    conn = sync_client(emulator).get_call_connection(props.call_connection_id)
    # A long prompt, then a queued one; cancel_all cancels both.
    await asyncio.to_thread(conn.play_media, TextSource(text="Please hold."), operation_context="a")
    await asyncio.wait_for(phone.prompt_started.wait(), 10)
    await asyncio.to_thread(conn.play_media, SsmlSource(ssml_text="<speak>Queued</speak>"), operation_context="b")
    await asyncio.to_thread(conn.cancel_all_media_operations)
    await webhook.wait_for(lambda: webhook.callback_types().count("PlayCanceled") == 2)
    canceled = [d.body[0]["data"] for d in webhook.callbacks if d.body[0]["type"].endswith("PlayCanceled")]
    assert sorted(c["operationContext"] for c in canceled) == ["a", "b"]
    assert canceled[0]["resultInformation"]["subCode"] == 8508

    # A file that cannot be fetched -> PlayFailed 8536 with the failed source index.
    await asyncio.to_thread(conn.play_media, FileSource(url="http://127.0.0.1:9/missing.wav"), operation_context="f")
    failed = await webhook.wait_callback("PlayFailed")
    assert failed["data"]["resultInformation"]["subCode"] == 8536
    assert failed["data"]["failedPlaySourceIndex"] == 0

    # Recognize with no key press -> RecognizeFailed, initial silence timeout.
    await asyncio.to_thread(
        conn.start_recognizing_media, "dtmf", PhoneNumberIdentifier(CALLEE), initial_silence_timeout=1,
        dtmf_max_tones_to_collect=1, operation_context="r",
    )  # fmt: skip
    rf = await webhook.wait_callback("RecognizeFailed")
    assert rf["data"]["resultInformation"]["subCode"] == 8510

    added = await asyncio.to_thread(
        conn.add_participant, PhoneNumberIdentifier("+15551230003"), operation_context="add"
    )
    assert added.participant.identifier.raw_id == "4:+15551230003"
    await webhook.wait_callback("AddParticipantSucceeded")

    await asyncio.to_thread(
        conn.transfer_call_to_participant, PhoneNumberIdentifier("+15551239999"), operation_context="x"
    )
    accepted = await webhook.wait_callback("CallTransferAccepted")
    assert accepted["data"]["transferTarget"]["rawId"] == "4:+15551239999"
    await webhook.wait_callback("CallDisconnected")
    assert emulator.transfers[-1]["target"] == "4:+15551239999"
    assert emulator.transfers[-1]["operation_context"] == "x"
    assert phone.disconnected == "transferred"


async def test_busy_and_unknown_numbers_fail_like_acs(emulator: Emulator, webhook: Webhook) -> None:
    emulator.register_phone("+15551230002", FakePhone(), OutboundBehaviour(answer_after_s=0.05, outcome="busy"))
    await dial(emulator, webhook, "+15551230002")
    failed = await webhook.wait_callback("CreateCallFailed")
    assert failed["data"]["resultInformation"]["sipDetails"]["code"] == 486
    await webhook.wait_callback("CallDisconnected")
    assert webhook.callback_types() == ["CreateCallFailed", "CallDisconnected"]

    webhook.callbacks.clear()
    await dial(emulator, webhook, "+15550000000")
    await webhook.wait_callback("CallDisconnected")
    assert webhook.callback_types() == ["CreateCallFailed", "CallDisconnected"]


async def test_terminate_through_sync_sdk(emulator: Emulator, webhook: Webhook) -> None:
    phone = FakePhone()
    emulator.register_phone(CALLEE, phone, OutboundBehaviour(answer_after_s=0.0))
    result = await dial(emulator, webhook)
    await webhook.wait_callback("ParticipantsUpdated")
    conn = sync_client(emulator).get_call_connection(result.call_connection_id)
    await asyncio.to_thread(conn.hang_up, True)
    gone = await webhook.wait_callback("CallDisconnected")
    assert gone["data"]["resultInformation"]["subCode"] == 7000
    assert phone.disconnected == "app_hangup"


async def test_callbacks_retry_until_the_app_accepts(webhook: Webhook) -> None:
    webhook.fail_callbacks = 2
    async with Emulator(webhook_url=webhook.eventgrid_url, retry=FAST_RETRY) as emu:
        emu.register_phone(CALLEE, FakePhone(), OutboundBehaviour(answer_after_s=0.0))
        await dial(emu, webhook)
        event = await webhook.wait_callback("CallConnected")
    assert webhook.callback_attempts >= 3
    assert webhook.callbacks[0].body[0]["id"] == event["id"]


async def test_tls_with_connection_string(webhook: Webhook) -> None:
    async with Emulator(tls=True, webhook_url=webhook.eventgrid_url, retry=FAST_RETRY) as emu:
        assert emu.connection_string.startswith("endpoint=https://127.0.0.1:")
        emu.register_phone(CALLEE, FakePhone(), OutboundBehaviour(answer_after_s=0.0))
        client = CallAutomationClient.from_connection_string(
            emu.connection_string, connection_verify=str(emu.cert_path)
        )
        result = await asyncio.to_thread(
            client.create_call, PhoneNumberIdentifier(CALLEE), webhook.callback_url,
            source_caller_id_number=PhoneNumberIdentifier(APP),
        )  # fmt: skip
        ccid = result.call_connection_id
        await webhook.wait_callback("CallConnected")
        props = await asyncio.to_thread(client.get_call_connection(ccid).get_call_properties)
        assert props.call_connection_state == "connected"
        client.close()


async def test_file_source_is_fetched_and_played(emulator: Emulator, webhook: Webhook) -> None:
    import io
    import wave

    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x10\x00\x20\x00" * 4000)  # half a second of stereo 8 kHz
    files = FastAPI()

    @files.get("/prompt.wav")
    async def prompt() -> Response:
        return Response(buf.getvalue(), media_type="audio/wav")

    phone = FakePhone()
    emulator.register_phone(CALLEE, phone, OutboundBehaviour(answer_after_s=0.0))
    async with serve(files) as base:
        result = await dial(emulator, webhook)
        await webhook.wait_callback("CallConnected")
        conn = sync_client(emulator).get_call_connection(result.call_connection_id)
        await asyncio.to_thread(
            conn.play_media, FileSource(url=f"{base}/prompt.wav"), interrupt_call_media_operation=True
        )
        await webhook.wait_callback("PlayCompleted")
    assert phone.prompts == [16000]  # 0.5 s at 16 kHz, mono, 2 bytes per sample


@pytest.mark.parametrize("trailing_slash", [True])
async def test_constructor_trailing_slash_quirk_is_accepted(
    emulator: Emulator, webhook: Webhook, trailing_slash: bool
) -> None:
    emulator.register_phone(CALLEE, FakePhone(), OutboundBehaviour(answer_after_s=0.0))
    client = CallAutomationClient(emulator.endpoint + "/", AzureKeyCredential(emulator.access_key))
    result = await asyncio.to_thread(
        client.create_call, PhoneNumberIdentifier(CALLEE), webhook.callback_url,
        source_caller_id_number=PhoneNumberIdentifier(APP),
    )  # fmt: skip
    assert result.call_connection_id
