"""Play and recognize on one call: a queue of media operations run one at a time, as ACS does.

A new ``:play`` queues behind the running one unless ``interruptCallMediaOperation`` is set; then it and
everything queued are cancelled first. ``:cancelAllMediaOperations`` cancels all. Each operation reports
its own outcome: PlayStarted → PlayCompleted | PlayFailed | PlayCanceled, RecognizeCompleted |
RecognizeFailed | RecognizeCanceled (acs-protocol.md §3.4–3.5).

Recognize takes DTMF (the phone's key presses), speech (the phone's spoken answer, decoded by pocketsphinx:
:mod:`caller_speech`), speechOrDtmf (whichever comes first) and choices (a choice's tone or one of its
phrases). Prompts are heard by the phone over its media stream or, without one, over the call's audio
path, and a recognize with ``interruptPrompt`` cuts its prompt on the first key or the first voiced frame.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from callwright.acs.media import TONE_NAMES
from callwright.emulator import caller_speech
from callwright.emulator.errors import bad_request
from callwright.emulator.prompts import PromptError, render_play_source

if TYPE_CHECKING:
    from callwright.emulator.calls import EmulatedCall

log = logging.getLogger("callwright.emulator.media")

CANCELED = (400, 8508, "Action failed, the operation was canceled.")
SPEECH_CONFIDENCE = 0.9
DTMF_TONES = frozenset(TONE_NAMES)


@dataclass(slots=True)
class _Op:
    name: str
    run: Callable[[], Coroutine[Any, Any, None]]
    cancel_unstarted: Callable[[], None]


@dataclass(frozen=True, slots=True)
class RecognizeSpec:
    input_type: str  # "dtmf" | "speech" | "speechordtmf" | "choices"
    max_tones: int
    stop_tones: frozenset[str]
    initial_silence_s: float
    inter_tone_s: float
    interrupt_prompt: bool
    choices: tuple[tuple[str, str | None, tuple[str, ...]], ...]  # (label, tone, phrases)
    end_silence_s: float = 0.5

    @property
    def hears_tones(self) -> bool:
        return self.input_type != "speech"

    @property
    def hears_speech(self) -> bool:
        return self.input_type != "dtmf"


def _number(raw: Any, name: str, default: float, lo: float, hi: float) -> float:
    if raw is None:
        return default
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not lo <= raw <= hi:
        raise bad_request(f"{name} must be a number between {lo:g} and {hi:g}")
    return float(raw)


def parse_recognize(body: dict[str, Any]) -> tuple[RecognizeSpec, list[Any]]:
    """Validate a ``:recognize`` body (every mistake is a 400 naming the field)."""
    kind = body.get("recognizeInputType")
    if not isinstance(kind, str):
        raise bad_request("recognizeInputType is required")
    kind = kind.lower()
    if kind not in ("dtmf", "speech", "speechordtmf", "choices"):
        raise bad_request(
            f"recognizeInputType {body['recognizeInputType']!r} must be dtmf, speech, speechOrDtmf or choices"
        )
    opts = body.get("recognizeOptions")
    if not isinstance(opts, dict):
        raise bad_request("recognizeOptions is required")
    if not isinstance(opts.get("targetParticipant"), dict):
        raise bad_request("recognizeOptions.targetParticipant is required")
    dtmf = opts.get("dtmfOptions") or {}
    if not isinstance(dtmf, dict):
        raise bad_request("recognizeOptions.dtmfOptions must be an object")
    stop = dtmf.get("stopTones") or []
    if not isinstance(stop, list) or any(str(t).lower() not in DTMF_TONES for t in stop):
        raise bad_request(f"dtmfOptions.stopTones must be DTMF tone names, got {stop!r}")
    choices: list[tuple[str, str | None, tuple[str, ...]]] = []
    if kind == "choices":
        raw_choices = opts.get("choices")
        if not isinstance(raw_choices, list) or not raw_choices:
            raise bad_request("recognizeOptions.choices is required for recognizeInputType choices")
        for c in raw_choices:
            if not isinstance(c, dict) or not isinstance(c.get("label"), str):
                raise bad_request("every choice needs a label")
            phrases = c.get("phrases") or []
            if not isinstance(phrases, list) or not all(isinstance(x, str) for x in phrases):
                raise bad_request(f"choice {c['label']!r}: phrases must be an array of strings")
            tone = c["tone"].lower() if isinstance(c.get("tone"), str) and c["tone"].lower() in DTMF_TONES else None
            choices.append((c["label"], tone, tuple(phrases)))
    speech = opts.get("speechOptions") or {}
    if not isinstance(speech, dict):
        raise bad_request("recognizeOptions.speechOptions must be an object")
    prompts = body.get("playPrompts") or ([body["playPrompt"]] if body.get("playPrompt") else [])
    if not isinstance(prompts, list):
        raise bad_request("playPrompts must be an array")
    spec = RecognizeSpec(
        input_type=kind,
        max_tones=int(_number(dtmf.get("maxTonesToCollect"), "dtmfOptions.maxTonesToCollect", 1, 1, 100)),
        stop_tones=frozenset(str(t).lower() for t in stop),
        initial_silence_s=_number(
            opts.get("initialSilenceTimeoutInSeconds"), "initialSilenceTimeoutInSeconds", 5, 0, 300
        ),
        inter_tone_s=_number(dtmf.get("interToneTimeoutInSeconds"), "dtmfOptions.interToneTimeoutInSeconds", 2, 1, 60),
        interrupt_prompt=bool(opts.get("interruptPrompt", False)),
        choices=tuple(choices),
        end_silence_s=_number(
            speech.get("endSilenceTimeoutInMs"), "speechOptions.endSilenceTimeoutInMs", 500, 100, 10_000
        )
        / 1000,
    )
    return spec, prompts


class MediaOperations:
    def __init__(self, call: EmulatedCall, http: httpx.AsyncClient) -> None:
        self._call = call
        self._http = http
        self._queue: deque[_Op] = deque()
        self._wake = asyncio.Event()
        self._current: asyncio.Task[None] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._tones: asyncio.Queue[str] | None = None
        self._prompt_interruptible = False
        self._own_transcriber: caller_speech.Transcriber | None = None
        self._closed = False

    # ---- queue -----------------------------------------------------------------------------------

    def _submit(self, op: _Op, *, interrupt: bool) -> None:
        if interrupt:
            self.cancel_all()
        self._queue.append(op)
        if self._worker is None:
            self._worker = self._call.spawn(self._run_queue(), "media-ops")
        self._wake.set()

    async def _run_queue(self) -> None:
        while not self._closed:
            await self._wake.wait()
            self._wake.clear()
            while self._queue and not self._closed:
                op = self._queue.popleft()
                self._current = asyncio.get_running_loop().create_task(op.run(), name=op.name)
                # wait() rather than await: a cancelled op must not look like this worker being cancelled.
                await asyncio.wait({self._current})
                if not self._current.cancelled() and self._current.exception() is not None:
                    log.error("media operation %s failed", op.name, exc_info=self._current.exception())
                self._current = None

    def cancel_all(self) -> None:
        while self._queue:
            self._queue.popleft().cancel_unstarted()
        if self._current is not None:
            self._current.cancel()

    def shutdown(self) -> None:
        """Call ended: drop everything without events (CallDisconnected says it all)."""
        self._closed = True
        self._queue.clear()
        if self._current is not None:
            self._current.cancel()
        if self._worker is not None:
            self._worker.cancel()
        self._tones = None

    async def _play_pcm(self, pcm: bytes) -> bool:
        phone = self._call.phone
        if phone is None:
            # Nobody to hear it: take as long as the audio lasts, like a real prompt.
            await asyncio.sleep(len(pcm) / 32_000)
            return True
        try:
            return await phone.play_prompt(pcm)
        except asyncio.CancelledError:
            phone.cancel_prompts()
            raise

    # ---- play ------------------------------------------------------------------------------------

    def play(self, body: dict[str, Any]) -> None:
        sources = body.get("playSources")
        if not isinstance(sources, list) or not sources:
            raise bad_request("playSources must be a non-empty array")
        play_to = body.get("playTo") or []
        if not isinstance(play_to, list):
            raise bad_request("playTo must be an array")
        options = body.get("playOptions") or {}
        loop = bool(options.get("loop", False)) if isinstance(options, dict) else False
        ctx = body.get("operationContext") if isinstance(body.get("operationContext"), str) else None
        url = body.get("operationCallbackUri") if isinstance(body.get("operationCallbackUri"), str) else None
        # Audio goes to the remote party only if it is addressed (playTo empty means everyone).
        heard = not play_to or any(isinstance(p, dict) and p.get("rawId") == self._call.caller_raw_id for p in play_to)

        async def run() -> None:
            emit = self._call.emit
            try:
                pcms: list[bytes] = []
                for i, src in enumerate(sources):
                    try:
                        pcms.append(await render_play_source(self._http, src))
                    except PromptError as exc:
                        emit(
                            "PlayFailed",
                            {"failedPlaySourceIndex": i},
                            operation_context=ctx,
                            result=(400, exc.sub_code, exc.message),
                            url=url,
                        )
                        return
                emit("PlayStarted", operation_context=ctx, url=url)
                while True:
                    for pcm in pcms:
                        played = await self._play_pcm(pcm) if heard else await self._silent_wait(pcm)
                        if not played:
                            emit("PlayCanceled", operation_context=ctx, result=CANCELED, url=url)
                            return
                    if not loop:
                        break
                emit("PlayCompleted", operation_context=ctx, url=url)
            except asyncio.CancelledError:
                if not self._closed:
                    emit("PlayCanceled", operation_context=ctx, result=CANCELED, url=url)
                raise

        def cancel_unstarted() -> None:
            self._call.emit("PlayCanceled", operation_context=ctx, result=CANCELED, url=url)

        self._submit(_Op("play", run, cancel_unstarted), interrupt=bool(body.get("interruptCallMediaOperation")))

    async def _silent_wait(self, pcm: bytes) -> bool:
        await asyncio.sleep(len(pcm) / 32_000)
        return True

    # ---- recognize -------------------------------------------------------------------------------

    def recognize(self, body: dict[str, Any]) -> None:
        spec, prompts = parse_recognize(body)
        ctx = body.get("operationContext") if isinstance(body.get("operationContext"), str) else None
        url = body.get("operationCallbackUri") if isinstance(body.get("operationCallbackUri"), str) else None

        async def run() -> None:
            emit = self._call.emit
            self._tones = asyncio.Queue() if spec.hears_tones else None
            # With interruptPrompt the caller may answer over the prompt, so listening starts with it.
            listen_from = caller_speech.caller_position(self._call.phone) if spec.interrupt_prompt else None
            try:
                for i, src in enumerate(prompts):
                    try:
                        pcm = await render_play_source(self._http, src)
                    except PromptError as exc:
                        emit(
                            "RecognizeFailed",
                            {"failedPlaySourceIndex": i},
                            operation_context=ctx,
                            result=(400, 8511, f"Action failed, play prompt failed: {exc.message}"),
                            url=url,
                        )
                        return
                    self._prompt_interruptible = spec.interrupt_prompt
                    voice = None
                    if spec.interrupt_prompt and spec.hears_speech and listen_from is not None:
                        voice = asyncio.ensure_future(self._barge_in_on_voice(listen_from))
                    try:
                        played = await self._play_pcm(pcm)
                    finally:
                        self._prompt_interruptible = False
                        if voice is not None:
                            voice.cancel()
                    if not played:
                        break  # barged in by a tone or the caller's voice: go straight to collecting
                if listen_from is None:
                    listen_from = caller_speech.caller_position(self._call.phone)
                await self._collect(spec, ctx, url, listen_from)
            except asyncio.CancelledError:
                if not self._closed:
                    emit("RecognizeCanceled", operation_context=ctx, result=CANCELED, url=url)
                raise
            finally:
                self._tones = None

        def cancel_unstarted() -> None:
            self._call.emit("RecognizeCanceled", operation_context=ctx, result=CANCELED, url=url)

        self._submit(_Op("recognize", run, cancel_unstarted), interrupt=bool(body.get("interruptCallMediaOperation")))

    async def _barge_in_on_voice(self, start: int) -> None:
        if await caller_speech.wait_for_voice(self._call.phone, start, None) is not None:
            phone = self._call.phone
            if phone is not None:
                phone.cancel_prompts()

    def _transcriber(self) -> caller_speech.Transcriber:
        """The phone's transcriber when it has one (one decoder per process), else one for this call."""
        found = getattr(self._call.phone, "transcriber", None)
        if found is not None and callable(getattr(found, "transcribe", None)):
            return found  # type: ignore[no-any-return]
        if self._own_transcriber is None:
            from callwright.emulator.phone.transcribe import AgentTranscriber

            self._own_transcriber = AgentTranscriber()
        return self._own_transcriber

    async def _collect(self, spec: RecognizeSpec, ctx: str | None, url: str | None, listen_from: int = 0) -> None:
        if not spec.hears_speech:
            await self._collect_tones(spec, ctx, url, [], spec.initial_silence_s)
            return
        emit = self._call.emit
        speech = asyncio.ensure_future(
            caller_speech.hear_answer(
                self._call.phone,
                self._transcriber(),
                start=listen_from,
                initial_silence_s=spec.initial_silence_s,
                end_silence_s=spec.end_silence_s,
            )
        )
        waits: set[asyncio.Future[Any]] = {speech}
        tone_wait: asyncio.Future[str] | None = None
        if self._tones is not None:
            tone_wait = asyncio.ensure_future(self._tones.get())
            waits.add(tone_wait)
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                if not w.done():
                    w.cancel()
        if tone_wait is not None and tone_wait.done() and not tone_wait.cancelled():
            # A key press first: from here on this is a DTMF recognize (the speech half is dropped).
            await self._collect_tones(spec, ctx, url, [tone_wait.result()], spec.inter_tone_s)
            return
        try:
            heard = speech.result()
        except Exception:
            # The decoder is this emulator's "speech service": its failure is the service's error code.
            log.exception("call %s: speech recognition failed", self._call.call_connection_id)
            emit(
                "RecognizeFailed",
                operation_context=ctx,
                result=(400, 8564, "Action failed, speech service connection error."),
                url=url,
            )
            return
        if heard is None:
            emit(
                "RecognizeFailed",
                operation_context=ctx,
                result=(400, 8510, "Action failed, initial silence timeout reached."),
                url=url,
            )
            return
        if not heard.text:
            emit(
                "RecognizeFailed",
                operation_context=ctx,
                result=(400, 8563, "Action failed, speech could not be recognized."),
                url=url,
            )
            return
        if spec.input_type == "choices":
            match = caller_speech.match_choice(heard.text, spec.choices)
            if match is None:
                log.info("call %s: recognize heard %r, no choice matched", self._call.call_connection_id, heard.text)
                emit(
                    "RecognizeFailed",
                    operation_context=ctx,
                    result=(400, 8547, "Action failed, speech option not matched."),
                    url=url,
                )
                return
            label, phrase, confidence = match
            emit(
                "RecognizeCompleted",
                {
                    "recognitionType": "choices",
                    "choiceResult": {"label": label, "recognizedPhrase": phrase, "confidence": confidence},
                },
                operation_context=ctx,
                result=(200, 8545, "Action completed, speech option matched."),
                url=url,
            )
            return
        emit(
            "RecognizeCompleted",
            # pocketsphinx gives no calibrated confidence; a fixed figure says "recognized", nothing more.
            {"recognitionType": "speech", "speechResult": {"speech": heard.text, "confidence": SPEECH_CONFIDENCE}},
            operation_context=ctx,
            result=(200, 0, "Action completed successfully."),
            url=url,
        )

    async def _collect_tones(
        self, spec: RecognizeSpec, ctx: str | None, url: str | None, first: list[str], timeout: float
    ) -> None:
        """Collect DTMF (``first`` already pressed; ``timeout`` until the next key)."""
        assert self._tones is not None
        emit = self._call.emit
        tones: list[str] = []
        pending = list(first)
        while True:
            try:
                tone = pending.pop(0) if pending else await asyncio.wait_for(self._tones.get(), timeout)
            except TimeoutError:
                if not tones:
                    failed = (400, 8510, "Action failed, initial silence timeout reached.")
                else:
                    failed = (400, 8532, "Action failed, inter-digit silence timeout reached.")
                emit("RecognizeFailed", operation_context=ctx, result=failed, url=url)
                return
            if spec.input_type == "choices":
                label = next((label for label, t, _ in spec.choices if t == tone), None)
                if label is None:
                    emit(
                        "RecognizeFailed",
                        operation_context=ctx,
                        result=(400, 8534, "Action failed, incorrect tone detected."),
                        url=url,
                    )
                else:
                    emit(
                        "RecognizeCompleted",
                        {"recognitionType": "choices", "choiceResult": {"label": label}},
                        operation_context=ctx,
                        result=(200, 8533, "Action completed, DTMF option matched."),
                        url=url,
                    )
                return
            tones.append(tone)
            done = None
            if tone in spec.stop_tones:
                done = (200, 8514, "Action completed as stop tone was detected.")
            elif len(tones) >= spec.max_tones:
                done = (200, 8531, "Action completed, max digits received.")
            if done is not None:
                emit(
                    "RecognizeCompleted",
                    {"recognitionType": "dtmf", "dtmfResult": {"tones": tones}},
                    operation_context=ctx,
                    result=done,
                    url=url,
                )
                return
            timeout = spec.inter_tone_s

    def on_tone(self, tone_name: str) -> None:
        """A key press from the phone: feeds a running recognize (and may cut its prompt short)."""
        if self._tones is None:
            return
        self._tones.put_nowait(tone_name)
        if self._prompt_interruptible and self._call.phone is not None:
            self._call.phone.cancel_prompts()
