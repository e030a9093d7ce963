"""Engine interfaces. Embedded and Azure implementations live beside this module.

All engine methods are blocking and are called from worker threads (the recognition lane, the TTS
executor), never from the event loop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class Recognition:
    """A partial or final hypothesis. ``speech_end_monotonic`` (time.monotonic()) is set on finals."""

    text: str
    is_final: bool
    confidence: float | None = None
    speech_end_monotonic: float | None = None


@runtime_checkable
class Recognizer(Protocol):
    """Streaming recognizer over 16 kHz s16le mono frames.

    The caller (the recognition lane) runs a VAD and tells the recognizer where utterances start and end,
    so barge-in and endpointing follow one voice-activity signal. Engines with their own endpointing
    (Azure) may emit finals on their own as well; ``end_utterance`` then returns what is pending or None.
    """

    sample_rate: int

    def configure(self, phrases: Sequence[str] = ()) -> None:
        """Bias toward the active agent's expected phrases (called at call start and on agent change)."""

    def start_utterance(self) -> None: ...

    def push(self, pcm: bytes) -> Recognition | None:
        """Feed one frame inside an utterance; returns a partial when the hypothesis changed."""

    def end_utterance(self) -> Recognition | None:
        """Finish the utterance and return the final hypothesis (None or empty text if nothing heard)."""

    def reset(self) -> None:
        """Drop any utterance in progress (pool release)."""

    def close(self) -> None: ...


@runtime_checkable
class Transcriber(Protocol):
    """Whole-utterance recognition for the final (e.g. whisper), beside a streaming ``Recognizer`` that
    keeps giving partials for barge-in confirmation and the live transcript.

    One instance serves every call: ``transcribe`` is blocking, thread-safe, and bounded internally (it
    runs on the transcriber's own executor threads, never on the recognition workers or the loop).
    ``phrases`` are the active agent's expected phrases (domain biasing; may be empty).
    """

    sample_rate: int

    def transcribe(self, pcm: bytes, phrases: Sequence[str] = ()) -> Recognition:
        """16 kHz s16le mono PCM of one utterance → a final ``Recognition`` (empty text if nothing heard)."""

    def close(self) -> None: ...


ChunkSink = Callable[[bytes], bool]
"""Receives a chunk of 16 kHz s16le PCM; returns False to cancel the synthesis at once."""


@runtime_checkable
class Synthesizer(Protocol):
    """Text → streamed 16 kHz s16le mono PCM, cancellable mid-sentence."""

    sample_rate: int

    def synthesize(self, text: str, on_chunk: ChunkSink, voice: str | None = None) -> bool:
        """Blocking; calls on_chunk as audio becomes available. Returns False if cancelled."""

    def close(self) -> None: ...


@runtime_checkable
class VoiceActivityDetector(Protocol):
    """Per-frame voice activity on 20 ms frames of 16 kHz s16le mono."""

    def is_speech(self, frame: bytes) -> bool: ...

    def reset(self) -> None: ...
