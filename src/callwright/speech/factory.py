"""Builds the speech engines chosen by Settings: bounded STT/TTS pools and per-call VADs.

Engines are chosen by name from registries (``STT_ENGINE``, ``TTS_ENGINE``, ``VAD_ENGINE``): the built-in
ones are registered by :func:`speech_registries`, and a plug-in may add its own at start-up
(``services.stt_engines.register("my_stt", builder)``, then ``STT_ENGINE=my_stt``; see docs/extending.md).
A builder takes the Settings and returns what makes one engine instance (a factory the pool calls).

Selection problems (a missing optional package, Azure without a key) raise at build time with a line
naming the setting, so the server refuses to start rather than failing the first call.
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from callwright.config import Settings
from callwright.plugins import Registry
from callwright.speech.base import Recognition, Recognizer, Synthesizer, Transcriber, VoiceActivityDetector
from callwright.speech.instant import InstantRecognizer, InstantSynthesizer
from callwright.speech.pools import EnginePool
from callwright.speech.vad import SileroGatedVad, SpeechSegmenter, WebRtcVad


@dataclass(frozen=True)
class SttEngine:
    """What an STT engine builder returns: a factory of pooled streaming recognizers (partials, and the
    final unless a transcriber is given) and optionally one whole-utterance transcriber shared by every
    call (it makes the finals, like whisper)."""

    recognizer: Callable[[], Recognizer]
    transcriber: Transcriber | None = None


# Builders run once at start-up with the Settings (blocking is fine there: the app is not serving yet).
SttBuilder = Callable[[Settings], "SttEngine | Callable[[], Recognizer]"]
TtsBuilder = Callable[[Settings], Callable[[], Synthesizer]]
VadBuilder = Callable[[Settings], Callable[[], VoiceActivityDetector]]


@dataclass(frozen=True)
class SpeechRegistries:
    stt: Registry[SttBuilder]
    tts: Registry[TtsBuilder]
    vad: Registry[VadBuilder]


@dataclass
class SpeechEngines:
    stt_pool: EnginePool[Recognizer]
    tts_pool: EnginePool[Synthesizer]
    min_speech_ms: int = 120
    endpoint_silence_ms: int = 300
    describe: dict[str, str] = field(default_factory=dict)
    vad_engine: str = "silero"
    # Builds one VAD (from the VAD_ENGINE registry entry); None: chosen by ``vad_engine`` (silero | webrtc).
    vad_factory: Callable[[], VoiceActivityDetector] | None = None
    # Whole-utterance finals (STT_ENGINE=whisper) beside the streaming recognizer's partials; None: the
    # recognizer's own final is the final.
    transcriber: Transcriber | None = None
    # End-of-turn detection (speech/turn.py); None: silence alone ends a turn.
    turn_detector: Any = None
    # Finals and turn evaluations run here, off the recognition workers (which every call's VAD shares)
    # and off the event loop.
    offload_threads: int = 4
    # Finals get their own threads, as many as the transcriber decodes at once: a final queued behind
    # the decode slots must not hold a thread a turn evaluation needs.
    final_threads: int = 2
    _offload: concurrent.futures.ThreadPoolExecutor | None = field(default=None, repr=False)
    _finals: concurrent.futures.ThreadPoolExecutor | None = field(default=None, repr=False)

    # Silero instances are reused across calls: building one per call grew native memory by ~1-3 MB a
    # call over a 1,000-call soak, while a reset instance stays flat.
    _idle_vads: list[VoiceActivityDetector] = field(default_factory=list, repr=False)
    _vad_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def new_vad(self) -> VoiceActivityDetector:
        with self._vad_lock:
            if self._idle_vads:
                return self._idle_vads.pop()
        if self.vad_factory is not None:
            return self.vad_factory()
        return SileroGatedVad(WebRtcVad(mode=3)) if self.vad_engine == "silero" else WebRtcVad(mode=3)

    def release_vad(self, vad: VoiceActivityDetector) -> None:
        vad.reset()
        with self._vad_lock:
            if vad not in self._idle_vads:
                self._idle_vads.append(vad)

    def new_segmenter(self) -> SpeechSegmenter:
        return SpeechSegmenter(self.new_vad(), self.min_speech_ms, self.endpoint_silence_ms)

    def release_segmenter(self, segmenter: SpeechSegmenter) -> None:
        """Return the segmenter's VAD for reuse (call once the lane that used it has stopped)."""
        self.release_vad(segmenter.vad)

    def offload(self, fn: Callable[..., Any], *args: Any) -> concurrent.futures.Future[Any]:
        """Run blocking recognition work (a final, a turn evaluation) on the engines' own threads."""
        with self._vad_lock:
            if self._offload is None:
                self._offload = concurrent.futures.ThreadPoolExecutor(
                    max_workers=self.offload_threads, thread_name_prefix="speech-offload"
                )
            executor = self._offload
        return executor.submit(fn, *args)

    def submit_final(self, pcm: bytes, phrases: Sequence[str] = ()) -> concurrent.futures.Future[Recognition]:
        if self.transcriber is None:
            raise RuntimeError("no transcriber configured (STT_ENGINE is not whisper)")
        with self._vad_lock:
            if self._finals is None:
                self._finals = concurrent.futures.ThreadPoolExecutor(
                    max_workers=self.final_threads, thread_name_prefix="speech-final"
                )
            executor = self._finals
        return executor.submit(self.transcriber.transcribe, pcm, tuple(phrases))

    def start(self) -> None:
        """Start warming both pools in the background (call from the app's lifespan)."""
        self.stt_pool.start()
        self.tts_pool.start()

    async def close(self) -> None:
        await self.stt_pool.close()
        await self.tts_pool.close()
        with self._vad_lock:
            executors = (self._offload, self._finals)
            self._offload = self._finals = None
        for executor in executors:
            if executor is not None:
                executor.shutdown(wait=False, cancel_futures=True)
        if self.transcriber is not None:
            self.transcriber.close()
        if self.turn_detector is not None:
            self.turn_detector.close()

    def stats(self) -> dict[str, Any]:
        return {"stt": self.stt_pool.stats(), "tts": self.tts_pool.stats(), "engines": dict(self.describe)}


