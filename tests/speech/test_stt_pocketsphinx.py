from __future__ import annotations

import pytest

from callwright.speech.base import Recognition, Recognizer
from callwright.speech.stt_pocketsphinx import Lexicon, PocketsphinxRecognizer, build_domain_lm

from .conftest import frames_of, read_wav

# What an insurance front-desk agent expects to hear: the test sentences plus other in-domain phrases.
EXTRA_PHRASES = [
    "I need to file a claim",
    "cancel my policy",
    "transfer me to an agent",
    "no thank you",
    "goodbye",
    "my car was in an accident",
]


def word_errors(ref: str, hyp: str) -> int:
    r, h = ref.split(), hyp.split()
    dist = list(range(len(h) + 1))
    for i, rw in enumerate(r, 1):
        prev, dist[0] = dist[0], i
        for j, hw in enumerate(h, 1):
            prev, dist[j] = dist[j], min(dist[j] + 1, dist[j - 1] + 1, prev + (rw != hw))
    return dist[len(h)]


def recognize(rec: PocketsphinxRecognizer, name: str) -> tuple[list[Recognition], Recognition | None]:
    rec.start_utterance()
    partials = [p for f in frames_of(read_wav(name)) if (p := rec.push(f)) is not None]
    return partials, rec.end_utterance()


@pytest.fixture(scope="module")
def lexicon() -> Lexicon:
    return Lexicon()


def normalize(text: str) -> str:
    return text.replace("-", " ")


def test_domain_lm_accuracy_and_partials(lexicon: Lexicon, transcripts: dict[str, str]) -> None:
    rec = PocketsphinxRecognizer(lexicon)
    assert isinstance(rec, Recognizer)
    rec.configure([*transcripts.values(), *EXTRA_PHRASES])
    errors = words = 0
    for name, ref in transcripts.items():
        partials, final = recognize(rec, name)
        assert final is not None and final.is_final, name
        assert final.speech_end_monotonic is not None
        assert final.confidence is not None and 0.0 <= final.confidence <= 1.0
        assert partials, f"no partial before the final for {name}"
        assert all(not p.is_final and p.text for p in partials)
        errors += word_errors(ref, normalize(final.text))
        words += len(ref.split())
    assert errors / words <= 0.25, f"WER {errors / words:.0%}"
    rec.close()


def test_default_lm_when_no_phrases(lexicon: Lexicon) -> None:
    rec = PocketsphinxRecognizer(lexicon)
    rec.configure([])
    _, final = recognize(rec, "hours.wav")
    assert final is not None
    # The 130k-word default LM still gets this clean flite sentence mostly right.
    assert word_errors("what are your opening hours", final.text) <= 2, final.text
    rec.close()


def test_reconfigure_switches_and_caches_decoders(lexicon: Lexicon) -> None:
    rec = PocketsphinxRecognizer(lexicon)
    rec.configure(["yes", "no"])
    first = rec._decoder
    rec.configure(["where is your office", "what are your opening hours"])
    _, final = recognize(rec, "office.wav")
    assert final is not None and final.text == "where is your office"
    rec.configure(["no", "yes"])  # same set, other order: the cached decoder comes back
    assert rec._decoder is first
    rec.close()


def test_phrase_normalisation(lexicon: Lexicon) -> None:
    known, unknown = lexicon.normalize("Policy 12, uh-huh, Zzyzxqa!")
    assert known == ["policy", "one", "two", "uh-huh"]
    assert unknown == ["zzyzxqa"]
    arpa = build_domain_lm(["hello there", "hello again"])
    assert "\\data\\" in arpa and "</s>" in arpa


def test_contract_edges(lexicon: Lexicon) -> None:
    rec = PocketsphinxRecognizer(lexicon)
    rec.configure(["yes"])
    assert rec.end_utterance() is None  # nothing started
    with pytest.raises(ValueError, match="even byte count"):
        rec.push(b"\0\0\0")
    rec.push(bytes(640))  # push without start_utterance starts one
    rec.reset()
    assert rec.end_utterance() is None
    _, final = recognize(rec, "silence.wav")
    assert final is not None and final.text == ""
    rec.close()
