"""A session's ear: server VAD (the cascade's webrtcvad + Silero segmenter) and the pooled recognizer.

Appended audio, commits and clears go through one queue, so they are handled in the order the client
sent them; frames are processed in slices on the server's recognition executor (never on the event loop).
Times are appended-audio milliseconds (realtime-protocol.md §0.10), not wall time.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from callwright.realtime.audio import FRAME_BYTES
from callwright.realtime.protocol import ProtocolError, TurnDetection
from callwright.speech.base import Recognizer
from callwright.speech.vad import SpeechSegmenter

log = logging.getLogger("callwright.realtime")

FRAME_MS = 20
MIN_COMMIT_MS = 100
MAX_BUFFER_FRAMES = 2 * 60 * 1000 // FRAME_MS  # a manual-commit buffer keeps its last 2 minutes (3.8 MB)
MAX_QUEUED_FRAMES = 60 * 1000 // FRAME_MS
SLICE_FRAMES = 25  # 500 ms of audio per executor call: short enough that barge-in is not held up


@dataclass
class SpeechStarted:
    audio_start_ms: int


@dataclass
class SpeechStopped:
    audio_end_ms: int
    final: asyncio.Future[str] = field(repr=False)


@dataclass
class Committed:
    """A manual ``input_audio_buffer.commit`` (or a commit during speech)."""

    final: asyncio.Future[str] = field(repr=False)
    event_id: str | None = None


@dataclass
class CommitRefused:
    error: ProtocolError
    event_id: str | None = None


ListenerEvent = SpeechStarted | SpeechStopped | Committed | CommitRefused


class Listener:
    def __init__(
        self,
        engines: Any,
        recognizer: Recognizer,
        executor: concurrent.futures.Executor,
        on_event: Callable[[ListenerEvent], Awaitable[None]],
        *,
        turn_pause_ms: int = 200,
    ) -> None:
        self._engines = engines
        self._recognizer = recognizer
        self._executor = executor
        self._on_event = on_event
        self._queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._queued_frames = 0
        self._segmenter: SpeechSegmenter | None = None
        self._td: TurnDetection | None = None
        self._seg_base_ms = 0
        self._offset_ms = 0
        self._in_utterance = False
        self._utterance: list[bytes] = []
        self._buffer: collections.deque[bytes] = collections.deque(maxlen=MAX_BUFFER_FRAMES)
        self._phrases: tuple[str, ...] | None = None  # new phrases, applied at the next slice
        self._active_phrases: tuple[str, ...] = ()
        self._expecting: Any = None
        # Semantic turn detection (azure_semantic_vad / semantic_vad with a turn detector): a pause of
        # ``turn_pause_ms`` asks the detector how long to wait; speech within that wait continues the turn.
        self._turn_pause_ms = turn_pause_ms
        self._semantic = False
        self._pending_end_at: int | None = None
        self._last_partial = ""
        self._lock = threading.Lock()  # the executor thread and close() both touch the segmenter
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    # --- called on the event loop ---------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="realtime-listener")

    def configure(self, td: TurnDetection | None) -> None:
        self._queue.put_nowait(("config", td))

    def feed(self, frames: list[bytes]) -> None:
        if self._queued_frames + len(frames) > MAX_QUEUED_FRAMES:
            raise ProtocolError(
                "input_audio_buffer_overflow", "audio is arriving faster than it can be processed (60 s queued)"
            )
        self._queued_frames += len(frames)
        self._queue.put_nowait(("frames", frames))

    def commit(self, event_id: str | None) -> None:
        self._queue.put_nowait(("commit", event_id))

    def clear(self) -> None:
        self._queue.put_nowait(("clear", None))

    def recognize(self, frames: list[bytes]) -> asyncio.Future[str]:
        """Transcribe audio that came inside a created item (not through the buffer), in queue order."""
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(("recognize", (frames, future)))
        return future

    def bias(self, phrases: Sequence[str], expecting: Any = None) -> None:
        self._phrases = tuple(phrases)
        self._expecting = expecting

    @property
    def appended_ms(self) -> int:
        return self._offset_ms

    async def close(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        # A slice may still run on the executor; wait for it off the loop before the recognizer and the
        # VAD go back to their pools (``_closed`` makes any later slice return at once).
        await asyncio.to_thread(self._wait_idle)
        segmenter, self._segmenter = self._segmenter, None
        if segmenter is not None:
            self._engines.release_segmenter(segmenter)

    def _wait_idle(self) -> None:
        with self._lock:
            pass

    # --- the lane ---------------------------------------------------------------------------------
    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._closed:
            kind, arg = await self._queue.get()
            try:
                await self._handle(loop, kind, arg)
            except Exception:  # one bad slice must not leave the session deaf for the rest of the call
                log.exception("realtime listener: %s failed; carrying on", kind)

    async def _handle(self, loop: asyncio.AbstractEventLoop, kind: str, arg: Any) -> None:
        if kind == "frames":
            frames = list(arg)
            # coalesce queued frames into one slice, stopping at any commit/clear/config
            while len(frames) < SLICE_FRAMES and not self._queue.empty():
                nxt = self._queue._queue[0]  # type: ignore[attr-defined]
                if nxt[0] != "frames":
                    break
                self._queue.get_nowait()
                frames.extend(nxt[1])
            self._queued_frames -= len(frames)
            for i in range(0, len(frames), SLICE_FRAMES):
                chunk = frames[i : i + SLICE_FRAMES]
                results = await loop.run_in_executor(self._executor, self._process, chunk)
                for event in results:
                    await self._deliver(loop, event)
        elif kind == "config":  # builds a VAD (Silero) and may reset the recognizer: off the loop
            await loop.run_in_executor(self._executor, self._apply_config, arg)
        elif kind == "clear":
            await loop.run_in_executor(self._executor, self._clear)
        elif kind == "recognize":
            frames, future = arg
            text = ""
            try:
                text = await loop.run_in_executor(self._executor, self._recognize, frames)
            finally:  # the item's transcript always resolves, even when recognition failed
                pcm = b"".join(frames) if getattr(self._engines, "transcriber", None) else b""
                final = self._final(loop, text, pcm)
                final.add_done_callback(lambda f: future.done() or future.set_result(f.result()))
        elif kind == "commit":
            if not self._in_utterance and len(self._buffer) * FRAME_MS < MIN_COMMIT_MS:
                error = ProtocolError(
                    "input_audio_buffer_commit_empty",
                    f"Error committing input audio buffer: buffer too small. Expected at least "
                    f"{MIN_COMMIT_MS}ms of audio, but buffer only has {len(self._buffer) * FRAME_MS}.00ms "
                    "of audio.",
                )
                await self._on_event(CommitRefused(error, arg))
                return
            text, pcm = await loop.run_in_executor(self._executor, self._commit)
            await self._on_event(Committed(self._final(loop, text, pcm), arg))

    async def _deliver(self, loop: asyncio.AbstractEventLoop, event: tuple[Any, ...]) -> None:
        if event[0] == "onset":
            await self._on_event(SpeechStarted(event[1]))
        else:
            _, end_ms, text, pcm = event
            await self._on_event(SpeechStopped(end_ms, self._final(loop, text, pcm)))

    def _final(self, loop: asyncio.AbstractEventLoop, text: str, pcm: bytes) -> asyncio.Future[str]:
        """The utterance's transcript: the recognizer's final, or whisper's when STT_ENGINE=whisper."""
        if getattr(self._engines, "transcriber", None) is None or not pcm:
            done: asyncio.Future[str] = loop.create_future()
            done.set_result(text)
            return done
        future = asyncio.wrap_future(self._engines.submit_final(pcm, self._active_phrases), loop=loop)
        result: asyncio.Future[str] = loop.create_future()

        def relay(f: asyncio.Future[Any]) -> None:
            if result.done():
                return
            if f.cancelled() or f.exception() is not None:
                log.warning("whisper final failed; using the streaming recognizer's: %s", f)
                result.set_result(text)
            else:
                result.set_result(f.result().text or "")

        future.add_done_callback(relay)
        return result

    def _apply_config(self, td: TurnDetection | None) -> None:
        with self._lock:
            self._td = td
            if self._in_utterance:  # a turn in progress under the old settings is dropped
                self._recognizer.reset()
                self._utterance = []
            old, self._segmenter = self._segmenter, None
            vad = old.vad if old is not None else None
            if td is not None:
                vad = vad or self._engines.new_vad()
                if hasattr(vad, "threshold"):
                    vad.threshold = td.threshold  # Silero's speech probability bar
                detector = getattr(self._engines, "turn_detector", None)
                self._semantic = "semantic" in td.type and detector is not None
                silence = self._turn_pause_ms if self._semantic else td.silence_duration_ms
                self._segmenter = SpeechSegmenter(vad, td.speech_duration_ms, silence)
                self._seg_base_ms = self._offset_ms
            elif vad is not None:
                self._engines.release_vad(vad)
            self._in_utterance = False
            self._pending_end_at = None

    # --- executor thread ----------------------------------------------------------------------------
    def _apply_bias(self) -> None:
        phrases, self._phrases = self._phrases, None
        if phrases is not None:
            self._active_phrases = phrases
            try:
                self._recognizer.configure(phrases)
            except Exception:
                log.exception("recognizer biasing failed; keeping the previous phrases")

    def _process(self, frames: list[bytes]) -> list[tuple[Any, ...]]:
        events: list[tuple[Any, ...]] = []
        with self._lock:
            if self._closed:
                return events
            self._apply_bias()
            seg, td = self._segmenter, self._td
            now = time.monotonic()
            for frame in frames:
                if len(frame) != FRAME_BYTES:
                    continue
                self._offset_ms += FRAME_MS
                self._buffer.append(frame)
                if seg is None or td is None:
                    continue
                was_in = self._in_utterance
                event = seg.feed(frame, now)
                if was_in:
                    partial = self._recognizer.push(frame)
                    if partial is not None and partial.text:
                        self._last_partial = partial.text
                    self._utterance.append(frame)
                if event is None:
                    if self._pending_end_at is not None and self._offset_ms >= self._pending_end_at:
                        events.append(self._end_turn())
                    continue
                if event.kind == "onset":
                    if self._in_utterance:  # speech again within the turn detector's wait: same turn
                        self._pending_end_at = None
                        continue
                    self._recognizer.start_utterance()
                    for pre in event.preroll:
                        self._recognizer.push(pre)
                    self._utterance = list(event.preroll)
                    self._last_partial = ""
                    self._in_utterance = True
                    start = self._seg_base_ms + event.offset_ms - td.prefix_padding_ms
                    events.append(("onset", max(0, start)))
                elif self._semantic:
                    wait_ms = self._turn_wait_ms()
                    self._pending_end_at = self._offset_ms + max(0, wait_ms - self._turn_pause_ms)
                    if self._offset_ms >= self._pending_end_at:
                        events.append(self._end_turn())
                else:
                    events.append(self._end_turn())
        return events

    def _turn_wait_ms(self) -> int:
        """How long after the end of speech the turn detector says to wait (the last 8 s of audio)."""
        detector = self._engines.turn_detector
        audio = b"".join(self._utterance[-400:])
        try:
            return int(detector.evaluate(audio, self._last_partial, self._expecting).wait_ms)
        except Exception:
            log.exception("turn detector failed; ending the turn on silence")
            return self._turn_pause_ms

    def _end_turn(self) -> tuple[Any, ...]:
        final = self._recognizer.end_utterance()
        self._in_utterance = False
        self._pending_end_at = None
        pcm = b"".join(self._utterance) if getattr(self._engines, "transcriber", None) else b""
        self._utterance = []
        self._buffer.clear()
        return ("end", self._offset_ms, final.text if final else "", pcm)

    def _commit(self) -> tuple[str, bytes]:
        with self._lock:
            self._apply_bias()
            if self._in_utterance:
                final = self._recognizer.end_utterance()
                frames = self._utterance
                self._in_utterance = False
                self._pending_end_at = None
                if self._segmenter is not None:
                    self._segmenter.reset()  # the next onset starts a new utterance
                    self._seg_base_ms = self._offset_ms
            else:
                frames = list(self._buffer)
                self._recognizer.start_utterance()
                for frame in frames:
                    self._recognizer.push(frame)
                final = self._recognizer.end_utterance()
            self._buffer.clear()
            self._utterance = []
            pcm = b"".join(frames) if getattr(self._engines, "transcriber", None) else b""
            return (final.text if final else ""), pcm

    def _recognize(self, frames: list[bytes]) -> str:
        with self._lock:
            if self._in_utterance:  # the recognizer is busy with the caller's live speech
                log.warning("an audio item arrived during live speech; it is not transcribed")
                return ""
            self._apply_bias()
            self._recognizer.start_utterance()
            for frame in frames:
                self._recognizer.push(frame)
            final = self._recognizer.end_utterance()
            return final.text if final else ""

    def _clear(self) -> None:
        with self._lock:
            self._buffer.clear()
            self._utterance = []
            if self._in_utterance:
                self._recognizer.reset()
                self._in_utterance = False
                self._pending_end_at = None
            if self._segmenter is not None:
                self._segmenter.reset()
                self._seg_base_ms = self._offset_ms
