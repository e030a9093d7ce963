"""A stand-in for the app's media endpoint (a real WebSocket server on 127.0.0.1) and a small CallSide."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import websockets
from websockets.asyncio.server import ServerConnection

from callwright.emulator.phone import VirtualPhone, build_phone_from_script

Behaviour = Callable[["FakeApp"], Awaitable[None]]


def tone_pcm(ms: int, freq: float = 440.0, rate: int = 16_000) -> bytes:
    t = np.arange(rate * ms // 1000) / rate
    return (np.sin(2 * np.pi * freq * t) * 8000).astype("<i2").tobytes()


def audio_msg(pcm: bytes, style: str = "pascal") -> str:
    b64 = base64.b64encode(pcm).decode()
    if style == "pascal":  # the documented Python form
        return json.dumps({"Kind": "AudioData", "AudioData": {"Data": b64}, "StopAudio": None})
    if style == "camel":  # the JS SDK
        return json.dumps({"kind": "audioData", "audioData": {"data": b64, "isSilent": False}, "stopAudio": {}})
    if style == "dotnet":  # System.Text.Json of OutStreamingData
        return json.dumps(
            {"Kind": "AudioData", "AudioData": {"Data": b64, "Timestamp": "0001-01-01T00:00:00+00:00",
             "Participant": None, "IsSilent": False}, "StopAudio": None, "MarkData": None}
        )  # fmt: skip
    raise ValueError(style)


STOP = json.dumps({"Kind": "StopAudio", "AudioData": None, "StopAudio": {}})


class FakeApp:
    """Records every message the phone sends (with receive time); ``behaviour`` plays the app's part."""

    def __init__(self, behaviour: Behaviour | None = None) -> None:
        self.behaviour = behaviour
        self.received: list[tuple[float, dict[str, Any]]] = []
        self.inbox: asyncio.Queue[tuple[float, dict[str, Any]]] = asyncio.Queue()
        self.headers: dict[str, str] = {}
        self.ws: ServerConnection | None = None
        self.sent: list[tuple[float, str]] = []
        self.url = ""
        self._server: Any = None

    async def __aenter__(self) -> FakeApp:
        self._server = await websockets.serve(self._handle, "127.0.0.1", 0)
        port = next(iter(self._server.sockets)).getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}/api/v1/media/stream"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        await self._server.wait_closed()

    async def send(self, text: str) -> None:
        assert self.ws is not None
        self.sent.append((time.monotonic(), text))
        await self.ws.send(text)

    async def _handle(self, ws: ServerConnection) -> None:
        self.ws = ws
        self.headers = {k.lower(): v for k, v in ws.request.headers.raw_items()}
        task = asyncio.create_task(self.behaviour(self)) if self.behaviour else None
        try:
            async for msg in ws:
                item = (time.monotonic(), json.loads(msg))
                self.received.append(item)
                self.inbox.put_nowait(item)
        except websockets.ConnectionClosed:
            pass
        finally:
            if task is not None:
                task.cancel()

    async def next_utterance_end(self, hangover_frames: int = 3) -> float:
        """Receive time of the last voiced caller frame of the next utterance.

        Known only once ``hangover_frames`` silent frames follow it (speech has short pauses inside);
        the delay is then measured from the last voiced frame's receive time, as an endpointer would.
        """
        last_voiced: float | None = None
        quiet = 0
        while True:
            t, msg = await self.inbox.get()
            if msg.get("kind") != "AudioData":
                continue
            if not msg["audioData"]["silent"]:
                last_voiced, quiet = t, 0
            elif last_voiced is not None:
                quiet += 1
                if quiet >= hangover_frames:
                    return last_voiced

    async def next_onset(self) -> float:
        while True:
            t, msg = await self.inbox.get()
            if msg.get("kind") == "AudioData" and not msg["audioData"]["silent"]:
                return t


class FakeCall:
    """The emulated call as the phone sees it; hang-up disconnects at once, like the emulator would."""

    call_connection_id = "call-test-1"
    correlation_id = "corr-test-1"
    server_call_id = "server-call-test-1"
    caller_raw_id = "4:+15551230001"

    def __init__(self, phone: VirtualPhone) -> None:
        self.phone = phone
        self.dtmf: list[str] = []
        self.hung_up = False
        self._tasks: set[asyncio.Task[None]] = set()

    def hang_up_by_phone(self) -> None:
        self.hung_up = True
        self.phone.on_callback_event("Microsoft.Communication.CallDisconnected", {})
        task = asyncio.get_running_loop().create_task(self.phone.on_disconnected("caller hung up"))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def dtmf_from_phone(self, tone_char: str) -> None:
        self.dtmf.append(tone_char)


async def run_phone(
    script: str,
    app: FakeApp,
    *,
    record_dir: Path | None = None,
    transcribe: bool = False,
    tts_cache: Path | None = None,
) -> tuple[VirtualPhone, FakeCall, dict[str, Any]]:
    phone = build_phone_from_script(script, record_dir=record_dir, transcribe=transcribe, tts_cache_dir=tts_cache)
    call = FakeCall(phone)
    phone.on_callback_event("Microsoft.Communication.CallConnected", {})
    await phone.start_media(
        call,
        transport_url=app.url,
        headers={"Authorization": "Bearer test.jwt", "x-ms-call-connection-id": call.call_connection_id,
                 "x-ms-call-correlation-id": call.correlation_id},
        sample_rate=16_000,
        bidirectional=True,
    )  # fmt: skip
    report = await phone.run(call)
    return phone, call, report


@pytest.fixture(scope="session")
def tts_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("phone-tts")
