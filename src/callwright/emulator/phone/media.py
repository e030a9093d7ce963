"""The ACS side of one media WebSocket (acs-protocol.md §4), as heard and spoken by a virtual phone.

One clock drives everything: tick *n* fires at ``t0 + n·20 ms`` on the monotonic clock. On each tick the
phone sends exactly one caller AudioData frame (``silent: true`` zeros while the caller is quiet) and
plays exactly one 20 ms agent frame from the playout FIFO, so the caller (left) and agent (right)
channels of the recording share one timeline. A late tick is caught up by firing the missed ticks
back-to-back rather than by stretching the grid, so the stream never drifts.

Wire times are taken where they happen: a caller frame's send time and an agent message's receive
time, both from ``time.monotonic()``; reports are computed from these, never from server clocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import websockets
from websockets.asyncio.client import ClientConnection

from callwright.acs.media import (
    MediaFrameError,
    OutboundAudio,
    OutboundStop,
    build_audio_data,
    build_audio_metadata,
    build_dtmf,
    frame_bytes,
    parse_outbound,
)
from callwright.emulator.phone.audio import frame_is_voiced, resample

log = logging.getLogger(__name__)

TICK_S = 0.020
# The partial tail of an agent chunk is played (padded) only after this long without new audio,
# so chunks that are not frame-aligned do not underrun between them.
_PARTIAL_HOLD_S = 0.045
# Voiced agent frames closer than this belong to one agent utterance (as heard by the caller).
AGENT_UTTERANCE_GAP_S = 0.5

DRY, PLAYED_SILENT, PLAYED_VOICED = 0, 1, 2


@dataclass(slots=True)
class CallerUtterance:
    """One thing the caller said or played, with its wire times (filled in by the clock)."""

    label: str
    kind: str  # speech | noise | click | file
    probe: bool = False
    barge_in: bool = False
    step: int = 0
    start_tick: int | None = None
    end_tick: int | None = None
    onset_t: float | None = None  # send time of the first voiced frame
    end_t: float | None = None  # send time of the last voiced frame
    agent_playing_at_onset: bool = False


@dataclass(slots=True)
class _Playing:
    pcm: bytes
    utt: CallerUtterance
    done: asyncio.Future[None]
    pos: int = 0


@dataclass(slots=True)
class _Prompt:
    pcm: bytearray
    done: asyncio.Future[bool]


@dataclass(slots=True)
class Timeline:
    """Everything the phone sent and heard, indexed by tick, plus wire-time event lists."""

    sample_rate: int
    t0: float = 0.0
    tick_t: list[float] = field(default_factory=list)
    caller_pcm: bytearray = field(default_factory=bytearray)
    caller_voiced: list[bool] = field(default_factory=list)
    agent_pcm: bytearray = field(default_factory=bytearray)
    agent_state: list[int] = field(default_factory=list)
    rx_frames: list[tuple[float, bool]] = field(default_factory=list)  # (receive time, voiced) per 20 ms
    stop_audio_t: list[float] = field(default_factory=list)
    dtmf_t: list[tuple[float, str]] = field(default_factory=list)
    bad_messages: int = 0


class MediaLink:
    """A connected media WebSocket plus its clock, caller source, playout FIFO and recording."""

    def __init__(
        self,
        *,
        sample_rate: int,
        participant_raw_id: str,
        on_agent_frame: Callable[[bytes, bool, float], None] | None = None,
        echo_db: float | None = None,
        echo_delay_ms: int = 0,
        frame_ms: int = 20,
    ) -> None:
        self.sample_rate = sample_rate
        # Caller audio goes out in frames of this many ms (ACS: 20). The clock still ticks every 20 ms;
        # the uplink buffer is cut to this size, so 10 ms sends two frames a tick and 100 ms one every five.
        self.frame_ms = frame_ms
        self._uplink = bytearray()
        self._uplink_voiced = False
        self._raw: deque[tuple[str, asyncio.Future[None]]] = deque()
        self.raw_sent = 0
        # Line/handset echo: the agent's played audio returns on the uplink, attenuated and delayed.
        self._echo_gain = None if echo_db is None else 10 ** (echo_db / 20)
        self._echo_ticks = round(echo_delay_ms / (TICK_S * 1000))
        self.fb = frame_bytes(sample_rate)
        self.participant_raw_id = participant_raw_id
        self.timeline = Timeline(sample_rate=sample_rate)
        self.on_agent_frame = on_agent_frame
        self._ws: ClientConnection | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._say: deque[_Playing] = deque()
        self._fifo = bytearray()
        self._fifo_rx_t = 0.0
        self._prompts: deque[_Prompt] = deque()
        self._tick_ev = asyncio.Event()
        self.closed = asyncio.Event()
        self.close_reason: str | None = None
        # What the caller hears, for script waits.
        self.last_agent_voiced_t: float | None = None
        self.agent_utt_start_t: float | None = None
        self.agent_utt_count = 0

    # ---- lifecycle -------------------------------------------------------------------------------

    async def connect(self, url: str, headers: dict[str, str]) -> None:
        # No per-message deflate: base64 PCM barely compresses and 50 frames a second pay for it.
        self._ws = await websockets.connect(
            url, additional_headers=headers, open_timeout=10, max_size=2**22, compression=None
        )
        await self._ws.send(build_audio_metadata(str(uuid.uuid4()), self.sample_rate))
        self.timeline.t0 = time.monotonic()
        self._tasks = [
            asyncio.create_task(self._clock(), name="phone-media-clock"),
            asyncio.create_task(self._receive(), name="phone-media-recv"),
        ]

    async def close(self, reason: str = "stopped") -> None:
        if self.close_reason is None:
            self.close_reason = reason
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        self._finish_pending()
        self.closed.set()

    def _finish_pending(self) -> None:
        while self._raw:
            _, fut = self._raw.popleft()
            if not fut.done():
                fut.set_result(None)
        while self._say:
            p = self._say.popleft()
            if not p.done.done():
                p.done.set_result(None)
        self.cancel_prompts()

    # ---- what the phone does ---------------------------------------------------------------------

    def say(self, pcm16k: bytes, utt: CallerUtterance) -> asyncio.Future[None]:
        """Queue caller audio; the future resolves when its last frame has been sent."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.closed.is_set():
            fut.set_result(None)
            return fut
        self._say.append(_Playing(resample(pcm16k, 16_000, self.sample_rate), utt, fut))
        return fut

    async def send_dtmf(self, tone_char: str) -> None:
        if self._ws is None or self.closed.is_set():
            return
        self.timeline.dtmf_t.append((time.monotonic(), tone_char))
        await self._ws.send(build_dtmf(tone_char, self.participant_raw_id))

    def play_prompt(self, pcm16k: bytes) -> asyncio.Future[bool]:
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        if self.closed.is_set():
            fut.set_result(False)
            return fut
        self._prompts.append(_Prompt(bytearray(resample(pcm16k, 16_000, self.sample_rate)), fut))
        return fut

    def cancel_prompts(self) -> None:
        while self._prompts:
            p = self._prompts.popleft()
            if not p.done.done():
                p.done.set_result(False)

    def send_raw(self, text: str) -> asyncio.Future[None]:
        """Queue a literal text frame; the clock sends it before the next audio frame (one writer, so it
        never interleaves with a frame being sent)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.closed.is_set():
            fut.set_result(None)
            return fut
        self._raw.append((text, fut))
        return fut

    async def next_tick(self) -> None:
        await self._tick_ev.wait()

    @property
    def agent_playing(self) -> bool:
        """True while agent audio is audible or queued (what a caller would call 'the agent is talking')."""
        last = self.last_agent_voiced_t
        return bool(self._fifo) or (last is not None and time.monotonic() - last < 0.2)

    # ---- the clock -------------------------------------------------------------------------------

    async def _clock(self) -> None:
        n = 0
        t0 = self.timeline.t0
        try:
            while True:
                delay = t0 + n * TICK_S - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                await self._tick(n)
                n += 1
        except websockets.ConnectionClosed as exc:
            self.close_reason = self.close_reason or f"media socket closed ({exc.rcvd.code if exc.rcvd else 'no code'})"
            self._finish_pending()
            self.closed.set()

    async def _tick(self, n: int) -> None:
        assert self._ws is not None
        tl = self.timeline
        fb = self.fb
        # Caller side: the next frame of the current utterance, or silence.
        utt_done: _Playing | None = None
        if self._say:
            cur = self._say[0]
            frame = cur.pcm[cur.pos : cur.pos + fb]
            if len(frame) < fb:
                frame = frame + bytes(fb - len(frame))
            cur.pos += fb
            if cur.pos >= len(cur.pcm):
                utt_done = self._say.popleft()
        else:
            cur = None
            frame = bytes(fb)
        voiced = cur is not None and frame_is_voiced(frame)
        silent = not voiced
        if self._echo_gain is not None:
            # On the wire the echo is sound like any other; the report still counts only the caller's voice.
            frame = self._with_echo(frame, n)
            silent = silent and not frame_is_voiced(frame)
        while self._raw:
            text, fut = self._raw.popleft()
            await self._ws.send(text)
            self.raw_sent += 1
            if not fut.done():
                fut.set_result(None)
        now = time.monotonic()
        await self._send_uplink(frame, silent)
        tl.tick_t.append(now)
        tl.caller_pcm += frame
        tl.caller_voiced.append(voiced)
        if cur is not None:
            u = cur.utt
            if u.start_tick is None:
                u.start_tick = n
            if voiced:
                if u.onset_t is None:
                    u.onset_t = now
                    u.agent_playing_at_onset = self.agent_playing
                u.end_t = now
            u.end_tick = n
        if utt_done is not None and not utt_done.done.done():
            utt_done.done.set_result(None)

        # Agent side: one frame out of the FIFO (mixed with any REST prompt), or nothing (dry).
        out = self._pop_fifo(now)
        pframe = self._pop_prompt()
        if pframe is not None:
            out = _mix(out, pframe) if out is not None else pframe
        if out is None:
            tl.agent_pcm += bytes(fb)
            tl.agent_state.append(DRY)
        else:
            v = frame_is_voiced(out)
            tl.agent_pcm += out
            tl.agent_state.append(PLAYED_VOICED if v else PLAYED_SILENT)
            if v:
                if self.last_agent_voiced_t is None or now - self.last_agent_voiced_t > AGENT_UTTERANCE_GAP_S:
                    self.agent_utt_start_t = now
                    self.agent_utt_count += 1
                self.last_agent_voiced_t = now
            if self.on_agent_frame is not None:
                self.on_agent_frame(out, v, now)
        ev, self._tick_ev = self._tick_ev, asyncio.Event()
        ev.set()

    async def _send_uplink(self, frame: bytes, silent: bool) -> None:
        """Send this tick's 20 ms of caller audio in frames of ``frame_ms``."""
        assert self._ws is not None
        size = self.sample_rate * self.frame_ms // 1000 * 2
        if size == len(frame) and not self._uplink:
            await self._ws.send(build_audio_data(frame, silent=silent, participant_raw_id=self.participant_raw_id))
            return
        self._uplink += frame
        self._uplink_voiced = self._uplink_voiced or not silent
        while len(self._uplink) >= size:
            chunk = bytes(self._uplink[:size])
            del self._uplink[:size]
            quiet = not self._uplink_voiced
            self._uplink_voiced = bool(self._uplink) and not silent
            await self._ws.send(build_audio_data(chunk, silent=quiet, participant_raw_id=self.participant_raw_id))

    def _with_echo(self, frame: bytes, n: int) -> bytes:
        import numpy as np

        assert self._echo_gain is not None
        k = n - self._echo_ticks
        if k < 0:
            return frame
        played = self.timeline.agent_pcm[k * self.fb : (k + 1) * self.fb]
        if len(played) < self.fb:
            return frame
        echo = (np.frombuffer(played, dtype="<i2").astype(np.float32) * self._echo_gain).astype("<i2").tobytes()
        return _mix(frame, echo)

    def _pop_fifo(self, now: float) -> bytes | None:
        fb = self.fb
        if len(self._fifo) >= fb:
            out = bytes(self._fifo[:fb])
            del self._fifo[:fb]
            return out
        if self._fifo and now - self._fifo_rx_t > _PARTIAL_HOLD_S:
            out = bytes(self._fifo) + bytes(fb - len(self._fifo))
            self._fifo.clear()
            return out
        return None

    def _pop_prompt(self) -> bytes | None:
        if not self._prompts:
            return None
        p = self._prompts[0]
        out = bytes(p.pcm[: self.fb])
        del p.pcm[: self.fb]
        if not p.pcm:
            self._prompts.popleft()
            if not p.done.done():
                p.done.set_result(True)
        return out + bytes(self.fb - len(out))

    # ---- receiving -------------------------------------------------------------------------------

    async def _receive(self) -> None:
        assert self._ws is not None
        tl = self.timeline
        try:
            async for msg in self._ws:
                now = time.monotonic()
                try:
                    parsed = parse_outbound(msg)
                except MediaFrameError as exc:
                    tl.bad_messages += 1
                    if tl.bad_messages <= 5 or tl.bad_messages % 100 == 0:
                        log.warning("phone media: ignoring bad frame #%d from the app: %s", tl.bad_messages, exc)
                    continue
                if isinstance(parsed, OutboundAudio):
                    self._on_audio(parsed.pcm, now)
                elif isinstance(parsed, OutboundStop):
                    tl.stop_audio_t.append(now)
                    self._fifo.clear()
        except websockets.ConnectionClosed:
            pass
        self.close_reason = self.close_reason or "media socket closed by the app"
        self._finish_pending()
        self.closed.set()

    def _on_audio(self, pcm: bytes, now: float) -> None:
        if not pcm:
            return
        fb = self.fb
        for i in range(0, len(pcm), fb):
            self.timeline.rx_frames.append((now, frame_is_voiced(pcm[i : i + fb])))
        self._fifo += pcm
        self._fifo_rx_t = now


def _mix(a: bytes, b: bytes) -> bytes:
    import numpy as np

    s = np.frombuffer(a, dtype="<i2").astype(np.int32) + np.frombuffer(b, dtype="<i2").astype(np.int32)
    return np.clip(s, -32768, 32767).astype("<i2").tobytes()
