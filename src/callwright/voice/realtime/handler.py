"""RealtimeHandler: mode ``voice_live`` — the call's audio to a speech-to-speech realtime service and back.

Barge-in, measured through the service's VAD (the local server's; tests/voice_live): clicks and noise
bursts never fire it; the agent's own echo (-15 dB, 120 ms) fired it on every reply, so the cascade's echo
guard runs ahead of the service and sends echo frames as silence; a lone "uh-huh" fired it in about half
the runs, so ``speech_started`` holds the reply and the sound is decided as in the cascade (hold.py):
an interruption is cut (StopAudio, truncate), a backchannel resumes the reply and its answer is cancelled.

Every ACS frame (silent ones as zeros) is appended to the service; its audio is paced to the caller by
the cascade's :class:`Playback` (same lead, same record of what was heard). Barge-in keys on the play-out
clock, not on "a response is active" (realtime-protocol.md §0.6, §7): on ``speech_started`` while the
caller can still hear the agent, playback stops, StopAudio goes out, the item is truncated to
``min(played, received)`` and the reply is kept in history as heard. Tool calls run through the
scenario's registry after the ``response.done`` of the response that asked (§0.8). When the service
cannot be reached, refuses the session or dies mid-call, the caller hears an apology and is transferred
or the call ends (as the scenario says), never silence.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from callwright.acs.media import AudioData, AudioMetadata
from callwright.logs import call_scope
from callwright.sessions.registry import CallRecord
from callwright.speech.resample import StreamResampler
from callwright.tracing import TurnTiming
from callwright.voice.base import MediaTransport
from callwright.voice.cascade.echo import EchoGuard
from callwright.voice.cascade.heard import heard_text
from callwright.voice.cascade.playback import Playback, Segment
from callwright.voice.realtime.backends import BackendClosed, BackendError, RealtimeConnection
from callwright.voice.realtime.hold import Hold, HoldMixin
from callwright.voice.realtime.service import RealtimeService
from callwright.voice.realtime.session import AgentView, beta_name, greeting_request, session_update
from callwright.voice.realtime.tools import ToolsMixin
from callwright.voice.recording import CallRecorder, close_recorder, open_recorder

log = logging.getLogger("callwright.voice_live")

MODE = "voice_live"
RATE = 16_000
MAX_BUFFERED_FRAMES = 250  # 5 s of caller audio held while the session is set up; older frames are dropped
CANCEL_GRACE_SECONDS = 0.5  # the service cancels on its own VAD; a response still running after this is cancelled
QUIET_ERRORS = frozenset({"response_cancel_not_active"})


@dataclass
class _Reply:
    """One response's audio as played to the caller."""

    response_id: str
    agent: str
    segments: dict[str, Segment] = field(default_factory=dict)  # item_id -> its audio
    received: dict[str, int] = field(default_factory=dict)  # item_id -> bytes received at the service rate
    calls: list[dict[str, Any]] = field(default_factory=list)
    done: bool = False
    interrupted: bool = False
    speech_end_time: float | None = None


