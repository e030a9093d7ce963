"""End-of-turn detection: has the caller finished, or only paused?

A turn detector is asked once the caller has been quiet for ``TURN_PAUSE_MS`` and answers how long to
wait for more speech, counted from the end of the last voiced frame. It combines three signals:

* **audio** — Smart Turn v3.2 (BSD-2, the ONNX file that ships inside the ``pipecat-ai`` wheel; the
  ``pipecat`` package itself is never imported): the probability that the last 8 s of audio end a turn,
  from intonation and rhythm;
* **words** — what the recognizer heard so far: an unfinished phrase ("... and", "I'd like to", "um")
  or a number still being read out means more is coming;
* **expectation** — what the agent is waiting for (see :class:`callwright.agents.base.Expectation`): a
  slot expecting at least N digits is not answered after fewer; a yes/no answer is complete at once.

The combined probability maps to a wait between ``TURN_MIN_WAIT_MS`` (clearly complete) and
``TURN_MAX_WAIT_MS`` (clearly not). ``TURN_DETECTOR=silence`` is the old rule: a fixed
``ENDPOINT_SILENCE_MS``. One detector serves every call; ``evaluate`` is blocking and thread-safe and runs
on the speech engines' offload threads, never on the recognition workers or the event loop.
"""

from __future__ import annotations

import importlib.metadata
import logging
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    from callwright.agents.base import Expectation
    from callwright.config import Settings

log = logging.getLogger("callwright.speech.turn")

SAMPLE_RATE = 16_000
WINDOW_SAMPLES = 8 * SAMPLE_RATE  # Smart Turn looks at the last 8 s
SMART_TURN_DIST = "pipecat-ai"
SMART_TURN_FILE = "smart-turn-v3.2-cpu.onnx"

# Probabilities at or above HIGH wait the minimum, at or below LOW the maximum; linear in between.
HIGH = 0.8
LOW = 0.2
# What a signal that more is coming caps the probability at.
UNFINISHED_CAP = 0.05
MORE_DIGITS_CAP = 0.5

# A turn that ends on one of these is not finished ("I'd like to ...", "my policy number is ...").
_UNFINISHED_WORDS = frozenset(
    {
        *("and", "but", "so", "because", "or", "the", "a", "an", "my", "your", "our", "to", "of", "is", "are"),
        *("was", "with", "for", "from", "in", "on", "at", "if", "that"),
        *("um", "umm", "uh", "uhh", "er", "erm", "hmm", "ah"),
    }
)
_UNFINISHED_PHRASES = (
    "let me see",
    "let me check",
    "let me think",
    "i'd like",
    "i would like",
    "i want",
    "i need",
    "the number is",
    "number is",
)

# Recognised text ending like this (only a punctuating recognizer writes these) ...
_TRAILING_OFF = ("...", "\u2026", ",", "-", "\u2014")
# ... or like this, is complete whatever the audio model thought.
_CLOSERS = ("bye", "goodbye", "bye now", "thank you", "thanks", "that's all", "that's everything", "that's it")
CLOSING_FLOOR = 0.85
# (No such floor for "?": whisper writes one after question fragments too — "is there someone I can?")
# Openers and a caller introducing themselves usually go on: a middling wait.
_OPENERS = frozenset({"hi", "hello", "hey", "okay", "ok", "alright", "all", "right", "great", "yes", "yeah", "so"})
_OPENERS |= {"well", "oh", "good", "morning", "afternoon", "evening", "there"}
_INTRODUCTION = re.compile(r"\b(my name is|my name's|this is)( \w+){1,2}$")
OPENER_CAP = 0.5
# A full stop is weak evidence (whisper ends fragments with one too): it only lifts the lowest scores.
PERIOD_FLOOR = 0.4

_UNITS = {"zero": 1, "oh": 1, "one": 1, "two": 1, "three": 1, "four": 1, "five": 1, "six": 1}
_UNITS |= {"seven": 1, "eight": 1, "nine": 1}
_TEENS = {"ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen"}
_TEENS.add("nineteen")
_TENS = {"twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"}


