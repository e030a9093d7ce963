"""Builds the speech engines chosen by Settings: bounded STT/TTS pools and per-call VADs.

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
from callwright.speech.base import Recognition, Recognizer, Synthesizer, Transcriber, VoiceActivityDetector
from callwright.speech.instant import InstantRecognizer, InstantSynthesizer
from callwright.speech.pools import EnginePool
from callwright.speech.vad import SileroGatedVad, SpeechSegmenter, WebRtcVad


@dataclass
class SpeechEngines:
    stt_pool: EnginePool[Recognizer]
    tts_pool: EnginePool[Synthesizer]
    min_speech_ms: int = 120
    endpoint_silence_ms: int = 300
    describe: dict[str, str] = field(default_factory=dict)
    vad_engine: str = "silero"
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


def _stt_factory(settings: Settings, instant_transcript: str) -> Callable[[], Recognizer]:
    engine = settings.stt_engine
    if engine == "instant":
        return lambda: InstantRecognizer(default=instant_transcript)
    if engine == "azure":
        from callwright.speech.azure import AzureRecognizer

        options = _azure_options(settings)
        return lambda: AzureRecognizer(options)
    from callwright.speech.stt_pocketsphinx import Lexicon, PocketsphinxRecognizer

    # With STT_ENGINE=whisper pocketsphinx still streams the partials (barge-in confirmation, the live
    # transcript); the transcriber makes the final.
    lexicon = Lexicon()  # one parsed dictionary shared by every pooled recognizer
    lm = "domain" if engine == "whisper" else settings.pocketsphinx_lm
    return lambda: PocketsphinxRecognizer(lexicon, lm=lm)


def _transcriber(settings: Settings) -> Transcriber | None:
    if settings.stt_engine != "whisper":
        return None
    from callwright.speech.stt_whisper import build_whisper_transcriber

    return build_whisper_transcriber(settings)


def _turn_detector(settings: Settings) -> Any:
    from callwright.speech.turn import build_turn_detector

    return build_turn_detector(settings)


def _tts_factory(settings: Settings) -> Callable[[], Synthesizer]:
    engine = settings.tts_engine
    if engine == "instant":
        return InstantSynthesizer
    if engine == "azure":
        from callwright.speech.azure import AzureSynthesizer

        options = _azure_options(settings)
        return lambda: AzureSynthesizer(options)
    if engine == "piper":
        from callwright.speech.tts_espeak import TtsUnavailable
        from callwright.speech.tts_piper import PiperSynthesizer, find_piper_voice, piper_available

        if not piper_available():
            raise TtsUnavailable("TTS_ENGINE=piper needs piper-tts and a voice: pip install 'callwright[piper]'")
        voice = str(find_piper_voice(settings.tts_voice))
        return lambda: PiperSynthesizer(voice)
    from callwright.speech.tts_espeak import make_espeak

    make_espeak(settings.tts_voice).close()  # validates the voice name at selection time
    return lambda: make_espeak(settings.tts_voice)


def build_engines(settings: Settings, instant_transcript: str = "") -> SpeechEngines:
    """Pools are created idle; call ``start()`` inside the running loop to warm them."""
    stt = EnginePool[Recognizer](
        "stt",
        _stt_factory(settings, instant_transcript),
        max_size=settings.stt_pool_size,
        warm=settings.stt_pool_warm,
        acquire_timeout=settings.pool_acquire_timeout,
        idle_seconds=settings.pool_idle_seconds,
    )
    tts = EnginePool[Synthesizer](
        "tts",
        _tts_factory(settings),
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
        transcriber=_transcriber(settings),
        final_threads=settings.whisper_decodes,
        turn_detector=_turn_detector(settings),
    )
