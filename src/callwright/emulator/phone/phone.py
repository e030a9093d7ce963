"""The virtual phone: the remote party of an emulated call, driven by a script, reporting what it heard.

The emulator's control plane talks to it only through :class:`~callwright.emulator.contracts.PhoneSide`
(media start/stop, REST prompts, callback events, disconnect); :meth:`VirtualPhone.run` drives the
script once the call exists and returns the report.

The phone's audio runs over the app's media WebSocket when the app streams, and otherwise over the call
itself (:class:`~callwright.emulator.phone.call_audio.CallAudioLink`): an IVR-style app that only plays
prompts and recognizes DTMF or speech is heard, and answered, the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

from callwright.emulator.contracts import CallSide, OutboundBehaviour
from callwright.emulator.phone import audio
from callwright.emulator.phone.call_audio import CallAudioLink, call_audio_link
from callwright.emulator.phone.media import AGENT_UTTERANCE_GAP_S, CallerUtterance, MediaLink
from callwright.emulator.phone.report import agent_segments, build_report
from callwright.emulator.phone.script import (
    BargeIn,
    Dtmf,
    FrameSize,
    Hangup,
    PhoneScript,
    Raw,
    Say,
    Silence,
    Step,
    Wait,
    parse_script,
)
from callwright.emulator.phone.transcribe import AgentTranscriber, LiveSpotter, phrase_heard

log = logging.getLogger(__name__)

_EVENT_PREFIX = "Microsoft.Communication."
# An app that answered with media options but without startMediaStreaming may still open the stream
# (``:startMediaStreaming``) right after CallConnected; this long the phone waits before it takes the
# call's own audio path instead.
MEDIA_GRACE_S = 1.5
# How long a prompt played while the stream is still opening waits for it before the call path takes it.
_MEDIA_OPEN_WAIT_S = 12.0


class ScriptFailure(RuntimeError):
    """The script could not complete; the message names the step."""


def _step_name(step: Step) -> str:
    names: dict[type, str] = {Say: "say", Wait: "wait", BargeIn: "barge_in", Dtmf: "dtmf", Silence: "silence",
                              Hangup: "hangup", Raw: "raw", FrameSize: "frame_ms"}  # fmt: skip
    return names[type(step)]


class VirtualPhone:
    """Implements PhoneSide; ``number`` is the phone's own number (caller inbound, callee outbound)."""

    def __init__(
        self,
        script: PhoneScript,
        *,
        record_dir: Path | None = None,
        tts_cache_dir: Path | None = None,
        transcribe: bool | None = None,
        transcriber: AgentTranscriber | None = None,
    ) -> None:
        self.script = script
        self.number = script.from_number if script.direction == "inbound" else script.to_number
        self.record_dir = record_dir
        self.transcribe = script.transcribe if transcribe is None else transcribe
        # Whoever runs many phones passes one transcriber so its decoder is built once per process.
        self.transcriber = transcriber or AgentTranscriber()
        self._tts_cache = tts_cache_dir or audio.default_tts_cache_dir()
        self.events: list[str] = []
        self.utterances: list[CallerUtterance] = []
        self.link: MediaLink | None = None
        self.disconnect_reason: str | None = None
        self.report: dict[str, Any] | None = None
        self._call: CallSide | None = None
        self._media_started = asyncio.Event()
        self._media_starting = False
        self._media_failed = asyncio.Event()
        self._connected = asyncio.Event()
        self._disconnected = asyncio.Event()
        self._audio: dict[int, bytes] = {}
        self._prepared: asyncio.Task[None] | None = None
        self._spotter: LiveSpotter | None = None
        self._step_no = 0
        self._hung_up = False
        self._prompt_cancel = asyncio.Event()

    @property
    def outbound_behaviour(self) -> OutboundBehaviour:
        o = self.script.outbound
        return OutboundBehaviour(answer_after_s=o.answer_after_s, outcome=o.outcome)

    # ---- PhoneSide -------------------------------------------------------------------------------

    async def start_media(
        self, call: CallSide, *, transport_url: str, headers: dict[str, str], sample_rate: int, bidirectional: bool
    ) -> None:
        self._call = call
        self._ensure_prepared()
        if isinstance(self.link, CallAudioLink):
            # The emulator attaches a late stream to the call path with reconnect() while the link is down;
            # a second, separate link would split the phone's timeline, so this is refused.
            raise RuntimeError("the phone is on the call's audio path and already has a media stream")
        self._media_starting = True
        echo = self.script.echo
        # A script may force the stream's rate (a sender that does not follow what the app negotiated).
        sample_rate = self.script.sample_rate or sample_rate
        link = MediaLink(
            sample_rate=sample_rate,
            frame_ms=self.script.frame_ms,
            participant_raw_id=call.caller_raw_id,
            on_agent_frame=self._heard,
            echo_db=echo.db if echo else None,
            echo_delay_ms=echo.delay_ms if echo else 0,
        )
        await link.connect(transport_url, headers)  # raises: the emulator reports MediaStreamingFailed
        self.link = link
        if self.script.needs_live_stt:
            self._spotter = LiveSpotter(sample_rate, asyncio.get_running_loop(), lambda: None)
        self._media_started.set()
        log.info("phone %s: media connected to %s (%d Hz, bidirectional=%s)", self.number, transport_url,
                 sample_rate, bidirectional)  # fmt: skip

    async def stop_media(self) -> None:
        if self.link is not None:
            await self.link.close("media streaming stopped")

    async def play_prompt(self, pcm16k: bytes) -> bool:
        # A phone that once had a stream never falls back to the call path (a dropped stream is restarted).
        fresh = not self._media_started.is_set()
        if self.link is None and fresh and self._connected.is_set() and not self._disconnected.is_set():
            if self._media_starting and not self._media_failed.is_set():
                await _first_of(self._media_started, self._media_failed, self._disconnected, timeout=_MEDIA_OPEN_WAIT_S)
            if self.link is None and not self._disconnected.is_set():
                await self._start_call_audio()
        if self.link is not None and not self.link.closed.is_set():
            return await self.link.play_prompt(pcm16k)
        # No media stream to the phone: still take the prompt's real duration, as ACS would.
        self._prompt_cancel.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._prompt_cancel.wait(), timeout=len(pcm16k) / 32_000)
            return False
        return True

    def cancel_prompts(self) -> None:
        self._prompt_cancel.set()
        if self.link is not None:
            self.link.cancel_prompts()

    def on_callback_event(self, event_type: str, data: dict[str, Any]) -> None:
        name = event_type.removeprefix(_EVENT_PREFIX)
        self.events.append(name)
        if name == "CallConnected":
            self._connected.set()
        elif name == "MediaStreamingFailed":
            self._media_failed.set()

    def caller_track(self) -> tuple[bytearray, list[bool], int] | None:
        """What the caller has sent so far (PCM, per-20 ms voiced flags, rate): the emulator's recognizer
        listens here, on the stream's timeline or the call path's alike. None before the phone has audio."""
        link = self.link
        if link is None:
            return None
        tl = link.timeline
        return tl.caller_pcm, tl.caller_voiced, tl.sample_rate

    async def _start_call_audio(self) -> None:
        """Take the call's own audio path (no media stream): prompts in, caller audio to the recognizer."""
        if self.link is not None:
            return
        echo = self.script.echo
        raw_id = self._call.caller_raw_id if self._call is not None else f"4:{self.number}"
        # At the rate the app negotiated for its stream, if it asked for one: a stream it starts later then
        # attaches to this link as it is.
        media = getattr(self._call, "media", None)
        link = call_audio_link(
            self.script.sample_rate or getattr(media, "sample_rate", None),
            participant_raw_id=raw_id,
            on_agent_frame=self._heard,
            echo_db=echo.db if echo else None,
            echo_delay_ms=echo.delay_ms if echo else 0,
            frame_ms=self.script.frame_ms,
        )
        self._ensure_prepared()
        await link.start()
        self.link = link
        if self.script.needs_live_stt:
            self._spotter = LiveSpotter(link.sample_rate, asyncio.get_running_loop(), lambda: None)
        log.info("phone %s: no media stream; on the call's audio path", self.number)

    async def _until_audio(self, call: CallSide) -> None:
        """Wait until the phone can hear the call: the app's media stream, or else the call's own path."""
        await _first_of(self._media_started, self._connected, self._disconnected)
        if self._disconnected.is_set() or self.link is not None:
            return
        media = getattr(call, "media", None)  # the emulator's EmulatedCall; absent on other CallSides
        if media is not None and not self._media_failed.is_set():
            grace = None if getattr(media, "start_on_connect", False) else MEDIA_GRACE_S
            await _first_of(self._media_started, self._media_failed, self._disconnected, timeout=grace)
        if self.link is None and not self._disconnected.is_set():
            await self._start_call_audio()

    async def on_disconnected(self, reason: str) -> None:
        self.disconnect_reason = reason
        self._disconnected.set()
        self.cancel_prompts()

    # ---- running the script ----------------------------------------------------------------------

    def _heard(self, pcm: bytes, voiced: bool, t: float) -> None:
        if self._spotter is not None:
            self._spotter.feed(pcm, voiced)

    def _ensure_prepared(self) -> asyncio.Task[None]:
        if self._prepared is None:
            self._prepared = asyncio.create_task(self._prepare(), name="phone-prepare-audio")
        return self._prepared

    async def _prepare(self) -> None:
        """Render every utterance before it is needed, so 'say' starts on the next 20 ms tick."""

        async def one(i: int, step: Step, say: Say) -> None:
            try:
                self._audio[i] = await self._render(say, i)
            except audio.AudioSourceError as exc:
                raise ScriptFailure(f"step {i + 1} ({_step_name(step)}): {exc}") from None

        jobs = []
        for i, step in enumerate(self.script.steps):
            say = step.say if isinstance(step, BargeIn) else step
            if isinstance(say, Say):
                jobs.append(one(i, step, say))
        await asyncio.gather(*jobs)

    async def _render(self, say: Say, i: int) -> bytes:
        if say.source == "text":
            return await audio.flite_say(say.text or "", say.voice or self.script.voice, self._tts_cache)
        if say.source == "file":
            assert say.file is not None
            return await asyncio.to_thread(audio.read_audio_file, say.file)
        if say.source == "noise":
            gen = audio.pink_noise if say.noise == "pink" else audio.white_noise
            return gen(say.ms, say.db, self.script.seed + i)
        return audio.click(say.db)

    async def run(self, call: CallSide) -> dict[str, Any]:
        """Drive the script (waiting for media first), then build and, if asked, record the report."""
        self._call = call
        ok, error = True, None
        try:
            await asyncio.wait_for(self._drive(call), timeout=self.script.timeout_s)
        except ScriptFailure as exc:
            ok, error = False, str(exc)
        except TimeoutError:
            where = f"at step {self._step_no}" if self._step_no else "waiting for the call's audio"
            ok, error = False, f"script timed out after {self.script.timeout_s:g} s ({where})"
        except Exception as exc:  # a bug or a dead socket must still produce a report
            log.exception("phone %s: script crashed", self.number)
            ok, error = False, f"step {self._step_no}: {type(exc).__name__}: {exc}"
        await self._finish(call)
        self.report = await self._build_report(call, ok, error)
        return self.report

    async def _drive(self, call: CallSide) -> None:
        await self._ensure_prepared()
        if self.script.direction == "outbound" and self.script.outbound.outcome != "answer":
            await self._disconnected.wait()  # busy / no answer: the emulator ends the attempt
            return
        await self._until_audio(call)
        if self.link is None:
            raise ScriptFailure(f"call ended before its audio started ({self.disconnect_reason})")
        for i, step in enumerate(self.script.steps):
            self._step_no = i + 1
            where = f"step {i + 1} ({_step_name(step)})"
            if self._disconnected.is_set():
                if isinstance(step, Hangup) or (isinstance(step, Wait) and step.kind == "disconnected"):
                    return
                raise ScriptFailure(f"{where}: call already disconnected ({self.disconnect_reason})")
            await self._guarded(self._run_step(i, step, call), where, allow_disconnect=_ends_call(step))
            if self._hung_up:
                return
        self._step_no = len(self.script.steps) + 1

    async def _guarded(self, coro: Awaitable[None], where: str, *, allow_disconnect: bool) -> None:
        """Run a step, failing it clearly if the call or the media stream ends underneath it."""
        assert self.link is not None
        task = asyncio.ensure_future(coro)
        watch = {asyncio.ensure_future(self._disconnected.wait()), asyncio.ensure_future(self.link.closed.wait())}
        try:
            done, _ = await asyncio.wait({task, *watch}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in watch:
                w.cancel()
        if task in done:
            task.result()
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        if allow_disconnect and self._disconnected.is_set():
            return
        why = self.disconnect_reason if self._disconnected.is_set() else self.link.close_reason
        raise ScriptFailure(f"{where}: the call ended during this step ({why})")

    async def _run_step(self, i: int, step: Step, call: CallSide) -> None:
        link = self.link
        assert link is not None
        where = f"step {i + 1} ({_step_name(step)})"
        if isinstance(step, Say):
            await self._say(i, step, barge_in=False)
        elif isinstance(step, Silence):
            await asyncio.sleep(step.seconds)
        elif isinstance(step, Wait):
            await self._wait(step, where)
        elif isinstance(step, BargeIn):
            await self._barge_in(i, step, where)
        elif isinstance(step, Dtmf):
            utt = CallerUtterance(label=step.digits, kind="dtmf", step=i + 1)
            self.utterances.append(utt)
            for k, ch in enumerate(step.digits):
                if k:
                    await asyncio.sleep(step.gap_ms / 1000)
                now = time.monotonic()
                utt.onset_t = utt.onset_t or now
                utt.end_t = now
                await link.send_dtmf(ch)
                call.dtmf_from_phone(ch)
        elif isinstance(step, Raw):
            for _ in range(step.repeat):
                await link.send_raw(step.text)
        elif isinstance(step, FrameSize):
            link.frame_ms = step.ms
        elif isinstance(step, Hangup):
            self._hung_up = True
            call.hang_up_by_phone()

    async def _say(self, i: int, say: Say, *, barge_in: bool) -> None:
        assert self.link is not None
        kind = {"text": "speech", "file": "speech"}.get(say.source, say.source)
        utt = CallerUtterance(label=say.label, kind=kind, probe=say.probe, barge_in=barge_in and not say.probe,
                              step=i + 1)  # fmt: skip
        self.utterances.append(utt)
        await self.link.say(self._audio[i], utt)

    async def _wait(self, step: Wait, where: str) -> None:
        link = self.link
        assert link is not None
        if step.kind == "seconds":
            await asyncio.sleep(step.seconds)
            return
        if step.kind == "disconnected":
            await asyncio.wait_for(self._disconnected.wait(), timeout=step.timeout_s)
            return
        deadline = None if step.timeout_s is None else time.monotonic() + step.timeout_s
        if step.kind == "agent_done":
            spoken = [u.end_t for u in self.utterances if u.end_t is not None]
            ref = max(spoken) if spoken else link.timeline.t0
            while True:
                last = link.last_agent_voiced_t
                now = time.monotonic()
                if last is not None and last >= ref and not link.agent_playing and now - last >= step.silence_ms / 1000:
                    return
                if deadline is not None and now > deadline:
                    what = "did not finish speaking" if last is not None and last >= ref else "did not speak"
                    raise ScriptFailure(f"{where}: the agent {what} within {step.timeout_s:g} s")
                await link.next_tick()
        spotter = self._spotter
        assert spotter is not None and step.phrase is not None
        first = max(0, len(spotter.texts) - 1) if link.agent_playing else len(spotter.texts)
        while not phrase_heard(step.phrase, " ".join(spotter.texts[first:])):
            if deadline is not None and time.monotonic() > deadline:
                heard = " | ".join(spotter.texts[first:]) or "nothing"
                raise ScriptFailure(
                    f"{where}: did not hear {step.phrase!r} within {step.timeout_s:g} s (heard: {heard})"
                )
            await link.next_tick()

    async def _barge_in(self, i: int, step: BargeIn, where: str) -> None:
        link = self.link
        assert link is not None
        deadline = None if step.timeout_s is None else time.monotonic() + step.timeout_s
        # "Speaking" as the utterance count sees it: a pause between the agent's sentences (longer than the
        # 0.2 s of agent_playing, shorter than the utterance gap) is still the same utterance. With
        # agent_playing alone, a step that began in such a pause (the phone was slow to get there)
        # waited for a "next" utterance that never came.
        last = link.last_agent_voiced_t
        speaking = link.agent_playing or (last is not None and time.monotonic() - last < AGENT_UTTERANCE_GAP_S)
        of = step.of or ("current" if speaking else "next")
        if of == "next" or not speaking or link.agent_utt_start_t is None:
            count = link.agent_utt_count
            while link.agent_utt_count == count:
                if deadline is not None and time.monotonic() > deadline:
                    raise ScriptFailure(f"{where}: the agent did not start speaking within {step.timeout_s:g} s")
                await link.next_tick()
        assert link.agent_utt_start_t is not None
        delay = link.agent_utt_start_t + step.at_ms / 1000 - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        await self._say(i, step.say, barge_in=True)

    async def _finish(self, call: CallSide) -> None:
        """End the call from the phone's side unless it already ended, then stop media."""
        if not self._disconnected.is_set() and not self._hung_up and self.link is not None:
            self._hung_up = True
            try:
                call.hang_up_by_phone()
            except Exception:
                log.exception("phone %s: hang-up failed", self.number)
        if self._hung_up and not self._disconnected.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._disconnected.wait(), timeout=2.0)
        if self.link is not None:
            await self.link.close(self.disconnect_reason or "call ended")
        if self._spotter is not None:
            self._spotter.close()
        if self._prepared is not None and not self._prepared.done():
            self._prepared.cancel()

    async def _build_report(self, call: CallSide, ok: bool, error: str | None) -> dict[str, Any]:
        link = self.link or MediaLink(sample_rate=16_000, participant_raw_id=call.caller_raw_id)
        tl = link.timeline
        segments = agent_segments(tl)
        texts: dict[int, str] | None = None
        if self.transcribe and segments:
            fb = link.fb
            spans = [(s.start_tick * fb, (s.end_tick + 1) * fb) for s in segments]
            try:
                decoded = await asyncio.to_thread(
                    self.transcriber.transcribe, bytes(tl.agent_pcm), tl.sample_rate, spans
                )
                texts = dict(enumerate(decoded))
            except Exception:
                log.exception("phone %s: agent transcription failed; the report has no agent text", self.number)
        report = build_report(
            call_id=call.call_connection_id, script_name=self.script.name, tl=tl, utterances=self.utterances,
            events=list(self.events), ok=ok, error=error, agent_texts=texts, segments=segments,
        )  # fmt: skip
        report["direction"] = self.script.direction
        report["disconnect_reason"] = self.disconnect_reason
        if self.record_dir is not None:
            report["recording"] = await asyncio.to_thread(self._write_recording, call.call_connection_id, report)
        return report

    def _write_recording(self, call_id: str, report: dict[str, Any]) -> dict[str, str]:
        assert self.record_dir is not None
        self.record_dir.mkdir(parents=True, exist_ok=True)
        tl = self.link.timeline if self.link is not None else None
        wav = self.record_dir / f"{call_id}.wav"
        js = self.record_dir / f"{call_id}.json"
        if tl is not None:
            audio.write_stereo_wav(wav, bytes(tl.caller_pcm), bytes(tl.agent_pcm), tl.sample_rate)
        paths = {"wav": str(wav) if tl is not None else "", "json": str(js)}
        js.write_text(json.dumps({**report, "recording": paths}, indent=2), encoding="utf-8")
        return paths


