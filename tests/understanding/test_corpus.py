"""The committed natural-voice corpus is what its README and the bench promise."""

from __future__ import annotations

import wave
from collections import Counter

from callwright.bench.corpus import CORPUS_DIR, REPLIES, UTTERANCES, load_corpus


def test_corpus_size_voices_pauses_and_splits() -> None:
    corpus = load_corpus()
    assert len(corpus) >= 60
    assert len(corpus) == sum(len(v) for v in UTTERANCES.values())  # the committed files match the generator
    assert set(Counter(u.voice for u in corpus)) == {"joe", "slt"}
    assert sum(u.has_pause for u in corpus) * 2 >= len(corpus)
    assert all(400 <= u.pause_ms <= 1200 for u in corpus if u.has_pause)
    assert {u.split for u in corpus} == {"dev", "heldout"}
    for split in ("dev", "heldout"):
        part = [u for u in corpus if u.split == split]
        assert {u.intent for u in part} == set(UTTERANCES), split  # every intent is in both splits
        assert {u.voice for u in part} == {"joe", "slt"}, split
    assert all(u.reply in REPLIES.values() for u in corpus)


def test_every_wav_is_16k_mono_s16_and_the_pause_is_silent() -> None:
    for u in load_corpus():
        with wave.open(str(CORPUS_DIR / u.file), "rb") as w:
            assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16_000, 1, 2), u.file
            frames = w.getnframes()
            assert abs(frames * 1000 / 16_000 - u.duration_ms) <= 1, u.file
            if u.has_pause:
                # the middle of the pause is quiet: nothing above the line's noise floor
                w.setpos((u.pause_at_ms + u.pause_ms // 2) * 16 - 800)
                pcm = w.readframes(1600)
                peak = max(abs(int.from_bytes(pcm[i : i + 2], "little", signed=True)) for i in range(0, len(pcm), 2))
                assert peak < 200, u.file
