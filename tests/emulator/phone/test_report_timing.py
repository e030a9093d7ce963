"""The report's own timing accuracy: known delays injected on the agent side must be measured as such."""

from __future__ import annotations

import asyncio

import pytest

from .conftest import STOP, FakeApp, audio_msg, run_phone, tone_pcm

TOLERANCE_MS = 20


async def _sleep_until(t: float) -> None:
    # The loop clock is time.monotonic, the same clock the phone stamps frames with.
    await asyncio.sleep(max(0.0, t - asyncio.get_running_loop().time()))


@pytest.mark.parametrize("delays_ms", [(250, 600)])
async def test_response_latency_matches_injected_delay(delays_ms: tuple[int, int]) -> None:
    async def app_side(app: FakeApp) -> None:
        for delay in delays_ms:
            end = await app.next_utterance_end()
            await _sleep_until(end + delay / 1000)
            await app.send(audio_msg(tone_pcm(400)))

    script = """
name: latency
steps:
  - silence: 0.3
  - say: {noise: white, ms: 500, probe: false}
  - wait: {agent_done: 300, timeout_s: 5}
  - say: {noise: pink, ms: 400, probe: false}
  - wait: {agent_done: 300, timeout_s: 5}
  - hangup
"""
    async with FakeApp(app_side) as app:
        _, _, report = await run_phone(script, app)
    assert report["ok"], report["error"]
    turns = report["turns"]
    assert len(turns) == 2
    for turn, delay in zip(turns, delays_ms, strict=True):
        assert turn["response_latency_ms"] is not None
        assert abs(turn["response_latency_ms"] - delay) <= TOLERANCE_MS, (turn, delay)


@pytest.mark.parametrize(("stop_after_ms", "leak_ms"), [(120, 0), (80, 200)])
async def test_barge_in_latency_and_leak(stop_after_ms: int, leak_ms: int) -> None:
    async def app_side(app: FakeApp) -> None:
        await asyncio.sleep(0.2)
        await app.send(audio_msg(tone_pcm(3000)))  # a long reply, queued at once
        onset = await app.next_onset()
        await _sleep_until(onset + stop_after_ms / 1000)
        await app.send(STOP)
        for _ in range(leak_ms // 20):  # a server that keeps talking after its own StopAudio
            await app.send(audio_msg(tone_pcm(20)))
            await asyncio.sleep(0.02)

    script = """
name: barge
steps:
  - barge_in: {at_ms: 600, say: {noise: white, ms: 900, probe: false}, timeout_s: 5}
  - silence: 0.3
  - hangup
"""
    async with FakeApp(app_side) as app:
        _, _, report = await run_phone(script, app)
    assert report["ok"], report["error"]
    [b] = report["barge_ins"]
    assert b["stopped"] and b["scripted"] and b["agent_playing_at_onset"]
    assert abs(b["latency_ms"] - stop_after_ms) <= TOLERANCE_MS, b
    assert abs(b["leaked_ms"] - leak_ms) <= 40, b
    # At the caller's ear the agent fell silent when the FIFO was flushed (the frame playing then ends),
    # or only after the audio sent past the StopAudio.
    if leak_ms == 0:
        assert 0 <= b["silenced_ms"] - stop_after_ms <= TOLERANCE_MS + 20, b
    else:
        assert b["silenced_ms"] >= stop_after_ms + leak_ms - 40, b
    # The barge-in started ~600 ms into the agent's speech as heard.
    [agent] = [e for e in report["transcript"] if e["speaker"] == "agent"][:1]
    assert abs(b["onset_ms"] - agent["start_ms"] - 600) <= 40, (b, agent)


async def test_false_barge_in_probes_are_reported() -> None:
    async def app_side(app: FakeApp) -> None:
        await asyncio.sleep(0.2)
        await app.send(audio_msg(tone_pcm(2500)))
        # Stop for the second sound only (the app 'fell for' the noise burst).
        await app.next_onset()  # the click
        await app.next_onset()  # the noise
        await asyncio.sleep(0.1)
        await app.send(STOP)

    script = """
name: probes
steps:
  - barge_in: {at_ms: 300, say: {click: true}, timeout_s: 5}
  - silence: 0.5
  - barge_in: {at_ms: 1600, say: {noise: pink, ms: 300}, of: current}
  - silence: 0.6
  - hangup
"""
    async with FakeApp(app_side) as app:
        _, _, report = await run_phone(script, app)
    assert report["ok"], report["error"]
    probes = report["false_barge_in_probes"]
    assert [p["kind"] for p in probes] == ["click", "noise"]
    assert all(p["during_agent_speech"] for p in probes)
    assert [p["stopped"] for p in probes] == [False, True]
    assert report["barge_ins"] == []
    assert report["turns"] == []


async def test_a_barge_in_step_that_begins_in_a_pause_between_sentences_targets_that_utterance() -> None:
    """The agent says one sentence, pauses 400 ms (one utterance: shorter than the 0.5 s gap), then goes
    on. A barge-in step reached during the pause (the phone was slow to get there, as on a loaded
    machine) must barge into this utterance, not wait for a next one that never comes."""

    async def app_side(app: FakeApp) -> None:
        await asyncio.sleep(0.2)
        await app.send(audio_msg(tone_pcm(600)))
        await asyncio.sleep(0.6 + 0.4)
        await app.send(audio_msg(tone_pcm(2500)))

    script = """
name: barge in a pause
steps:
  - silence: 1.05
  - barge_in: {at_ms: 1400, say: {noise: white, ms: 400, probe: false}, timeout_s: 4}
  - silence: 0.3
  - hangup
"""
    async with FakeApp(app_side) as app:
        _, _, report = await run_phone(script, app)
    assert report["ok"], report["error"]
    [b] = report["barge_ins"]
    [agent] = [e for e in report["transcript"] if e["speaker"] == "agent"][:1]
    assert abs(b["onset_ms"] - agent["start_ms"] - 1400) <= 60, (b, agent)
