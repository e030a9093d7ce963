"""End-of-turn detection (speech/turn.py) on the real Smart Turn model and Piper-voiced speech."""

from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path

import numpy as np
import pytest

from callwright.agents.base import Expectation
from callwright.config import Settings
from callwright.speech.turn import (
    TurnDetector,
    TurnModelMissing,
    build_turn_detector,
    find_smart_turn_model,
    judge_words,
    trailing_digits,
    wait_for,
    whisper_log_mel,
)

pytestmark = pytest.mark.skipif(importlib.util.find_spec("piper") is None, reason="needs piper-tts and a voice")

PAD_MS = 200  # the lane judges a turn after TURN_PAUSE_MS of silence: the model sees that much of it


def piper_pcm(text: str) -> bytes:
    """16 kHz s16le of ``text`` in the Piper voice, trailing silence trimmed. Deterministic (no sampled
    prosody noise), so a probability measured on it is the same on every run."""
    from piper import PiperVoice, SynthesisConfig

    from callwright.speech.resample import StreamResampler
    from callwright.speech.tts_piper import find_piper_voice

    voice = PiperVoice.load(str(find_piper_voice()))
    resampler = StreamResampler(int(voice.config.sample_rate), 16_000)
    config = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)
    pcm = b"".join(resampler.process(chunk.audio_int16_bytes) for chunk in voice.synthesize(text, syn_config=config))
    samples = np.frombuffer(pcm + resampler.flush(), dtype="<i2")
    loud = np.nonzero(np.abs(samples) > 300)[0]
    return samples[: loud[-1] + 1].tobytes()


def pause(ms: int) -> bytes:
    return bytes(32 * ms)


@pytest.fixture(scope="module")
def detector() -> TurnDetector:
    built = build_turn_detector(Settings(turn_detector="smart"))
    assert built.kind == "smart"
    yield built
    built.close()


def test_the_model_is_found_in_the_installed_wheel_without_importing_pipecat():
    path = find_smart_turn_model()
    assert path is not None and path.name == "smart-turn-v3.2-cpu.onnx" and path.stat().st_size > 8_000_000


def test_whisper_features_have_the_models_shape_and_range():
    rng = np.random.default_rng(7)
    audio = np.zeros(128_000, dtype=np.float32)
    audio[64_000:] = rng.normal(0, 0.1, 64_000)
    features = whisper_log_mel(audio)
    assert features.shape == (80, 800) and features.dtype == np.float32
    # (log10 clamped to 8 below the peak, then (x + 4) / 4): exactly 2.0 of range, the top within it.
    assert features.max() - features.min() == pytest.approx(2.0, abs=1e-5)
    # The zero-padded first half is quieter than the noise in the second.
    assert features[:, :350].mean() < features[:, 450:].mean()


def test_a_complete_question_scores_high_and_audio_cut_mid_phrase_scores_lower(detector: TurnDetector):
    complete = piper_pcm("Can you help me check my account balance?")
    whole = detector.evaluate(complete + pause(PAD_MS), "")
    cut = piper_pcm("I'd like to check my")
    unfinished = detector.evaluate(cut + pause(PAD_MS), "")
    assert whole.model_probability is not None and unfinished.model_probability is not None
    assert whole.model_probability > 0.7, whole
    assert unfinished.model_probability < 0.5, unfinished
    assert whole.model_probability - unfinished.model_probability > 0.3
    # ... so the complete question waits the minimum and the cut one (nearly) the maximum.
    assert whole.wait_ms == detector.min_wait_ms
    assert unfinished.wait_ms > 1000
    assert whole.model_ms is not None and whole.model_ms < 2000  # ~50 ms on an idle core


def test_the_words_overrule_a_confident_model(detector: TurnDetector):
    audio = piper_pcm("Where is your office?") + pause(PAD_MS)
    plain = detector.evaluate(audio, "where is your office")
    trailing = detector.evaluate(audio, "where is your office and")
    assert plain.wait_ms == detector.min_wait_ms
    assert trailing.wait_ms == detector.max_wait_ms and "unfinished" in trailing.reason


@pytest.mark.parametrize(
    "text",
    ["i'd like to", "and", "my policy number is", "um", "let me see", "I want to check the", "so uh"],
)
def test_an_unfinished_phrase_waits(text: str):
    probability, reason = judge_words(0.95, text, None)
    assert probability <= 0.05 and "unfinished" in reason


@pytest.mark.parametrize("text", ["what are your opening hours", "where is your office", "Can you help me?"])
def test_a_finished_phrase_keeps_the_models_verdict(text: str):
    assert judge_words(0.9, text, None) == (0.9, "audio")
    # (a question mark lifts nothing: whisper writes one after question fragments too)
    assert judge_words(0.1, text, None) == (0.1, "audio")


@pytest.mark.parametrize("text", ["My policy number is 12...", "I'd like to check,", "so I asked -"])
def test_a_transcript_trailing_off_waits(text: str):
    probability, reason = judge_words(0.95, text, None)
    assert probability <= 0.05 and reason == "trailing off"