def _azure_options(settings: Settings) -> Any:
    from callwright.speech.azure import AzureSpeechOptions

    key = settings.azure_speech_key.get_secret_value() if settings.azure_speech_key else None
    options = AzureSpeechOptions(
        key=key,
        region=settings.azure_speech_region,
        endpoint=settings.azure_speech_endpoint,
        language=settings.azure_speech_language,
        voice=settings.tts_voice or settings.azure_tts_voice,
        segmentation_silence_ms=settings.endpoint_silence_ms,
    )
    options.speech_config()  # fail now, naming the missing setting, not on the first call
    return options


def _instant_stt(settings: Settings) -> SttEngine:
    transcript = settings.instant_stt_transcript
    return SttEngine(lambda: InstantRecognizer(default=transcript))


def _azure_stt(settings: Settings) -> SttEngine:
    from callwright.speech.azure import AzureRecognizer

    options = _azure_options(settings)
    return SttEngine(lambda: AzureRecognizer(options))


def _pocketsphinx_stt(settings: Settings, lm: str) -> Callable[[], Recognizer]:
    from callwright.speech.stt_pocketsphinx import Lexicon, PocketsphinxRecognizer

    lexicon = Lexicon()  # one parsed dictionary shared by every pooled recognizer
    return lambda: PocketsphinxRecognizer(lexicon, lm=lm)


def _whisper_stt(settings: Settings) -> SttEngine:
    from callwright.speech.stt_whisper import build_whisper_transcriber

    # pocketsphinx still streams the partials (barge-in confirmation, the live transcript); whisper makes
    # each utterance's final.
    return SttEngine(_pocketsphinx_stt(settings, "domain"), transcriber=build_whisper_transcriber(settings))


def _turn_detector(settings: Settings) -> Any:
    from callwright.speech.turn import build_turn_detector

    return build_turn_detector(settings)


def _instant_tts(settings: Settings) -> Callable[[], Synthesizer]:
    return InstantSynthesizer


def _azure_tts(settings: Settings) -> Callable[[], Synthesizer]:
    from callwright.speech.azure import AzureSynthesizer

    options = _azure_options(settings)
    return lambda: AzureSynthesizer(options)


