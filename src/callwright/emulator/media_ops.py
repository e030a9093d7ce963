"""Play and recognize on one call: a queue of media operations run one at a time, as ACS does.

A new ``:play`` queues behind the running one unless ``interruptCallMediaOperation`` is set; then it and
everything queued are cancelled first. ``:cancelAllMediaOperations`` cancels all. Each operation reports
its own outcome: PlayStarted → PlayCompleted | PlayFailed | PlayCanceled, RecognizeCompleted |
RecognizeFailed | RecognizeCanceled (acs-protocol.md §3.4–3.5).
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
from callwright.emulator.errors import bad_request, not_supported
from callwright.emulator.prompts import PromptError, render_play_source

if TYPE_CHECKING:
    from callwright.emulator.calls import EmulatedCall

log = logging.getLogger("callwright.emulator.media")

CANCELED = (400, 8508, "Action failed, the operation was canceled.")
DTMF_TONES = frozenset(TONE_NAMES)


@dataclass(slots=True)
class _Op:
    name: str
    run: Callable[[], Coroutine[Any, Any, None]]
    cancel_unstarted: Callable[[], None]


@dataclass(frozen=True, slots=True)
class DtmfRecognizeSpec:
    input_type: str  # "dtmf" | "choices"
    max_tones: int
    stop_tones: frozenset[str]
    initial_silence_s: float
    inter_tone_s: float
    interrupt_prompt: bool
    choices: tuple[tuple[str, str], ...]  # (label, tone)


def _number(raw: Any, name: str, default: float, lo: float, hi: float) -> float:
    if raw is None:
        return default
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not lo <= raw <= hi:
        raise bad_request(f"{name} must be a number between {lo:g} and {hi:g}")
    return float(raw)


def parse_recognize(body: dict[str, Any]) -> tuple[DtmfRecognizeSpec, list[Any]]:
    """Validate a ``:recognize`` body; speech recognition is refused with a clear 400."""
    kind = body.get("recognizeInputType")
    if not isinstance(kind, str):
        raise bad_request("recognizeInputType is required")
    kind = kind.lower()
    if kind in ("speech", "speechordtmf"):
        raise not_supported(f"recognizeInputType {body['recognizeInputType']!r} (speech recognition)")
    if kind not in ("dtmf", "choices"):
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
    choices: list[tuple[str, str]] = []
    if kind == "choices":
        raw_choices = opts.get("choices")
        if not isinstance(raw_choices, list) or not raw_choices:
            raise bad_request("recognizeOptions.choices is required for recognizeInputType choices")
        for c in raw_choices:
            if not isinstance(c, dict) or not isinstance(c.get("label"), str):
                raise bad_request("every choice needs a label")
            if isinstance(c.get("tone"), str) and c["tone"].lower() in DTMF_TONES:
                choices.append((c["label"], c["tone"].lower()))
    prompts = body.get("playPrompts") or ([body["playPrompt"]] if body.get("playPrompt") else [])
    if not isinstance(prompts, list):
        raise bad_request("playPrompts must be an array")
    spec = DtmfRecognizeSpec(
        input_type=kind,
        max_tones=int(_number(dtmf.get("maxTonesToCollect"), "dtmfOptions.maxTonesToCollect", 1, 1, 100)),
        stop_tones=frozenset(str(t).lower() for t in stop),
        initial_silence_s=_number(
            opts.get("initialSilenceTimeoutInSeconds"), "initialSilenceTimeoutInSeconds", 5, 0, 300
        ),
        inter_tone_s=_number(dtmf.get("interToneTimeoutInSeconds"), "dtmfOptions.interToneTimeoutInSeconds", 2, 1, 60),
        interrupt_prompt=bool(opts.get("interruptPrompt", False)),
        choices=tuple(choices),
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
            self._tones = asyncio.Queue()
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
                    try:
                        played = await self._play_pcm(pcm)
                    finally:
                        self._prompt_interruptible = False
                    if not played:
                        break  # barged in by a tone: go straight to collecting
                await self._collect(spec, ctx, url)
            except asyncio.CancelledError:
                if not self._closed:
                    emit("RecognizeCanceled", operation_context=ctx, result=CANCELED, url=url)
                raise
            finally:
                self._tones = None

        def cancel_unstarted() -> None:
            self._call.emit("RecognizeCanceled", operation_context=ctx, result=CANCELED, url=url)

        self._submit(_Op("recognize", run, cancel_unstarted), interrupt=bool(body.get("interruptCallMediaOperation")))

    async def _collect(self, spec: DtmfRecognizeSpec, ctx: str | None, url: str | None) -> None:
        assert self._tones is not None
        emit = self._call.emit
        tones: list[str] = []
        timeout = spec.initial_silence_s
        while True:
            try:
                tone = await asyncio.wait_for(self._tones.get(), timeout)
            except TimeoutError:
                if not tones:
                    failed = (400, 8510, "Action failed, initial silence timeout reached.")
                else:
                    failed = (400, 8532, "Action failed, inter-digit silence timeout reached.")
                emit("RecognizeFailed", operation_context=ctx, result=failed, url=url)
                return
            if spec.input_type == "choices":
                label = next((label for label, t in spec.choices if t == tone), None)
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
