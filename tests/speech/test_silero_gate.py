"""The Silero gate: coloured noise that fools webrtcvad is not speech; real speech still is."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from callwright.speech.vad import SileroGatedVad, SpeechSegmenter, WebRtcVad

DATA = Path(__file__).parents[1] / "data" / "caller"


def pink_noise(seconds: float, dbfs: float, seed: int = 3) -> bytes:
    rng = np.random.default_rng(seed)
    white = rng.standard_normal(int(16_000 * seconds))
    spectrum = np.fft.rfft(white) / np.sqrt(np.arange(1, white.size // 2 + 2))
    pink = np.fft.irfft(spectrum, n=white.size)
    pink = pink / np.abs(pink).max() * 10 ** (dbfs / 20)
    return (pink * 32767).astype("<i2").tobytes()


def frames(pcm: bytes) -> list[bytes]:
    return [pcm[i : i + 640] for i in range(0, len(pcm) - 639, 640)]


def wav(name: str) -> bytes:
    with wave.open(str(DATA / name)) as w:
        return w.readframes(w.getnframes())


@pytest.mark.parametrize("dbfs", [-25, -15, -6])
def test_pink_noise_fools_webrtc_but_not_the_gate(dbfs):
    noise = frames(pink_noise(1.0, dbfs))
    webrtc = WebRtcVad()
    gated = SileroGatedVad()
    assert sum(webrtc.is_speech(f) for f in noise) > 0  # the problem the gate exists for
    assert sum(gated.is_speech(f) for f in noise) == 0


@pytest.mark.parametrize("name", ["hours.wav", "person.wav", "uh_huh.wav"])
def test_speech_still_starts_an_utterance(name):
    segmenter = SpeechSegmenter(SileroGatedVad(), min_speech_ms=120, endpoint_silence_ms=300)
    events = [e for f in frames(wav(name)) if (e := segmenter.feed(f, now=0.0)) is not None]
    assert [e.kind for e in events][:1] == ["onset"]


def test_reset_forgets_the_stream():
    gated = SileroGatedVad()
    for f in frames(wav("hours.wav")):
        gated.is_speech(f)
    gated.reset()
    assert gated.probability == 0.0
    assert not any(gated.is_speech(f) for f in frames(bytes(16_000)))
