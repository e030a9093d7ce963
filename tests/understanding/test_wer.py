"""The WER normaliser and distance used by ``callwright bench --understanding``."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from callwright.bench.corpus import Utterance
from callwright.bench.understanding import edit_distance, reply_matches, score_call, summarize, wer, wer_words


def test_numerals_are_spelled_digit_by_digit_on_both_sides() -> None:
    spoken = wer_words("my policy number is four five six seven")
    for written in ("My policy number is 4567.", "my policy number is 4,567", "My policy number is 4 5 6 7",
                    "my policy number is 4-5-6-7"):  # fmt: skip
        assert wer_words(written) == spoken, written


def test_punctuation_case_apostrophes_and_fillers() -> None:
    assert wer_words("I'd like to, um, check my claim.") == ["id", "like", "to", "check", "my", "claim"]
    assert wer_words("I’D LIKE TO uh check my CLAIM") == ["id", "like", "to", "check", "my", "claim"]
    assert wer_words("OK, goodbye!") == wer_words("okay good bye")


def test_wer_counts_substitutions_deletions_insertions() -> None:
    assert wer("what are your opening hours", "what are your opening hours") == (0, 5)
    assert wer("what are your opening hours", "what are you opening ours") == (2, 5)
    assert wer("where is your office", "where is office") == (1, 4)
    assert wer("where is your office", "uh where is your office please") == (1, 4)  # "uh" is not an error
    assert wer("hello", "") == (1, 1)


def test_reply_matching_ignores_case_and_curly_apostrophes() -> None:
    assert reply_matches("couldn't find a policy", "Sorry, I couldn’t find a policy with the number 4 5 6 7.")
    assert not reply_matches("monday to friday", "Sorry, I didn't catch that.")


words = st.lists(st.sampled_from(["one", "claim", "my", "policy", "open", "hours", "bye"]), max_size=12)


@settings(max_examples=200, deadline=None)
@given(words, words)
def test_edit_distance_is_a_metric_bounded_by_the_longer_side(a: list[str], b: list[str]) -> None:
    d = edit_distance(a, b)
    assert d == edit_distance(b, a)
    assert abs(len(a) - len(b)) <= d <= max(len(a), len(b))
    assert (d == 0) == (a == b)


def _utt(**kw: object) -> Utterance:
    base = {"id": "x-01-joe", "file": "x.wav", "voice": "joe", "text": "My name is Alice Brown.",
            "intent": "out_of_scope", "reply": "didn't catch that", "pause_ms": 800, "pause_at_ms": 1200,
            "duration_ms": 3000, "split": "dev"}  # fmt: skip
    base.update(kw)
    return Utterance(**base)  # type: ignore[arg-type]


def test_score_call_flags_a_cut_off_and_a_wrong_hang_up() -> None:
    # the agent's audio reached the ear inside the caller's speech (during the pause), then it hung up
    report = {"ok": False, "transcript": [
        {"speaker": "caller", "start_ms": 1000.0, "end_ms": 4000.0},
        {"speaker": "agent", "start_ms": 2300.0, "end_ms": 3000.0}],
        "turns": [{"kind": "speech", "response_latency_ms": -1700.0}]}  # fmt: skip
    view = {"transcript": [
        {"role": "assistant", "content": "Contoso Insurance, how can I help?"},
        {"role": "user", "content": "my name is"}, {"role": "assistant", "content": "Sorry, I didn't catch that."},
        {"role": "user", "content": "alice bye"},
        {"role": "assistant", "content": "Thank you for calling. Have a great day, goodbye!"}]}  # fmt: skip
    item = score_call(_utt(), report, view)
    assert item["cut_off"] is True and item["latency_ms"] is None
    assert item["heard"] == "my name is alice bye"
    assert (item["wer_errors"], item["ref_words"]) == (1, 5)  # "bye" for "brown"
    assert item["first_correct"] is True and item["wrong_hangup"] is True and item["wrong_transfer"] is False


def test_score_call_latency_when_the_agent_waited() -> None:
    report = {"ok": True, "transcript": [
        {"speaker": "caller", "start_ms": 1000.0, "end_ms": 4000.0},
        {"speaker": "agent", "start_ms": 4400.0, "end_ms": 6000.0}],
        "turns": [{"kind": "speech", "response_latency_ms": 380.0}]}  # fmt: skip
    view = {"transcript": [{"role": "user", "content": "what are your hours"},
                           {"role": "assistant", "content": "We're open Monday to Friday."}]}  # fmt: skip
    item = score_call(_utt(text="What are your hours?", intent="hours", reply="monday to friday"), report, view)
    assert item["cut_off"] is False and item["latency_ms"] == 380.0
    assert item["correct"] and item["first_correct"] and item["wer_errors"] == 0
    fig = summarize([item])
    assert fig["intent_accuracy"]["dev"] == 1.0 and fig["intent_accuracy"]["heldout"] is None
    assert fig["cut_off_rate"] == {"paused": 0.0, "all": 0.0}