@dataclass(frozen=True, slots=True)
class TurnDecision:
    """``complete_probability``: the combined belief that the caller has finished; ``wait_ms``: how long
    after the end of speech to wait for more before answering; ``reason``: why (for logs and tests)."""

    complete_probability: float
    wait_ms: int
    reason: str
    model_probability: float | None = None
    model_ms: float | None = None


class TurnModelMissing(RuntimeError):
    """TURN_DETECTOR=smart was asked for and the Smart Turn model file cannot be found."""


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower().replace("-", " "))


def trailing_digits(words: list[str]) -> tuple[int, bool]:
    """(digits in the number the words end with, whether the words end on it). 'double five' is two
    digits, 'twenty three' two, numerals count their digits; filler between digit words is skipped."""
    count = 0
    ends_on_number = False
    for i, w in enumerate(reversed(words)):
        if w.isdigit():
            count += len(w)
        elif w in _UNITS:
            count += 1
        elif w in _TEENS or w in _TENS:
            count += 2 if (w in _TEENS or i == 0 or words[-i] not in _UNITS) else 1
        elif w in ("double", "triple") and i > 0:
            count += 1 if w == "double" else 2  # the digit after it was counted once already
        elif w in ("um", "uh", "er", "and") and count:
            continue
        else:
            break
        if i == 0:
            ends_on_number = True
    return count, ends_on_number


def wait_for(probability: float, min_wait_ms: int, max_wait_ms: int) -> int:
    """The wait for a combined completion probability: short when sure, up to the bound when not."""
    if probability >= HIGH:
        return min_wait_ms
    if probability <= LOW:
        return max_wait_ms
    share = (HIGH - probability) / (HIGH - LOW)
    return round(min_wait_ms + share * (max_wait_ms - min_wait_ms))


def judge_words(probability: float, text: str, expecting: Expectation | None) -> tuple[float, str]:
    """Adjust the audio model's probability with the words heard and what the agent is waiting for."""
    words = _words(text)
    reason = "audio"
    kind = getattr(expecting, "kind", None)
    if kind == "digits" and words:
        digits, ends_on_number = trailing_digits(words)
        need = int(getattr(expecting, "min_digits", 1))
        most = int(getattr(expecting, "max_digits", 16))
        if digits >= most:
            return max(probability, 0.95), f"all {most} digits heard"
        if digits and digits < need:
            return min(probability, UNFINISHED_CAP), f"expecting at least {need} digits, heard {digits}"
        if digits and ends_on_number:
            # Enough digits for the slot, but a longer number may still be being read out.
            return min(probability, MORE_DIGITS_CAP), f"a number being read out ({digits} digits so far)"
    if not words:
        return probability, reason
    tail = " ".join(words[-3:])
    end = text.rstrip()
    if words[-1] in _UNFINISHED_WORDS:
        return min(probability, UNFINISHED_CAP), f"unfinished phrase ({words[-1]!r})"
    if any(tail.endswith(p) for p in _UNFINISHED_PHRASES):
        return min(probability, UNFINISHED_CAP), "unfinished phrase"
    if end.endswith(_TRAILING_OFF):
        # A punctuating recognizer (whisper) writes a trailing-off "..." or "," for speech that stopped.
        return min(probability, UNFINISHED_CAP), "trailing off"
    if kind == "yes_no" and len(words) <= 4 and set(words) & {"yes", "no", "yeah", "nope", "correct", "right"}:
        return max(probability, 0.9), "a yes/no answer"
    if any(tail.endswith(c) for c in _CLOSERS):
        # Smart Turn rates short closings ("thanks, bye") low; the words are unambiguous.
        return max(probability, CLOSING_FLOOR), "a closing"
    if len(words) <= 3 and all(w in _OPENERS for w in words):
        # "Hi." "Okay." "All right." on their own open a turn more often than they make one.
        return min(probability, OPENER_CAP), "an opener"
    if _INTRODUCTION.search(" ".join(words[-6:])):
        return min(probability, OPENER_CAP), "an introduction"
    if end.endswith((".", "!")):
        return max(probability, PERIOD_FLOOR), "a full stop" if probability < PERIOD_FLOOR else reason
    return probability, reason


