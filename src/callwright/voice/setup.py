"""Registers the media handlers for each mode and builds the engines they need (in the lifespan)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from callwright.config import Settings
from callwright.voice.factory import MediaHandlerFactory
from callwright.voice.tone import ToneHandler

log = logging.getLogger("callwright.media")


async def setup_media(
    app_state: Any, factory: MediaHandlerFactory, settings: Settings
) -> Callable[[], Awaitable[None]]:
    """Returns the cleanup coroutine for what it built."""
    factory.register("media", lambda record, transport, st: ToneHandler(transport))
    factory.register("voice_live", lambda record, transport, st: ToneHandler(transport))

    async def cleanup() -> None:
        return None

    return cleanup
