"""The app's side of the media WebSocket goes away mid-call (a replica killed, a load balancer closing it).

As with ACS: the call stays connected, MediaStreamingFailed(streamConnectionInterrupted) reaches the
callback URL once, and ``startMediaStreaming`` opens a new socket on which the same virtual phone goes on
(script position, recording, report). Real emulator, real phone, a real WebSocket server as the app's
media endpoint, the real callback receiver, the official async SDK.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import websockets
from azure.communication.callautomation import (
    AudioFormat,
    MediaStreamingAudioChannelType,
    MediaStreamingContentType,
    MediaStreamingOptions,
    StreamingTransportType,
)
from azure.communication.callautomation.aio import CallAutomationClient
from azure.core.credentials import AzureKeyCredential
from emu_support import Webhook
from websockets.asyncio.server import ServerConnection

from callwright.emulator.phone import VirtualPhone, build_phone_from_script
from callwright.emulator.service import Emulator

CALLER = "+15551230001"
APP_NUMBER = "+15551230000"


def _tone_msg(ms: int, rate: int = 16_000) -> str:
    t = np.arange(rate * ms // 1000) / rate
    pcm = (np.sin(2 * np.pi * 440.0 * t) * 8000).astype("<i2").tobytes()
    return json.dumps({"Kind": "AudioData", "AudioData": {"Data": base64.b64encode(pcm).decode()}, "StopAudio": None})


@dataclass
class Socket:
    """One media WebSocket as the app saw it."""

    ws: ServerConnection
    headers: dict[str, str]
    received: list[dict[str, Any]] = field(default_factory=list)
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    def voiced_caller_frames(self) -> int:
        return sum(1 for m in self.received if m.get("kind") == "AudioData" and not m["audioData"]["silent"])


Behaviour = Callable[[int, Socket], Awaitable[None]]


class MediaApp:
    """The app's media endpoint: every socket is recorded; ``behaviour(index, socket)`` plays the app."""

    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.sockets: list[Socket] = []
        self.new_socket = asyncio.Event()
        self.url = ""
        self._server: Any = None

    async def __aenter__(self) -> MediaApp:
        self._server = await websockets.serve(self._handle, "127.0.0.1", 0)
        port = next(iter(self._server.sockets)).getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}/api/v1/media/stream"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        await self._server.wait_closed()

    async def wait_sockets(self, n: int, timeout: float = 20.0) -> Socket:
        async with asyncio.timeout(timeout):
            while len(self.sockets) < n:
                self.new_socket.clear()
                await self.new_socket.wait()
        return self.sockets[n - 1]

    async def _handle(self, ws: ServerConnection) -> None:
        sock = Socket(ws, {k.lower(): v for k, v in ws.request.headers.raw_items()})
        self.sockets.append(sock)
        self.new_socket.set()
        task = asyncio.create_task(self.behaviour(len(self.sockets) - 1, sock))
        try:
            async for msg in ws:
                sock.received.append(json.loads(msg))
        except websockets.ConnectionClosed:
            pass
        finally:
            sock.closed.set()
            task.cancel()


def abort(sock: Socket) -> None:
    """Kill the socket the way a dying process does: no close frame, the TCP connection just goes."""
    sock.ws.transport.abort()


def media_options(url: str) -> MediaStreamingOptions:
    return MediaStreamingOptions(
        transport_url=url,
        transport_type=StreamingTransportType.WEBSOCKET,
        content_type=MediaStreamingContentType.AUDIO,
        audio_channel_type=MediaStreamingAudioChannelType.MIXED,
        start_media_streaming=True,
        enable_bidirectional=True,
        audio_format=AudioFormat.PCM16_K_MONO,
    )


async def place_and_answer(
    emu: Emulator, webhook: Webhook, client: CallAutomationClient, phone: VirtualPhone, url: str
) -> Any:
    placing = asyncio.create_task(emu.place_inbound_call(phone, from_number=CALLER, to_number=APP_NUMBER))
    await webhook.wait_for(lambda: webhook.incoming)
    ctx = webhook.incoming[-1].body[0]["data"]["incomingCallContext"]
    await client.answer_call(ctx, webhook.callback_url, media_streaming=media_options(url))
    return await asyncio.wait_for(placing, 20)


