"""Picks the media handler for a call from its mode (``media`` → speech cascade, ``voice_live`` → realtime)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from callwright.sessions.registry import CallRecord
from callwright.voice.base import MediaHandler, MediaTransport

HandlerBuilder = Callable[[CallRecord, MediaTransport, Any], MediaHandler]


class UnsupportedMode(LookupError):
    pass


class MediaHandlerFactory:
    def __init__(self) -> None:
        self._builders: dict[str, HandlerBuilder] = {}

    def register(self, mode: str, builder: HandlerBuilder) -> None:
        self._builders[mode] = builder

    def modes(self) -> list[str]:
        return sorted(self._builders)

    def create(self, record: CallRecord, transport: MediaTransport, app_state: Any) -> MediaHandler:
        builder = self._builders.get(record.mode)
        if builder is None:
            raise UnsupportedMode(f"no media handler for mode {record.mode!r} (available: {', '.join(self.modes())})")
        return builder(record, transport, app_state)
