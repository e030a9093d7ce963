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
from callwright.voice.cascade.recognition import RecognitionLane, RecognitionWorkers, Utterance

DATA = Path(__file__).parents[1] / "data" / "caller"


def wav(name: str) -> bytes:
    with wave.open(str(DATA / name)) as w:
        return w.readframes(w.getnframes())


def frames(pcm: bytes) -> list[bytes]:
    return [pcm[i : i + 640] for i in range(0, len(pcm) - 639, 640)]


async def _run_lane(
    audio: bytes,
    *,
    max_seconds: float,
    phrases: list[str],
    frame_interval: float = 0.0005,
    agent_audible: bool = False,
    sustained: list[float] | None = None,
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
        agent_audible=lambda: agent_audible,
        on_onset=onset,
        on_partial=lambda text: None,
        on_utterance=utterance,
        max_utterance_seconds=max_seconds,
        on_sustained_speech=(sustained.append if sustained is not None else None),
        sustained_speech_seconds=0.7,
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


async def test_many_calls_share_two_workers_and_each_hears_its_own_caller():
    loop = asyncio.get_running_loop()
    workers = RecognitionWorkers(2)
    workers.start()
    phrases = ["what are your opening hours", "where is your office", "i want to check my claim status"]
    calls = {"hours.wav": "what are your opening hours", "office.wav": "where is your office"}
    got: dict[int, list[Utterance]] = {}
    lanes = []
    for i in range(6):
        got[i] = []
        lane = RecognitionLane(
            call_id=f"shared-{i}",
            recognizer=PocketsphinxRecognizer(Lexicon()),
            segmenter=SpeechSegmenter(SileroGatedVad(), 120, 300),
            loop=loop,
            agent_audible=lambda: False,
            on_onset=_no_onset,
            on_partial=lambda text: None,
            on_utterance=got[i].append,
            max_utterance_seconds=30,
            workers=workers,
        )
        lane.bias(phrases)
        lane.start()
        lanes.append(lane)
    assert workers.lanes == 6
    audio = {name: frames(wav(name) + bytes(640 * 30)) for name in calls}
    names = list(calls)
    try:
        # All six callers talk at once, frame by frame, at 10x real time.
        for k in range(max(len(a) for a in audio.values())):
            for i, lane in enumerate(lanes):
                clip = audio[names[i % 2]]
                if k < len(clip):
                    lane.feed(clip[k])
            await asyncio.sleep(0.002)
        for _ in range(300):
            if all(got.values()):
                break
            await asyncio.sleep(0.05)
    finally:
        for lane in lanes:
            lane.stop()
        joined = [await loop.run_in_executor(None, lane.join, 5.0) for lane in lanes]
        assert workers.close(5.0)
    assert all(joined) and workers.lanes == 0
    for i in range(6):
        assert [u.text for u in got[i]] == [calls[names[i % 2]]], (i, got[i])


async def _no_onset(t: float, detected: float) -> None:
    return None


async def test_stt_processing_timeout_finalises_a_runaway_utterance():
    # Speech with no pause long enough to end it, for longer than the timeout.
    speech = b"".join(wav(n).strip(b"\0") for n in ("hours.wav", "office.wav", "claim.wav", "person.wav") * 3)
    start = time.monotonic()
    got = await _run_lane(speech[: 16_000 * 2 * 3], max_seconds=0.8, phrases=["what are your opening hours"],
                          frame_interval=0.02)  # fmt: skip
    assert got[0].timed_out
    assert time.monotonic() - start < 30


async def test_speech_over_the_agent_outlasting_a_backchannel_is_reported_once_and_a_backchannel_is_not():
    phrases = ["what are your opening hours", "uh huh"]
    sustained: list[float] = []
    [utt] = await _run_lane(wav("hours.wav") + bytes(640 * 30), max_seconds=30, phrases=phrases,
                            frame_interval=0.02, agent_audible=True, sustained=sustained)  # fmt: skip
    assert utt.during_agent_audio
    assert sustained == [utt.onset_time]
    sustained.clear()
    [utt] = await _run_lane(wav("uh_huh.wav") + bytes(640 * 30), max_seconds=30, phrases=phrases,
                            frame_interval=0.02, agent_audible=True, sustained=sustained)  # fmt: skip
    assert utt.speech_ms < 700
    assert sustained == []


async def _hints_for(audio: bytes) -> tuple[list[tuple[str, float]], list[Utterance]]:
    """Feed ``audio`` at real time over an audible agent; return the hints/onsets seen, in order."""
    loop = asyncio.get_running_loop()
    seen: list[tuple[str, float]] = []
    got: list[Utterance] = []

    async def onset(t: float, detected: float) -> None:
        seen.append(("onset", time.monotonic()))

    lane = RecognitionLane(
        call_id="hint-test",
        recognizer=PocketsphinxRecognizer(Lexicon()),
        segmenter=SpeechSegmenter(SileroGatedVad(), 80, 300),
        loop=loop,
        agent_audible=lambda: True,
        on_onset=onset,
        on_partial=lambda text: None,
        on_utterance=got.append,
        max_utterance_seconds=30,
        on_voice_hint=lambda voiced: seen.append(("hold" if voiced else "release", time.monotonic())),
    )
    lane.start()
    try:
        for f in frames(audio + bytes(640 * 30)):
            lane.feed(f)
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)
    finally:
        lane.stop()
        assert await loop.run_in_executor(None, lane.join, 5.0)
    return seen, got