class SmartTurnModel:
    """The Smart Turn v3.2 ONNX model: 16 kHz PCM → probability that the turn is complete."""

    def __init__(self, path: Path) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        # One thread, sequential: calls share two cores, and evaluations run concurrently on the offload
        # threads rather than fanning out inside one.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.path = path
        self._session: Any = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name

    def probability(self, pcm: bytes) -> float:
        samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2").astype(np.float32) / 32768.0
        features = whisper_log_mel(window_8s(samples))
        session = self._session
        if session is None:
            raise RuntimeError("the Smart Turn model is closed")
        out = session.run(None, {self._input: features[np.newaxis]})
        return float(np.asarray(out[0]).reshape(-1)[0])

    def close(self) -> None:
        self._session = None


def window_8s(samples: np.ndarray) -> np.ndarray:
    """The last 8 s, left-padded with zeros (the model was trained on audio ending at the window's end)."""
    if samples.size >= WINDOW_SAMPLES:
        return samples[-WINDOW_SAMPLES:]
    return np.pad(samples, (WINDOW_SAMPLES - samples.size, 0))


# --- Whisper log-mel features (80 × 800 for 8 s), numpy only ---------------------------------------
_N_FFT = 400
_HOP = 160
_N_MELS = 80


def _hz_to_mel(freq: np.ndarray) -> np.ndarray:
    """Slaney mel scale: linear below 1 kHz, logarithmic above."""
    linear = 3.0 * freq / 200.0
    log_part = 15.0 + np.log(np.maximum(freq, 1e-9) / 1000.0) * 27.0 / np.log(6.4)
    return np.where(freq >= 1000.0, log_part, linear)


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    linear = 200.0 * mels / 3.0
    log_part = 1000.0 * np.exp(np.log(6.4) / 27.0 * (mels - 15.0))
    return np.where(mels >= 15.0, log_part, linear)