def callbacks_of(webhook: Webhook, event_type: str) -> list[dict[str, Any]]:
    return [d.body[0] for d in webhook.callbacks if d.body[0]["type"].endswith("." + event_type)]


async def test_socket_killed_mid_call_then_restarted_on_a_new_socket(emulator: Emulator, webhook: Webhook) -> None:
    async def app_side(index: int, sock: Socket) -> None:
        await asyncio.sleep(0.2)
        if index == 0:
            await sock.ws.send(_tone_msg(400))  # the agent starts a sentence ...
            await asyncio.sleep(0.15)
            abort(sock)  # ... and its replica dies in the middle of it
        else:
            await asyncio.sleep(0.3)
            await sock.ws.send(_tone_msg(500))  # the replica that took over speaks again

    # The first wait covers the whole gap: it must neither fail nor end while the media is gone.
    script = """
name: restart
steps:
  - wait: {agent_done: 300, timeout_s: 40}
  - say: {noise: white, ms: 400, probe: false}
  - silence: 0.4
  - hangup
"""
    phone = build_phone_from_script(script, transcribe=False)
    async with (
        MediaApp(app_side) as app,
        CallAutomationClient(emulator.endpoint, AzureKeyCredential(emulator.access_key)) as client,
    ):
        call = await place_and_answer(emulator, webhook, client, phone, app.url)
        runner = asyncio.create_task(phone.run(call))
        first = await app.wait_sockets(1)

        failed = await webhook.wait_callback("MediaStreamingFailed")
        update = failed["data"]["mediaStreamingUpdate"]
        assert update["mediaStreamingStatus"] == "mediaStreamingFailed"
        assert update["mediaStreamingStatusDetails"] == "streamConnectionInterrupted"
        assert failed["data"]["resultInformation"]["code"] == 500
        assert failed["data"]["callConnectionId"] == call.call_connection_id
        assert first.closed.is_set()

        # ACS does not hang up because the app's socket went away.
        conn = client.get_call_connection(call.call_connection_id)
        props = await conn.get_call_properties()
        assert props.call_connection_state == "connected"
        assert call.properties()["mediaStreamingSubscription"]["state"] == "inactive"
        await asyncio.sleep(1.0)  # a take-over takes a while; the phone's step keeps waiting meanwhile
        assert not runner.done()

        await conn.start_media_streaming(operation_context="take-over")
        second = await app.wait_sockets(2)
        await webhook.wait_for(lambda: len(callbacks_of(webhook, "MediaStreamingStarted")) == 2)
        report = await asyncio.wait_for(runner, 60)
        await webhook.wait_callback("CallDisconnected")
        await asyncio.sleep(0.3)  # anything late (a second Failed when the last socket closes) would show now

    assert report["ok"], report["error"]
    # A new socket with fresh auth, AudioMetadata first, and the caller's answer went to it.
    assert second.headers["authorization"].startswith("Bearer ")
    assert second.headers["authorization"] != first.headers["authorization"]
    assert second.headers["x-ms-call-connection-id"] == call.call_connection_id
    assert second.received[0]["kind"] == "AudioMetadata"
    assert second.voiced_caller_frames() >= 10, second.voiced_caller_frames()
    assert first.voiced_caller_frames() == 0  # the caller spoke only after hearing the agent again

    types = webhook.callback_types()
    assert types.count("MediaStreamingFailed") == 1, types
    assert types.index("MediaStreamingFailed") < [i for i, t in enumerate(types) if t == "MediaStreamingStarted"][1]
    restarted = callbacks_of(webhook, "MediaStreamingStarted")[1]
    assert restarted["data"]["operationContext"] == "take-over"
    assert "MediaStreamingFailed" in report["events"]

    assert report["media_session_count"] == 2
    s0, s1 = report["media_sessions"]
    assert s0["dropped"] and not s1["dropped"]
    (gap,) = report["media_gaps"]
    assert gap["cause"] == "dropped"
    assert gap["dropped_at_ms"] < gap["reconnected_at_ms"] <= gap["resumed_at_ms"]
    assert gap["socket_down_ms"] >= 900  # the test waited a second before restarting
    assert gap["last_agent_audio_ms"] <= gap["reconnected_at_ms"]
    assert abs(gap["agent_silence_ms"] - (gap["resumed_at_ms"] - gap["last_agent_audio_ms"])) <= 0.2  # rounding
    assert 900 <= gap["agent_silence_ms"] < 30_000
    # The agent spoke once on each socket: one turn, answered on the new socket.
    assert report["turns"] and report["turns"][0]["agent_start_ms"] is None  # nothing after the caller's answer


