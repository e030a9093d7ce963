"""A minimal media handler: keeps the caller's audio and answers each DTMF key with a short tone.

It proves the protocol layer end to end without speech engines (used by protocol tests and as the
handler for modes whose engine is not configured).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import numpy as np

from callwright.acs.media import FRAME_MS, AudioData, AudioMetadata, frame_bytes
from callwright.voice.base import MediaTransport

log = logging.getLogger("callwright.media")


def tone_pcm(freq_hz: float, ms: int, sample_rate: int = 16_000, amplitude: float = 0.3) -> bytes:
    t = np.arange(int(sample_rate * ms / 1000)) / sample_rate
    wave = amplitude * np.sin(2 * np.pi * freq_hz * t)
    return (wave * 32767).astype("<i2").tobytes()


class ToneHandler:
    def __init__(self, transport: MediaTransport) -> None:
        self._transport = transport
        self.caller_audio = bytearray()
        self.frames = 0
        self.silent_frames = 0
        self.dtmf: list[str] = []
        self.metadata: AudioMetadata | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopped = False

    async def start(self, metadata: AudioMetadata) -> None:
        self.metadata = metadata
        # Handlers speak at the transport's rate (16 kHz); the transport converts to the stream's.
        self._spawn(self._play(tone_pcm(440, 200, self._transport.sample_rate)))

    def on_audio(self, frame: AudioData) -> None:
        self.frames += 1
        if frame.silent:
            self.silent_frames += 1
        self.caller_audio += frame.pcm

    async def on_dtmf(self, tone: str) -> None:
        self.dtmf.append(tone)
        self._spawn(self._play(tone_pcm(660, 120)))

    def _spawn(self, coro: object) -> None:
        task = asyncio.get_running_loop().create_task(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _play(self, pcm: bytes) -> None:
        step = frame_bytes(self._transport.sample_rate)
        for i in range(0, len(pcm), step):
            if self._stopped:
                return
            await self._transport.send_audio(pcm[i : i + step])
            await asyncio.sleep(FRAME_MS / 1000)

    async def stop(self) -> None:
        self._stopped = True
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
