"""The recognition lane's end-of-turn handling, on real engines with frames fed at real-time pace:
a mid-sentence pause does not end the utterance, a complete question ends after the short wait, and a
resumed utterance is one utterance whose final decode heard all of it."""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib.util
import time
from collections.abc import Iterator, Sequence

import pytest

from callwright.config import Settings
from callwright.speech.base import Recognition, Transcriber
from callwright.speech.stt_pocketsphinx import Lexicon, PocketsphinxRecognizer
from callwright.speech.turn import TurnDetector, build_turn_detector
from callwright.speech.vad import SileroGatedVad, SpeechSegmenter
from callwright.voice.cascade.recognition import RecognitionLane, TurnTaking, Utterance

from .test_turn_detector import piper_pcm as piper_words

pytestmark = pytest.mark.skipif(importlib.util.find_spec("piper") is None, reason="needs piper-tts and a voice")

FRAME = 640
PHRASES = [
    "i'd like to check my account balance please",
    "what are your opening hours",
    "where is your office",
    "my policy number is",
    "one two three four five six seven eight nine zero",
]


def piper_pcm(text: str) -> bytes:
    pcm = piper_words(text)
    return pcm + bytes(-len(pcm) % FRAME)  # whole frames, so the fed audio is exactly this


def silence(ms: int) -> bytes:
    return bytes(32 * ms)


class WholeUtterancePocketsphinx:
    """A real whole-utterance ``Transcriber``: pocketsphinx decoding the utterance's audio in one go.
    It records what it was given, so tests can check the final decode heard the whole utterance."""

    sample_rate = 16_000

    def __init__(self) -> None:
        self._recognizer = PocketsphinxRecognizer(Lexicon())
        self.heard: list[bytes] = []

    def transcribe(self, pcm: bytes, phrases: Sequence[str] = ()) -> Recognition:
        self.heard.append(pcm)
        self._recognizer.configure(phrases)
        self._recognizer.start_utterance()
        for i in range(0, len(pcm) - FRAME + 1, FRAME):
            self._recognizer.push(pcm[i : i + FRAME])
        final = self._recognizer.end_utterance()
        return final or Recognition("", True)

    def close(self) -> None:
        self._recognizer.close()


@pytest.fixture(scope="module")
def detector() -> Iterator[TurnDetector]:
    built = build_turn_detector(Settings(turn_detector="smart", turn_min_wait_ms=200, turn_max_wait_ms=1500))
    yield built
    built.close()


@pytest.fixture
def offload() -> Iterator[concurrent.futures.ThreadPoolExecutor]:
    pool = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="test-offload")
    yield pool
    pool.shutdown(wait=True, cancel_futures=True)


class Run:
    def __init__(self) -> None:
        self.utterances: list[Utterance] = []
        self.onsets: list[float] = []
        self.fed_at: list[float] = []  # arrival time of each fed frame
        self.sustained: list[float] = []


