"""Streaming recognition with pocketsphinx 5.1.1 (the en-us model ships inside the wheel).

``configure(phrases)`` builds a small domain language model from the agent's expected phrases, with a
dictionary restricted to their words: such a decoder starts in ~10 ms and +7 MB, against 0.3-0.4 s and
+91 MB for the default LM, and cuts WER on in-domain speech from ~43% to ~12% (speech-engines.md §2).
Decoders are cached per phrase set, so agents taking turns do not rebuild them.

``lm="general"`` (``POCKETSPHINX_LM=general``) ignores the phrases and decodes with the wheel's general
en-us LM: far better on natural callers who do not say the scenario's phrases (the phrase-list LM forces
every utterance onto those phrases), at the cost of a heavier decoder per pooled recognizer.
"""

from __future__ import annotations

import collections
import io
import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from pocketsphinx import Decoder, get_model_path
from pocketsphinx.lm import ArpaBoLM

from callwright.speech.base import Recognition, Recognizer

log = logging.getLogger("callwright.speech.stt")

_DIGITS = {
    str(i): w for i, w in enumerate(("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"))
}
_TOKEN = re.compile(r"[a-z]+(?:['-][a-z]+)*|\d")


class Lexicon:
    """The wheel's CMU pronunciation dictionary, parsed once and shared by every recognizer
    (read-only after loading, so safe across threads)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or Path(get_model_path("en-us/cmudict-en-us.dict"))
        self._entries: dict[str, list[str]] | None = None
        self._lock = threading.Lock()

    def load(self) -> dict[str, list[str]]:
        with self._lock:
            if self._entries is None:
                entries: dict[str, list[str]] = {}
                with open(self.path, encoding="utf-8") as f:
                    for line in f:
                        word, _, phones = line.strip().partition(" ")
                        if phones:
                            entries.setdefault(word.split("(", 1)[0], []).append(phones)
                self._entries = entries
            return self._entries

    def __contains__(self, word: str) -> bool:
        return word in self.load()

    def dictionary_text(self, words: Iterable[str]) -> str:
        entries = self.load()
        lines = []
        for word in sorted(set(words)):
            for i, phones in enumerate(entries.get(word, ())):
                lines.append(f"{word if i == 0 else f'{word}({i + 1})'} {phones}")
        return "\n".join(lines) + "\n"

    def normalize(self, phrase: str) -> tuple[list[str], list[str]]:
        """Phrase → (known words, unknown words). Digits are spelled out; hyphenated words the
        dictionary lacks ("uh-huh" it has) are split."""
        known: list[str] = []
        unknown: list[str] = []
        for token in _TOKEN.findall(phrase.lower()):
            parts = [_DIGITS[token]] if token in _DIGITS else [token]
            if token not in self and "-" in token:
                parts = token.split("-")
            for part in parts:
                (known if part in self else unknown).append(part)
        return known, unknown


def build_domain_lm(sentences: Sequence[str]) -> str:
    """ARPA text for a small back-off LM over the sentences (``add_start``: the model needs ``</s>``)."""
    builder = ArpaBoLM(text="\n".join(sentences), add_start=True)
    builder.compute()
    out = io.StringIO()
    builder.write(out)
    return out.getvalue()


class PocketsphinxRecognizer(Recognizer):
    """One per pooled slot; drive it from one thread (the recognition lane).

    ``push`` asks the decoder for its hypothesis every ``partial_every`` frames (hyp() walks the
    search's backpointers, so asking every 20 ms is wasted work) and returns a partial when it changed.
    """

    sample_rate = 16_000

    def __init__(
        self, lexicon: Lexicon, partial_every: int = 3, cached_phrase_sets: int = 4, lm: str = "domain"
    ) -> None:
        if lm not in ("domain", "general"):
            raise ValueError(f"lm must be 'domain' or 'general', got {lm!r}")
        self.lm = lm
        self.lexicon = lexicon
        lexicon.load()  # parse once while the pool warms up, not inside the first call's lane
        self.partial_every = max(1, partial_every)
        self._cache_size = max(1, cached_phrase_sets)
        self._cache: collections.OrderedDict[tuple[str, ...], Decoder] = collections.OrderedDict()
        self._default: Decoder | None = None
        self._decoder: Decoder | None = None
        self._lock = threading.RLock()
        self._active = False
        self._frames = 0
        self._last_partial = ""
        if lm == "general":
            # ~0.3 s and ~85 MB: paid while the pool warms up, not in a call's first utterance.
            self._decoder = self._default_decoder()

    # --- configuration ----------------------------------------------------------------------------
    def configure(self, phrases: Sequence[str] = ()) -> None:
        if self.lm == "general":
            with self._lock:
                self.reset()
                self._decoder = self._default_decoder()
            return
        sentences: list[str] = []
        unknown: set[str] = set()
        for phrase in phrases:
            known, missing = self.lexicon.normalize(phrase)
            unknown.update(missing)
            if known:
                sentences.append(" ".join(known))
        if unknown:
            log.info("words not in the pronunciation dictionary, left out of the domain LM: %s", sorted(unknown))
        key = tuple(sorted(set(sentences)))
        with self._lock:
            self.reset()
            self._decoder = self._domain_decoder(key) if key else self._default_decoder()

    def _default_decoder(self) -> Decoder:
        if self._default is None:
            self._default = Decoder(loglevel="FATAL")
        return self._default

    def _domain_decoder(self, sentences: tuple[str, ...]) -> Decoder:
        decoder = self._cache.get(sentences)
        if decoder is not None:
            self._cache.move_to_end(sentences)
            return decoder
        words = {w for s in sentences for w in s.split()}
        with tempfile.TemporaryDirectory(prefix="callwright-lm-") as tmp:
            lm_path = os.path.join(tmp, "domain.arpa")
            dict_path = os.path.join(tmp, "domain.dict")
            Path(lm_path).write_text(build_domain_lm(sentences), encoding="utf-8")
            Path(dict_path).write_text(self.lexicon.dictionary_text(words), encoding="utf-8")
            decoder = Decoder(lm=lm_path, dict=dict_path, loglevel="FATAL")
        self._cache[sentences] = decoder
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return decoder

    # --- recognition ------------------------------------------------------------------------------
    def start_utterance(self) -> None:
        with self._lock:
            if self._decoder is None:
                self.configure(())
            assert self._decoder is not None
            if self._active:
                self._decoder.end_utt()
            self._decoder.start_utt()
            self._active = True
            self._frames = 0
            self._last_partial = ""

    def push(self, pcm: bytes) -> Recognition | None:
        if len(pcm) % 2:
            raise ValueError(f"s16le PCM must have an even byte count, got {len(pcm)}")
        with self._lock:
            if not self._active:
                self.start_utterance()
            decoder = self._decoder
            assert decoder is not None
            decoder.process_raw(pcm, False, False)
            self._frames += 1
            if self._frames % self.partial_every:
                return None
            hyp = decoder.hyp()
            text = hyp.hypstr if hyp is not None else ""
            if not text or text == self._last_partial:
                return None
            self._last_partial = text
            return Recognition(text, False)

    def end_utterance(self) -> Recognition | None:
        """The final; ``confidence`` is the decoder's lattice posterior, a relative score (often 0.05-0.3
        even for correct short phrases), not a calibrated probability."""
        with self._lock:
            if not self._active or self._decoder is None:
                return None
            self._decoder.end_utt()
            self._active = False
            hyp = self._decoder.hyp()
            if hyp is None:
                return Recognition("", True, None, time.monotonic())
            return Recognition(hyp.hypstr, True, float(hyp.prob), time.monotonic())

    def reset(self) -> None:
        with self._lock:
            if self._active and self._decoder is not None:
                self._decoder.end_utt()
            self._active = False
            self._frames = 0
            self._last_partial = ""

    def close(self) -> None:
        with self._lock:
            self.reset()
            self._cache.clear()
            self._default = None
            self._decoder = None