def _mel_filters() -> np.ndarray:
    """Slaney-normalised triangular filters, (201 frequency bins, 80 mels)."""
    edges = _mel_to_hz(np.linspace(_hz_to_mel(np.array(0.0)), _hz_to_mel(np.array(SAMPLE_RATE / 2)), _N_MELS + 2))
    bins = np.linspace(0, SAMPLE_RATE // 2, _N_FFT // 2 + 1)
    slopes = edges[np.newaxis, :] - bins[:, np.newaxis]
    widths = np.diff(edges)
    filters = np.maximum(0.0, np.minimum(-slopes[:, :-2] / widths[:-1], slopes[:, 2:] / widths[1:]))
    return filters * (2.0 / (edges[2:] - edges[:-2]))[np.newaxis, :]


_FILTERS = _mel_filters()
_WINDOW = np.hanning(_N_FFT + 1)[:-1]  # periodic Hann


def whisper_log_mel(samples: np.ndarray) -> np.ndarray:
    """Whisper's log-mel features of 8 s of float audio: the waveform normalised to zero mean and unit
    variance, a centred 400-point STFT every 160 samples, slaney mel power, log10 clamped to 8 below its
    maximum, then (x + 4) / 4. Returns float32 (80, 800)."""
    x = samples.astype(np.float32)
    x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
    padded = np.pad(x.astype(np.float64), (_N_FFT // 2, _N_FFT // 2), mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, _N_FFT)[::_HOP]
    power = np.abs(np.fft.rfft(frames * _WINDOW, axis=-1)) ** 2
    mel = np.log10(np.maximum(1e-10, power @ _FILTERS)).T[:, :-1]  # the last frame is dropped, as Whisper does
    mel = np.maximum(mel, mel.max() - 8.0)
    return ((mel + 4.0) / 4.0).astype(np.float32)


# --- the detector ------------------------------------------------------------------------------------
DetectorKind = Literal["smart", "words", "silence"]


class TurnDetector:
    """``smart``: audio model + words + expectation; ``words``: words + expectation over a neutral prior;
    ``silence``: a fixed wait (the old endpointing)."""

    def __init__(
        self,
        kind: DetectorKind,
        *,
        model: SmartTurnModel | None = None,
        min_wait_ms: int = 200,
        max_wait_ms: int = 1500,
        silence_ms: int = 300,
    ) -> None:
        if kind == "smart" and model is None:
            raise ValueError("a smart turn detector needs its model")
        if not 0 <= min_wait_ms <= max_wait_ms:
            raise ValueError(f"turn waits must satisfy 0 <= min ({min_wait_ms}) <= max ({max_wait_ms})")
        self.kind: DetectorKind = kind
        self.model = model
        self.min_wait_ms = min_wait_ms
        self.max_wait_ms = max_wait_ms
        self.silence_ms = silence_ms
        self._lock = threading.Lock()
        self.evaluations = 0

    def evaluate(self, audio: bytes, text: str, expecting: Expectation | None = None) -> TurnDecision:
        """Blocking (the model takes ~50 ms on one core): run it on an offload thread."""
        if self.kind == "silence":
            return TurnDecision(1.0, self.silence_ms, "silence")
        probability: float | None = None
        took: float | None = None
        if self.model is not None and audio:
            start = time.perf_counter()
            probability = self.model.probability(audio)
            took = (time.perf_counter() - start) * 1000
        with self._lock:
            self.evaluations += 1
        return self.decide(probability, text, expecting, model_ms=took)

    def decide(
        self,
        probability: float | None,
        text: str,
        expecting: Expectation | None = None,
        *,
        model_ms: float | None = None,
    ) -> TurnDecision:
        """Cheap: combine a model probability (None: no model, a neutral prior) with words and expectation.
        The lane calls it again when a better transcript arrives."""
        if self.kind == "silence":
            return TurnDecision(1.0, self.silence_ms, "silence")
        # Without audio, words alone are a weak signal: neutral unless they say otherwise, so a plain
        # statement waits in the middle of the range.
        prior = 0.5 if probability is None else probability
        combined, reason = judge_words(prior, text, expecting)
        if probability is None and reason == "audio":
            reason = "no signal"
        return TurnDecision(
            complete_probability=combined,
            wait_ms=wait_for(combined, self.min_wait_ms, self.max_wait_ms),
            reason=reason,
            model_probability=probability,
            model_ms=model_ms,
        )

    def close(self) -> None:
        if self.model is not None:
            self.model.close()


def find_smart_turn_model(configured: Path | str | None = None) -> Path | None:
    """The configured file, else the one inside the installed pipecat-ai wheel (found through its file
    list, without importing pipecat); None when neither exists."""
    if configured:
        path = Path(configured)
        return path if path.is_file() else None
    try:
        dist = importlib.metadata.distribution(SMART_TURN_DIST)
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in dist.files or ():
        if str(file).endswith(SMART_TURN_FILE):
            path = Path(str(dist.locate_file(file)))
            if path.is_file():
                return path
    return None


def build_turn_detector(settings: Settings) -> TurnDetector:
    """TURN_DETECTOR=smart (the default) falls back to ``words`` with a warning when the model file is not
    installed, unless smart was asked for explicitly: then a one-line error naming SMART_TURN_MODEL_PATH."""
    kind: DetectorKind = settings.turn_detector
    waits = {
        "min_wait_ms": settings.turn_min_wait_ms,
        "max_wait_ms": settings.turn_max_wait_ms,
        "silence_ms": settings.endpoint_silence_ms,
    }
    if kind != "smart":
        return TurnDetector(kind, **waits)
    configured = settings.smart_turn_model_path
    path = find_smart_turn_model(configured)
    explicit = "turn_detector" in settings.model_fields_set or configured is not None
    if path is None:
        where = f"{configured} does not exist" if configured else f"{SMART_TURN_FILE} not found in {SMART_TURN_DIST}"
        message = f"TURN_DETECTOR=smart: the Smart Turn model is missing ({where}); set SMART_TURN_MODEL_PATH"
        if explicit:
            raise TurnModelMissing(message)
        log.warning("%s; using TURN_DETECTOR=words", message)
        return TurnDetector("words", **waits)
    try:
        model = SmartTurnModel(path)
    except Exception as exc:
        raise TurnModelMissing(f"SMART_TURN_MODEL_PATH={path}: cannot load the Smart Turn model: {exc}") from None
    log.info("turn detector: Smart Turn v3.2 from %s", path)
    return TurnDetector("smart", model=model, **waits)
