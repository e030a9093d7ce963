"""The recognition lane: VAD + STT over one call's frames, run by a few shared worker threads.

Every call's lane runs on ``RecognitionWorkers`` — a small fixed set of threads for the whole server —
one slice at a time: a lane with frames waiting is queued once, a worker takes it, processes what has
arrived (in order; a lane is never on two workers at once) and queues it again if more came. A thread per
call made the event loop compete with forty threads for the GIL at forty calls; the pool keeps that at
two. A lane built without workers gets a private one-thread pool (tests, tools).

It never touches the event loop directly. Voice onset while the agent is audible goes to the loop with
``run_coroutine_threadsafe`` (barge-in must not wait behind anything); partials and finals go with
``call_soon_threadsafe``. The media loop only drops frames into a thread-safe queue.

End of turn (``TurnTaking``, ``speech/turn.py``). With a turn detector, silence does not end an
utterance by itself. After ``TURN_PAUSE_MS`` of silence the utterance is *pending*: the streaming
recognizer's final for what was said so far is taken, and the turn evaluation (Smart Turn + words +
what the agent expects) and, with a transcriber, the whole-utterance final decode are submitted to the
speech engines' offload threads — never run on the worker. The lane keeps taking frames while it is
pending; their audio stays in the utterance. If the caller speaks again before the decided wait (counted
from the end of the last voiced frame) has passed, the *same* utterance goes on: no new onset reaches the
handler, nothing is barged in. Once the wait has passed with no speech, the utterance is handed on with
the transcriber's text (the streaming finals if it failed or took longer than ``TURN_FINAL_TIMEOUT_MS``).
A done future or the wait's timer puts the lane back in the workers' queue, so it does not depend on
more frames arriving. Sound over the agent that has not outlasted a backchannel keeps the old fixed
``ENDPOINT_SILENCE_MS`` and the streaming final, so the barge-in verdict is exactly as fast as before.

Before onset is confirmed, the first voiced frame over the agent already asks the loop to *hold*
playback (``on_voice_hint(True)``), and the hold is let go (``on_voice_hint(False)``) if no onset follows
within ``HOLD_FRAMES``. The frames already sent cover a short hold, so a false one is not heard, while a
true one takes the detection time off the barge-in.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
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
from callwright.speech.turn import TurnDecision
from callwright.speech.vad import SpeechSegmenter
from callwright.voice.cascade.echo import EchoGuard

log = logging.getLogger("callwright.cascade")

HOLD_FRAMES = 5  # frames after the first voiced one for onset to confirm before a hold is let go
FRAME_BYTES = 640  # 20 ms of 16 kHz s16le: all the lane, the VAD and the echo guard ever take
MODEL_WINDOW_BYTES = 8 * 16_000 * 2  # what the turn model looks at: the last 8 s
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
    # How the end of the turn was decided (None: silence alone ended it).
    turn: TurnDecision | None = None

    @property
    def speech_ms(self) -> int:
        """From the first voiced frame to the end of the last one (the endpointing silence excluded)."""
        return max(0, round((self.speech_end_time - self.onset_time) * 1000))


@dataclass(frozen=True, slots=True)
class TurnTaking:
    """How a lane decides that the caller has finished (see the module docstring).

    ``detector`` is a :class:`callwright.speech.turn.TurnDetector` (``None`` or kind ``silence``: a fixed
    ``endpoint_silence_ms``); ``offload`` runs blocking work off the workers; ``submit_final`` decodes a
    whole utterance (``None``: the streaming recognizer's final is the final)."""

    detector: Any
    offload: Callable[..., concurrent.futures.Future[Any]]
    submit_final: Callable[[bytes, Sequence[str]], concurrent.futures.Future[Recognition]] | None = None
    pause_ms: int = 200
    endpoint_silence_ms: int = 300
    final_timeout_ms: int = 1000

    @property
    def judges(self) -> bool:
        """The detector decides (rather than a fixed silence)."""
        return self.detector is not None and getattr(self.detector, "kind", "silence") != "silence"

    @classmethod
    def from_engines(cls, engines: Any, settings: Any) -> TurnTaking | None:
        """From the app's ``SpeechEngines`` and ``Settings``; None when neither a turn detector nor a
        transcriber is configured (the lane then works exactly as before)."""
        detector = getattr(engines, "turn_detector", None)
        transcriber = getattr(engines, "transcriber", None)
        offload = getattr(engines, "offload", None)
        if offload is None or (detector is None and transcriber is None):
            return None
        return cls(
            detector=detector,
            offload=offload,
            submit_final=engines.submit_final if transcriber is not None else None,
            pause_ms=getattr(settings, "turn_pause_ms", cls.pause_ms),
            endpoint_silence_ms=getattr(settings, "endpoint_silence_ms", cls.endpoint_silence_ms),
            final_timeout_ms=getattr(settings, "turn_final_timeout_ms", cls.final_timeout_ms),
        )


@dataclass
class _Pending:
    """An utterance that has paused: the turn evaluation and final decode in flight, and their results."""

    end_time: float  # end of the last voiced frame
    started: float
    texts: list[str]
    evaluation: concurrent.futures.Future[Any] | None
    final: concurrent.futures.Future[Recognition] | None
    decision: TurnDecision | None = None
    final_text: str | None = None
    final_confidence: float | None = None
    final_failed: bool = False
    timer_for: float = 0.0  # the deadline a timer was last asked for

    def abandon(self) -> None:
        for future in (self.evaluation, self.final):
            if future is not None:
                future.cancel()  # only work not yet started is saved; a running decode just ends unread


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
        turn_taking: TurnTaking | None = None,
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
        # End of turn: the utterance's audio (for the final decode and the turn model), the streaming
        # finals of its parts so far, and the pause being judged.
        if turn_taking is not None and not turn_taking.judges and turn_taking.submit_final is None:
            turn_taking = None  # a fixed silence and the streaming final: exactly the old lane
        self._turn = turn_taking
        self._audio = bytearray()
        self._texts: list[str] = []
        self._pending: _Pending | None = None
        self._phrases: tuple[str, ...] = ()
        self._expecting: Any = None
        if turn_taking is not None and turn_taking.judges:
            segmenter.endpoint_silence_ms = turn_taking.pause_ms

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

    def expect(self, expectation: Any) -> None:
        """What the agent now waits for (an ``Expectation`` or None), for the end-of-turn decision."""
        self._expecting = expectation  # one reference, read by the worker when a pause is judged

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

    def _kick(self, _future: object = None) -> None:
        """Run the lane soon even without new frames (a turn evaluation or final is ready, or a wait ended).
        Called from offload threads and the event loop."""
        with self._lock:
            if not self._stopping and not self._dead:
                self._schedule_locked()

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
        if not self._segmenter.in_speech and self._pending is None:
            self._apply_commands()
        for _ in range(self.MAX_SLICE_FRAMES):
            with self._lock:
                if self._stopping:
                    return
                if not self._frames:
                    break
                pcm, arrived = self._frames.popleft()
            self._process(pcm, arrived)
        else:
            return  # more frames may be waiting: the next slice looks at the pause
        if self._pending is not None:
            self._judge(time.monotonic())  # every frame that arrived is processed: it is now that counts

    def _apply_commands(self) -> None:
        while True:
            try:
                phrases = self._commands.get_nowait()
            except queue.Empty:
                return
            self._phrases = tuple(phrases)
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
        if self._pending is not None:
            self._audio += pcm  # the pause is part of the utterance: the final decode hears it all
            if event is not None and event.kind == "onset":
                self._resume(event.preroll)
            else:
                self._judge(arrived)
            return
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
            if self._turn is not None:
                self._audio = bytearray(b"".join(event.preroll))
                self._texts = []
                self._set_pause(quick=self._during_agent)
            return
        if self._segmenter.in_speech:
            if self._turn is not None:
                self._audio += pcm
                if self._turn.submit_final is None and len(self._audio) > 2 * MODEL_WINDOW_BYTES:
                    del self._audio[:-MODEL_WINDOW_BYTES]  # only the turn model reads it: its last 8 s
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
                self._set_pause(quick=False)
            if arrived - self._onset_time > self._max_utterance:
                log.warning("utterance exceeded STT_PROCESSING_TIMEOUT (%.0fs); finalising", self._max_utterance)
                final = self._recognizer.end_utterance()
                self._segmenter.reset()
                if self._texts:
                    self._texts.append(final.text if final is not None else "")
                    final = Recognition(" ".join(t for t in self._texts if t.strip()), True)
                    self._texts = []
                self._finish(final, arrived, timed_out=True)
            return
        if event is not None and event.kind == "end":
            final = self._recognizer.end_utterance()
            if self._turn is not None:
                self._audio += pcm
                self._pause(final, event.time, arrived)
                return
            self._finish(final, event.time)
            self._apply_commands()

    # --- end of turn (run by a worker) -------------------------------------------------------------
    def _set_pause(self, *, quick: bool) -> None:
        """Sound over the agent ends after the old fixed silence (the barge-in verdict waits on it, exactly
        as before); anything else is judged after the shorter turn pause."""
        turn = self._turn
        if turn is not None and turn.judges:
            self._segmenter.endpoint_silence_ms = turn.endpoint_silence_ms if quick else turn.pause_ms

    def _pause(self, final: Recognition | None, end_time: float, now: float) -> None:
        """The caller went quiet: judge whether they finished, off the worker, and keep listening."""
        turn = self._turn
        assert turn is not None
        if final is not None and final.text.strip():
            self._texts.append(final.text.strip())
        texts = list(self._texts)
        audio = bytes(self._audio)
        evaluation = final_future = None
        # Sound over the agent that has not outlasted a backchannel keeps the old rule and the streaming
        # final: the handler's barge-in verdict must not wait for a model.
        quick = self._during_agent and not self._sustained_told
        if turn.judges and not quick:
            evaluation = turn.offload(turn.detector.evaluate, audio, " ".join(texts), self._expecting)
            evaluation.add_done_callback(self._kick)
        if turn.submit_final is not None and not quick and audio:
            final_future = turn.submit_final(audio, self._phrases)
            final_future.add_done_callback(self._kick)
        pending = self._pending = _Pending(end_time, now, texts, evaluation, final_future)
        if evaluation is None:
            pending.decision = TurnDecision(1.0, turn.endpoint_silence_ms, "silence")
        self._judge(now)

    def _resume(self, preroll: tuple[bytes, ...]) -> None:
        """The caller spoke again within the wait: the same utterance goes on (its audio already holds the
        preroll, which the streaming recognizer has not heard: it ended its part at the pause)."""
        pending, self._pending = self._pending, None
        assert pending is not None
        pending.abandon()
        log.debug("caller resumed after %.0f ms; the utterance goes on", (time.monotonic() - pending.end_time) * 1000)
        if self._held_for >= 0 and self._on_voice_hint is not None:
            self._post(self._on_voice_hint, False)
        self._held_for = -1
        self._voiced_frames += len(preroll)
        self._recognizer.start_utterance()
        for frame in preroll:
            self._recognizer.push(frame)

    def _judge(self, now: float) -> None:
        """Finish the pending utterance once its wait has passed and its final is in; else wait on."""
        pending = self._pending
        turn = self._turn
        assert pending is not None and turn is not None
        self._collect(pending)
        decision = pending.decision
        bound = turn.final_timeout_ms / 1000
        if decision is None:
            # The offload threads are busy: once the longest wait has passed, the turn ends anyway.
            max_wait = getattr(turn.detector, "max_wait_ms", turn.endpoint_silence_ms) / 1000
            if now - pending.end_time < max_wait:
                self._wake_at(pending, pending.end_time + max_wait)
                return
            log.warning("turn evaluation not back after %.0f ms; ending the turn", (now - pending.started) * 1000)
            decision = pending.decision = TurnDecision(0.5, round(max_wait * 1000), "evaluation late")
        deadline = pending.end_time + decision.wait_ms / 1000
        if now < deadline:
            self._wake_at(pending, deadline)
            return
        text = " ".join(pending.texts)
        confidence: float | None = None
        if pending.final is not None:
            if pending.final_text is not None:
                text, confidence = pending.final_text, pending.final_confidence
            elif not pending.final_failed:
                if now < deadline + bound:
                    self._wake_at(pending, deadline + bound)
                    return
                pending.final.cancel()
                log.warning(
                    "final decode took over %.0f ms past the end of the turn; using the streaming final",
                    (now - deadline) * 1000,
                )
        log.debug(
            "end of turn after %.0f ms of silence (wait %d ms: %s, p=%.2f)",
            (now - pending.end_time) * 1000,
            decision.wait_ms,
            decision.reason,
            decision.complete_probability,
        )
        self._pending = None
        self._texts = []
        self._audio = bytearray()
        self._finish(Recognition(text, True, confidence), pending.end_time, turn=decision)
        self._apply_commands()

    def _collect(self, pending: _Pending) -> None:
        """Take the results that are ready; a better transcript re-judges the words."""
        turn = self._turn
        assert turn is not None
        if pending.decision is None and pending.evaluation is not None and pending.evaluation.done():
            try:
                pending.decision = pending.evaluation.result()
            except Exception:
                log.exception("turn evaluation failed; ending the turn after the usual silence")
                pending.decision = TurnDecision(1.0, turn.endpoint_silence_ms, "evaluation failed")
            if pending.final_text is not None:
                self._rejudge(pending)
        final = pending.final
        if final is not None and final.done() and pending.final_text is None and not pending.final_failed:
            try:
                result = final.result()
            except Exception:
                log.exception("final decode failed; using the streaming final")
                pending.final_failed = True
                return
            pending.final_text, pending.final_confidence = result.text.strip(), result.confidence
            self._rejudge(pending)

    def _rejudge(self, pending: _Pending) -> None:
        """The whole-utterance transcript is better than the streaming one: judge its words instead."""
        turn = self._turn
        assert turn is not None
        decision = pending.decision
        decide = getattr(turn.detector, "decide", None)
        if decision is None or decide is None or not turn.judges or pending.final_text is None:
            return
        if decision.reason in ("evaluation failed", "silence"):
            return
        pending.decision = decide(
            decision.model_probability, pending.final_text, self._expecting, model_ms=decision.model_ms
        )

    def _wake_at(self, pending: _Pending, when: float) -> None:
        """Be run again at ``when`` even if no frame arrives (frames normally come every 20 ms)."""
        if pending.timer_for == when or self._loop.is_closed():
            return
        pending.timer_for = when
        delay = max(0.0, when - time.monotonic()) + 0.002
        self._loop.call_soon_threadsafe(self._loop.call_later, delay, self._kick)

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

    def _finish(
        self,
        final: Recognition | None,
        end_time: float,
        *,
        timed_out: bool = False,
        turn: TurnDecision | None = None,
    ) -> None:
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
            turn=turn,
        )
        self._post(self._on_utterance, utterance)