async def _first_of(*events: asyncio.Event, timeout: float | None = None) -> None:
    """Return when any of ``events`` is set (or after ``timeout`` seconds)."""
    waits = {asyncio.ensure_future(e.wait()) for e in events}
    try:
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()


def _ends_call(step: Step) -> bool:
    return isinstance(step, Hangup) or (isinstance(step, Wait) and step.kind == "disconnected")


def build_phone_from_script(
    script_text: str, *, record_dir: Path | None = None, base_dir: Path | None = None, **kwargs: Any
) -> VirtualPhone:
    """Parse a script (raises ScriptError) and build its phone. Extra kwargs go to VirtualPhone."""
    return VirtualPhone(parse_script(script_text, base_dir=base_dir), record_dir=record_dir, **kwargs)


class PhoneBook:
    """A PhoneDirectory over live virtual phones, keyed by their number."""

    def __init__(self) -> None:
        self._phones: dict[str, VirtualPhone] = {}

    @staticmethod
    def _key(number: str) -> str:
        return number.split(":", 1)[1] if number[:2] in ("4:",) else number

    def add(self, phone: VirtualPhone) -> None:
        self._phones[self._key(phone.number)] = phone

    def remove(self, phone: VirtualPhone) -> None:
        if self._phones.get(self._key(phone.number)) is phone:
            del self._phones[self._key(phone.number)]

    def phone_for_number(self, raw_id: str) -> tuple[VirtualPhone, OutboundBehaviour] | None:
        phone = self._phones.get(self._key(raw_id))
        return None if phone is None else (phone, phone.outbound_behaviour)
