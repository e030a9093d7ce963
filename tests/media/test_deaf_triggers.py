"""Every input that used to leave the agent deaf for the rest of the call, through whole emulated calls:
afterwards the caller is still understood (the server recognises a later turn and answers it).

Calls run in real time, so the triggers are grouped: one call sends every bad frame and then speaks with
four different frame sizes; one streams at 24 kHz; one talks over the start of the agent's audio (the
echo-guard race) and then has its recognition lane fail — once (restarted, still heard) and for good
(apology, then transfer: never silence).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from callwright.localstack import LocalStack, local_stack
from callwright.speech.tts_espeak import EspeakSynthesizer
from callwright.speech.vad import SpeechSegmenter
from callwright.voice.health import media_health

OPENING = "Monday to Friday"
OFFICE = "Harbor Street"


@pytest.fixture
async def stack() -> AsyncIterator[LocalStack]:
    async with local_stack(stt_pool_warm=1, tts_pool_warm=1, stt_pool_size=4, tts_pool_size=4) as s:
        yield s


def _history(stack: LocalStack, call_id: str) -> list[dict]:
    record = stack.state.calls.get(call_id)
    assert record is not None and record.memo is not None, f"the server never saw call {call_id}"
    return record.memo.history


def _said(entries: list[dict], role: str) -> list[str]:
    return [m["content"] for m in entries if m["role"] == role]


async def _metrics(stack: LocalStack) -> str:
    async with httpx.AsyncClient() as http:
        resp = await http.get(f"{stack.url}/metrics", headers=stack.operator_headers)
    assert resp.status_code == 200
    return resp.text


def _value(metrics: str, name: str) -> float:
    line = next((x for x in metrics.splitlines() if x.startswith(name + " ")), None)
    assert line is not None, f"{name} missing from /metrics"
    return float(line.split()[1])


BAD_FRAMES_THEN_ODD_SIZES = """
name: bad frames, then 10 and 30 ms frames
timeout_s: 100
steps:
  - wait: {agent_done: 700, timeout_s: 30}
  - raw: {audio_bytes: 0}
  - raw: {audio_bytes: 642}
  - raw: {audio_bytes: 641}
  - raw: '{"kind":"AudioMetadata","audioMetadata":{"subscriptionId":"x","encoding":"PCM","sampleRate":1e999,"channels":1,"length":640}}'
  - raw: {nested: 2000}
  - raw: {text: "%s"}
  - frame_ms: 10
  - say: "What are your opening hours?"
  - wait: {agent_done: 700, timeout_s: 30}
  - frame_ms: 30
  - say: "Where is your office?"
  - wait: {agent_done: 700, timeout_s: 30}
  - hangup
""" % ("[" * 2000 + "]" * 2000)

LONG_FRAMES = """
name: 40 and 100 ms frames
from: "+15551230002"
frame_ms: 40
timeout_s: 100
steps:
  - wait: {agent_done: 700, timeout_s: 30}
  - say: "What are your opening hours?"
  - wait: {agent_done: 700, timeout_s: 30}
  - frame_ms: 100
  - say: "Where is your office?"
  - wait: {agent_done: 700, timeout_s: 30}
  - hangup
"""

STREAM_24K = """
name: a 24 kHz stream
from: "+15551230003"
sample_rate: 24000
timeout_s: 60
steps:
  - wait: {agent_done: 700, timeout_s: 30}
  - say: "What are your opening hours?"
  - wait: {agent_done: 700, timeout_s: 30}
  - hangup
"""


async def test_bad_frames_odd_frame_sizes_and_24k_leave_the_caller_understood(stack):
    # Three calls at once (calls run in real time): every trigger, then speech that must still be heard.
    bad, long, hd = await asyncio.gather(
        stack.call(BAD_FRAMES_THEN_ODD_SIZES, timeout_s=150),
        stack.call(LONG_FRAMES, timeout_s=150),
        stack.call(STREAM_24K, timeout_s=150),
    )
    for report in (bad, long, hd):
        assert report["ok"], report.get("error")
    # After the bad frames, speech in 10 and 30 ms frames (320 and 960 bytes), and in another call in
    # 40 and 100 ms frames (1280 and 3200 bytes), was recognised and answered.
    for report in (bad, long):
        entries = _history(stack, report["call_id"])
        users, replies = _said(entries, "user"), _said(entries, "assistant")
        assert len(users) == 2 and "opening hours" in users[0] and "office" in users[1], users
        assert any(OPENING in r for r in replies) and any(OFFICE in r for r in replies), replies
    # The 24 kHz caller was heard, and heard the greeting and the answer at its own rate (the transport
    # resamples the agent's 16 kHz audio up), the answer after the caller stopped speaking.
    users = _said(_history(stack, hd["call_id"]), "user")
    assert users and "opening hours" in users[0], users
    assert len(hd["turns"]) == 1 and 0 < hd["turns"][0]["response_latency_ms"] < 6000
    assert len([t for t in hd["transcript"] if t["speaker"] == "agent"]) >= 2
    metrics = await _metrics(stack)
    # Each bad frame was skipped under its own reason; the odd sizes were re-cut, not dropped.
    for reason, count in (("empty", 1), ("odd_length", 1), ("bad_metadata", 1), ("not_json", 2)):
        assert f'callwright_media_frames_rejected_total{{reason="{reason}"}} {count}.0' in metrics, reason
    assert _value(metrics, "callwright_media_frames_reframed_total") > 100
    assert _value(metrics, "callwright_media_frames_resampled_total") > 100
    assert media_health(stack.state).snapshot()["deaf_calls"] == 0
    assert "callwright_media_lane_restarts_total{" not in metrics  # nothing had to be restarted


TALK_OVER_START_THEN_LANE_FAILURES = """
name: caller talks as the agent starts, then the lane fails
timeout_s: 100
steps:
  - say: "What are your opening hours?"
  - wait: {agent_done: 700, timeout_s: 30}
  - silence: 2.5
  - say: "Where is your office?"
  - wait: {disconnected: true, timeout_s: 60}
