"""Paced playback of the agent's audio, with a record of what the caller actually heard.

Frames are 20 ms and are sent against a monotonic clock at most ``lead_ms`` ahead of when they play at
the caller's end, so a StopAudio has almost nothing to flush and the server always knows which audio —
and therefore which words — the caller heard. Audio is grouped in segments (one per text chunk), so an
interrupted reply can be truncated to the words that were played.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from callwright.acs.media import FRAME_MS, frame_bytes
from callwright.voice.base import MediaTransport

log = logging.getLogger("callwright.cascade")


@dataclass(eq=False)
class Segment:
    """The audio of one text chunk; filled by TTS while it plays."""

    text: str
    pcm: bytearray = field(default_factory=bytearray)
    synthesized: bool = False  # TTS finished for this text
    sent: int = 0  # bytes handed to the transport
    played: int = 0  # bytes whose play time has passed (updated as frames are sent)
    first_play_time: float | None = None
    first_sent_time: float | None = None

    @property
    def fully_played(self) -> bool:
        return self.synthesized and self.played >= len(self.pcm)

    def heard_fraction(self) -> float:
        if not self.pcm:
            return 1.0 if self.synthesized else 0.0
        return min(1.0, self.played / len(self.pcm))


class Playback:
    def __init__(
        self,
        transport: MediaTransport,
        *,
        lead_ms: int = 60,
        on_first_frame: Callable[[float], None] | None = None,
        on_frame_sent: Callable[[bytes, float], None] | None = None,
    ) -> None:
        self._transport = transport
        self._frame = frame_bytes(transport.sample_rate)
        self._lead = lead_ms / 1000
        self._segments: list[Segment] = []
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._paused = False
        self._held = False
        # Bumped by every hold, pause and clear: a frame picked before one of them and still waiting for
        # its send time is not sent, even if a resume or reopen came during the wait.
        self._stops = 0
        self._task: asyncio.Task[None] | None = None
        self._next_play_at = 0.0  # monotonic time the next frame plays at the caller's end
        self._grid_origin: float | None = None  # play times stay on one 20 ms grid, like the caller's clock
        self._inflight: list[tuple[float, Segment, int]] = []  # (play end time, segment, bytes)
        self.on_first_frame = on_first_frame
        self._on_frame_sent = on_frame_sent  # (frame, when it plays at the caller's end)
        # The call's recorder (voice/recording.py), when recording: every frame sent, at its play time, and
        # the cut a StopAudio makes — the agent as the caller heard it, not as TTS produced it.
        self.tap: Any = None
        self.frames_sent = 0
        self.underruns = 0

    # --- state read by the recognition lane (plain attributes: safe to read from another thread) ---
    @property
    def audible(self) -> bool:
        """Agent audio is playing (or about to) at the caller's end."""
        return not self._paused and (self._pending_bytes() > 0 or time.monotonic() < self._next_play_at)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="playback")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    # --- producer side ----------------------------------------------------------------------------
    def new_segment(self, text: str) -> Segment:
        seg = Segment(text)
        self._segments.append(seg)
        self._idle.clear()
        return seg

    def append(self, seg: Segment, pcm: bytes) -> None:
        seg.pcm += pcm
        self._idle.clear()
        self._wake.set()

    def finish(self, seg: Segment) -> None:
        seg.synthesized = True
        self._wake.set()

    async def wait_played(self) -> None:
        """Until every segment is synthesized and has played out at the caller's end."""
        while True:
            await self._idle.wait()
            if all(s.synthesized for s in self._segments):
                return
            self._idle.clear()
            await asyncio.sleep(FRAME_MS / 1000)

    # --- barge-in ---------------------------------------------------------------------------------
    def hold(self) -> None:
        """Stop sending for a moment, still counting as audible: the caller may be starting to speak.

        The frames already sent keep playing for up to the lead, so a hold released within it is not
        heard at all; one confirmed becomes a pause without having lost that time.
        """
        self._held = True
        self._stops += 1

    def release(self) -> None:
        if self._held:
            self._held = False
            self._wake.set()

    def pause(self, *, flush: bool = True) -> float:
        """Stop feeding at once; returns when the last frame sent plays out at the caller's end.

        ``flush`` says a StopAudio goes out with the pause: frames sent but not yet played are then
        dropped by ACS, so they count as unheard. Without it they play out (at most the lead).
        """
        now = time.monotonic()
        self._paused = True
        self._held = False
        self._stops += 1
        self._settle(now)
        if flush:
            for _end, seg, nbytes in self._inflight:
                seg.sent -= nbytes
            self._inflight.clear()
            self._next_play_at = now
            if self.tap is not None:
                self.tap.agent_cut(now)
        return max(now, self._next_play_at)

    def resume(self, *, restart_interrupted: bool = True) -> None:
        """Continue after a false barge-in; the interrupted segment is re-spoken from its start."""
        self._settle(time.monotonic())
        if restart_interrupted:
            for seg in self._segments:
                if not seg.fully_played and seg.played > 0:
                    self._inflight = [item for item in self._inflight if item[1] is not seg]
                    seg.sent = seg.played = 0
                    break
        self._paused = self._held = False
        self._wake.set()

    def clear(self) -> list[Segment]:
        """Drop everything (confirmed barge-in / call end); returns the segments of the reply so far."""
        self._paused = True
        self._stops += 1
        self._settle(time.monotonic())
        segments, self._segments = self._segments, []
        self._inflight.clear()
        self._idle.set()
        self._wake.set()
        return segments

    def forget(self, segments: list[Segment]) -> None:
        """Drop a finished reply's segments (they have played out)."""
        drop = set(map(id, segments))
        self._segments = [s for s in self._segments if id(s) not in drop]

    def reopen(self) -> None:
        self._paused = self._held = False
        self._wake.set()

    # --- the pacing loop --------------------------------------------------------------------------
    def _pending_bytes(self) -> int:
        return sum(len(s.pcm) - s.sent for s in self._segments)

    def _settle(self, now: float) -> None:
        keep = []
        for end, seg, nbytes in self._inflight:
            if end <= now:
                seg.played += nbytes
            else:
                keep.append((end, seg, nbytes))
        self._inflight = keep

    def _next_frame(self) -> tuple[Segment, bytes] | None:
        for seg in self._segments:
            available = len(seg.pcm) - seg.sent
            if available >= self._frame or (seg.synthesized and available > 0):
                chunk = bytes(seg.pcm[seg.sent : seg.sent + self._frame])
                return seg, chunk
            if not seg.synthesized:
                return None  # keep order: wait for this segment's audio
        return None

    def _on_grid(self, now: float) -> float:
        """The first play slot at or after ``now`` on the stream's 20 ms grid: the caller's end plays
        frames on a steady clock, so keeping one phase keeps the play times (and the echo delay) true."""
        if self._grid_origin is None:
            self._grid_origin = now
            return now
        step = FRAME_MS / 1000
        return self._grid_origin + math.ceil((now - self._grid_origin) / step - 1e-9) * step

    async def _run(self) -> None:
        while True:
            now = time.monotonic()
            self._settle(now)
            nxt = None if self._paused or self._held else self._next_frame()
            if nxt is None:
                if not self._paused and not self._inflight and all(s.fully_played for s in self._segments):
                    self._idle.set()
                self._wake.clear()
                timeout = max(0.0, self._inflight[0][0] - now) if self._inflight else None
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancel that races the
                # wake-up (close() then waited forever on this task).
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await self._wake.wait()
                continue
            seg, chunk = nxt
            if self._next_play_at < now:
                if self.frames_sent and any(s.sent for s in self._segments if not s.fully_played):
                    self.underruns += 1
                self._next_play_at = self._on_grid(now)
            send_at = self._next_play_at - self._lead
            if send_at > now:
                stops = self._stops
                await asyncio.sleep(send_at - now)
                if self._paused or self._held or self._stops != stops:
                    continue
            if len(chunk) < self._frame:
                chunk = chunk + bytes(self._frame - len(chunk))
            seg.sent += min(len(chunk), len(seg.pcm) - seg.sent)
            play_start = self._next_play_at
            self._next_play_at += FRAME_MS / 1000
            self._inflight.append((self._next_play_at, seg, min(self._frame, len(chunk))))
            if seg.first_play_time is None:
                seg.first_play_time = play_start
                seg.first_sent_time = time.monotonic()
            first = self.frames_sent == 0
            self.frames_sent += 1
            if self._on_frame_sent is not None:
                self._on_frame_sent(chunk, play_start)
            if self.tap is not None:
                self.tap.agent(chunk, play_start)
            await self._transport.send_audio(chunk)
            if first and self.on_first_frame is not None:
                self.on_first_frame(time.monotonic())
