"""Picks the media handler for a call from its mode (``media`` → speech cascade, ``voice_live`` → realtime).

A registry of builders by mode: the built-ins are registered at start-up, after plug-ins, which may add
modes of their own or replace a built-in (``services.media_factory.register("media", builder)``).
"""

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
        """Use ``builder`` for calls of ``mode`` (replaces what was there: a plug-in may swap a built-in)."""
        self._builders[mode] = builder

    def register_default(self, mode: str, builder: HandlerBuilder) -> None:
        """Register a built-in handler unless a plug-in already registered one for ``mode``."""
        self._builders.setdefault(mode, builder)

    def __contains__(self, mode: object) -> bool:
        return mode in self._builders

    def get(self, mode: str) -> HandlerBuilder | None:
        return self._builders.get(mode)

    def modes(self) -> list[str]:
        return sorted(self._builders)

    def create(self, record: CallRecord, transport: MediaTransport, app_state: Any) -> MediaHandler:
        builder = self._builders.get(record.mode)
        if builder is None:
            raise UnsupportedMode(f"no media handler for mode {record.mode!r} (available: {', '.join(self.modes())})")
        return builder(record, transport, app_state)