async def run_lane(
    audio: bytes,
    *,
    detector: TurnDetector | None,
    offload: concurrent.futures.ThreadPoolExecutor,
    transcriber: Transcriber | None = None,
    pause_ms: int = 200,
    settle_s: float = 2.5,
    agent_audible: bool = False,
) -> Run:
    """Feed ``audio`` at real-time pace (20 ms a frame), then wait ``settle_s`` for late utterances."""
    loop = asyncio.get_running_loop()
    run = Run()

    async def onset(t: float, detected: float) -> None:
        run.onsets.append(t)

    turn = TurnTaking(
        detector=detector,
        offload=offload.submit,
        submit_final=(lambda pcm, ph: offload.submit(transcriber.transcribe, pcm, tuple(ph))) if transcriber else None,
        pause_ms=pause_ms,
        endpoint_silence_ms=300,
        final_timeout_ms=1500,
    )
    lane = RecognitionLane(
        call_id="turn-lane-test",
        recognizer=PocketsphinxRecognizer(Lexicon()),
        segmenter=SpeechSegmenter(SileroGatedVad(), 80, 300),
        loop=loop,
        agent_audible=lambda: agent_audible,
        on_onset=onset,
        on_partial=lambda text: None,
        on_utterance=run.utterances.append,
        max_utterance_seconds=30,
        on_sustained_speech=run.sustained.append,
        sustained_speech_seconds=0.7,
        turn_taking=turn,
    )
    lane.bias(PHRASES)
    lane.start()
    try:
        start = time.monotonic()
        for i in range(0, len(audio) - FRAME + 1, FRAME):
            delay = start + (i // FRAME) * 0.02 - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            run.fed_at.append(time.monotonic())
            lane.feed(audio[i : i + FRAME])
        await asyncio.sleep(settle_s)
    finally:
        lane.stop()
        assert await loop.run_in_executor(None, lane.join, 5.0)
    return run


async def test_a_mid_sentence_pause_of_800_ms_is_one_utterance_heard_whole(detector, offload):
    first, second = piper_pcm("I'd like to check my"), piper_pcm("account balance please.")
    audio = silence(300) + first + silence(800) + second + silence(1600)
    transcriber = WholeUtterancePocketsphinx()
    run = await run_lane(audio, detector=detector, offload=offload, transcriber=transcriber)
    [utt] = run.utterances
    second_starts = run.fed_at[(len(silence(300) + first + silence(800))) // FRAME]
    # Nothing was handed on during the pause: the one utterance came after the caller finished ...
    assert utt.final_time > second_starts + 0.5
    # ... it spans both parts and the pause, and its end is the real end of speech, not of the wait.
    assert utt.speech_ms >= (len(first) + len(second)) / 32 + 800 - 600
    second_ends = run.fed_at[(len(audio) - len(silence(1600))) // FRAME - 1]
    assert abs(utt.speech_end_time - second_ends) < 0.25
    assert utt.turn is not None and utt.turn.wait_ms <= 1500
    # The final decode heard the whole utterance once, in order: one contiguous stretch of what was
    # fed (no frame pushed twice, none missing), covering both parts.
    heard = transcriber.heard[-1]
    starts = audio.find(heard)
    assert starts >= 0
    # (it starts with the onset's lead-in: within the quiet first ~300 ms of Piper's "I'd")
    assert starts <= len(silence(600)) and starts + len(heard) >= len(audio) - len(silence(1600))
    assert "check" in utt.text and "balance" in utt.text, utt.text
    assert run.onsets == []  # the agent was silent: no barge-in onset, before or after the pause


async def test_a_complete_question_ends_after_the_short_wait(detector, offload):
    audio = silence(300) + piper_pcm("What are your opening hours?") + silence(1600)
    run = await run_lane(audio, detector=detector, offload=offload)
    [utt] = run.utterances
    assert utt.turn is not None and utt.turn.wait_ms <= 500, utt.turn
    # Short wait (200 ms) + the model (~50 ms); generous for a loaded machine, far below the 1.5 s bound.
    assert utt.final_time - utt.speech_end_time < 1.0
    assert "hours" in utt.text


async def test_an_unfinished_phrase_without_more_speech_ends_at_the_bound(detector, offload):
    audio = silence(300) + piper_pcm("I'd like to check my") + silence(2500)
    run = await run_lane(audio, detector=detector, offload=offload, settle_s=1.0)
    [utt] = run.utterances
    assert utt.turn is not None and utt.turn.wait_ms > 1000
    assert 1.0 < utt.final_time - utt.speech_end_time < 2.5  # waited (bounded), then answered anyway


async def test_the_silence_detector_keeps_the_fixed_endpoint(offload):
    detector = build_turn_detector(Settings(turn_detector="silence", endpoint_silence_ms=300))
    first, second = piper_pcm("I'd like to check my"), piper_pcm("account balance please.")
    run = await run_lane(
        silence(300) + first + silence(800) + second + silence(1200), detector=detector, offload=offload
    )
    # The old rule: 800 ms of silence ends an utterance, so the caller is cut in two.
    assert len(run.utterances) == 2
    assert all(u.turn is None for u in run.utterances)
    assert all(u.final_time - u.speech_end_time < 1.0 for u in run.utterances)


def _whisper() -> object | None:
    try:
        from callwright.speech.stt_whisper import build_whisper_transcriber

        return build_whisper_transcriber(Settings(stt_engine="whisper"))
    except Exception:  # not installed here (STT_ENGINE=whisper is optional)
        return None


async def test_the_whisper_final_of_a_paused_utterance_has_every_word(detector, offload):
    whisper = _whisper()
    if whisper is None:
        pytest.skip("STT_ENGINE=whisper is not available")
    first, second = piper_pcm("My policy number is"), piper_pcm("four five six seven.")
    audio = silence(300) + first + silence(800) + second + silence(1600)
    heard: list[bytes] = []

    class Recording:
        sample_rate = 16_000

        def transcribe(self, pcm: bytes, phrases: Sequence[str] = ()) -> Recognition:
            heard.append(pcm)
            return whisper.transcribe(pcm, phrases)

        def close(self) -> None:
            whisper.close()

    try:
        run = await run_lane(audio, detector=detector, offload=offload, transcriber=Recording())
    finally:
        whisper.close()
    [utt] = run.utterances
    words = utt.text.lower()
    assert "policy" in words and ("4567" in words.replace(" ", "").replace(",", "") or "seven" in words), utt.text
    assert audio.find(heard[-1]) >= 0  # one contiguous stretch of the caller's audio


async def test_a_backchannel_over_the_agent_keeps_the_old_fixed_silence(detector, offload):
    """The handler's barge-in verdict (resume or stop) waits on this utterance: no model, no longer wait."""
    run = await run_lane(silence(300) + piper_pcm("Okay.") + silence(1200), detector=detector, offload=offload,
                         agent_audible=True)  # fmt: skip
    [utt] = run.utterances
    assert run.onsets == [utt.onset_time]  # barge-in onset at once, as before
    assert utt.turn is not None and utt.turn.reason == "silence" and utt.turn.wait_ms == 300
    assert utt.final_time - utt.speech_end_time < 0.8  # 300 ms of silence, then at once


async def test_a_real_interruption_that_pauses_is_one_utterance_and_one_barge_in(detector, offload):
    first, second = piper_pcm("I'd like to check my"), piper_pcm("account balance please.")
    audio = silence(300) + first + silence(800) + second + silence(1600)
    run = await run_lane(audio, detector=detector, offload=offload, agent_audible=True)
    [utt] = run.utterances
    assert run.onsets == [utt.onset_time]  # the resumption was not a second barge-in
    assert run.sustained == [utt.onset_time]  # it outlasted a backchannel once
    assert utt.turn is not None and utt.turn.reason != "silence"  # judged by the detector
    assert utt.speech_ms >= (len(first) + len(second)) / 32 + 800 - 600


class BrokenTranscriber:
    """Fault injection: a whole-utterance decoder that crashes, or one stuck far past any bound."""

    sample_rate = 16_000

    def __init__(self, *, stall_s: float = 0.0) -> None:
        self.stall_s = stall_s

    def transcribe(self, pcm: bytes, phrases: Sequence[str] = ()) -> Recognition:
        if self.stall_s:
            time.sleep(self.stall_s)
            return Recognition("too late to matter", True)
        raise RuntimeError("decoder crashed")

    def close(self) -> None:
        return None


@pytest.mark.parametrize("stall_s", [0.0, 3.0], ids=["crashed", "stalled"])
async def test_a_failed_or_stalled_final_falls_back_to_the_streaming_final(detector, offload, stall_s, caplog):
    audio = silence(300) + piper_pcm("What are your opening hours?") + silence(1600)
    run = await run_lane(
        audio, detector=detector, offload=offload, transcriber=BrokenTranscriber(stall_s=stall_s), settle_s=2.0
    )
    [utt] = run.utterances
    assert "hours" in utt.text and utt.text != "too late to matter"  # pocketsphinx's own final
    # Stalled: the answer came at the bound (short wait + TURN_FINAL_TIMEOUT_MS = 1.5 s here), not later.
    assert utt.final_time - utt.speech_end_time < 2.6
    assert "final decode" in caplog.text  # and it was logged
