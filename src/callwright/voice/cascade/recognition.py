"""The recognition lane: VAD + STT over one call's frames, run by a few shared worker threads.

Every call's lane runs on ``RecognitionWorkers`` — a small fixed set of threads for the whole server —
one slice at a time: a lane with frames waiting is queued once, a worker takes it, processes what has
arrived (in order; a lane is never on two workers at once) and queues it again if more came. A thread per
call made the event loop compete with forty threads for the GIL at forty calls; the pool keeps that at
two. A lane built without workers gets a private one-thread pool (tests, tools).

It never touches the event loop directly. Voice onset while the agent is audible goes to the loop with
``run_coroutine_threadsafe`` (barge-in must not wait behind anything); partials and finals go with
``call_soon_threadsafe``. The media loop only drops frames into a thread-safe queue.

Before onset is confirmed, the first voiced frame over the agent already asks the loop to *hold*
playback (``on_voice_hint(True)``), and the hold is let go (``on_voice_hint(False)``) if no onset follows
within ``HOLD_FRAMES``. The frames already sent cover a short hold, so a false one is not heard, while a
true one takes the detection time off the barge-in.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from callwright.logs import call_scope
from callwright.speech.base import Recognition, Recognizer
from callwright.speech.vad import SpeechSegmenter
from callwright.voice.cascade.echo import EchoGuard

log = logging.getLogger("callwright.cascade")

HOLD_FRAMES = 5  # frames after the first voiced one for onset to confirm before a hold is let go
FRAME_BYTES = 640  # 20 ms of 16 kHz s16le: all the lane, the VAD and the echo guard ever take
# The echo guard is reset in place when it fails; this many failures within ECHO_GUARD_FAILURE_WINDOW
# seconds turn it off for the call (hearing the caller matters more than ignoring echo).
ECHO_GUARD_MAX_FAILURES = 3
ECHO_GUARD_FAILURE_WINDOW = 60.0


@dataclass(frozen=True, slots=True)
class Utterance:
    """A finished caller utterance as the lane saw it."""

    text: str
    onset_time: float
    speech_end_time: float
    final_time: float
    voiced_ms: int
    during_agent_audio: bool
    timed_out: bool = False
    confidence: float | None = None

    @property
    def speech_ms(self) -> int:
        """From the first voiced frame to the end of the last one (the endpointing silence excluded)."""
        return max(0, round((self.speech_end_time - self.onset_time) * 1000))


class RecognitionWorkers:
    """A few threads that run every call's recognition lane, a slice at a time."""

    def __init__(self, size: int, *, name: str = "recognition-worker") -> None:
        if size < 1:
            raise ValueError(f"recognition workers must be at least 1, got {size}")
        self._ready: queue.SimpleQueue[RecognitionLane | None] = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._run, name=f"{name}-{i}", daemon=True) for i in range(size)]
        self._started = False
        self._lock = threading.Lock()
        self._lanes: set[int] = set()  # lanes started and not yet joined

    @property
    def lanes(self) -> int:
        """Lanes started and not yet stopped and joined: 0 once every call has cleaned up."""
        with self._lock:
            return len(self._lanes)

    def attach(self, lane: RecognitionLane) -> None:
        with self._lock:
            self._lanes.add(id(lane))

    def detach(self, lane: RecognitionLane) -> None:
        with self._lock:
            self._lanes.discard(id(lane))

    def start(self) -> None:
        with self._lock:
            if not self._started:
                self._started = True
                for t in self._threads:
                    t.start()

    def schedule(self, lane: RecognitionLane) -> None:
        self._ready.put(lane)

    def close(self, timeout: float = 2.0) -> bool:
        """Stop the threads once the lanes queued so far have run; True when all of them ended."""
        if not self._started:
            return True
        for _ in self._threads:
            self._ready.put(None)
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)

    def _run(self) -> None:
        while (lane := self._ready.get()) is not None:
            lane.run_slice()