async def test_a_hold_comes_before_onset_for_speech_and_is_always_let_go_for_other_sounds():
    seen, got = await _hints_for(wav("uh_huh.wav"))
    kinds = [k for k, _ in seen]
    assert kinds[:2] == ["hold", "onset"], kinds  # the onset handler takes the hold over
    assert len(got) == 1
    for sound in ("click.wav", "noise_burst.wav"):
        seen, got = await _hints_for(wav(sound))
        kinds = [k for k, _ in seen]
        assert "onset" not in kinds and got == [], (sound, kinds)
        # Every hold was let go within HOLD_FRAMES (+ scheduling slack), so the agent carries on.
        assert kinds == ["hold", "release"] * (len(kinds) // 2), (sound, kinds)
        for (_, held), (_, released) in zip(seen[::2], seen[1::2], strict=True):
            assert released - held < 0.5


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


async def test_pause_without_stop_audio_lets_the_sent_frames_play_and_resume_restarts_the_sentence():
    sink = _Sink()
    playback = Playback(sink, lead_ms=60)
    playback.start()
    seg = playback.new_segment("one two three four five six seven eight nine ten")
    playback.append(seg, bytes(640 * 50))
    playback.finish(seg)
    await asyncio.sleep(0.4)
    quiet_from = playback.pause(flush=False)
    sent_by_pause = len(sink.sent)
    assert not playback.audible
    await asyncio.sleep(0.15)
    # Nothing more was sent, and every frame already sent counts as heard once its play time passed.
    assert len(sink.sent) == sent_by_pause
    assert quiet_from > time.monotonic() - 0.15
    playback.resume(restart_interrupted=True)
    await playback.wait_played()
    await playback.close()
    # The sentence was played again from its start: the whole second plus the part before the pause.
    assert len(sink.sent) == sent_by_pause + 50
    assert heard_text([seg])[0] == seg.text


class _RecordingSink(_Sink):
    def __init__(self) -> None:
        super().__init__()
        self.frames: list[bytes] = []

    async def send_audio(self, pcm: bytes) -> None:
        self.frames.append(pcm)
        await super().send_audio(pcm)


async def test_a_frame_waiting_for_its_send_time_is_not_sent_after_a_stop_and_reopen():
    """The barge-in race: the loop picked a frame and sleeps until its send time; StopAudio clears the
    reply and reopen() lets the next one play before that sleep ends. The stale frame must not go out."""
    sink = _RecordingSink()
    playback = Playback(sink, lead_ms=60)
    playback.start()
    old = playback.new_segment("old reply")
    playback.append(old, b"\x01\x00" * 320 * 50)  # a second of audio, every sample 1
    playback.finish(old)
    await asyncio.sleep(0.3)  # past the lead: now every frame waits ~20 ms for its send time
    for _ in range(20):  # stop and reopen at several phases of the loop's wait
        await asyncio.sleep(0.007)
        playback.pause()
        playback.clear()
        playback.reopen()
        new = playback.new_segment("new reply")
        playback.append(new, bytes(640 * 2))  # silence: distinguishable from the old reply's samples
        playback.finish(new)
        stopped_at = len(sink.frames)
        await asyncio.sleep(0.005)
        # Nothing of the cleared reply goes out after the stop, whatever the loop was waiting on.
        assert all(f == bytes(640) for f in sink.frames[stopped_at:]), "a cleared frame was sent"
        old = playback.new_segment("old reply")
        playback.append(old, b"\x01\x00" * 320 * 10)
        playback.finish(old)
    await playback.close()


def test_backchannel_and_short_sounds():
    assert is_backchannel("uh huh") and is_backchannel("okay") and is_backchannel("Mm-hm")
    assert not is_backchannel("okay where is your office")
    assert is_short_non_interruption("policy", 300)
    assert not is_short_non_interruption("wait", 300)
    assert not is_short_non_interruption("claim status please now", 300)
    assert not is_short_non_interruption("policy", 1200)
    seg = Segment("a b c d", pcm=bytearray(400), synthesized=True, played=200)
    assert heard_text([seg]) == ("a b", "a b c d")


class _FailingOnce(SpeechSegmenter):
    """A real segmenter with one injected failure on its n-th frame."""

    def __init__(self, fail_at: int) -> None:
        super().__init__(SileroGatedVad(), 120, 300)
        self._n = 0
        self._fail_at = fail_at

    def feed(self, frame: bytes, now: float | None = None):  # type: ignore[override]
        self._n += 1
        if self._n == self._fail_at:
            raise RuntimeError("injected")
        return super().feed(frame, now)


class _BrokenGuard:
    """An echo guard whose every verdict fails (the lane must reset it, then switch it off)."""

    def __init__(self) -> None:
        self.resets = 0
        self.calls = 0

    def is_echo(self, frame: bytes, arrived: float | None = None) -> bool:
        self.calls += 1
        raise ValueError("attempt to get argmax of an empty sequence")

    def reset(self) -> None:
        self.resets += 1


async def test_a_failing_lane_asks_for_a_restart_and_a_failing_echo_guard_is_reset_in_place():
    loop = asyncio.get_running_loop()
    failures: list[str] = []
    guard_resets: list[int] = []
    got: list[Utterance] = []

    async def onset(t: float, detected: float) -> None:
        return None

    def make(segmenter: SpeechSegmenter, guard: object = None) -> RecognitionLane:
        return RecognitionLane(
            call_id="lane-failure",
            recognizer=PocketsphinxRecognizer(Lexicon()),
            segmenter=segmenter,
            loop=loop,
            agent_audible=lambda: False,
            on_onset=onset,
            on_partial=lambda text: None,
            on_utterance=got.append,
            max_utterance_seconds=30,
            echo_guard=guard,  # type: ignore[arg-type]
            on_failure=failures.append,
            on_echo_guard_reset=lambda: guard_resets.append(1),
        )

    lane = make(_FailingOnce(fail_at=3))
    lane.start()
    for f in frames(wav("hours.wav"))[:10]:
        lane.feed(f)
        await asyncio.sleep(0.001)
    for _ in range(200):
        if failures:
            break
        await asyncio.sleep(0.01)
    assert failures == ["recognition"] and lane.dead
    lane.feed(bytes(640))  # a dead lane takes nothing more (the handler replaces it)
    lane.stop()
    assert await loop.run_in_executor(None, lane.join, 5.0)

    # The echo guard failing on every frame: reset three times, then off; the caller is still recognised.
    guard = _BrokenGuard()
    lane = make(SpeechSegmenter(SileroGatedVad(), 120, 300), guard)
    lane.bias(["what are your opening hours"])
    lane.start()
    try:
        for f in frames(wav("hours.wav") + bytes(640 * 30)):
            lane.feed(f)
            await asyncio.sleep(0.0005)
        for _ in range(1000):
            if got:
                break
            await asyncio.sleep(0.01)
    finally:
        lane.stop()
        assert await loop.run_in_executor(None, lane.join, 5.0)
    assert got and got[0].text == "what are your opening hours"
    assert guard.resets == 3 and guard.calls == 3 and len(guard_resets) == 3
    assert not lane.dead
