"""The recognition lane: a thread per call running VAD + STT over the caller's frames.

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


class RecognitionLane:
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
        self._frames: queue.SimpleQueue[tuple[bytes, float] | None] = queue.SimpleQueue()
        self._commands: queue.SimpleQueue[Sequence[str]] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=f"recognition:{call_id}", daemon=True)
        self._stopping = False
        self.frames_processed = 0

    # --- called on the event loop ------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def feed(self, pcm: bytes) -> None:
        """Never blocks: the frame and its arrival time go to the lane's queue."""
        self._frames.put((pcm, time.monotonic()))

    def bias(self, phrases: Sequence[str]) -> None:
        """Re-bias the recognizer (new agent); applied between utterances, in the lane thread."""
        self._commands.put(tuple(phrases))
        self._frames.put(None)  # wake the lane if it is idle

    def stop(self) -> None:
        self._stopping = True
        self._frames.put(None)

    def join(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # --- the lane thread ---------------------------------------------------------------------------
    def _post(self, fn: Callable[..., None], *args: Any) -> None:
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(fn, *args)

    def _run(self) -> None:
        with call_scope(self._call_id):
            try:
                self._loop_frames()
            except Exception:
                log.exception("recognition lane crashed; the call continues without speech input")

    def _apply_commands(self) -> None:
        while True:
            try:
                phrases = self._commands.get_nowait()
            except queue.Empty:
                return
            self._recognizer.configure(phrases)

    def _loop_frames(self) -> None:
        onset_time = 0.0
        voiced_frames = 0
        during_agent = False
        sustained_told = False
        held_for = -1  # frames since a hold was asked for; -1: no hold
        while not self._stopping:
            try:
                item = self._frames.get(timeout=0.2)
            except queue.Empty:
                continue
            if item is None:
                if not self._segmenter.in_speech:
                    self._apply_commands()
                continue
            pcm, arrived = item
            self.frames_processed += 1
            # The agent's own voice coming back up the line is not the caller: the VAD hears silence.
            heard = pcm
            if self._echo_guard is not None and self._echo_guard.is_echo(pcm, arrived):
                heard = bytes(len(pcm))
            event = self._segmenter.feed(heard, now=arrived)
            if event is None and not self._segmenter.in_speech and self._on_voice_hint is not None:
                held_for = self._hint(held_for)
            if event is not None and event.kind == "onset":
                onset_time = event.time
                voiced_frames = len(event.preroll)
                during_agent = self._agent_audible()
                sustained_told = False
                if during_agent:
                    # Barge-in first: nothing else may delay it. The onset handler takes over any hold.
                    asyncio.run_coroutine_threadsafe(self._on_onset(onset_time, time.monotonic()), self._loop)
                elif held_for >= 0 and self._on_voice_hint is not None:
                    self._post(self._on_voice_hint, False)
                held_for = -1
                self._recognizer.start_utterance()
                for frame in event.preroll:
                    self._recognizer.push(frame)
                continue
            if self._segmenter.in_speech:
                voiced_frames += 1
                partial = self._recognizer.push(pcm)
                if partial is not None and partial.text:
                    self._post(self._on_partial, partial.text)
                if (
                    during_agent
                    and not sustained_told
                    and self._on_sustained is not None
                    and self._segmenter.last_voiced
                    and arrived - onset_time >= self._sustained_s
                ):
                    # Still talking over the agent after longer than any backchannel: an interruption.
                    sustained_told = True
                    self._post(self._on_sustained, onset_time)
                if arrived - onset_time > self._max_utterance:
                    log.warning("utterance exceeded STT_PROCESSING_TIMEOUT (%.0fs); finalising", self._max_utterance)
                    final = self._recognizer.end_utterance()
                    self._segmenter.reset()
                    self._finish(final, onset_time, arrived, voiced_frames, during_agent, timed_out=True)
                continue
            if event is not None and event.kind == "end":
                final = self._recognizer.end_utterance()
                self._finish(final, onset_time, event.time, voiced_frames, during_agent)
                self._apply_commands()

    def _hint(self, held_for: int) -> int:
        """Ask for a hold on the first voiced frame over the agent; let it go if onset does not follow."""
        assert self._on_voice_hint is not None
        if held_for >= 0:
            if held_for + 1 < HOLD_FRAMES:
                return held_for + 1
            self._post(self._on_voice_hint, False)
            return -1
        if self._segmenter.last_voiced and self._agent_audible():
            self._post(self._on_voice_hint, True)
            return 0
        return -1

    def _finish(
        self,
        final: Recognition | None,
        onset_time: float,
        end_time: float,
        voiced_frames: int,
        during_agent: bool,
        *,
        timed_out: bool = False,
    ) -> None:
        if final is not None:
            final = dataclasses.replace(final, speech_end_monotonic=end_time)
        utterance = Utterance(
            text=(final.text if final else "").strip(),
            onset_time=onset_time,
            speech_end_time=end_time,
            final_time=time.monotonic(),
            voiced_ms=voiced_frames * 20,
            during_agent_audio=during_agent,
            timed_out=timed_out,
            confidence=final.confidence if final else None,
        )
        self._post(self._on_utterance, utterance)
