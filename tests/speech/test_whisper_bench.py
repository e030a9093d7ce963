"""The STT engine micro-benchmark's pieces (normalisation, WER, corpus loading, the phone line) and the
pocketsphinx LM choice it measures (POCKETSPHINX_LM)."""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np
import pytest

from callwright.bench.stt_engines import (
    load_corpus,
    normalize,
    phone_band,
    pocketsphinx_config,
    run_config,
    scenario_phrases,
    synthesize,
    wer,
    whisper_config,
)
from callwright.config import SettingsError, load_settings
from callwright.speech.stt_pocketsphinx import Lexicon, PocketsphinxRecognizer

OFF_PHRASE_LIST = (
    "Hello, my name is Alice Brown and I'd like to check on my claim.",
    "I just moved to Chicago and I need a new quote.",
    "Please send the documents to my email address.",
)


def test_normalisation_is_the_stated_one() -> None:
    assert normalize("My policy number is 4567.") == ["my", "policy", "number", "is", "four", "five", "six", "seven"]
    assert normalize("I'd like a follow-up, please!") == ["i'd", "like", "a", "follow", "up", "please"]
    assert normalize("  ") == []


def test_word_error_rate() -> None:
    assert wer(["one two three four"], ["one two three four"]) == 0.0
    assert wer(["one two three four"], ["one too three"]) == 0.5  # a substitution and a deletion
    assert wer(["a b", "c d"], ["a b", "x d"]) == 0.25  # pooled over the corpus
    with pytest.raises(ValueError):
        wer(["a"], [])


def _write_wav(path: Path, pcm: bytes, rate: int = 16_000) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)


def test_corpus_loading(tmp_path: Path) -> None:
    _write_wav(tmp_path / "a.wav", bytes(3200))
    rows = [{"wav": "a.wav", "text": "hello there"}, {"file": str(tmp_path / "a.wav"), "transcript": "again"}]
    (tmp_path / "set.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    corpus = load_corpus(tmp_path)
    assert [(u.name, u.text, len(u.pcm)) for u in corpus] == [("a", "hello there", 3200), ("a", "again", 3200)]
    (tmp_path / "set.jsonl").write_text(json.dumps({"wav": "a.wav"}) + "\n")
    with pytest.raises(ValueError, match="text/transcript"):
        load_corpus(tmp_path)
    _write_wav(tmp_path / "b.wav", bytes(3200), rate=8_000)
    (tmp_path / "set.jsonl").write_text(json.dumps({"wav": "b.wav", "text": "x"}) + "\n")
    with pytest.raises(ValueError, match="16 kHz"):
        load_corpus(tmp_path)
    with pytest.raises(ValueError, match=r"no \*\.jsonl"):
        load_corpus(tmp_path / "nothing")


def test_phone_band_keeps_length_and_loses_the_top_band() -> None:
    t = np.arange(16_000) / 16_000
    tone = (0.3 * (np.sin(2 * np.pi * 440 * t) + np.sin(2 * np.pi * 6000 * t)) * 32767).astype("<i2")
    out = np.frombuffer(phone_band(tone.tobytes()), "<i2").astype(np.float64)
    assert abs(out.size - tone.size) <= 16
    spectrum = np.abs(np.fft.rfft(out[:16_000]))
    assert spectrum[6000] < 0.05 * spectrum[440]  # 8 kHz sampling: nothing above 4 kHz survives


def test_pocketsphinx_general_lm_understands_what_the_phrase_list_cannot() -> None:
    speech = list(synthesize(OFF_PHRASE_LIST))
    phrases = scenario_phrases()
    domain = pocketsphinx_config("domain", phrases).build()
    general_recognizer = PocketsphinxRecognizer(Lexicon(), lm="general")
    general_recognizer.configure(phrases)  # ignored: the general LM does not depend on the phrases

    def run_general(pcm: bytes) -> str:
        general_recognizer.start_utterance()
        for i in range(0, len(pcm) - 639, 640):
            general_recognizer.push(pcm[i : i + 640])
        final = general_recognizer.end_utterance()
        return final.text if final else ""

    domain_wer = wer(OFF_PHRASE_LIST, [domain(pcm) for pcm in speech])
    general_wer = wer(OFF_PHRASE_LIST, [run_general(pcm) for pcm in speech])
    # Measured on this voice: ~64 % with the phrase list, ~11 % with the general LM.
    assert general_wer < domain_wer - 0.2, (general_wer, domain_wer)
    assert general_wer <= 0.35, general_wer
    general_recognizer.close()


def test_pocketsphinx_lm_setting() -> None:
    assert load_settings().pocketsphinx_lm == "domain"
    assert load_settings(pocketsphinx_lm="general").pocketsphinx_lm == "general"
    with pytest.raises(SettingsError, match="POCKETSPHINX_LM"):
        load_settings(pocketsphinx_lm="huge")
    with pytest.raises(ValueError, match=r"domain.*general"):
        PocketsphinxRecognizer(Lexicon(), lm="huge")


def test_run_config_reports_every_figure() -> None:
    from callwright.bench.stt_engines import Utterance

    texts = ("Can you repeat that please?", "When is my next payment due?")
    corpus = [Utterance(f"clean_{i}", t, pcm) for i, (t, pcm) in enumerate(zip(texts, synthesize(texts), strict=True))]
    result = run_config(whisper_config("whisper", scenario_phrases(), decodes=1), corpus)
    # A sanity bound on two sentences (one word wrong is ~9 points; Piper's output varies run to run, and
    # once it read "When is my next payment due?" as "What does my next payment do."): garbage would be
    # near 100. Accuracy itself is asserted over ten sentences in test_whisper.py.
    assert result["wer"] < 50.0, result["errors"]
    assert set(result["wer_by_set"]) == {"clean"}
    assert result["latency_ms"]["p50"] > 0 and result["latency_ms"]["p95"] >= result["latency_ms"]["p50"]
    assert result["cpu_s_per_utt"] > 0 and result["load_s"] > 0