async def test_stop_media_streaming_is_stopped_not_failed_and_a_restart_resumes(
    emulator: Emulator, webhook: Webhook
) -> None:
    async def app_side(index: int, sock: Socket) -> None:
        await asyncio.sleep(0.1)
        await sock.ws.send(_tone_msg(200))

    phone = build_phone_from_script(
        "name: stop\nsteps: [{wait: {disconnected: true, timeout_s: 40}}]", transcribe=False
    )
    async with (
        MediaApp(app_side) as app,
        CallAutomationClient(emulator.endpoint, AzureKeyCredential(emulator.access_key)) as client,
    ):
        call = await place_and_answer(emulator, webhook, client, phone, app.url)
        runner = asyncio.create_task(phone.run(call))
        first = await app.wait_sockets(1)
        await webhook.wait_callback("MediaStreamingStarted")
        await asyncio.sleep(0.5)
        conn = client.get_call_connection(call.call_connection_id)
        await conn.stop_media_streaming(operation_context="stop")
        stopped = await webhook.wait_callback("MediaStreamingStopped")
        assert stopped["data"]["mediaStreamingUpdate"]["mediaStreamingStatusDetails"] == "subscriptionStopped"
        await asyncio.wait_for(first.closed.wait(), 10)
        assert first.ws.close_code == 1000  # the emulator closed it, cleanly

        await conn.start_media_streaming(operation_context="again")
        second = await app.wait_sockets(2)
        await webhook.wait_for(lambda: len(callbacks_of(webhook, "MediaStreamingStarted")) == 2)
        await asyncio.sleep(0.5)
        assert (await conn.get_call_properties()).call_connection_state == "connected"
        await conn.hang_up(is_for_everyone=True)
        report = await asyncio.wait_for(runner, 30)
        await asyncio.wait_for(second.closed.wait(), 10)

    assert "MediaStreamingFailed" not in webhook.callback_types()
    assert report["ok"], report["error"]
    assert second.voiced_caller_frames() == 0 and len(second.received) > 10  # caller audio flows (silence)
    assert report["media_session_count"] == 2
    assert [s["dropped"] for s in report["media_sessions"]] == [False, False]
    (gap,) = report["media_gaps"]
    assert gap["cause"] == "stopped" and gap["resumed_at_ms"] is not None


async def test_socket_dropping_as_the_app_hangs_up_sends_no_failure(emulator: Emulator, webhook: Webhook) -> None:
    async def app_side(index: int, sock: Socket) -> None:
        await asyncio.sleep(0.1)
        await sock.ws.send(_tone_msg(200))

    phone = build_phone_from_script("name: bye\nsteps: [{wait: {disconnected: true, timeout_s: 40}}]", transcribe=False)
    async with (
        MediaApp(app_side) as app,
        CallAutomationClient(emulator.endpoint, AzureKeyCredential(emulator.access_key)) as client,
    ):
        call = await place_and_answer(emulator, webhook, client, phone, app.url)
        runner = asyncio.create_task(phone.run(call))
        sock = await app.wait_sockets(1)
        await webhook.wait_callback("MediaStreamingStarted")
        await asyncio.sleep(0.3)
        await client.get_call_connection(call.call_connection_id).hang_up(is_for_everyone=True)
        abort(sock)  # the app tears its socket down right after hanging up
        report = await asyncio.wait_for(runner, 30)
        await webhook.wait_callback("CallDisconnected")
        with contextlib.suppress(TimeoutError):  # a late Failed would arrive within this second
            await webhook.wait_for(lambda: "MediaStreamingFailed" in webhook.callback_types(), timeout=1.0)

    assert "MediaStreamingFailed" not in webhook.callback_types(), webhook.callback_types()
    assert "MediaStreamingFailed" not in report["events"]
    assert report["ok"], report["error"]
    assert call.media_drops == 0