"""


async def _until(predicate, timeout: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_caller_over_agent_start_and_lane_failures_never_leave_the_caller_unheard(stack, monkeypatch):
    feed = SpeechSegmenter.feed
    faults = {"once": 0, "always": False}

    def faulty_feed(self, frame, now=None):
        # Fault injection in the real segmenter: a failure inside the lane's worker, as an engine bug would.
        if faults["always"] or faults["once"] > 0:
            faults["once"] = max(0, faults["once"] - 1)
            raise RuntimeError("injected segmenter failure")
        return feed(self, frame, now)

    monkeypatch.setattr(SpeechSegmenter, "feed", faulty_feed)
    call = asyncio.create_task(stack.call(TALK_OVER_START_THEN_LANE_FAILURES, timeout_s=120))

    def answered(fragment: str) -> bool:
        records = [*stack.state.calls.active(), *stack.state.calls.recent()]
        return any(
            fragment in m["content"]
            for r in records
            if r.memo is not None
            for m in r.memo.history
            if m["role"] == "assistant"
        )

    # 1. The caller spoke from the first moment, across the start of the greeting (the echo-guard race):
    #    the question was still recognised and answered.
    await _until(lambda: answered(OPENING), 40, "the answer to the first question")
    # 2. One lane failure: restarted with fresh state, and the next question is heard.
    faults["once"] = 1
    await _until(lambda: answered(OFFICE), 40, "the answer to the question after a lane restart")
    # 3. A lane that keeps failing: the caller hears an apology and is transferred (the scenario has a
    #    person to transfer to), never left talking to a deaf agent.
    faults["always"] = True
    report = await call
    assert report["ok"], report.get("error")
    entries = _history(stack, report["call_id"])
    users = _said(entries, "user")
    assert "opening hours" in users[0] and "office" in users[1], users
    replies = _said(entries, "assistant")
    assert any("trouble hearing you" in r for r in replies), replies
    assert [t["target"] for t in stack.emulator.transfers] == ["4:+15550009999"]
    snap = media_health(stack.state).snapshot()
    assert snap["lane_restarts"] >= 2 and snap["degraded_calls"] == 1 and snap["deaf_calls"] == 0, snap
    metrics = await _metrics(stack)
    assert 'callwright_media_lane_restarts_total{component="recognition"}' in metrics
    assert 'callwright_media_degraded_calls_total{outcome="transferred"} 1.0' in metrics


ONE_QUESTION = """
name: one question, the synthesizer fails on the answer
timeout_s: 60
steps:
  - wait: {agent_done: 700, timeout_s: 30}
  - say: "What are your opening hours?"
  - wait: {agent_done: 700, timeout_s: 30}
  - hangup
"""


async def test_a_synthesizer_failure_is_replaced_and_the_answer_still_heard(stack, monkeypatch):
    synthesize = EspeakSynthesizer.synthesize
    failed: list[str] = []

    def fails_once_on_the_answer(self, text, on_chunk, voice=None):
        # Fault injection in the real engine, mid-call: the first sentence of the answer raises.
        if OPENING in text and not failed:
            failed.append(text)
            raise RuntimeError("injected synthesizer failure")
        return synthesize(self, text, on_chunk, voice)

    monkeypatch.setattr(EspeakSynthesizer, "synthesize", fails_once_on_the_answer)
    report = await stack.call(ONE_QUESTION, timeout_s=90)
    assert report["ok"], report.get("error")
    assert failed, "the injected failure never ran"
    replies = _said(_history(stack, report["call_id"]), "assistant")
    assert any(OPENING in r for r in replies), replies
    # Greeting and the answer both reached the caller's ear; the answer came after the question.
    assert len([t for t in report["transcript"] if t["speaker"] == "agent"]) >= 2
    assert len(report["turns"]) == 1 and report["turns"][0]["response_latency_ms"] > 0
    assert media_health(stack.state).snapshot()["lane_restarts"] >= 1
    assert 'callwright_media_lane_restarts_total{component="synthesizer"} 1.0' in await _metrics(stack)
