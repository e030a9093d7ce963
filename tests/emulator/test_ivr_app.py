"""A foreign IVR app (examples/ivr_app: official ACS SDK only, no media stream) driven by phone scripts.

The app answers without media streaming, plays a menu with recognize (speech or DTMF), confirms and hangs
up. The phone has no WebSocket to hear it on: it hears the prompts over the call's audio path and answers
with keys or its voice, through ``callwright call``'s own code path (the emulator's control API).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import websockets
from azure.communication.callautomation import (
    DtmfTone,
    MediaStreamingAudioChannelType,
    MediaStreamingContentType,
    MediaStreamingOptions,
    PhoneNumberIdentifier,
    RecognitionChoice,
    RecognizeInputType,
    StreamingTransportType,
    TextSource,
)
from azure.communication.callautomation.aio import CallAutomationClient
from azure.core.credentials import AzureKeyCredential
from emu_support import Webhook
from websockets.asyncio.server import ServerConnection

from callwright.emulator.caller_speech import match_choice
from callwright.emulator.errors import AcsHttpError
from callwright.emulator.media_ops import parse_recognize
from callwright.emulator.phone import build_phone_from_script
from callwright.emulator.phone.call_audio import CallAudioLink
from callwright.emulator.phone.cli import run_call
from callwright.emulator.phone.phone import MEDIA_GRACE_S
from callwright.emulator.phone.transcribe import phrase_heard
from callwright.emulator.service import Emulator
from callwright.localstack import free_port
from support.servers import running_app

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "ivr_app"


def _load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("callwright_example_ivr_app", EXAMPLE / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


async def _call_ivr(
    script: str, record_dir: Path, capsys: pytest.CaptureFixture[str], **app_options: Any
) -> tuple[dict[str, Any], Any]:
    """Run ``callwright call --json SCRIPT`` against an emulator wired to the example app."""
    ivr = _load_example()
    async with Emulator() as emu:
        port = free_port()
        app = ivr.create_app(emu.connection_string, f"http://127.0.0.1:{port}", **app_options)
        async with running_app(app, port) as url:
            emu.webhook_url = f"{url}/api/incoming"
            code = await asyncio.to_thread(run_call, EXAMPLE / script, emu.endpoint, True, record_dir)
    out = capsys.readouterr().out
    report = json.loads(out.strip().splitlines()[-1])
    assert code == 0, report
    return report, app.state.ivr


def _agent_text(report: dict[str, Any]) -> str:
    return " ".join(t["text"] for t in report["transcript"] if t["speaker"] == "agent")


async def test_keypad_answer_to_a_prompt_only_ivr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report, ivr = await _call_ivr("press_two.yaml", tmp_path, capsys)
    assert report["ok"], report["error"]
    # The app got the key the way the real service shapes it, and chose support.
    (rec,) = ivr.of_type("RecognizeCompleted")
    assert rec["recognitionType"] == "dtmf"
    assert rec["dtmfResult"] == {"tones": ["two"]}
    assert rec["resultInformation"]["subCode"] == 8531
    assert list(ivr.choices.values()) == ["support"]
    # The menu and the confirmation (TextSource) and the chime (FileSource) played and completed.
    assert [d.get("operationContext") for d in ivr.of_type("PlayCompleted")] == ["confirm:support"]
    # The phone heard the prompts over the call, with no media stream at all.
    events = report["events"]
    assert "MediaStreamingStarted" not in events and "MediaStreamingFailed" not in events
    heard = _agent_text(report)
    assert phrase_heard("billing", heard), heard  # the menu
    assert phrase_heard("technical support", heard), heard  # the confirmation for 2
    assert report["disconnect_reason"] == "app_hangup"
    assert events[-1] == "CallDisconnected"
    wav = Path(report["recording"]["wav"])
    size = await asyncio.to_thread(lambda: wav.stat().st_size)
    assert size > 16_000 * 2 * 2 * 3  # the phone's stereo recording: 16 kHz, several seconds of call


async def test_spoken_answer_to_a_prompt_only_ivr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report, ivr = await _call_ivr("say_support.yaml", tmp_path, capsys)
    assert report["ok"], report["error"]
    (rec,) = ivr.of_type("RecognizeCompleted")
    assert rec["recognitionType"] == "speech", rec
    assert phrase_heard("support", rec["speechResult"]["speech"]), rec
    assert 0 < rec["speechResult"]["confidence"] <= 1
    assert list(ivr.choices.values()) == ["support"]
    assert phrase_heard("technical support", _agent_text(report)), report["transcript"]
    assert report["disconnect_reason"] == "app_hangup"


async def test_talking_over_the_menu_cuts_it_short(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report, ivr = await _call_ivr("barge_in_support.yaml", tmp_path, capsys)
    assert report["ok"], report["error"]
    (rec,) = ivr.of_type("RecognizeCompleted")
    assert rec["recognitionType"] == "speech" and phrase_heard("support", rec["speechResult"]["speech"]), rec
    (barge,) = report["barge_ins"]
    menu = next(t for t in report["transcript"] if t["speaker"] == "agent")
    # The whole menu lasts over 6 s, 4 s of it after the caller's onset; interruptPrompt stopped it.
    assert menu["start_ms"] < barge["onset_ms"] < menu["end_ms"] + 1000, (menu, barge)
    assert menu["end_ms"] - barge["onset_ms"] < 2000, (menu, barge)
    # Prompts count as the agent's audio for the report: the IVR's response time is measured.
    (turn,) = report["turns"]
    assert turn["barge_in"] and turn["response_latency_ms"] is not None and turn["response_latency_ms"] > 0, turn


async def test_silent_caller_gets_the_initial_silence_timeout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report, ivr = await _call_ivr("silent_caller.yaml", tmp_path, capsys, answer_timeout_s=2)
    assert report["ok"], report["error"]
    assert not ivr.of_type("RecognizeCompleted")
    (failed,) = ivr.of_type("RecognizeFailed")
    assert failed["resultInformation"]["code"] == 400
    assert failed["resultInformation"]["subCode"] == 8510
    assert [d.get("operationContext") for d in ivr.of_type("PlayCompleted")] == ["goodbye"]
    assert phrase_heard("sorry", _agent_text(report)), report["transcript"]


def test_recognize_bodies_for_speech_and_choices_parse() -> None:
    spec, prompts = parse_recognize(
        {
            "recognizeInputType": "speechOrDtmf",
            "playPrompt": {"kind": "text", "text": {"text": "Say or press"}},
            "recognizeOptions": {
                "targetParticipant": {"rawId": "4:+15551230001"},
                "interruptPrompt": True,
                "speechOptions": {"endSilenceTimeoutInMs": 1200},
                "dtmfOptions": {"maxTonesToCollect": 4, "stopTones": ["pound"]},
            },
        }
    )
    assert (spec.hears_speech, spec.hears_tones, spec.end_silence_s, spec.max_tones) == (True, True, 1.2, 4)
    assert len(prompts) == 1
    choices, _ = parse_recognize(
        {
            "recognizeInputType": "choices",
            "recognizeOptions": {
                "targetParticipant": {"rawId": "4:+15551230001"},
                "choices": [
                    {"label": "Confirm", "phrases": ["yes", "confirm"], "tone": "one"},
                    {"label": "Cancel", "phrases": ["no", "cancel"]},
                ],
            },
        }
    )
    assert choices.choices == (("Confirm", "one", ("yes", "confirm")), ("Cancel", None, ("no", "cancel")))
    # pocketsphinx's reading of a spoken answer is matched fuzzily against the phrases.
    assert match_choice("uh cancel that please", choices.choices) == ("Cancel", "cancel", 1.0)
    assert match_choice("purple elephants", choices.choices) is None
    with pytest.raises(AcsHttpError) as err:
        parse_recognize(
            {
                "recognizeInputType": "speech",
                "recognizeOptions": {
                    "targetParticipant": {"rawId": "4:+15551230001"},
                    "speechOptions": {"endSilenceTimeoutInMs": "long"},
                },
            }
        )
    assert "endSilenceTimeoutInMs" in str(err.value)


async def _answer(emu: Emulator, webhook: Webhook, client: CallAutomationClient, phone: Any, **kwargs: Any) -> Any:
    placing = asyncio.create_task(emu.place_inbound_call(phone, from_number="+15551230075", to_number="+15550002000"))
    await webhook.wait_for(lambda: webhook.incoming)
    context = webhook.incoming[-1].body[0]["data"]["incomingCallContext"]
    await client.answer_call(context, webhook.callback_url, **kwargs)
    return await asyncio.wait_for(placing, 20)


def _streaming(url: str, *, start: bool) -> MediaStreamingOptions:
    return MediaStreamingOptions(
        transport_url=url,
        transport_type=StreamingTransportType.WEBSOCKET,
        content_type=MediaStreamingContentType.AUDIO,
        audio_channel_type=MediaStreamingAudioChannelType.MIXED,
        start_media_streaming=start,
        enable_bidirectional=True,
    )


async def test_phone_hears_prompts_over_the_call_when_the_stream_fails(emulator: Emulator, webhook: Webhook) -> None:
    """Real ACS keeps the caller on the line when the app's media WebSocket cannot be reached."""
    phone = build_phone_from_script("name: f\nsteps: [{wait: {agent_done: 500, timeout_s: 40}}]", transcribe=False)
    dead = free_port()  # nothing listens here
    async with CallAutomationClient(emulator.endpoint, AzureKeyCredential(emulator.access_key)) as client:
        call = await _answer(
            emulator, webhook, client, phone, media_streaming=_streaming(f"ws://127.0.0.1:{dead}/ws", start=True)
        )
        runner = asyncio.create_task(phone.run(call))
        await webhook.wait_callback("MediaStreamingFailed")
        conn = client.get_call_connection(call.call_connection_id)
        await conn.play_media(TextSource(text="Your call is important to us."), operation_context="hold")
        report = await asyncio.wait_for(runner, 60)
        await webhook.wait_callback("PlayCompleted")
    assert report["ok"], report["error"]
    assert isinstance(phone.link, CallAudioLink)
    assert report["frames"]["agent_voiced_received"] * 20 > 1000  # over a second of the prompt reached the ear


