"""Helpers for the realtime server tests: a real server on 127.0.0.1 (ephemeral port), test audio, events."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import wave
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from callwright.config import Settings, load_settings
from callwright.realtime import running_realtime_server

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


def transcribe_reply(pcm: bytes, rate: int) -> str:
    """What the agent said, recognised from its audio (as the virtual phone does)."""
    from callwright.emulator.phone.transcribe import AgentTranscriber

    return AgentTranscriber().transcribe(pcm, rate, [(0, len(pcm))])[0]


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
