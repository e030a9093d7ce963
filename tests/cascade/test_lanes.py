"""The cascade's parts on real engines, without a network: the recognition lane and the playback clock."""

from __future__ import annotations

import asyncio
import time
import wave
from pathlib import Path

from callwright.speech.stt_pocketsphinx import Lexicon, PocketsphinxRecognizer
from callwright.speech.vad import SileroGatedVad, SpeechSegmenter
from callwright.voice.cascade.heard import heard_text, is_backchannel, is_short_non_interruption
from callwright.voice.cascade.playback import Playback, Segment
from callwright.voice.cascade.recognition import RecognitionLane, Utterance

DATA = Path(__file__).parents[1] / "data" / "caller"


def wav(name: str) -> bytes:
    with wave.open(str(DATA / name)) as w:
        return w.readframes(w.getnframes())


def frames(pcm: bytes) -> list[bytes]:
    return [pcm[i : i + 640] for i in range(0, len(pcm) - 639, 640)]


async def _run_lane(
    audio: bytes, *, max_seconds: float, phrases: list[str], frame_interval: float = 0.0005
) -> list[Utterance]:
    loop = asyncio.get_running_loop()
    got: list[Utterance] = []
    done = asyncio.Event()

    async def onset(t: float, detected: float) -> None:
        return None

    def utterance(u: Utterance) -> None:
        got.append(u)
        done.set()

    lane = RecognitionLane(
        call_id="lane-test",
        recognizer=PocketsphinxRecognizer(Lexicon()),
        segmenter=SpeechSegmenter(SileroGatedVad(), 120, 300),
        loop=loop,
        agent_audible=lambda: False,
        on_onset=onset,
        on_partial=lambda text: None,
        on_utterance=utterance,
        max_utterance_seconds=max_seconds,
    )
    lane.bias(phrases)
    lane.start()
    try:
        for f in frames(audio):
            lane.feed(f)
            await asyncio.sleep(frame_interval)
        await asyncio.wait_for(done.wait(), 30)
    finally:
        lane.stop()
        assert await loop.run_in_executor(None, lane.join, 5.0)
    return got


async def test_lane_recognises_an_utterance_with_its_timings():
    audio = wav("hours.wav") + bytes(640 * 30)
    [utt] = await _run_lane(audio, max_seconds=30, phrases=["what are your opening hours", "where is your office"])
    assert utt.text == "what are your opening hours"
    assert utt.onset_time <= utt.speech_end_time <= utt.final_time
    assert not utt.timed_out and not utt.during_agent_audio


async def test_stt_processing_timeout_finalises_a_runaway_utterance():
    # Speech with no pause long enough to end it, for longer than the timeout.
    speech = b"".join(wav(n).strip(b"\0") for n in ("hours.wav", "office.wav", "claim.wav", "person.wav") * 3)
    start = time.monotonic()
    got = await _run_lane(speech[: 16_000 * 2 * 3], max_seconds=0.8, phrases=["what are your opening hours"],
                          frame_interval=0.02)  # fmt: skip
    assert got[0].timed_out
    assert time.monotonic() - start < 30


class _Sink:
    sample_rate = 16_000
    closed = False

    def __init__(self) -> None:
        self.sent: list[float] = []

    async def send_audio(self, pcm: bytes) -> None:
        self.sent.append(time.monotonic())

    async def stop_audio(self) -> None:
        return None

    async def close(self, code: int = 1000, reason: str = "") -> None:
        return None


async def test_playback_is_paced_and_knows_what_was_heard():
    sink = _Sink()
    playback = Playback(sink, lead_ms=60)
    playback.start()
    seg = playback.new_segment("one two three four five six seven eight nine ten")
    playback.append(seg, bytes(640 * 50))  # one second of audio
    playback.finish(seg)
    await asyncio.sleep(0.5)
    playback.pause()
    sent_by_pause = len(sink.sent)
    await asyncio.sleep(0.2)
    await playback.close()
    # Paced at real time: about half a second of frames went out, never far ahead of the clock.
    assert 15 <= sent_by_pause <= 40
    assert len(sink.sent) == sent_by_pause  # nothing after the pause
    heard, full = heard_text([seg])
    assert full.startswith("one two") and heard and len(heard.split()) < 10
    assert full.startswith(heard)


def test_backchannel_and_short_sounds():
    assert is_backchannel("uh huh") and is_backchannel("okay") and is_backchannel("Mm-hm")
    assert not is_backchannel("okay where is your office")
    assert is_short_non_interruption("policy", 300)
    assert not is_short_non_interruption("wait", 300)
    assert not is_short_non_interruption("claim status please now", 300)
    assert not is_short_non_interruption("policy", 1200)
    seg = Segment("a b c d", pcm=bytearray(400), synthesized=True, played=200)
    assert heard_text([seg]) == ("a b", "a b c d")
