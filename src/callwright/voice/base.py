"""The two small shapes media handling is built from: a transport per channel and a handler per call."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from callwright.acs.media import AudioData, AudioMetadata


@runtime_checkable
class MediaTransport(Protocol):
    """Where the agent's audio goes (ACS media WebSocket, a browser socket). Handlers never see JSON."""

    sample_rate: int

    async def send_audio(self, pcm: bytes) -> None: ...

    async def stop_audio(self) -> None: ...

    async def close(self, code: int = 1000, reason: str = "") -> None: ...

    @property
    def closed(self) -> bool: ...


@runtime_checkable
class MediaHandler(Protocol):
    """One call's media brain. ``on_audio`` is called on the event loop for every frame and must not block."""

    async def start(self, metadata: AudioMetadata) -> None: ...

    def on_audio(self, frame: AudioData) -> None: ...

    async def on_dtmf(self, tone: str) -> None: ...

    async def stop(self) -> None:
        """Idempotent; releases everything the handler holds."""
