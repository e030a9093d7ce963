"""The ACS media WebSocket as a MediaTransport.

Handlers always speak 16 kHz (``sample_rate``). The wire speaks the rate the stream was negotiated at
(``wire_rate``, from AudioMetadata): outbound audio goes out at the negotiated rate (acs-protocol.md §4.3),
so a 24 kHz stream gets the agent's audio resampled up with one stateful soxr stream per call.
"""

from __future__ import annotations

import asyncio
import logging

from starlette.websockets import WebSocket, WebSocketState

from callwright.acs.media import SAMPLE_RATE, SUPPORTED_RATES, build_outbound_audio, build_stop_audio
from callwright.speech.resample import StreamResampler

log = logging.getLogger("callwright.media")


class AcsMediaTransport:
    def __init__(self, websocket: WebSocket, sample_rate: int = SAMPLE_RATE) -> None:
        self._ws = websocket
        self.sample_rate = sample_rate
        self._lock = asyncio.Lock()
        self._closed = False
        self.frames_sent = 0
        self.stops_sent = 0
        self.wire_rate = sample_rate
        self._resampler: StreamResampler | None = None

    def set_wire_rate(self, rate: int) -> None:
        """The stream's negotiated rate (AudioMetadata.sampleRate); outbound audio is converted to it."""
        if rate not in SUPPORTED_RATES:
            raise ValueError(f"unsupported wire rate {rate} (supported: {SUPPORTED_RATES})")
        if rate == self.wire_rate:
            return
        self.wire_rate = rate
        self._resampler = None if rate == self.sample_rate else StreamResampler(self.sample_rate, rate, "HQ")
        log.info("media stream at %d Hz: agent audio is resampled from %d Hz", rate, self.sample_rate)

    @property
    def closed(self) -> bool:
        return self._closed or self._ws.client_state != WebSocketState.CONNECTED

    async def _send(self, text: str) -> bool:
        if self.closed:
            return False
        async with self._lock:
            try:
                await self._ws.send_text(text)
            except Exception as exc:  # the peer went away mid-send; the receive loop will notice
                log.debug("media send failed: %s", exc)
                self._closed = True
                return False
        return True

    async def send_audio(self, pcm: bytes) -> None:
        if self._resampler is not None:
            pcm = self._resampler.process(pcm)  # ~20 µs a frame: fine on the loop
            if not pcm:
                return  # soxr is still filling its filter; the samples come out with the next frame
        if await self._send(build_outbound_audio(pcm)):
            self.frames_sent += 1

    async def stop_audio(self) -> None:
        if self._resampler is not None:
            self._resampler.reset()  # what it held back belongs to the audio being stopped
        if await self._send(build_stop_audio()):
            self.stops_sent += 1

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if self.closed:
            self._closed = True
            return
        self._closed = True
        try:
            await self._ws.close(code=code, reason=reason)
        except Exception as exc:
            log.debug("media close failed: %s", exc)