def _piper_tts(settings: Settings) -> Callable[[], Synthesizer]:
    from callwright.speech.tts_espeak import TtsUnavailable
    from callwright.speech.tts_piper import PiperSynthesizer, find_piper_voice, piper_available

    if not piper_available():
        raise TtsUnavailable("TTS_ENGINE=piper needs piper-tts and a voice: pip install 'callwright[piper]'")
    voice = str(find_piper_voice(settings.tts_voice))
    return lambda: PiperSynthesizer(voice)


def _espeak_tts(settings: Settings) -> Callable[[], Synthesizer]:
    from callwright.speech.tts_espeak import make_espeak

    make_espeak(settings.tts_voice).close()  # validates the voice name at selection time
    return lambda: make_espeak(settings.tts_voice)


def _silero_vad(settings: Settings) -> Callable[[], VoiceActivityDetector]:
    return lambda: SileroGatedVad(WebRtcVad(mode=3))


def _webrtc_vad(settings: Settings) -> Callable[[], VoiceActivityDetector]:
    return lambda: WebRtcVad(mode=3)


def speech_registries() -> SpeechRegistries:
    """The built-in engines, in fresh registries (one set per app; plug-ins add theirs at start-up)."""
    return SpeechRegistries(
        stt=Registry(
            "STT_ENGINE",
            {
                "whisper": _whisper_stt,
                "pocketsphinx": lambda s: SttEngine(_pocketsphinx_stt(s, s.pocketsphinx_lm)),
                "azure": _azure_stt,
                "instant": _instant_stt,
            },
        ),
        tts=Registry(
            "TTS_ENGINE", {"espeak": _espeak_tts, "piper": _piper_tts, "azure": _azure_tts, "instant": _instant_tts}
        ),
        vad=Registry("VAD_ENGINE", {"silero": _silero_vad, "webrtc": _webrtc_vad}),
    )


def _build(registry: Registry[Any], name: str, settings: Settings) -> Any:
    builder = registry.builder(name)
    try:
        return builder(settings)
    except Exception as exc:
        # The original exception type is kept (callers and tests match on it); the note says which
        # setting chose the engine, for the one-line start-up error.
        exc.add_note(f"{registry.setting}={name}")
        raise


def build_engines(
    settings: Settings, instant_transcript: str = "", registries: SpeechRegistries | None = None
) -> SpeechEngines:
    """Pools are created idle; call ``start()`` inside the running loop to warm them.

    Engines are looked up by name (``STT_ENGINE``, ``TTS_ENGINE``, ``VAD_ENGINE``) in ``registries``
    (default: the built-in ones); a builder's failure keeps its type and gains a note naming the setting.
    """
    registries = registries or speech_registries()
    if instant_transcript:
        settings = settings.model_copy(update={"instant_stt_transcript": instant_transcript})
    # The cheap checks first: a bad voice fails before a whisper model has been loaded for nothing.
    tts_factory = _build(registries.tts, settings.tts_engine, settings)
    vad_factory = _build(registries.vad, settings.vad_engine, settings)
    stt_engine = _build(registries.stt, settings.stt_engine, settings)
    if not isinstance(stt_engine, SttEngine):  # a plug-in may return the recognizer factory alone
        stt_engine = SttEngine(stt_engine)
    stt = EnginePool[Recognizer](
        "stt",
        stt_engine.recognizer,
        max_size=settings.stt_pool_size,
        warm=settings.stt_pool_warm,
        acquire_timeout=settings.pool_acquire_timeout,
        idle_seconds=settings.pool_idle_seconds,
    )
    tts = EnginePool[Synthesizer](
        "tts",
        tts_factory,
        max_size=settings.tts_pool_size,
        warm=settings.tts_pool_warm,
        acquire_timeout=settings.pool_acquire_timeout,
        idle_seconds=settings.pool_idle_seconds,
    )
    return SpeechEngines(
        stt,
        tts,
        min_speech_ms=settings.barge_in_min_speech_ms,
        endpoint_silence_ms=settings.endpoint_silence_ms,
        describe={"stt": settings.stt_engine, "tts": settings.tts_engine, "vad": settings.vad_engine},
        vad_engine=settings.vad_engine,
        vad_factory=vad_factory,
        transcriber=stt_engine.transcriber,
        final_threads=settings.whisper_decodes,
        turn_detector=_turn_detector(settings),
    )
