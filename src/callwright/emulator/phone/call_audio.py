"""The phone's ear and mouth on the call itself, for apps that open no media stream (or open it late).

On a real call the caller hears what ACS plays (``:play``, recognize prompts) whether or not the app
forks the audio to a media WebSocket; the stream is the app's tap, not the caller's line. A
:class:`CallAudioLink` is that line: a :class:`~callwright.emulator.phone.media.MediaLink` whose clock,
timeline, prompt playout and caller source run from the start with no socket (``down``), so script
waits, the live spotter, the report and the recording work unchanged. Caller audio stays on the
timeline, where the emulator's recognizer reads it (:meth:`VirtualPhone.caller_track`). If the app
starts streaming later, the emulator attaches the socket to this same link (``MediaLink.reconnect``) and
the call goes on over both.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from callwright.emulator.phone.audio import frame_is_voiced
from callwright.emulator.phone.media import MediaLink

NO_STREAM = "no media stream"


class CallAudioLink(MediaLink):
    """A MediaLink that starts without a WebSocket: REST prompts reach the phone; a stream may come later."""

    async def start(self) -> None:
        """Start the 20 ms clock on the call's audio path (no socket yet)."""
        self.down = True
        self.down_reason = NO_STREAM
        self.timeline.t0 = time.monotonic()
        self._tasks.append(asyncio.create_task(self._clock(), name="phone-call-audio-clock"))

    async def connect(self, url: str = "", headers: dict[str, str] | None = None) -> None:
        raise RuntimeError("a call-audio link takes a stream through reconnect(), not connect()")

    def _pop_prompt(self) -> bytes | None:
        # With no socket a prompt frame "arrives" as it plays; counting it as received is what gives the
        # report response latencies for prompt-only apps.
        out = super()._pop_prompt()
        if out is not None and self.down:
            self.timeline.rx_frames.append((time.monotonic(), frame_is_voiced(out)))
        return out


def call_audio_link(rate: int | None, **kwargs: Any) -> CallAudioLink:
    """A link at the call's negotiated stream rate if it has one (a later stream then matches), else 16 kHz."""
    return CallAudioLink(sample_rate=rate or 16_000, **kwargs)
