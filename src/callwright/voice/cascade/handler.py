"""SpeechCascadeHandler: the three-lane media handler (``ACS_STREAMING_MODE=media``).

1. Recognition lane (run by the shared recognition workers): VAD + streaming STT over the caller's frames
   (``recognition.py``).
2. Turn lane (one task): consumes caller turns one at a time, runs the orchestrator, streams each
   clause to TTS as soon as it exists and hands the audio to playback — synthesis of the next clause
   overlaps playback of this one, so there are no gaps between sentences.
3. The event loop: WebSocket I/O (the media endpoint), paced playback, barge-in execution, cleanup.

Barge-in happens in three steps (README, "How barge-in works"). The first voiced frame over the agent
*holds* playback (nothing more is sent; the ~60 ms already sent keep playing, so a hold that onset does not
confirm is never heard). Onset turns the hold into a *pause*: the caller hears the agent stop ~100 ms
after starting to speak, without any StopAudio. Then the sound is *decided*: an interruption — it outlasts
any backchannel (``BARGE_IN_CONFIRM_MS``) or its words are a request — sends StopAudio, cancels the turn
and stores the reply in history as heard, marked interrupted; a backchannel or noise resumes the reply by
re-speaking the interrupted sentence, with no StopAudio ever sent. ``BARGE_IN_STOP_AUDIO=onset`` sends
StopAudio with the pause instead, for a media path that buffers more than playback keeps ahead;
backchannels then cost a StopAudio too.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from callwright.acs.media import AudioData, AudioMetadata
from callwright.agents.base import (
    Handoff,
    HangUp,
    Orchestrator,
    TextChunk,
    ToolInvoked,
    Transfer,
    Turn,
    expectation_of,
)
from callwright.logs import call_scope, pii
from callwright.sessions.registry import CallRecord
from callwright.speech.base import Recognizer, Synthesizer
from callwright.speech.pools import PoolClosed, PoolExhausted
from callwright.tracing import ToolTiming, TurnTiming
from callwright.voice import telephony
from callwright.voice.base import MediaTransport
from callwright.voice.cascade.echo import EchoGuard
from callwright.voice.cascade.heard import (
    BACKCHANNEL_PHRASES,
    heard_text,
    is_backchannel,
    is_short_non_interruption,
)
from callwright.voice.cascade.playback import Playback, Segment
from callwright.voice.cascade.recognition import RecognitionLane, TurnTaking, Utterance
from callwright.voice.health import media_health
from callwright.voice.recording import CallRecorder, close_recorder, open_recorder

log = logging.getLogger("callwright.cascade")

DTMF_INTER_DIGIT_SECONDS = 2.0
# Three recognised words over the agent are a request, unless they came implausibly fast (a domain
# language model turns a hum into in-domain words).
PARTIAL_CONFIRM_WORDS = 3
PARTIAL_CONFIRM_MIN_SECONDS = 0.4
# Lane failures are counted over this window against MEDIA_LANE_MAX_RESTARTS.
LANE_FAILURE_WINDOW_SECONDS = 60.0
# What a caller hears when their speech can no longer be heard (then a transfer, or the call ends).
LOST_INPUT_APOLOGY = "I'm sorry, I'm having trouble hearing you."
LOST_INPUT_TRANSFER = "Let me connect you to a colleague who can help."
LOST_INPUT_GOODBYE = "Please call us back in a few minutes. Goodbye."
APOLOGY_TIMEOUT_SECONDS = 15.0


@dataclass
class _Reply:
    kind: Literal["greeting", "speech", "dtmf"]
    agent: str
    segments: list[Segment] = field(default_factory=list)
    speech_end_time: float | None = None
    final_time: float | None = None
    first_text_time: float | None = None
    tools: list[ToolTiming] = field(default_factory=list)


def _history_timing(reply: _Reply, m: dict[str, float]) -> dict[str, Any]:
    """What an assistant history entry keeps about its turn, for the post-call record."""
    out: dict[str, Any] = {"reply_to": reply.kind}
    if "response_s" in m:
        out["response_ms"] = round(m["response_s"] * 1000)
    return out


def _jsonable(value: Any, limit: int = 4000) -> Any:
    """A tool result as the session can store it (JSON, bounded)."""
    try:
        text = json.dumps(value, default=str)
    except (TypeError, ValueError):
        text = json.dumps(str(value))
    if len(text) > limit:
        return {"truncated": text[:limit]}
    return json.loads(text)


@dataclass
class _PendingBargeIn:
    onset_time: float
    detected_at: float
    paused_at: float
    reply: _Reply
    confirmed: bool = False
    stop_audio_at: float | None = None


class SpeechCascadeHandler:
    def __init__(
        self,
        record: CallRecord,
        transport: MediaTransport,
        app_state: Any,
        *,
        orchestrator: Orchestrator | None = None,
    ) -> None:
        self._record = record
        self._transport = transport
        self._st = app_state
        self._settings = app_state.settings
        self._engines = app_state.speech
        self._metrics = app_state.metrics
        self._orchestrator_override = orchestrator
        self.orchestrator: Orchestrator | None = None
        self._stt: Recognizer | None = None
        self._tts: Synthesizer | None = None
        self.echo_guard = EchoGuard(sample_rate=transport.sample_rate) if self._settings.echo_guard else None
        self.playback = Playback(
            transport,
            lead_ms=self._settings.playback_lead_ms,
            on_frame_sent=self.echo_guard.reference if self.echo_guard is not None else None,
        )
        self._lane: RecognitionLane | None = None
        self._segmenter: Any = None
        self._turns: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._turn_loop_task: asyncio.Task[None] | None = None
        self._turn_task: asyncio.Task[None] | None = None
        self._reply: _Reply | None = None
        self._barge: _PendingBargeIn | None = None
        self._dtmf_digits = ""
        self._dtmf_timer: asyncio.TimerHandle | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._stopped = False
        self._started = False
        self.turn_metrics: list[dict[str, float]] = []
        # Supervision of the recognition lane (restart with fresh state; give up with an apology).
        self._lane_failures: collections.deque[float] = collections.deque()
        self._restarting = False
        self.degraded = False  # speech input was lost for good: apologised, then transferred or ended
        self.lane_restarts = 0
        self.recorder: CallRecorder | None = None  # the call's stereo recording (RECORDING_ENABLED)

    @property
    def memo(self) -> Any:
        return self._record.memo

    # --- lifecycle --------------------------------------------------------------------------------
    async def start(self, metadata: AudioMetadata) -> None:
        if self._started:
            return
        self._started = True
        loop = asyncio.get_running_loop()
        self.recorder = await open_recorder(self._st, self._record.call_connection_id)
        self.playback.tap = self.recorder
        try:
            self._stt = await self._engines.stt_pool.acquire()
            self._tts = await self._engines.tts_pool.acquire()
        except (PoolExhausted, PoolClosed) as exc:
            log.error("refusing the call: %s", exc)
            self._release_engines()
            self._spawn(self._refuse())
            return
        self.orchestrator = self._orchestrator_override or self._st.orchestrator_factory(self._record)
        self.playback.start()
        self._lane = self._new_lane(loop)
        self._turn_loop_task = loop.create_task(self._turn_loop(), name=f"turns:{self._record.call_connection_id}")
        self._turns.put_nowait(("greeting", None))
        log.info("speech cascade started")

    def _new_lane(self, loop: asyncio.AbstractEventLoop) -> RecognitionLane:
        """A recognition lane with a fresh segmenter over the call's recognizer, biased and started."""
        assert self._stt is not None
        self._segmenter = self._engines.new_segmenter()
        lane = RecognitionLane(
            call_id=self._record.call_connection_id,
            recognizer=self._stt,
            segmenter=self._segmenter,
            loop=loop,
            agent_audible=lambda: self.playback.audible,
            on_onset=self._on_onset,
            on_partial=self._on_partial,
            on_utterance=self._on_utterance,
            max_utterance_seconds=self._settings.stt_processing_timeout,
            on_sustained_speech=self._on_sustained_speech,
            sustained_speech_seconds=self._settings.barge_in_confirm_ms / 1000,
            on_voice_hint=self._on_voice_hint,
            echo_guard=self.echo_guard,
            workers=getattr(self._st, "recognition_workers", None),
            on_failure=self._on_lane_failure,
            on_echo_guard_reset=self._on_echo_guard_reset,
            turn_taking=TurnTaking.from_engines(self._engines, self._settings),
        )
        lane.bias(self._phrases())
        lane.expect(expectation_of(self.orchestrator))
        lane.start()
        return lane

    # --- supervision (on the event loop) ---------------------------------------------------------
    def _on_echo_guard_reset(self) -> None:
        media_health(self._st).lane_restarted("echo_guard")

    def _on_lane_failure(self, component: str) -> None:
        if not self._stopped and not self.degraded:
            self._spawn(self._restart_lane(component))

    async def _restart_lane(self, component: str) -> None:
        """Replace a failed lane with one on fresh state (new segmenter, recognizer reset or replaced from
        the pool) at once; too many failures, or a restart that fails, end in :meth:`_lose_speech_input`."""
        if self._restarting or self._stopped or self.degraded:
            return
        self._restarting = True
        health = media_health(self._st)
        loop = asyncio.get_running_loop()
        try:
            now = time.monotonic()
            self._lane_failures.append(now)
            while self._lane_failures and now - self._lane_failures[0] > LANE_FAILURE_WINDOW_SECONDS:
                self._lane_failures.popleft()
            limit = self._settings.media_lane_max_restarts
            if len(self._lane_failures) > limit:
                health.restart_failed()
                failures = len(self._lane_failures)
                await self._lose_speech_input(f"the recognition lane failed {failures} times in a minute")
                return
            old = self._lane
            if old is not None:
                old.stop()
                # The old segmenter is dropped, not returned for reuse: its VAD may be what failed.
                if not await loop.run_in_executor(None, old.join, 1.0):
                    log.error("failed recognition lane did not stop within 1 s")
            await self._fresh_recognizer()
            if self._stopped or self.degraded:
                return
            self._lane = self._new_lane(loop)
            self._settle_barge_in_after_restart()
            self.lane_restarts += 1
            health.lane_restarted(component)
            log.warning("recognition lane restarted with fresh state (%s failure %d of %d allowed a minute)",
                        component, len(self._lane_failures), limit)  # fmt: skip
        except Exception:
            log.exception("restarting the recognition lane failed")
            health.restart_failed()
            await self._lose_speech_input("the recognition lane could not be restarted")
        finally:
            self._restarting = False

    async def _fresh_recognizer(self) -> None:
        """Reset the call's recognizer; one that cannot be reset goes back to the pool (which drops it)
        and a fresh one is acquired."""
        stt = self._stt
        assert stt is not None
        try:
            await asyncio.get_running_loop().run_in_executor(None, stt.reset)
            return
        except Exception:
            log.exception("recognizer reset failed; replacing it from the pool")
        self._stt = None
        self._engines.stt_pool.release(stt)
        self._stt = await self._engines.stt_pool.acquire()

    def _settle_barge_in_after_restart(self) -> None:
        """The utterance in flight died with the lane: a pending barge-in resumes the reply and any hold is
        let go, so the agent is never left paused waiting for a verdict that cannot come."""
        barge, self._barge = self._barge, None
        if barge is not None and not barge.confirmed and self._reply is barge.reply:
            self.playback.resume(restart_interrupted=True)
        else:
            self.playback.release()

    async def _lose_speech_input(self, why: str) -> None:
        """Never silent deafness: the caller hears an apology, then is transferred (the scenario has a
        person to transfer to) or the call is ended through call automation."""
        if self.degraded or self._stopped:
            return
        self.degraded = True
        scenario = getattr(self._st, "scenario", None)
        target = getattr(scenario, "human_number", None) if scenario is not None else None
        media_health(self._st).call_degraded("transferred" if target else "ended")
        log.error("speech input lost (%s); apologising, then %s", why, "transferring" if target else "hanging up")
        if not self._take_over(reason="speech input lost"):
            return
        text = f"{LOST_INPUT_APOLOGY} {LOST_INPUT_TRANSFER if target else LOST_INPUT_GOODBYE}"
        try:
            await asyncio.wait_for(self._say_now(text), APOLOGY_TIMEOUT_SECONDS)
        except Exception:
            log.exception("the apology could not be played")
        if self.memo is not None:
            self.memo.append_history("assistant", text, agent="system", reason="speech input lost")
            self.memo.persist_background()
        if target:
            await self._transfer(target)
        else:
            await self._hang_up(f"speech input lost: {why}")

    def _take_over(self, *, reason: str) -> bool:
        """Stop listening and end the agent's turn (what was heard of its reply goes into history, marked
        ``reason``), so the server can say one last thing. False when the caller is gone already."""
        if self._lane is not None:
            self._lane.stop()
        for task in (self._turn_loop_task, self._turn_task):
            if task is not None and not task.done():
                task.cancel()
        self._barge = None
        if self._reply is not None:
            self._record_interrupted(self.playback.clear(), reason=reason)
            self._reply = None
        else:
            self.playback.clear()
        if self._transport.closed:
            return False
        self.playback.reopen()
        return True

    async def say_goodbye(self, text: str) -> None:
        """The server is closing the call (shutdown drain): the agent's turn gives way to ``text``, played
        to the end before the hang-up, so the caller is never left in dead air."""
        if self._stopped or not self._started or self.degraded:
            return
        if not self._take_over(reason="server shutdown"):
            return
        await self._say_now(text)
        if self.memo is not None:
            self.memo.append_history("assistant", text, agent="system", reason="server shutdown")

    async def _say_now(self, text: str) -> None:
        """Speak ``text`` with the call's synthesizer; the pre-rendered apology if synthesis fails."""
        loop = asyncio.get_running_loop()
        seg = self.playback.new_segment(text)
        tts = self._tts
        ok = False
        if tts is not None:

            def sink(chunk: bytes) -> bool:
                loop.call_soon_threadsafe(self.playback.append, seg, chunk)
                return True

            try:
                ok = bool(await loop.run_in_executor(None, tts.synthesize, text, sink, self._settings.tts_voice))
            except Exception:
                log.exception("synthesis of the apology failed")
        await asyncio.sleep(0)  # let the chunks posted by the sink land first
        if not ok and not seg.pcm:
            self.playback.append(seg, getattr(self._st, "apology_pcm", b""))
        self.playback.finish(seg)
        await self.playback.wait_played()

    def _phrases(self) -> list[str]:
        assert self.orchestrator is not None
        return [*self.orchestrator.expected_phrases(), *BACKCHANNEL_PHRASES]

    def on_audio(self, frame: AudioData) -> None:
        if self.recorder is not None and not self._stopped:
            pcm = frame.pcm if not frame.silent else bytes(len(frame.pcm) or 640)
            self.recorder.caller(pcm, frame.participant_raw_id)
        # Silent frames matter: the segmenter needs the pauses to find the end of an utterance.
        if self._lane is not None and not self._stopped:
            self._lane.feed(frame.pcm if not frame.silent else bytes(len(frame.pcm) or 640))

    async def on_dtmf(self, tone: str) -> None:
        if self._stopped or self.orchestrator is None:
            return
        if self.memo is not None:
            self.memo.record_metric("dtmf", tone=tone)
        self._dtmf_digits += tone
        reply = self._reply
        if reply is not None and self._barge is None and self.playback.audible:
            # A key press over a prompt is an unambiguous interruption, as on any IVR.
            now = time.monotonic()
            barge = _PendingBargeIn(now, now, self.playback.pause(flush=True), reply)
            await self._send_stop_audio(barge)
            self._confirm_barge_in(barge, "a key press")
        if self._dtmf_timer is not None:
            self._dtmf_timer.cancel()
        if tone == "#":
            self._flush_dtmf()
        else:
            self._dtmf_timer = asyncio.get_running_loop().call_later(DTMF_INTER_DIGIT_SECONDS, self._flush_dtmf)

    def _flush_dtmf(self) -> None:
        self._dtmf_timer = None
        digits, self._dtmf_digits = self._dtmf_digits, ""
        if digits:
            log.info("DTMF input %s", pii(digits))
            self._turns.put_nowait(("dtmf", digits))

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self._dtmf_timer is not None:
            self._dtmf_timer.cancel()
        if self._lane is not None:
            self._lane.stop()
        if self._reply is not None and self._turn_task is not None and not self._turn_task.done():
            self._record_interrupted(self.playback.clear(), reason="call ended")
        for task in (self._turn_task, self._turn_loop_task, *self._background):
            if task is not None and not task.done():
                task.cancel()
        for task in (self._turn_task, self._turn_loop_task, *self._background):
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        await self.playback.close()
        await close_recorder(self._st, self.recorder, self.memo)
        if self._lane is not None:
            joined = await asyncio.get_running_loop().run_in_executor(None, self._lane.join, 1.0)
            if not joined:
                log.error("recognition lane did not stop within 1 s")
            elif self._segmenter is not None:
                self._engines.release_segmenter(self._segmenter)  # only once no thread uses it
        self._release_engines()
        if self.echo_guard is not None and self.echo_guard.frames_rejected:
            self._metrics.echo_frames_rejected_total.inc(self.echo_guard.frames_rejected)
            log.info("echo guard: %d caller frames were the agent's own audio", self.echo_guard.frames_rejected)
        if self.memo is not None:
            self.memo.persist_background(0)
        log.info("speech cascade stopped")

    def _release_engines(self) -> None:
        if self._stt is not None:
            self._engines.stt_pool.release(self._stt)
            self._stt = None
        if self._tts is not None:
            self._engines.tts_pool.release(self._tts)
            self._tts = None

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _refuse(self) -> None:
        """At capacity: a short apology, then hang up — never silence."""
        self.playback.start()
        apology = self.playback.new_segment("apology")
        self.playback.append(apology, getattr(self._st, "apology_pcm", b""))
        self.playback.finish(apology)
        await self.playback.wait_played()
        await self._hang_up("at capacity")

    # --- the turn lane ----------------------------------------------------------------------------
    async def _turn_loop(self) -> None:
        while True:
            kind, payload = await self._turns.get()
            self._turn_task = asyncio.get_running_loop().create_task(self._run_turn(kind, payload))
            try:
                await self._turn_task
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise  # the handler is stopping
            except Exception:
                log.exception("turn failed")
            finally:
                self._turn_task = None
                self._reply = None
                if self._lane is not None:  # what the agent now waits for: end-of-turn detection uses it
                    self._lane.expect(expectation_of(self.orchestrator))

    async def _run_turn(self, kind: str, payload: Any) -> None:
        orchestrator = self.orchestrator
        assert orchestrator is not None
        reply = _Reply(kind=kind, agent=orchestrator.active_agent)  # type: ignore[arg-type]
        if kind == "speech":
            utt: Utterance = payload
            reply.speech_end_time, reply.final_time = utt.speech_end_time, utt.final_time
            events = orchestrator.respond(Turn(utt.text, "speech", utt.confidence))
        elif kind == "dtmf":
            reply.final_time = time.monotonic()
            events = orchestrator.respond(Turn(payload, "dtmf"))
        else:
            events = orchestrator.greeting()
        self._reply = reply
        to_synthesize: asyncio.Queue[Segment | None] = asyncio.Queue()
        cancel_synthesis = threading.Event()
        synth = asyncio.get_running_loop().create_task(self._synthesize(to_synthesize, cancel_synthesis))
        actions: list[Transfer | HangUp] = []
        try:
            async for event in events:
                if isinstance(event, TextChunk) and event.text.strip():
                    if reply.first_text_time is None:
                        reply.first_text_time = time.monotonic()
                    seg = self.playback.new_segment(event.text.strip())
                    reply.segments.append(seg)
                    to_synthesize.put_nowait(seg)
                elif isinstance(event, Handoff):
                    log.info("handoff %s → %s", event.from_agent, event.to_agent)
                    reply.agent = event.to_agent  # the reply ends in the new agent's voice
                    if self._lane is not None:
                        self._lane.bias(self._phrases())
                    if self.memo is not None:
                        self.memo.set_context("active_agent", event.to_agent)
                        self.memo.record_metric("handoff", from_agent=event.from_agent, to_agent=event.to_agent)
                elif isinstance(event, Transfer | HangUp):
                    actions.append(event)
                elif isinstance(event, ToolInvoked):
                    self._metrics.tool_calls_total.labels("error" if event.failed else "ok").inc()
                    now = time.monotonic()
                    reply.tools.append(
                        ToolTiming(event.name, event.started or now, event.ended or now, ok=not event.failed)
                    )
                    if self.memo is not None:
                        self.memo.record_metric(
                            "tool", tool=event.name, arguments=event.arguments, result=_jsonable(event.result)
                        )
            to_synthesize.put_nowait(None)
            await synth
            await self.playback.wait_played()
            self.playback.forget(reply.segments)
        except asyncio.CancelledError:
            cancel_synthesis.set()
            raise
        finally:
            if not synth.done():
                cancel_synthesis.set()
                synth.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await synth
        self._record_completed(reply)
        for action in actions:
            if isinstance(action, Transfer):
                await self._transfer(action.target)
            else:
                await self._hang_up(action.reason or "agent ended the call")

    async def _synthesize(self, segments: asyncio.Queue[Segment | None], cancel: threading.Event) -> None:
        loop = asyncio.get_running_loop()
        tts = self._tts
        assert tts is not None
        while (seg := await segments.get()) is not None:

            def sink(chunk: bytes, seg: Segment = seg) -> bool:
                if cancel.is_set():
                    return False
                loop.call_soon_threadsafe(self.playback.append, seg, chunk)
                return True

            try:
                await loop.run_in_executor(None, tts.synthesize, seg.text, sink, self._settings.tts_voice)
            except Exception:
                # One engine fault costs a sentence's delay, not the agent's voice for the rest of the call:
                # the synthesizer is replaced with a fresh one from the pool and the sentence said again.
                log.exception("synthesis failed; replacing the synthesizer and saying the sentence again")
                media_health(self._st).lane_restarted("synthesizer")
                tts = await self._fresh_synthesizer(tts)
                if cancel.is_set():
                    return
                await loop.run_in_executor(None, tts.synthesize, seg.text, sink, self._settings.tts_voice)
            if cancel.is_set():
                return
            self.playback.finish(seg)

    async def _fresh_synthesizer(self, broken: Synthesizer) -> Synthesizer:
        """Hand a failed synthesizer back (the pool resets it, or drops it when it cannot be reset) and take
        another; PoolExhausted/PoolClosed propagate and fail the turn like any engine error."""
        self._tts = None
        self._engines.tts_pool.release(broken)
        fresh = await self._engines.tts_pool.acquire()
        if self._stopped:  # the call ended while we waited: the engine goes straight back
            self._engines.tts_pool.release(fresh)
            raise asyncio.CancelledError
        self._tts = fresh
        return fresh

    # --- history and metrics ----------------------------------------------------------------------
    def _record_completed(self, reply: _Reply) -> None:
        _, full = heard_text(reply.segments)
        timing = _history_timing(reply, self._observe_turn(reply))
        if self.memo is not None and full:
            self.memo.append_history("assistant", full, agent=reply.agent, **timing)
            self.memo.persist_background()

    def _record_interrupted(self, _cleared: list[Segment], *, reason: str) -> None:
        reply = self._reply
        if reply is None:
            return
        heard, full = heard_text(reply.segments)
        timing = _history_timing(reply, self._observe_turn(reply, interrupted=True))
        if self.memo is not None and full:
            self.memo.append_history(
                "assistant", heard, agent=reply.agent, interrupted=True, full_text=full, reason=reason, **timing
            )
            self.memo.persist_background()

    def _observe_turn(self, reply: _Reply, *, interrupted: bool = False) -> dict[str, float]:
        first_audio = next((s.first_sent_time for s in reply.segments if s.first_sent_time), None)
        tracing = getattr(self._st, "tracing", None)
        if tracing is not None:
            tracing.turn(
                self._record.call_connection_id,
                TurnTiming(
                    kind=reply.kind,
                    agent=reply.agent,
                    speech_end=reply.speech_end_time,
                    final=reply.final_time,
                    first_text=reply.first_text_time,
                    first_audio=first_audio,
                    ended=time.monotonic(),
                    interrupted=interrupted,
                    tools=reply.tools,
                ),
            )
        m: dict[str, float] = {}
        if reply.speech_end_time and reply.final_time:
            m["stt_final_s"] = reply.final_time - reply.speech_end_time
            self._metrics.turn_stt_final_seconds.observe(m["stt_final_s"])
        if reply.final_time and reply.first_text_time:
            m["agent_first_text_s"] = reply.first_text_time - reply.final_time
            self._metrics.turn_agent_first_text_seconds.observe(m["agent_first_text_s"])
        if reply.first_text_time and first_audio:
            m["tts_first_audio_s"] = first_audio - reply.first_text_time
            self._metrics.turn_tts_first_audio_seconds.observe(m["tts_first_audio_s"])
        if reply.speech_end_time and first_audio:
            m["response_s"] = first_audio - reply.speech_end_time
            self._metrics.turn_response_seconds.observe(m["response_s"])
            self._metrics.mode_turn_response_seconds.labels("media").observe(m["response_s"])
        if m:
            self.turn_metrics.append(m)
            if self.memo is not None:
                self.memo.record_metric("turn", kind=reply.kind, **m)
        return m

    # --- barge-in (on the event loop) -------------------------------------------------------------
    def _on_voice_hint(self, voiced: bool) -> None:
        if self._barge is not None or self._stopped:
            return
        if voiced and self._reply is not None and self.playback.audible:
            self.playback.hold()
        else:
            self.playback.release()

    async def _on_onset(self, onset_time: float, detected_at: float) -> None:
        with call_scope(self._record.call_connection_id):
            reply = self._reply
            if self._stopped or reply is None or self._barge is not None or not self.playback.audible:
                if self._barge is None:
                    self.playback.release()
                return
            stop_at_onset = self._settings.barge_in_stop_audio == "onset"
            self.playback.pause(flush=stop_at_onset)
            barge = self._barge = _PendingBargeIn(onset_time, detected_at, time.monotonic(), reply)
            self._metrics.barge_in_detect_seconds.observe(detected_at - onset_time)
            self._metrics.barge_in_execute_seconds.observe(barge.paused_at - detected_at)
            log.info("barge-in: agent paused %.0f ms after voice onset", (barge.paused_at - onset_time) * 1000)
            if stop_at_onset:
                await self._send_stop_audio(barge)

    async def _send_stop_audio(self, barge: _PendingBargeIn) -> None:
        if barge.stop_audio_at is not None or self._transport.closed:
            return
        barge.stop_audio_at = time.monotonic()  # claimed before the await: sent once
        await self._transport.stop_audio()
        self._metrics.barge_in_stop_audio_seconds.observe(barge.stop_audio_at - barge.onset_time)
        self._metrics.mode_barge_in_seconds.labels("media").observe(barge.stop_audio_at - barge.onset_time)
        log.info("StopAudio sent %.0f ms after voice onset", (barge.stop_audio_at - barge.onset_time) * 1000)

    def _on_partial(self, text: str) -> None:
        barge = self._barge
        if barge is None or barge.confirmed:
            return
        words = [w for w in text.lower().split() if w]
        long_enough = time.monotonic() - barge.onset_time >= PARTIAL_CONFIRM_MIN_SECONDS
        if len(words) >= PARTIAL_CONFIRM_WORDS and long_enough and not is_backchannel(text):
            self._confirm_barge_in(barge, f"the words {text!r}")

    def _barge_in_for(self, onset_time: float) -> _PendingBargeIn | None:
        """The pending barge-in that the utterance starting at ``onset_time`` set off, if any."""
        barge = self._barge
        return barge if barge is not None and abs(barge.onset_time - onset_time) < 1e-6 else None

    def _on_sustained_speech(self, onset_time: float) -> None:
        barge = self._barge_in_for(onset_time)
        if barge is not None and not barge.confirmed:
            self._confirm_barge_in(barge, f"speech past {self._settings.barge_in_confirm_ms} ms")

    def _confirm_barge_in(self, barge: _PendingBargeIn, why: str) -> None:
        if barge.confirmed:
            return
        barge.confirmed = True
        if self._reply is barge.reply and self._turn_task is not None and not self._turn_task.done():
            self._record_interrupted(self.playback.clear(), reason="barge-in")
            self._reply = None
            self._turn_task.cancel()
        self._spawn(self._stop_audio_then_reopen(barge))
        self._metrics.barge_ins_total.labels("confirmed").inc()
        log.info("barge-in confirmed by %s", why)
        if self.memo is not None:
            self.memo.record_metric(
                "barge_in", outcome="confirmed", why=why, paused_ms=round((barge.paused_at - barge.onset_time) * 1000)
            )

    async def _stop_audio_then_reopen(self, barge: _PendingBargeIn) -> None:
        # Playback stays paused until StopAudio is out, so nothing new can slip in ahead of it.
        try:
            await self._send_stop_audio(barge)
        except Exception as exc:
            log.warning("StopAudio could not be sent: %s", exc)
        finally:
            if not self._stopped:
                self.playback.reopen()

    def _on_utterance(self, utt: Utterance) -> None:
        if self._stopped:
            return
        barge = self._barge_in_for(utt.onset_time)
        if barge is not None:
            self._barge = None
            if not barge.confirmed:
                speech_ms = utt.speech_ms
                not_an_interruption = (
                    (not utt.text or is_backchannel(utt.text)) and speech_ms <= self._settings.barge_in_confirm_ms
                ) or is_short_non_interruption(utt.text, speech_ms)
                if not_an_interruption and self._reply is barge.reply:
                    log.info("not an interruption (%r, %d ms); resuming the reply", pii(utt.text), speech_ms)
                    self.playback.resume(restart_interrupted=True)
                    self._metrics.barge_ins_total.labels("resumed").inc()
                    if self.memo is not None:
                        self.memo.record_metric("barge_in", outcome="resumed", heard=utt.text)
                    return
                self._confirm_barge_in(barge, f"{utt.text!r} ({speech_ms} ms of speech)")
        if not utt.text:
            return
        if self._reply is not None and (
            is_backchannel(utt.text) or (utt.during_agent_audio and is_short_non_interruption(utt.text, utt.speech_ms))
        ):
            return  # an acknowledgement while the agent is busy: nothing to answer
        self._turns.put_nowait(("speech", utt))

    # --- telephony actions ------------------------------------------------------------------------
    async def _hang_up(self, reason: str) -> None:
        if self.memo is not None:
            self.memo.record_metric("hang_up", by="agent", reason=reason)
        await telephony.hang_up(self._st, self._record.call_connection_id, self._transport, reason)

    async def _transfer(self, target: str) -> None:
        self._metrics.transfers_total.labels("requested").inc()
        if self.memo is not None:
            self.memo.record_metric("transfer", target=target)
        await telephony.transfer(self._st, self._record.call_connection_id, target)
