"""Helpers for the realtime server tests: a real server on 127.0.0.1 (ephemeral port), test audio, events."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
import wave
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from callwright.config import Settings, load_settings
from callwright.realtime import running_realtime_server
from callwright.realtime.protocol import Dialect, event_name
from callwright.speech.resample import resample

DATA = Path(__file__).parent.parent / "data" / "caller"
FRAME_16K = 640


def rt_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "stt_engine": "pocketsphinx",
        "tts_engine": "espeak",
        "vad_engine": "silero",
        "agent_engine": "scenario",
        "scenario": "insurance",
        "stt_pool_size": 6,
        "tts_pool_size": 6,
        "stt_pool_warm": 1,
        "tts_pool_warm": 1,
        "pool_acquire_timeout": 10.0,
    }
    values.update(overrides)
    return load_settings(**values)


@contextlib.asynccontextmanager
async def realtime_server(**overrides: Any) -> AsyncIterator[tuple[str, Any]]:
    async with running_realtime_server(rt_settings(**overrides)) as (url, app):
        yield url, app


def wav16(name: str) -> bytes:
    """A caller recording (natural speech, 16 kHz mono PCM16)."""
    with wave.open(str(DATA / f"{name}.wav")) as w:
        assert w.getframerate() == 16_000 and w.getnchannels() == 1
        return w.readframes(w.getnframes())


def silence(ms: int, rate: int = 16_000) -> bytes:
    return b"\0\0" * (rate * ms // 1000)


async def stream_audio(
    send: Callable[[dict[str, Any]], Awaitable[Any]], pcm: bytes, rate: int = 16_000, speed: float = 4.0
) -> None:
    """Append ``pcm`` in 20 ms frames, ``speed`` × faster than real time (the server VAD runs on audio time)."""
    frame = rate * 20 // 1000 * 2
    for i in range(0, len(pcm), frame):
        await send({"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm[i : i + frame]).decode()})
        if (i // frame) % 5 == 4:
            await asyncio.sleep(0.1 / speed)


def b64(pcm: bytes) -> str:
    return base64.b64encode(pcm).decode()


async def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll generously: the machine may be loaded."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


_TRANSCRIBE = """
import sys
from callwright.emulator.phone.transcribe import AgentTranscriber
pcm = sys.stdin.buffer.read()
rate = int(sys.argv[1])
sys.stdout.write(AgentTranscriber().transcribe(pcm, rate, [(0, len(pcm))])[0])
"""


def transcribe_reply(pcm: bytes, rate: int) -> str:
    """What the agent said, recognised from its audio (as the virtual phone does) — in a fresh process:
    pocketsphinx in a pytest worker that loaded Piper before decodes the same audio as other words (see
    SAME_WORKER in tests/conftest.py), and which worker ran what before is up to the scheduler."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _TRANSCRIBE, str(rate)], input=pcm, capture_output=True, timeout=120, check=True
    )
    return done.stdout.decode()