class RecognitionLane:
    MAX_SLICE_FRAMES = 25  # then back in the queue, so one busy lane cannot hold a worker

    def __init__(
        self,
        *,
        call_id: str,
        recognizer: Recognizer,
        segmenter: SpeechSegmenter,
        loop: asyncio.AbstractEventLoop,
        agent_audible: Callable[[], bool],
        on_onset: Callable[[float, float], Coroutine[Any, Any, None]],
        on_partial: Callable[[str], None],
        on_utterance: Callable[[Utterance], None],
        max_utterance_seconds: float,
        on_sustained_speech: Callable[[float], None] | None = None,
        sustained_speech_seconds: float = 0.7,
        on_voice_hint: Callable[[bool], None] | None = None,
        echo_guard: EchoGuard | None = None,
        workers: RecognitionWorkers | None = None,
        on_failure: Callable[[str], None] | None = None,
        on_echo_guard_reset: Callable[[], None] | None = None,
    ) -> None:
        self._call_id = call_id
        self._recognizer = recognizer
        self._segmenter = segmenter
        self._loop = loop
        self._agent_audible = agent_audible
        self._on_onset = on_onset
        self._on_partial = on_partial
        self._on_utterance = on_utterance
        self._max_utterance = max_utterance_seconds
        self._on_sustained = on_sustained_speech
        self._sustained_s = sustained_speech_seconds
        self._on_voice_hint = on_voice_hint
        self._echo_guard = echo_guard
        # Told (on the loop) when the lane dies, so the handler can restart it with fresh state; and when
        # the echo guard failed and was reset in place (the lane itself carries on).
        self._on_failure = on_failure
        self._on_echo_guard_reset = on_echo_guard_reset
        self._echo_failures: collections.deque[float] = collections.deque(maxlen=ECHO_GUARD_MAX_FAILURES)
        self.frames_dropped = 0  # frames that were not 20 ms at 16 kHz (the media edge re-frames; never expected)
        self._own_workers = workers is None
        self._workers = workers or RecognitionWorkers(1, name=f"recognition:{call_id}")
        self._frames: collections.deque[tuple[bytes, float]] = collections.deque()
        self._commands: queue.SimpleQueue[Sequence[str]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._scheduled = False
        self._idle = threading.Event()
        self._idle.set()
        self._stopping = False
        self._dead = False
        # Per-utterance state, touched only by the worker running the lane.
        self._onset_time = 0.0
        self._voiced_frames = 0
        self._during_agent = False
        self._sustained_told = False
        self._held_for = -1  # frames since a hold was asked for; -1: no hold

    @property
    def dead(self) -> bool:
        """The lane failed and takes no more frames (the handler restarts it)."""
        return self._dead

    # --- called on the event loop ------------------------------------------------------------------
    def start(self) -> None:
        self._workers.start()
        self._workers.attach(self)

    def feed(self, pcm: bytes) -> None:
        """Never blocks: the frame and its arrival time are queued for the lane's next slice."""
        with self._lock:
            if self._stopping or self._dead:
                return
            self._frames.append((pcm, time.monotonic()))
            self._schedule_locked()

    def bias(self, phrases: Sequence[str]) -> None:
        """Re-bias the recognizer (new agent); applied between utterances, by the lane's worker."""
        self._commands.put(tuple(phrases))
        with self._lock:
            if not self._stopping and not self._dead:
                self._schedule_locked()

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            self._frames.clear()

    def join(self, timeout: float) -> bool:
        """Wait until no worker runs the lane (it is never scheduled again after ``stop``)."""
        done = self._idle.wait(timeout)
        if done:
            self._workers.detach(self)
        if self._own_workers:
            done = self._workers.close(timeout) and done
        return done

    def _schedule_locked(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            self._idle.clear()
            self._workers.schedule(self)

    # --- run by a worker ---------------------------------------------------------------------------
    def _post(self, fn: Callable[..., None], *args: Any) -> None:
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(fn, *args)

    def run_slice(self) -> None:
        with call_scope(self._call_id):
            try:
                self._slice()
            except Exception:
                log.exception("recognition lane failed; asking for a restart with fresh state")
                with self._lock:
                    self._dead = True
                    self._frames.clear()
                if self._on_failure is not None:
                    self._post(self._on_failure, "recognition")
            finally:
                with self._lock:
                    if self._frames and not self._stopping and not self._dead:
                        self._workers.schedule(self)  # still scheduled: back in the queue
                    else:
                        self._scheduled = False
                        self._idle.set()

    def _slice(self) -> None:
        if not self._segmenter.in_speech:
            self._apply_commands()
        for _ in range(self.MAX_SLICE_FRAMES):
            with self._lock:
                if self._stopping or not self._frames:
                    return
                pcm, arrived = self._frames.popleft()
            self._process(pcm, arrived)

    def _apply_commands(self) -> None:
        while True:
            try:
                phrases = self._commands.get_nowait()
            except queue.Empty:
                return
            self._recognizer.configure(phrases)

    def _process(self, pcm: bytes, arrived: float) -> None:
        # The agent's own voice coming back up the line is not the caller: the VAD hears silence.
        if len(pcm) != FRAME_BYTES:
            self.frames_dropped += 1
            return
        heard = pcm
        if self._echo_guard is not None and self._is_echo(pcm, arrived):
            heard = bytes(len(pcm))
        event = self._segmenter.feed(heard, now=arrived)
        if event is None and not self._segmenter.in_speech and self._on_voice_hint is not None:
            self._hint()
        if event is not None and event.kind == "onset":
            self._onset_time = event.time
            self._voiced_frames = len(event.preroll)
            self._during_agent = self._agent_audible()
            self._sustained_told = False
            if self._during_agent:
                # Barge-in first: nothing else may delay it. The onset handler takes over any hold.
                asyncio.run_coroutine_threadsafe(self._on_onset(self._onset_time, time.monotonic()), self._loop)
            elif self._held_for >= 0 and self._on_voice_hint is not None:
                self._post(self._on_voice_hint, False)
            self._held_for = -1
            self._recognizer.start_utterance()
            for frame in event.preroll:
                self._recognizer.push(frame)
            return
        if self._segmenter.in_speech:
            self._voiced_frames += 1
            partial = self._recognizer.push(pcm)
            if partial is not None and partial.text:
                self._post(self._on_partial, partial.text)
            if (
                self._during_agent
                and not self._sustained_told
                and self._on_sustained is not None
                and self._segmenter.last_voiced
                and arrived - self._onset_time >= self._sustained_s
            ):
                # Still talking over the agent after longer than any backchannel: an interruption.
                self._sustained_told = True
                self._post(self._on_sustained, self._onset_time)
            if arrived - self._onset_time > self._max_utterance:
                log.warning("utterance exceeded STT_PROCESSING_TIMEOUT (%.0fs); finalising", self._max_utterance)
                final = self._recognizer.end_utterance()
                self._segmenter.reset()
                self._finish(final, arrived, timed_out=True)
            return
        if event is not None and event.kind == "end":
            final = self._recognizer.end_utterance()
            self._finish(final, event.time)
            self._apply_commands()

    def _is_echo(self, pcm: bytes, arrived: float) -> bool:
        """The echo guard's verdict; a guard that fails is reset in place (fresh state, this frame counts
        as the caller's) and, failing again and again, switched off for the call."""
        guard = self._echo_guard
        assert guard is not None
        try:
            return guard.is_echo(pcm, arrived)
        except Exception:
            log.exception("echo guard failed; reset with fresh state")
            guard.reset()
            now = time.monotonic()
            self._echo_failures.append(now)
            if len(self._echo_failures) >= ECHO_GUARD_MAX_FAILURES and now - self._echo_failures[0] <= (
                ECHO_GUARD_FAILURE_WINDOW
            ):
                log.error("echo guard failed %d times in a minute; off for this call", len(self._echo_failures))
                self._echo_guard = None
            if self._on_echo_guard_reset is not None:
                self._post(self._on_echo_guard_reset)
            return False

    def _hint(self) -> None:
        """Ask for a hold on the first voiced frame over the agent; let it go if onset does not follow."""
        assert self._on_voice_hint is not None
        if self._held_for >= 0:
            self._held_for += 1
            if self._held_for >= HOLD_FRAMES:
                self._post(self._on_voice_hint, False)
                self._held_for = -1
        elif self._segmenter.last_voiced and self._agent_audible():
            self._post(self._on_voice_hint, True)
            self._held_for = 0

    def _finish(self, final: Recognition | None, end_time: float, *, timed_out: bool = False) -> None:
        """Hand the utterance that started at the current onset to the loop."""
        if final is not None:
            final = dataclasses.replace(final, speech_end_monotonic=end_time)
        utterance = Utterance(
            text=(final.text if final else "").strip(),
            onset_time=self._onset_time,
            speech_end_time=end_time,
            final_time=time.monotonic(),
            voiced_ms=self._voiced_frames * 20,
            during_agent_audio=self._during_agent,
            timed_out=timed_out,
            confidence=final.confidence if final else None,
        )
        self._post(self._on_utterance, utterance)
