"""The ACS media WebSocket as a MediaTransport."""

from __future__ import annotations

import asyncio
import logging

from starlette.websockets import WebSocket, WebSocketState

from callwright.acs.media import SAMPLE_RATE, build_outbound_audio, build_stop_audio

log = logging.getLogger("callwright.media")


class AcsMediaTransport:
    def __init__(self, websocket: WebSocket, sample_rate: int = SAMPLE_RATE) -> None:
        self._ws = websocket
        self.sample_rate = sample_rate
        self._lock = asyncio.Lock()
        self._closed = False
        self.frames_sent = 0
        self.stops_sent = 0

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
        if await self._send(build_outbound_audio(pcm)):
            self.frames_sent += 1

    async def stop_audio(self) -> None:
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
