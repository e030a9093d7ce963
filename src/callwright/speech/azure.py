"""Azure Speech adapters (optional extra ``azure``: ``azure-cognitiveservices-speech``).

Recognition runs continuously over a ``PushAudioInputStream``; the SDK delivers ``recognizing``,
``recognized`` and ``canceled`` events on its own threads. Those callbacks only put events on a
thread-safe queue, which the recognition lane drains in ``push`` / ``end_utterance``, so the lane keeps
the single-threaded Recognizer contract. Synthesis streams the ``synthesizing`` events' audio to the sink
as it arrives and stops the service with ``stop_speaking_async`` when the sink cancels.

Azure is unreachable from the development machine: tests cover construction, the push stream, the
callback wiring and the error paths (connection failure surfaces as ``canceled``), not real recognition.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape

from callwright.speech.base import ChunkSink, Recognition, Recognizer, Synthesizer

log = logging.getLogger("callwright.speech.azure")

SAMPLE_RATE = 16_000


class AzureSpeechUnavailable(RuntimeError):
    """The SDK is missing or the settings do not say where Azure Speech is."""


def _sdk() -> Any:
    try:
        import azure.cognitiveservices.speech as speechsdk
    except ImportError as exc:
        raise AzureSpeechUnavailable("Azure Speech needs the 'azure' extra: pip install 'callwright[azure]'") from exc
    return speechsdk


@dataclass(frozen=True, slots=True)
class AzureSpeechOptions:
    key: str | None
    region: str | None = None
    endpoint: str | None = None
    language: str = "en-US"
    voice: str = "en-US-AvaMultilingualNeural"
    segmentation_silence_ms: int = 300

    def speech_config(self) -> Any:
        sdk = _sdk()
        if not self.key:
            raise AzureSpeechUnavailable("AZURE_SPEECH_KEY is required for the azure STT/TTS engines")
        if self.endpoint:
            config = sdk.SpeechConfig(subscription=self.key, endpoint=self.endpoint)
        elif self.region:
            config = sdk.SpeechConfig(subscription=self.key, region=self.region)
        else:
            raise AzureSpeechUnavailable("set AZURE_SPEECH_REGION or AZURE_SPEECH_ENDPOINT for Azure Speech")
        config.speech_recognition_language = self.language
        config.speech_synthesis_voice_name = self.voice
        return config


class AzureRecognizer(Recognizer):
    """Continuous recognition; partials and finals come from the service's own segmentation.

    ``end_utterance`` waits up to ``final_timeout`` for the service's final if speech was heard since the
    last one, pushing enough silence for its segmenter to close the phrase.
    """

    sample_rate = SAMPLE_RATE

    def __init__(self, options: AzureSpeechOptions, final_timeout: float = 2.0) -> None:
        self._sdk = _sdk()
        self.options = options
        self.final_timeout = final_timeout
        self._config = options.speech_config()
        self._config.set_property(
            self._sdk.PropertyId.Speech_SegmentationSilenceTimeoutMs, str(options.segmentation_silence_ms)
        )
        self._phrases: tuple[str, ...] = ()
        self._events: queue.Queue[Recognition | Exception] = queue.Queue()
        self._stream: Any = None
        self._recognizer: Any = None
        self._lock = threading.Lock()
        self._heard_since_final = False
        self.last_error: str | None = None

    # --- SDK threads: only enqueue ----------------------------------------------------------------
    def _on_recognizing(self, evt: Any) -> None:
        text = evt.result.text or ""
        if text:
            self._events.put(Recognition(text, False))

    def _on_recognized(self, evt: Any) -> None:
        if evt.result.reason == self._sdk.ResultReason.RecognizedSpeech and evt.result.text:
            self._events.put(Recognition(evt.result.text, True, None, time.monotonic()))

    def _on_canceled(self, evt: Any) -> None:
        details = getattr(evt, "cancellation_details", None) or getattr(evt.result, "cancellation_details", None)
        reason = getattr(details, "reason", None)
        if reason == self._sdk.CancellationReason.EndOfStream:
            return
        message = f"Azure recognition canceled: {getattr(details, 'error_details', '') or reason}"
        self._events.put(RuntimeError(message))

    # --- session ----------------------------------------------------------------------------------
    def _ensure_session(self) -> None:
        with self._lock:
            if self._recognizer is not None:
                return
            sdk = self._sdk
            fmt = sdk.audio.AudioStreamFormat(samples_per_second=SAMPLE_RATE, bits_per_sample=16, channels=1)
            self._stream = sdk.audio.PushAudioInputStream(stream_format=fmt)
            audio = sdk.audio.AudioConfig(stream=self._stream)
            recognizer = sdk.SpeechRecognizer(speech_config=self._config, audio_config=audio)
            if self._phrases:
                grammar = sdk.PhraseListGrammar.from_recognizer(recognizer)
                for phrase in self._phrases:
                    grammar.addPhrase(phrase)
            recognizer.recognizing.connect(self._on_recognizing)
            recognizer.recognized.connect(self._on_recognized)
            recognizer.canceled.connect(self._on_canceled)
            recognizer.start_continuous_recognition_async()  # not awaited: the lane must not block on it
            self._recognizer = recognizer

    def _stop_session(self) -> None:
        with self._lock:
            recognizer, stream = self._recognizer, self._stream
            self._recognizer = self._stream = None
        if stream is not None:
            stream.close()
        if recognizer is not None:
            for signal in (recognizer.recognizing, recognizer.recognized, recognizer.canceled):
                signal.disconnect_all()
            recognizer.stop_continuous_recognition_async()

    def configure(self, phrases: Sequence[str] = ()) -> None:
        new = tuple(p.strip() for p in phrases if p.strip())
        if new != self._phrases:
            self._phrases = new
            self._stop_session()  # the phrase list attaches to a recognizer; the next utterance opens one

    def _drain(self) -> Recognition | None:
        """Oldest final if any (finals are never dropped), else the newest partial."""
        latest: Recognition | None = None
        while True:
            try:
                item = self._events.get_nowait()
            except queue.Empty:
                return latest
            if isinstance(item, Exception):
                if self.last_error != str(item):
                    log.error("%s", item)
                self.last_error = str(item)
                self._stop_session()
                continue
            if item.is_final:
                self._heard_since_final = False
                return item
            self._heard_since_final = True
            latest = item

    def start_utterance(self) -> None:
        self.last_error = None
        self._ensure_session()

    def push(self, pcm: bytes) -> Recognition | None:
        if len(pcm) % 2:
            raise ValueError(f"s16le PCM must have an even byte count, got {len(pcm)}")
        if self.last_error is None:  # after a failure, reconnect only at the next utterance
            self._ensure_session()
        if self._stream is not None:
            self._stream.write(pcm)
        return self._drain()

    def end_utterance(self) -> Recognition | None:
        pending = self._drain()
        if pending is not None and pending.is_final:
            return pending
        if not self._heard_since_final or self._stream is None:
            return None
        # The service closes a phrase after its segmentation silence; give it that much (and a margin).
        silence_ms = self.options.segmentation_silence_ms + 200
        self._stream.write(bytes(SAMPLE_RATE * 2 * silence_ms // 1000))
        deadline = time.monotonic() + self.final_timeout
        while time.monotonic() < deadline:
            try:
                item = self._events.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if isinstance(item, Exception):
                self.last_error = str(item)
                log.error("%s", item)
                self._stop_session()
                return None
            if item.is_final:
                self._heard_since_final = False
                return item
        log.warning("Azure recognition gave no final within %.1f s of the utterance end", self.final_timeout)
        self._heard_since_final = False
        return None

    def reset(self) -> None:
        self._stop_session()
        self._events = queue.Queue()
        self._heard_since_final = False
        self.last_error = None

    def close(self) -> None:
        self.reset()


class AzureSynthesizer(Synthesizer):
    """Azure neural TTS streamed as raw 16 kHz PCM while the service synthesizes."""

    sample_rate = SAMPLE_RATE
    _DONE = object()

    def __init__(self, options: AzureSpeechOptions, timeout: float = 15.0) -> None:
        self._sdk = _sdk()
        self.options = options
        self.timeout = timeout
        config = options.speech_config()
        config.set_speech_synthesis_output_format(self._sdk.SpeechSynthesisOutputFormat.Raw16Khz16BitMonoPcm)
        # audio_config=None: audio is delivered only through events, never to a speaker.
        self._synth = self._sdk.SpeechSynthesizer(speech_config=config, audio_config=None)

    def _ssml(self, text: str, voice: str) -> str:
        lang = self.options.language
        return (
            f"<speak version='1.0' xmlns='http://www.w3.org/2001/10/synthesis' xml:lang='{escape(lang)}'>"
            f"<voice name='{escape(voice)}'>{escape(text)}</voice></speak>"
        )

    def synthesize(self, text: str, on_chunk: ChunkSink, voice: str | None = None) -> bool:
        text = text.strip()
        if not text:
            return True
        events: queue.Queue[Any] = queue.Queue()
        sdk = self._sdk

        def synthesizing(evt: Any) -> None:
            events.put(bytes(evt.result.audio_data))

        def completed(_evt: Any) -> None:
            events.put(self._DONE)

        def canceled(evt: Any) -> None:
            details = sdk.SpeechSynthesisCancellationDetails(evt.result)
            events.put(RuntimeError(f"Azure synthesis canceled: {details.error_details or details.reason}"))

        self._synth.synthesizing.connect(synthesizing)
        self._synth.synthesis_completed.connect(completed)
        self._synth.synthesis_canceled.connect(canceled)
        try:
            self._synth.start_speaking_ssml_async(self._ssml(text, voice or self.options.voice))
            deadline = time.monotonic() + self.timeout
            pending = b""
            while True:
                try:
                    item = events.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    self._synth.stop_speaking_async()
                    raise TimeoutError(f"Azure synthesis gave no audio for {self.timeout:.0f} s") from None
                if item is self._DONE:
                    return True
                if isinstance(item, Exception):
                    raise item
                pending += item
                usable = len(pending) - len(pending) % 2
                if usable and not on_chunk(pending[:usable]):
                    self._synth.stop_speaking_async()
                    return False
                pending = pending[usable:]
        finally:
            for signal in (self._synth.synthesizing, self._synth.synthesis_completed, self._synth.synthesis_canceled):
                signal.disconnect_all()

    def close(self) -> None:
        self._synth = None
