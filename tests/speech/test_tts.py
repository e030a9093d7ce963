from __future__ import annotations

import threading

import numpy as np
import pytest

from callwright.speech.base import Synthesizer
from callwright.speech.instant import InstantRecognizer, InstantSynthesizer
from callwright.speech.tts_espeak import (
    EspeakProcessSynthesizer,
    EspeakSynthesizer,
    TtsUnavailable,
    make_espeak,
)
from callwright.speech.tts_piper import piper_available

LONG = (
    "Thank you for calling Contoso Insurance. Our offices are open from nine in the morning "
    "until five in the evening, Monday to Friday, and until noon on Saturdays."
)


@pytest.fixture(params=[EspeakSynthesizer, EspeakProcessSynthesizer], ids=["library", "subprocess"])
def synth(request: pytest.FixtureRequest) -> Synthesizer:
    return request.param()


def test_streams_many_16k_chunks(synth: Synthesizer) -> None:
    assert isinstance(synth, Synthesizer) and synth.sample_rate == 16_000
    chunks: list[bytes] = []
    assert synth.synthesize(LONG, lambda c: chunks.append(c) or True) is True
    assert len(chunks) > 20
    assert all(len(c) % 2 == 0 for c in chunks)
    pcm = np.frombuffer(b"".join(chunks), dtype="<i2")
    seconds = pcm.size / 16_000
    assert 4.0 < seconds < 15.0  # ~25 words at 175 wpm, sampled at 16 kHz rather than 22.05 kHz
    assert np.abs(pcm).max() > 3000
    # ~60 ms callbacks: no chunk holds more than a fraction of a second
    assert max(len(c) for c in chunks) < 16_000


def test_cancel_mid_sentence(synth: Synthesizer) -> None:
    delivered = 0

    def sink(_chunk: bytes) -> bool:
        nonlocal delivered
        delivered += 1
        return delivered < 3

    assert synth.synthesize(LONG, sink) is False
    assert delivered == 3  # nothing arrives after the sink said stop
    # The engine is usable again right after a cancel.
    chunks: list[bytes] = []
    assert synth.synthesize("Hello.", lambda c: chunks.append(c) or True) is True
    assert chunks


def test_concurrent_synthesis_from_threads() -> None:
    synths = [EspeakSynthesizer() for _ in range(4)]
    results: dict[int, bytes] = {}
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            out: list[bytes] = []
            for _ in range(3):
                out.clear()
                assert synths[i].synthesize(
                    f"Caller number {i}, your claim is approved.", lambda c: out.append(c) or True
                )
            results[i] = b"".join(out)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert len(results) == 4
    # Each thread got its own whole sentence, not a mix: espeak adds slight random jitter, so compare
    # durations with a lone run of the same text rather than samples.
    for i, audio in results.items():
        alone: list[bytes] = []
        synths[i].synthesize(f"Caller number {i}, your claim is approved.", lambda c, a=alone: a.append(c) or True)
        assert abs(len(audio) - len(b"".join(alone))) < 0.05 * len(audio), i


def test_voices_and_errors() -> None:
    s = EspeakSynthesizer()
    gb: list[bytes] = []
    us: list[bytes] = []
    s.synthesize("Good morning.", lambda c: gb.append(c) or True, voice="en-gb")
    s.synthesize("Good morning.", lambda c: us.append(c) or True)
    assert gb and us and b"".join(gb) != b"".join(us)
    with pytest.raises(TtsUnavailable, match="no voice"):
        EspeakSynthesizer("xx-nothing")
    with pytest.raises(TtsUnavailable, match="no voice"):
        make_espeak("xx-nothing")
    assert s.synthesize("   ", lambda c: pytest.fail("no audio for blank text")) is True


def test_piper_selection_is_clear_when_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without piper-tts (it is optional), choosing it says what to install. Its absence is simulated."""
    import importlib.util

    from callwright.speech.tts_piper import PiperSynthesizer

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "piper" else real_find_spec(name))
    assert not piper_available()
    with pytest.raises(TtsUnavailable, match="piper"):
        PiperSynthesizer()


def test_instant_engines() -> None:
    tts = InstantSynthesizer(ms_per_char=50)
    chunks: list[bytes] = []
    assert tts.synthesize("hello", lambda c: chunks.append(c) or True)
    assert len(chunks) == 1 and len(chunks[0]) == 2 * 16_000 * 250 // 1000
    assert np.abs(np.frombuffer(chunks[0], "<i2")).max() > 1000
    assert tts.synthesize("hello", lambda c: False) is False
    stt = InstantRecognizer(default="yes", transcripts=["my claim status"])
    stt.start_utterance()
    assert stt.push(bytes(640)) is None
    first = stt.end_utterance()
    assert first is not None and first.is_final and first.text == "my claim status"
    second = stt.end_utterance()
    assert second is not None and second.text == "yes"