async def test_a_stream_started_late_joins_the_call_path(emulator: Emulator, webhook: Webhook) -> None:
    """Media options without startMediaStreaming: the phone takes the call path, and the later stream taps it."""
    received: list[dict[str, Any]] = []

    async def app_media(ws: ServerConnection) -> None:
        async for message in ws:
            received.append(json.loads(message))

    script = "name: l\nsteps: [{silence: 6}, {say: 'Hello there.'}, {silence: 1}]"
    phone = build_phone_from_script(script, transcribe=False)
    async with websockets.serve(app_media, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        options = _streaming(f"ws://127.0.0.1:{port}/ws", start=False)
        async with CallAutomationClient(emulator.endpoint, AzureKeyCredential(emulator.access_key)) as client:
            call = await _answer(emulator, webhook, client, phone, media_streaming=options)
            runner = asyncio.create_task(phone.run(call))
            # The app asked for media but did not start it: after a grace period the phone is on the call.
            await asyncio.sleep(MEDIA_GRACE_S)
            for _ in range(100):
                if phone.link is not None:
                    break
                await asyncio.sleep(0.1)
            link = phone.link
            assert isinstance(link, CallAudioLink)
            await client.get_call_connection(call.call_connection_id).start_media_streaming(operation_context="late")
            started = await webhook.wait_callback("MediaStreamingStarted")
            report = await asyncio.wait_for(runner, 30)
    assert started["data"]["operationContext"] == "late"
    assert report["ok"], report["error"]
    assert phone.link is link  # one timeline for the whole call
    assert report["media_session_count"] == 1
    kinds = [m.get("kind") for m in received]
    assert kinds[0] == "AudioMetadata"
    voiced = [m for m in received if m.get("kind") == "AudioData" and not m["audioData"].get("silent", True)]
    assert len(voiced) > 25, len(voiced)  # "Hello there." reached the app over the late stream


async def test_spoken_choice_is_matched_to_its_label(emulator: Emulator, webhook: Webhook) -> None:
    script = "name: c\nsteps: [{wait: {agent_done: 600, timeout_s: 40}}, {say: 'Cancel it.'}, {wait: disconnected}]"
    phone = build_phone_from_script(script, transcribe=False)
    choices = [
        RecognitionChoice(label="Confirm", phrases=["yes", "confirm"], tone=DtmfTone.ONE),
        RecognitionChoice(label="Cancel", phrases=["no", "cancel"], tone=DtmfTone.TWO),
    ]
    async with CallAutomationClient(emulator.endpoint, AzureKeyCredential(emulator.access_key)) as client:
        call = await _answer(emulator, webhook, client, phone)
        runner = asyncio.create_task(phone.run(call))
        conn = client.get_call_connection(call.call_connection_id)
        await conn.start_recognizing_media(
            RecognizeInputType.CHOICES,
            PhoneNumberIdentifier("+15551230075"),
            play_prompt=TextSource(text="Say confirm or cancel."),
            choices=choices,
            initial_silence_timeout=20,
            operation_context="choice",
        )
        await webhook.wait_for(lambda: {"RecognizeCompleted", "RecognizeFailed"} & set(webhook.callback_types()), 60)
        await conn.hang_up(is_for_everyone=True)
        report = await asyncio.wait_for(runner, 60)
    assert report["ok"], report["error"]
    assert "RecognizeCompleted" in webhook.callback_types(), webhook.callbacks[-1].body
    done = await webhook.wait_callback("RecognizeCompleted")
    assert done["data"]["recognitionType"] == "choices"
    assert done["data"]["choiceResult"]["label"] == "Cancel", done["data"]
    assert done["data"]["choiceResult"]["recognizedPhrase"] == "cancel"
    assert done["data"]["resultInformation"]["subCode"] == 8545