class RealtimeHandler(HoldMixin, ToolsMixin):
    def __init__(self, record: CallRecord, transport: MediaTransport, app_state: Any, service: RealtimeService) -> None:
        self._record = record
        self._transport = transport
        self._st = app_state
        self._service = service
        self._settings = app_state.settings
        self._metrics = app_state.metrics
        # The cascade's echo guard, ahead of the service's VAD: caller frames that are only the agent's own
        # audio coming back are sent as silence, so the echo cannot barge in (measured: at -15 dB / 120 ms
        # the local server's VAD cut every reply without it).
        self.echo_guard = EchoGuard(sample_rate=transport.sample_rate) if self._settings.echo_guard else None
        self.playback = Playback(
            transport,
            lead_ms=self._settings.playback_lead_ms,
            on_frame_sent=self.echo_guard.reference if self.echo_guard is not None else None,
        )
        self.orchestrator: Any = None
        self._agent: AgentView | None = None
        self.conn: RealtimeConnection | None = None
        self._rate = RATE
        self._in_rs: StreamResampler | None = None
        self._out_rs: StreamResampler | None = None
        self._ready = False
        self._held: collections.deque[bytes] = collections.deque(maxlen=MAX_BUFFERED_FRAMES)
        self._outbox: asyncio.Queue[tuple[bytes, float]] = asyncio.Queue()
        self._audible_until = 0.0  # the agent's audio (and its echo) may still be on the line until then
        self._sent_ms = 0.0  # caller audio appended so far (the service's audio clock)
        self._sent_times: collections.deque[tuple[float, float]] = collections.deque(maxlen=3000)
        self._replies: dict[str, _Reply] = {}
        self._current: _Reply | None = None  # the reply the caller hears (or will hear next)
        self._speech_end_time: float | None = None
        self._dtmf_digits = ""
        self._dtmf_timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._main: asyncio.Task[None] | None = None
        self._sender: asyncio.Task[None] | None = None
        self._slot = False
        self._started = False
        self._stopped = False
        self.failure: str | None = None
        self._closing = False
        self._answer_keys = False
        self._goodbye: asyncio.Event | None = None
        self._hold: Hold | None = None  # a sound over the agent whose verdict is pending (hold.py)
        self._dropped: set[str] = set()  # responses to backchannels: cancelled, their events ignored
        self.barge_ins: list[dict[str, Any]] = []
        self.turn_metrics: list[dict[str, float]] = []
        self.truncates: list[dict[str, Any]] = []
        self.events_seen: collections.Counter[str] = collections.Counter()
        self.recorder: CallRecorder | None = None  # the call's stereo recording (RECORDING_ENABLED)

    @property
    def memo(self) -> Any:
        return self._record.memo

    # --- lifecycle --------------------------------------------------------------------------------
    async def start(self, metadata: AudioMetadata) -> None:
        if self._started:
            return
        self._started = True
        self.orchestrator = self._st.orchestrator_factory(self._record)
        self.recorder = await open_recorder(self._st, self._record.call_connection_id)
        self.playback.tap = self.recorder
        self.playback.start()
        self._main = self._spawn(self._run(), keep=False)
        log.info("voice_live handler started (backend %s)", self._service.kind)

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self._dtmf_timer is not None:
            self._dtmf_timer.cancel()
        hold, self._hold = self._hold, None
        if hold is not None and hold.timer is not None:
            hold.timer.cancel()
        reply = self._current
        if reply is not None and not reply.interrupted and self.playback.audible:
            reply.interrupted = True
            self._record_interrupted(reply, self.playback.clear(), reason="call ended")
        tasks = [t for t in (self._main, self._sender, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self._close_conn()
        await self.playback.close()
        await close_recorder(self._st, self.recorder, self.memo)
        if self.echo_guard is not None and self.echo_guard.frames_rejected:
            self._metrics.echo_frames_rejected_total.inc(self.echo_guard.frames_rejected)
            log.info("echo guard: %d caller frames were the agent's own audio", self.echo_guard.frames_rejected)
        if self.memo is not None:
            # What the service said, in counts: tests and operators read errors and truncations here.
            self.memo.record_metric("voice_live", mode=MODE, events=dict(self.events_seen), failure=self.failure)
            self.memo.persist_background(0)
        log.info("voice_live handler stopped")

    async def say_goodbye(self, text: str) -> None:
        """The server is closing the call (shutdown drain): the agent's reply gives way to ``text``, spoken
        by the service and played to the end before the hang-up, so the caller is never left in dead air."""
        if self._stopped or not self._ready or self.failure is not None or self.conn is None:
            return
        self._closing = True  # the caller's audio is no longer sent: nothing can interrupt the goodbye
        hold, self._hold = self._hold, None
        if hold is not None and hold.timer is not None:
            hold.timer.cancel()
        reply = self._current
        if reply is not None and not reply.interrupted and self.playback.audible:
            self.playback.pause(flush=True)
            await self._transport.stop_audio()
            reply.interrupted = True
            self._record_interrupted(reply, self.playback.clear(), reason="server shutdown")
            self._reopen_later()
        if any(not r.done for r in self._replies.values()):
            with contextlib.suppress(BackendClosed):
                await self._send({"type": "response.cancel"})
            # a new response only after the cancelled one's response.done (§0.8); bounded by the caller's
            # goodbye timeout as a whole, and by 2 s here
            for _ in range(100):
                if all(r.done for r in self._replies.values()):
                    break
                await asyncio.sleep(0.02)
        self._goodbye = asyncio.Event()
        await self._send(greeting_request(self.conn.spec, text))
        await self._goodbye.wait()

    async def _close_conn(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            await conn.close()
        if self._slot:
            self._slot = False
            self._service.release()

    def _spawn(self, coro: Any, *, keep: bool = True) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        if keep:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return task

    # --- the session ------------------------------------------------------------------------------
    async def _run(self) -> None:
        with call_scope(self._record.call_connection_id):
            try:
                self.conn = await self._service.connect()
            except BackendError as exc:
                log.error("realtime service unavailable at call start (%s): %s", exc.reason, exc)
                await self._fail(f"start_{exc.reason}", str(exc))
                return
            self._slot = True
            spec = self.conn.spec
            self._rate = spec.audio_rate
            if self._rate != RATE:  # OpenAI GA: 24 kHz only; one stateful soxr stream per direction
                self._in_rs = StreamResampler(RATE, self._rate, "HQ")
                self._out_rs = StreamResampler(self._rate, RATE, "HQ")
            self._agent = AgentView(self.orchestrator, spec)
            try:
                await self.conn.send(session_update(self._settings, spec, self._agent, first=True))
                self._sender = self._spawn(self._send_audio(), keep=False)
                while True:
                    event = await self.conn.recv()
                    await self._dispatch(event)
            except BackendClosed as exc:
                if self._stopped:
                    return
                log.error("realtime service closed the session mid-call (code %s)", exc.code)
                await self._fail("closed" if exc.code in (1000, 1001) else "died", f"closed with code {exc.code}")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("voice_live session failed")
                await self._fail("error", str(exc))

    async def _send(self, event: dict[str, Any]) -> None:
        if self.conn is not None:
            await self.conn.send(event)

    async def _send_safe(self, event: dict[str, Any]) -> None:
        """For background sends: a closed connection is the receive loop's to handle (it fails the leg)."""
        with contextlib.suppress(BackendClosed):
            await self._send(event)

    # --- caller audio -----------------------------------------------------------------------------
    def on_audio(self, frame: AudioData) -> None:
        if self._stopped:
            return
        # Silent frames too: server VAD times silence_duration_ms on appended audio (§0.10).
        pcm = frame.pcm if not frame.silent else bytes(len(frame.pcm) or 640)
        if self.recorder is not None:  # the caller is recorded whatever the realtime leg is doing
            self.recorder.caller(pcm, frame.participant_raw_id)
        if self.failure is not None or self._closing:
            return
        if not self._ready:
            self._held.append(pcm)
            return
        now = time.monotonic()
        if self.playback.audible:
            self._audible_until = now + 0.6  # the echo path's delay is under the guard's 500 ms window
        self._outbox.put_nowait((pcm, now))

    async def _send_audio(self) -> None:
        loop = asyncio.get_running_loop()
        guard = self.echo_guard
        while True:
            batch = [await self._outbox.get()]
            while not self._outbox.empty() and len(batch) < 10:  # catch up after a stall in one event
                batch.append(self._outbox.get_nowait())
            frames = []
            for pcm, arrived in batch:
                # numpy correlation: off the event loop (frames are checked in order, one at a time)
                echo_possible = guard is not None and arrived < self._audible_until and not self._stopped
                if echo_possible and await loop.run_in_executor(None, guard.is_echo, pcm, arrived):  # type: ignore[union-attr]
                    pcm = bytes(len(pcm))  # silence keeps the service's audio clock and VAD timing
                frames.append(pcm)
            data = b"".join(frames)
            self._sent_ms += len(data) / (2 * RATE) * 1000
            self._sent_times.append((self._sent_ms, time.monotonic()))
            if self._in_rs is not None:
                data = self._in_rs.process(data)
            if data:
                await self._send({"type": "input_audio_buffer.append", "audio": base64.b64encode(data).decode()})

    def _wall_time_of(self, audio_ms: float) -> float | None:
        for sent_ms, at in self._sent_times:
            if sent_ms >= audio_ms:
                return at
        return None

    # --- server events ----------------------------------------------------------------------------
    async def _dispatch(self, event: dict[str, Any]) -> None:
        kind = beta_name(event["type"])
        self.events_seen[kind] += 1
        if self._held_back(kind, event):
            return
        if kind in ("session.updated", "session.created"):
            if kind == "session.updated" and not self._ready:
                await self._begin()
        elif kind == "input_audio_buffer.speech_started":
            self._on_voice(event)
        elif kind == "input_audio_buffer.speech_stopped":
            self._on_voice_stopped(event)
            end_ms = event.get("audio_end_ms")
            at = self._wall_time_of(float(end_ms)) if isinstance(end_ms, int | float) else None
            # audio_end_ms counts the closing silence: the caller stopped that much earlier
            self._speech_end_time = (at or time.monotonic()) - self._settings.voicelive_vad_silence_ms / 1000
        elif kind == "conversation.item.input_audio_transcription.completed":
            text = str(event.get("transcript") or "")
            if not self._on_voice_words(str(event.get("item_id")), text):
                self._on_user_transcript(text)
        elif kind == "response.created":
            rid = str((event.get("response") or {}).get("id") or "")
            reply = _Reply(rid, self._agent.name if self._agent else "", speech_end_time=self._speech_end_time)
            self._speech_end_time = None
            self._replies[rid] = reply
        elif kind == "response.audio.delta":
            self._on_audio_delta(event)
        elif kind == "response.audio_transcript.delta":
            seg = self._segment(event)
            if seg is not None:
                seg.text += str(event.get("delta") or "")
        elif kind == "response.audio_transcript.done":
            seg = self._segment(event)
            if seg is not None and event.get("transcript"):
                seg.text = str(event["transcript"])
        elif kind == "response.audio.done":
            seg = self._segment(event)
            if seg is not None:
                self._flush_resampler(seg)
                self.playback.finish(seg)
        elif kind == "response.function_call_arguments.done":
            reply = self._replies.get(str(event.get("response_id")))
            if reply is not None:
                reply.calls.append(event)
        elif kind == "response.done":
            self._on_response_done(event.get("response") or {})
        elif kind == "error":
            err = event.get("error") or {}
            self.events_seen[f"error:{err.get('code')}"] += 1
            if err.get("code") not in QUIET_ERRORS:
                log.warning("realtime service error %s: %s", err.get("code"), err.get("message"))

    async def _begin(self) -> None:
        """The session is configured: greet, then let the held caller audio through."""
        self._ready = True
        assert self._agent is not None and self.conn is not None
        await self._send(greeting_request(self.conn.spec, self._agent.greeting()))
        now = time.monotonic()
        while self._held:
            self._outbox.put_nowait((self._held.popleft(), now))

    def _segment(self, event: dict[str, Any]) -> Segment | None:
        reply = self._replies.get(str(event.get("response_id")))
        if reply is None or reply.interrupted:
            return None  # a late event of a reply the caller cut off: dropped (§7 step 3)
        item_id = str(event.get("item_id"))
        seg = reply.segments.get(item_id)
        if seg is None:
            seg = reply.segments[item_id] = self.playback.new_segment("")
            reply.received[item_id] = 0
            self._current = reply  # replies play in order: the newest one with audio is the one to cut
        return seg

    def _on_audio_delta(self, event: dict[str, Any]) -> None:
        seg = self._segment(event)
        if seg is None:
            return
        try:
            pcm = base64.b64decode(str(event.get("delta") or ""), validate=False)
        except ValueError:
            log.warning("realtime audio delta is not base64; skipped")
            return
        reply = self._replies[str(event.get("response_id"))]
        reply.received[str(event.get("item_id"))] += len(pcm)
        if self._out_rs is not None:
            pcm = self._out_rs.process(pcm)
        self.playback.append(seg, pcm)

    def _flush_resampler(self, seg: Segment) -> None:
        if self._out_rs is not None:
            tail = self._out_rs.flush()
            self._out_rs.reset()  # a flushed soxr stream takes no more input: the next item starts fresh
            if tail:
                self.playback.append(seg, tail)

    def _on_response_done(self, response: dict[str, Any]) -> None:
        reply = self._replies.get(str(response.get("id")))
        if reply is None:
            return
        reply.done = True
        if self._answer_keys and not reply.calls:
            self._answer_keys = False
            self._spawn(self._send_safe({"type": "response.create"}))
        for seg in reply.segments.values():
            if not seg.synthesized:
                self._flush_resampler(seg)
                self.playback.finish(seg)
        status = response.get("status")
        held = self._hold is not None and self._hold.reply is reply  # may yet resume: its audio is kept
        if reply.interrupted or status == "failed" or (status == "cancelled" and not held):
            self._replies.pop(reply.response_id, None)
            self.playback.forget(list(reply.segments.values()))
            if status == "failed":
                log.warning("realtime response failed: %s", response.get("status_details"))
            return
        self._spawn(self._after_response(reply))

    async def _after_response(self, reply: _Reply) -> None:
        """Tool outputs go out now (the asking response is done); the reply enters history once heard."""
        pending: Any = None
        if reply.calls:
            try:
                pending = await self._run_tools(reply)
            except BackendClosed:
                return  # the receive loop sees the close too, and fails the leg
        await self._played(reply)
        self._replies.pop(reply.response_id, None)
        if reply.interrupted:
            return
        self.playback.forget(list(reply.segments.values()))
        self._record_completed(reply)
        if self._goodbye is not None:
            self._goodbye.set()
        if pending is not None and not self._stopped and self.failure is None:
            await self._telephony(pending)

    async def _played(self, reply: _Reply) -> None:
        """Until every segment of ``reply`` has played at the caller's end, or the reply was cut."""
        # Polled on the play-out clock (Playback has no per-segment event); bounded by the audio's length.
        audio_s = sum(len(s.pcm) for s in reply.segments.values()) / (2 * RATE)
        deadline = time.monotonic() + audio_s + 30.0
        while not reply.interrupted and not all(s.fully_played for s in reply.segments.values()):
            if time.monotonic() > deadline:
                log.warning("reply %s did not finish playing in time", reply.response_id)
                return
            await asyncio.sleep(0.02)

    # --- barge-in ---------------------------------------------------------------------------------
    async def _on_speech_started(self) -> None:
        """A key press over the agent: an unambiguous interruption, as on any IVR."""
        if self._hold is not None:
            self._decide_soon(self._hold, True, "a key press")
        elif self._current is not None and self.playback.audible:
            await self._cut(self._current)

    async def _cut(self, reply: _Reply) -> None:
        """A confirmed barge-in: StopAudio, truncate to what was played, history as heard."""
        if reply.interrupted or self._stopped:
            return
        reply.interrupted = True  # first: a key press arriving during the awaits below finds it cut already
        started = time.monotonic()
        self.playback.pause(flush=True)
        await self._transport.stop_audio()
        stopped = time.monotonic()
        segments = self.playback.clear()
        self._reopen_later()
        if self._out_rs is not None:
            self._out_rs.reset()  # no stale samples in the next reply (§8.1)
        truncated = None
        for item_id, seg in reply.segments.items():
            played_ms = seg.played / (2 * RATE) * 1000
            received_ms = reply.received.get(item_id, 0) / (2 * self._rate) * 1000
            if seg.played < len(seg.pcm) or not seg.synthesized:
                end_ms = int(min(played_ms, received_ms))
                truncated = {"item_id": item_id, "audio_end_ms": end_ms, "played_ms": played_ms,
                             "received_ms": received_ms}  # fmt: skip
                await self._send({"type": "conversation.item.truncate", "item_id": item_id, "content_index": 0,
                                  "audio_end_ms": end_ms})  # fmt: skip
                break
        if truncated is not None:
            self.truncates.append(truncated)
        self._record_interrupted(reply, segments, reason="barge-in")
        if not reply.done:
            self._spawn(self._cancel_if_running(reply))
        took = stopped - started
        self._metrics.mode_barge_in_seconds.labels(MODE).observe(took)
        self._metrics.barge_ins_total.labels("confirmed").inc()
        self.barge_ins.append({"stop_audio_s": took, **(truncated or {})})
        log.info("barge-in: StopAudio %.0f ms after speech_started; truncated at %s ms",
                 took * 1000, truncated["audio_end_ms"] if truncated else "-")  # fmt: skip
        if self.memo is not None:
            cut = {k: round(v) for k, v in (truncated or {}).items() if k != "item_id"}
            self.memo.record_metric("barge_in", outcome="confirmed", mode=MODE, stop_audio_ms=round(took * 1000), **cut)

    def _reopen_later(self) -> None:
        """Let playback send again once its pacing sleep (≤ the lead) is over: a frame it took before the
        pause and sleeps on would otherwise go out after the StopAudio (Playback re-checks only the pause
        flag after that sleep, and reopen clears it)."""

        def reopen() -> None:
            if not self._stopped:
                self.playback.reopen()
                self.playback.hold()  # hold + release: the public way to wake the pacing loop
                self.playback.release()

        asyncio.get_running_loop().call_later(self._settings.playback_lead_ms / 1000 + 0.04, reopen)

    async def _cancel_if_running(self, reply: _Reply) -> None:
        # interrupt_response: the service cancels on its own VAD; cancel only a response it left running
        await asyncio.sleep(CANCEL_GRACE_SECONDS)
        if not reply.done and not self._stopped:
            with contextlib.suppress(BackendClosed):
                await self._send({"type": "response.cancel", "response_id": reply.response_id})

    # --- telephony and keys, noted for the post-call record (the work is ToolsMixin's) -------------
    async def on_dtmf(self, tone: str) -> None:
        if not self._stopped and self.failure is None and self.memo is not None:
            self.memo.record_metric("dtmf", tone=tone)
        await super().on_dtmf(tone)

    async def _hang_up(self, reason: str) -> None:
        if self.memo is not None:
            self.memo.record_metric("hang_up", by="agent", reason=reason)
        await super()._hang_up(reason)

    async def _transfer(self, target: str) -> None:
        self._metrics.transfers_total.labels("requested").inc()
        if self.memo is not None:
            self.memo.record_metric("transfer", target=target)
        await super()._transfer(target)

    # --- history ----------------------------------------------------------------------------------
    def _on_user_transcript(self, text: str) -> None:
        text = text.strip()
        if not text or self.memo is None:
            return
        self.memo.append_history("user", text, agent=self._agent.name if self._agent else None)
        self.memo.persist_background()

    def _record_completed(self, reply: _Reply) -> None:
        segments = list(reply.segments.values())
        _, full = heard_text(segments)
        timing = self._observe(reply)
        if self.memo is not None and full:
            self.memo.append_history("assistant", full, agent=reply.agent, **timing)
            self.memo.persist_background()

    def _record_interrupted(self, reply: _Reply, _cleared: list[Segment], *, reason: str) -> None:
        segments = list(reply.segments.values())
        heard, full = heard_text(segments)
        timing = self._observe(reply)
        if self.memo is not None and full:
            self.memo.append_history(
                "assistant", heard, agent=reply.agent, interrupted=True, full_text=full, reason=reason, **timing
            )
            self.memo.persist_background()

    def _observe(self, reply: _Reply) -> dict[str, Any]:
        """Records the turn's response time; returns what its history entry keeps of it."""
        first = min((s.first_sent_time for s in reply.segments.values() if s.first_sent_time), default=None)
        tracing = getattr(self._st, "tracing", None)
        if tracing is not None:
            tracing.turn(
                self._record.call_connection_id,
                TurnTiming(
                    kind="speech" if reply.speech_end_time is not None else "greeting",
                    mode=MODE,
                    agent=reply.agent,
                    speech_end=reply.speech_end_time,
                    first_audio=first,
                    ended=time.monotonic(),
                    interrupted=reply.interrupted,
                ),
            )
        if reply.speech_end_time is None or first is None:
            return {}
        response_s = first - reply.speech_end_time
        self._metrics.mode_turn_response_seconds.labels(MODE).observe(max(0.0, response_s))
        self.turn_metrics.append({"response_s": response_s})
        if self.memo is not None:
            self.memo.record_metric("turn", kind="speech", mode=MODE, response_s=response_s)
        return {"reply_to": "speech", "response_ms": round(response_s * 1000)}