class Events:
    """Every event an SDK connection yields, in order, collected by a background task."""

    def __init__(self, conn: Any) -> None:
        self.items: list[Any] = []
        self.task = asyncio.create_task(self._pump(conn))

    async def _pump(self, conn: Any) -> None:
        async for event in conn:
            self.items.append(event)

    def of(self, kind: str) -> list[Any]:
        return [e for e in self.items if e.type == kind]

    def types(self) -> list[str]:
        return [e.type for e in self.items]

    async def wait(self, kind: str, count: int = 1, timeout: float = 30.0) -> list[Any]:
        await wait_until(lambda: len(self.of(kind)) >= count, timeout)
        return self.of(kind)

    async def close(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


SERVER_VAD: dict[str, Any] = {"type": "server_vad", "silence_duration_ms": 500}
_UNSET: Any = object()


@dataclasses.dataclass(frozen=True)
class Client:
    """One unmodified SDK speaking one dialect, so a test body runs unchanged for every client.

    ``voicelive``: azure-ai-voicelive ``aio.connect``; ``ga``: ``openai`` ``client.realtime``;
    ``beta``: ``openai`` ``AsyncAzureOpenAI`` ``client.beta.realtime`` (``OpenAI-Beta: realtime=v1`` on the
    Azure OpenAI preview path), whose input and pcm16 output are fixed at 24 kHz by the protocol."""

    dialect: Dialect

    @property
    def in_rate(self) -> int:
        return 24_000 if self.dialect == "beta" else 16_000

    @property
    def out_rate(self) -> int:
        return 24_000 if self.dialect == "beta" else 16_000

    def connect(self, url: str) -> contextlib.AbstractAsyncContextManager[Any]:
        if self.dialect == "voicelive":
            from azure.ai.voicelive.aio import connect
            from azure.core.credentials import AzureKeyCredential

            return connect(endpoint=url, credential=AzureKeyCredential("k"), model="callwright-scenario:insurance")
        import openai

        if self.dialect == "ga":
            return openai.AsyncOpenAI(api_key="sk-local", base_url=f"{url}/v1").realtime.connect(
                model="callwright-scenario:insurance"
            )
        client = openai.AsyncAzureOpenAI(
            azure_endpoint=url, api_version="2025-04-01-preview", api_key="k",
            websocket_base_url=url.replace("http://", "ws://") + "/openai",
        )  # fmt: skip
        # the deployment name does not name a scenario: the server's default (insurance) answers
        return client.beta.realtime.connect(model="my-deployment")

    def session(
        self, vad: dict[str, Any] | None = _UNSET, transcription: bool = False, tools: list[Any] | None = None
    ) -> dict[str, Any]:
        """A ``session.update`` body in this client's shape: PCM16 at ``in_rate``/``out_rate``."""
        s: dict[str, Any] = {}
        if tools is not None:
            s.update(tools=tools, tool_choice="auto")
        if self.dialect == "ga":
            inp: dict[str, Any] = {"format": {"type": "audio/pcm", "rate": self.in_rate}}
            if vad is not _UNSET:
                inp["turn_detection"] = vad
            if transcription:
                inp["transcription"] = {"model": "gpt-4o-mini-transcribe"}
            out = {"format": {"type": "audio/pcm", "rate": self.out_rate}}
            return {"type": "realtime", **s, "audio": {"input": inp, "output": out}}
        if self.dialect == "voicelive":
            s.update(input_audio_sampling_rate=16000, output_audio_format="pcm16_16000hz")
        if vad is not _UNSET:
            s["turn_detection"] = vad
        if transcription:
            s["input_audio_transcription"] = {"model": "whisper-1"}
        return s

    def ev(self, name: str) -> str:
        """The beta/VoiceLive event name as this client receives it."""
        return event_name(name, self.dialect)

    def speech(self, name: str) -> bytes:
        pcm = wav16(name)
        return pcm if self.in_rate == 16_000 else resample(pcm, 16_000, self.in_rate)

    def silence(self, ms: int) -> bytes:
        return silence(ms, self.in_rate)

    async def stream(self, conn: Any, pcm: bytes, speed: float = 4.0) -> None:
        await stream_audio(conn.send, pcm, self.in_rate, speed)

    @staticmethod
    def audio(deltas: list[Any]) -> bytes:
        """Reply audio from delta events (the VoiceLive SDK decodes base64 itself, openai does not)."""
        return b"".join(d.delta if isinstance(d.delta, bytes) else base64.b64decode(d.delta) for d in deltas)

    @staticmethod
    def reason(done: Any) -> Any:
        details = done.response.status_details
        try:  # VoiceLive models are mappings; openai's are pydantic objects
            return details["reason"]
        except TypeError:
            return details.reason

    async def send_raw(self, conn: Any, data: str | bytes) -> None:
        """Bytes no SDK method would send (misuse). Only openai's GA connection has ``send_raw``; the beta
        one and VoiceLive's expose their websocket, which is used as-is."""
        if self.dialect == "ga":
            await conn.send_raw(data)
        elif self.dialect == "beta":
            await conn._connection.send(data)
        elif isinstance(data, bytes):
            await conn._connection.send_bytes(data)
        else:
            await conn._connection.send_str(data)


CLIENTS = [Client("voicelive"), Client("ga"), Client("beta")]