@pytest.mark.parametrize("text", ["Okay, thanks so much. Bye.", "That's all I needed. Thank you. Goodbye.", "thanks"])
def test_a_closing_is_complete_whatever_the_audio_says(text: str):
    probability, reason = judge_words(0.02, text, None)
    assert probability >= 0.85 and reason == "a closing"


@pytest.mark.parametrize("text", ["Hi.", "All right.", "Hello, my name is Alice Brown.", "Hi, this is John Miller."])
def test_openers_and_introductions_wait_a_little_longer(text: str):
    probability, reason = judge_words(0.99, text, None)
    assert probability == 0.5 and reason in ("an opener", "an introduction")
    assert 200 < wait_for(probability, 200, 1500) < 1500


def test_a_full_stop_lifts_only_the_lowest_scores():
    assert judge_words(0.02, "I need an update on my claim please.", None) == (0.4, "a full stop")
    assert judge_words(0.7, "I need an update on my claim please.", None) == (0.7, "audio")


def test_digit_counting():
    assert trailing_digits(["my", "number", "is", "four", "five", "six"]) == (3, True)
    assert trailing_digits(["double", "five", "one"]) == (3, True)
    assert trailing_digits(["twenty", "three"]) == (2, True)
    assert trailing_digits(["12", "34"]) == (4, True)
    assert trailing_digits(["four", "five", "um"]) == (0, False)
    assert trailing_digits(["hello"]) == (0, False)


def test_a_digits_slot_waits_for_its_minimum_and_not_after_its_maximum():
    slot = Expectation("digits", min_digits=4, max_digits=6)
    p, reason = judge_words(0.95, "it's four five", slot)
    assert p <= 0.05 and "at least 4" in reason
    p, reason = judge_words(0.95, "four five six seven", slot)  # enough, but more may come
    assert 0.2 < p <= 0.5 and "read out" in reason
    p, reason = judge_words(0.1, "four five six seven eight nine", slot)
    assert p >= 0.95 and "all 6" in reason
    # Without a digits slot, a number is not a reason to wait.
    assert judge_words(0.9, "four five six seven", None) == (0.9, "audio")


def test_a_yes_no_answer_is_complete_when_one_is_expected():
    p, _ = judge_words(0.3, "yes", Expectation("yes_no"))
    assert p >= 0.9
    assert judge_words(0.3, "yes", None)[0] == 0.3


def test_waits_are_monotonic_and_bounded():
    waits = [wait_for(p / 20, 200, 1500) for p in range(21)]
    assert waits[0] == 1500 and waits[-1] == 200
    assert all(a >= b for a, b in itertools.pairwise(waits))


def test_the_words_detector_and_the_silence_detector():
    words = build_turn_detector(Settings(turn_detector="words", turn_max_wait_ms=1200))
    assert words.kind == "words" and words.model is None
    assert words.evaluate(b"\x00" * 640, "i'd like to").wait_ms == 1200
    neutral = words.evaluate(b"", "what are your opening hours")
    assert 200 < neutral.wait_ms < 1200 and neutral.reason == "no signal"
    silence = build_turn_detector(Settings(turn_detector="silence", endpoint_silence_ms=340))
    assert silence.evaluate(b"", "i'd like to").wait_ms == 340


def test_a_missing_model_asked_for_explicitly_is_one_clear_error(tmp_path: Path):
    missing = tmp_path / "nope.onnx"
    with pytest.raises(TurnModelMissing, match="SMART_TURN_MODEL_PATH") as err:
        build_turn_detector(Settings(turn_detector="smart", smart_turn_model_path=missing))
    assert "\n" not in str(err.value) and str(missing) in str(err.value)
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    with pytest.raises(TurnModelMissing, match="SMART_TURN_MODEL_PATH"):
        build_turn_detector(Settings(turn_detector="smart", smart_turn_model_path=broken))


async def test_the_scenario_agent_says_what_it_is_waiting_for():
    from callwright.agents.base import CallInfo, Turn, expectation_of
    from callwright.agents.factory import build_orchestrator
    from callwright.agents.scenario import load_scenario
    from callwright.sessions.memo import MemoManager
    from callwright.sessions.store import InMemorySessionStore

    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    orch = build_orchestrator(
        settings,
        load_scenario(settings),
        CallInfo("call-1", caller="+15551230001", callee="+15550001000"),
        MemoManager("call-1", InMemorySessionStore(ttl_seconds=600)),
    )
    assert expectation_of(orch) is None  # an open question: no slot
    async for _ in orch.respond(Turn("I want to check my claim status")):
        pass
    # The insurance scenario's policy number: 4 to 10 digits.
    assert expectation_of(orch) == Expectation("digits", min_digits=4, max_digits=10)
    assert expectation_of(object()) is None  # orchestrators without expecting() (the LLM one) are fine
