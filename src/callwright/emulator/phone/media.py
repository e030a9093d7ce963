"""The ACS side of one media WebSocket (acs-protocol.md §4), as heard and spoken by a virtual phone.

One clock drives everything: tick *n* fires at ``t0 + n·20 ms`` on the monotonic clock. On each tick the
phone sends exactly one caller AudioData frame (``silent: true`` zeros while the caller is quiet) and
plays exactly one 20 ms agent frame from the playout FIFO, so the caller (left) and agent (right)
channels of the recording share one timeline. A late tick is caught up by firing the missed ticks
back-to-back rather than by stretching the grid, so the stream never drifts.

Wire times are taken where they happen: a caller frame's send time and an agent message's receive
time, both from ``time.monotonic()``; reports are computed from these, never from server clocks.

The WebSocket may go away while the call goes on, as with ACS: the app's side closes or breaks it (a
replica killed, a load balancer closing it) or the app stops streaming. The link then stays up *without*
a socket — the clock keeps ticking, the caller keeps talking into the void, REST prompts still play —
until :meth:`MediaLink.reconnect` attaches the next socket (ACS opens a new one on ``startMediaStreaming``)
or the call ends. Every socket is a :class:`MediaSession` on the one timeline, so the report can show
each gap.
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
# After the app's socket dropped, the agent counts as "still talking" (see MediaLink.agent_playing) until
# it is heard again on a new socket, or this long after the new socket opened if it stays silent.
RESUME_GRACE_S = 5.0

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
class MediaSession:
    """One media WebSocket of the call; ACS opens a new one each time streaming (re)starts."""

    opened_t: float
    url: str
    closed_t: float | None = None
    end: str | None = None  # why it ended
    dropped: bool = False  # the app's side closed or broke it (not a stop, not the call ending)


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
    sessions: list[MediaSession] = field(default_factory=list)


class MediaLink:
    """The call's media path: its WebSocket (when one is up), clock, caller source, playout FIFO, recording."""

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
        self._closing = False
        # No socket right now, but the call (and this link) go on: the next socket resumes it.
        self.down = False
        self.down_reason: str | None = None
        self._drop_listener: Callable[[str], None] | None = None
        self._unreported_drop: str | None = None
        self._awaiting_agent_since: float | None = None
        self._reopened_t: float | None = None
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
        ws = await self._open(url, headers)
        self.timeline.t0 = time.monotonic()
        self._attach(ws, url)
        self._tasks.append(asyncio.create_task(self._clock(), name="phone-media-clock"))

    async def reconnect(self, url: str, headers: dict[str, str]) -> None:
        """Attach a new socket after a drop or a stop (ACS's ``startMediaStreaming``); the timeline goes on.

        Raises what the WebSocket client raised (the link stays down), or RuntimeError if the link is not
        down (connected, or closed with the call).
        """
        if self.closed.is_set() or self._closing or not self.down:
            raise RuntimeError("the media link is not waiting for a new socket")
        ws = await self._open(url, headers)
        if self.closed.is_set() or self._closing or not self.down:
            # The call ended (or another socket won) while this one was opening.
            with contextlib.suppress(Exception):
                await ws.close()
            raise RuntimeError("the media link closed while the new socket was opening")
        self._uplink.clear()
        self._uplink_voiced = False
        self._attach(ws, url)
        self._reopened_t = time.monotonic()
        log.info("phone media: socket %d opened to %s", len(self.timeline.sessions), url)

    async def suspend(self, reason: str) -> None:
        """Close the socket from this side but keep the call's media path (the app stopped streaming)."""
        ws = self._ws
        if ws is None or not self._lose(ws, reason, dropped=False):
            return
        with contextlib.suppress(Exception):
            await ws.close()

    def set_drop_listener(self, listener: Callable[[str], None] | None) -> None:
        """``listener(reason)`` runs once per socket the app's side closed or broke (never for a local close).

        A drop that happened before a listener was set is reported to the next one.
        """
        self._drop_listener = listener
        pending, self._unreported_drop = self._unreported_drop, None
        if listener is not None and pending is not None:
            listener(pending)

    async def close(self, reason: str = "stopped") -> None:
        if self.close_reason is None:
            self.close_reason = reason
        self._closing = True
        ws, self._ws = self._ws, None
        if ws is not None and self.timeline.sessions and self.timeline.sessions[-1].closed_t is None:
            s = self.timeline.sessions[-1]
            s.closed_t, s.end = time.monotonic(), reason
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()
        self.down = False
        self._finish_pending()
        self.closed.set()

    async def _open(self, url: str, headers: dict[str, str]) -> ClientConnection:
        # No per-message deflate: base64 PCM barely compresses and 50 frames a second pay for it.
        ws = await websockets.connect(
            url, additional_headers=headers, open_timeout=10, max_size=2**22, compression=None
        )
        try:
            await ws.send(build_audio_metadata(str(uuid.uuid4()), self.sample_rate))
        except BaseException:
            with contextlib.suppress(Exception):
                await ws.close()
            raise
        return ws

    def _attach(self, ws: ClientConnection, url: str) -> None:
        self._ws = ws
        self.down = False
        self.down_reason = None
        self.timeline.sessions.append(MediaSession(opened_t=time.monotonic(), url=url))
        self._tasks = [t for t in self._tasks if not t.done()]
        self._tasks.append(asyncio.create_task(self._receive(ws), name="phone-media-recv"))

    def _lose(self, ws: ClientConnection, reason: str, *, dropped: bool) -> bool:
        """The current socket is gone; the link goes on without one. False if ``ws`` was not current."""
        if ws is not self._ws or self._closing or self.closed.is_set():
            return False
        now = time.monotonic()
        self._ws = None
        self.down = True
        self.down_reason = reason
        session = self.timeline.sessions[-1]
        session.closed_t, session.end, session.dropped = now, reason, dropped
        if not dropped:
            return True
        self._awaiting_agent_since = now
        log.warning("phone media: socket %d lost mid-call: %s", len(self.timeline.sessions), reason)
        listener = self._drop_listener
        if listener is None:
            self._unreported_drop = reason
            return True
        try:
            listener(reason)
        except Exception:
            log.exception("phone media: the drop listener failed")
        return True

    async def _send(self, ws: ClientConnection | None, text: str) -> bool:
        """Send on ``ws`` if it is still the current socket; a closed socket becomes a drop, not an error."""
        if ws is None or ws is not self._ws:
            return False
        try:
            await ws.send(text)
        except websockets.ConnectionClosed as exc:
            self._lose(ws, _describe_close(exc.rcvd.code if exc.rcvd else None, exc.rcvd.reason if exc.rcvd else ""),
                       dropped=True)  # fmt: skip
            return False
        return True

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
        # No socket (a media gap): the key press still reaches the app as a callback event, not as a frame.
        if self._ws is None or self.closed.is_set():
            return
        self.timeline.dtmf_t.append((time.monotonic(), tone_char))
        await self._send(self._ws, build_dtmf(tone_char, self.participant_raw_id))

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
        """True while agent audio is audible or queued (what a caller would call 'the agent is talking').

        Also True from a socket drop until the agent is heard again on a new socket (or RESUME_GRACE_S
        after it opened): the agent's turn was cut off, not finished, so a script waiting for the agent to
        be done keeps waiting (within its own timeout) instead of answering into a dead line.
        """
        now = time.monotonic()
        return self._agent_audible(now) or self._awaiting_agent(now)

    def _awaiting_agent(self, now: float) -> bool:
        if self._awaiting_agent_since is None:
            return False
        if self.down:
            return True
        return self._reopened_t is not None and now - self._reopened_t < RESUME_GRACE_S

    def _agent_audible(self, now: float) -> bool:
        last = self.last_agent_voiced_t
        return bool(self._fifo) or (last is not None and now - last < 0.2)

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
        except Exception:  # a bug: end the link clearly rather than leave the script waiting on a dead clock
            log.exception("phone media: the clock failed")
            self.close_reason = self.close_reason or "the phone's media clock failed"
            self._finish_pending()
            self.closed.set()

    async def _tick(self, n: int) -> None:
        ws = self._ws  # None during a media gap: the tick runs all the same, nothing goes on the wire
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
            if await self._send(ws, text):
                self.raw_sent += 1
            if not fut.done():
                fut.set_result(None)
        now = time.monotonic()
        await self._send_uplink(ws, frame, silent)
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
                    u.agent_playing_at_onset = self._agent_audible(now)
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
                if self._awaiting_agent_since is not None and not self.down:
                    self._awaiting_agent_since = None  # heard again on the new socket
                if self.last_agent_voiced_t is None or now - self.last_agent_voiced_t > AGENT_UTTERANCE_GAP_S:
                    self.agent_utt_start_t = now
                    self.agent_utt_count += 1
                self.last_agent_voiced_t = now
            if self.on_agent_frame is not None:
                self.on_agent_frame(out, v, now)
        ev, self._tick_ev = self._tick_ev, asyncio.Event()
        ev.set()

    async def _send_uplink(self, ws: ClientConnection | None, frame: bytes, silent: bool) -> None:
        """Send this tick's 20 ms of caller audio in frames of ``frame_ms`` (dropped while there is no socket)."""
        if ws is None:
            return
        size = self.sample_rate * self.frame_ms // 1000 * 2
        if size == len(frame) and not self._uplink:
            await self._send(ws, build_audio_data(frame, silent=silent, participant_raw_id=self.participant_raw_id))
            return
        self._uplink += frame
        self._uplink_voiced = self._uplink_voiced or not silent
        while len(self._uplink) >= size:
            chunk = bytes(self._uplink[:size])
            del self._uplink[:size]
            quiet = not self._uplink_voiced
            self._uplink_voiced = bool(self._uplink) and not silent
            if not await self._send(
                ws, build_audio_data(chunk, silent=quiet, participant_raw_id=self.participant_raw_id)
            ):
                return

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

    async def _receive(self, ws: ClientConnection) -> None:
        tl = self.timeline
        try:
            async for msg in ws:
                if ws is not self._ws:
                    break  # declared lost (a failed send) or replaced: what it still delivers is not heard
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
        # The app's side closed or broke the socket: the call goes on without media until a new socket.
        self._lose(ws, _describe_close(ws.close_code, ws.close_reason or ""), dropped=True)

    def _on_audio(self, pcm: bytes, now: float) -> None:
        if not pcm:
            return
        fb = self.fb
        for i in range(0, len(pcm), fb):
            self.timeline.rx_frames.append((now, frame_is_voiced(pcm[i : i + fb])))
        self._fifo += pcm
        self._fifo_rx_t = now


def _describe_close(code: int | None, reason: str) -> str:
    if code is None or code == 1006:
        return "media socket broken by the app's side (no close frame)"
    return f"media socket closed by the app ({code}{': ' + reason if reason else ''})"


def _mix(a: bytes, b: bytes) -> bytes:
    import numpy as np

    s = np.frombuffer(a, dtype="<i2").astype(np.int32) + np.frombuffer(b, dtype="<i2").astype(np.int32)
    return np.clip(s, -32768, 32767).astype("<i2").tobytes()
