"""Stand-in engines that cost nothing, for measuring the server's own overhead (issue 6).

``InstantRecognizer`` returns a known transcript the moment the utterance ends; ``InstantSynthesizer``
returns audio for the whole text at once. Neither decodes nor synthesizes anything, so a benchmark run
on them measures transport, lanes, agent and playback only.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Sequence

import numpy as np

from callwright.speech.base import ChunkSink, Recognition, Recognizer, Synthesizer

SAMPLE_RATE = 16_000


class InstantRecognizer(Recognizer):
    """Returns the next scripted transcript (or ``default``) at ``end_utterance``; no partials.

    ``expect(text)`` queues the transcript of the next utterance (a benchmark knows what its caller
    says); utterances with nothing queued get ``default``.
    """

    sample_rate = SAMPLE_RATE

    def __init__(self, default: str = "", transcripts: Sequence[str] = ()) -> None:
        self.default = default
        self._scripted: collections.deque[str] = collections.deque(transcripts)
        self._heard_audio = False

    def expect(self, text: str) -> None:
        self._scripted.append(text)

    def configure(self, phrases: Sequence[str] = ()) -> None:
        return None

    def start_utterance(self) -> None:
        self._heard_audio = False

    def push(self, pcm: bytes) -> Recognition | None:
        self._heard_audio = self._heard_audio or bool(pcm)
        return None

    def end_utterance(self) -> Recognition | None:

        text = self._scripted.popleft() if self._scripted else self.default
        self._heard_audio = False
        return Recognition(text, True, 1.0, time.monotonic())

    def reset(self) -> None:
        self._heard_audio = False

    def close(self) -> None:
        self._scripted.clear()


class InstantSynthesizer(Synthesizer):
    """One chunk of quiet tone-plus-noise, ``ms_per_char`` long per character, delivered at once.

    The audio is non-silent (so "first non-silent frame" measurements see it) and deterministic.
    """

    sample_rate = SAMPLE_RATE

    def __init__(self, ms_per_char: float = 60.0, amplitude: int = 3000) -> None:
        self.ms_per_char = ms_per_char
        self.amplitude = amplitude
        self._rng = np.random.default_rng(0)

    def synthesize(self, text: str, on_chunk: ChunkSink, voice: str | None = None) -> bool:
        n = int(SAMPLE_RATE * self.ms_per_char / 1000 * len(text.strip()))
        if n == 0:
            return True
        t = np.arange(n) / SAMPLE_RATE
        wave = 0.8 * np.sin(2 * np.pi * 220 * t) + 0.2 * self._rng.standard_normal(n)
        pcm = (np.clip(wave, -1, 1) * self.amplitude).astype("<i2").tobytes()
        return on_chunk(pcm)

    def close(self) -> None:
        return None
