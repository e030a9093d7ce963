"""The speech cascade through whole calls: barge-in, false barge-ins, and a socket dropped mid-sentence."""

from __future__ import annotations

import asyncio
import re

from callwright.emulator.phone import build_phone_from_script
from callwright.localstack import local_stack

from .conftest import history, lane_threads


def spoken(text: str) -> str:
    """The words of a caller turn: whisper writes "What are your opening hours." where pocketsphinx wrote
    "what are your opening hours"; the words are what these tests are about."""
    return " ".join(re.findall(r"[a-z0-9']+", text.lower()))


BARGE_IN = """
name: barge-in
direction: inbound
from: "+15551230002"
to: "+15550001000"
timeout_s: 90
steps:
  - wait: {agent_done: 700, timeout_s: 30}
  - say: "What are your opening hours?"
  - barge_in: {at_ms: 1000, of: next, timeout_s: 30, say: "Sorry, where is your office?"}
  - wait: {agent_done: 700, timeout_s: 30}
  - hangup
"""


async def test_barge_in_stops_the_agent_and_keeps_only_what_was_heard(stack):
    report = await stack.call(BARGE_IN)
    assert report["ok"], report.get("error")
    [barge] = report["barge_ins"]
    # The caller heard the agent stop (playback paused on voice onset), then StopAudio confirmed it.
    assert 0 < barge["silenced_ms"] < 1000
    assert barge["stopped"] is True
    assert barge["leaked_ms"] == 0
    assert 0 < barge["latency_ms"] < 2000
    entries = history(stack, report["call_id"])
    interrupted = [m for m in entries if m.get("interrupted")]
    assert len(interrupted) == 1
    heard, full = interrupted[0]["content"], interrupted[0]["full_text"]
    assert full.startswith("We're open Monday to Friday")
    assert heard and full.startswith(heard) and len(heard) < len(full) / 2
    # The interruption became the next turn, and it was answered.
    users = [m["content"] for m in entries if m["role"] == "user"]
    assert "office" in users[-1]
    assert "Harbor Street" in entries[-1]["content"]


async def test_a_whole_call_in_the_piper_voice():
    """TTS_ENGINE=piper (the natural voice; installed with the dev extra): the same call and barge-in."""
    async with local_stack(tts_engine="piper", stt_pool_warm=1, tts_pool_warm=1) as piper_stack:
        report = await piper_stack.call(BARGE_IN)
        assert report["ok"], report.get("error")
        [barge] = report["barge_ins"]
        assert barge["stopped"] and barge["leaked_ms"] == 0 and 0 < barge["silenced_ms"] < 1000
        entries = history(piper_stack, report["call_id"])
        [interrupted] = [m for m in entries if m.get("interrupted")]
        assert interrupted["full_text"].startswith("We're open Monday to Friday")
        assert interrupted["content"] and len(interrupted["content"]) < len(interrupted["full_text"])
        assert "Harbor Street" in entries[-1]["content"]
        # What the caller heard is intelligible: the phone's own recogniser follows the Piper voice.
        # (Piper samples its prosody, so the exact decoding varies from run to run.)
        heard = " ".join(e["text"] for e in report["transcript"] if e["speaker"] == "agent").lower()
        words = ("insurance", "opening hours", "monday", "friday", "office", "harbor", "seattle", "floor")
        assert sum(w in heard for w in words) >= 3, heard


FALSE_BARGE_INS = """
name: not interruptions
direction: inbound
from: "+15551230004"
to: "+15550001000"
timeout_s: 90
steps:
  - wait: {agent_done: 700, timeout_s: 30}
  - say: "What are your opening hours?"
  - barge_in: {at_ms: 800, of: next, timeout_s: 30, say: {click: true}}
  - barge_in: {at_ms: 2000, of: current, say: {noise: pink, ms: 400, db: -20}}
  - barge_in: {at_ms: 3600, of: current, say: {text: "uh-huh", probe: true}}
  - wait: {agent_done: 1000, timeout_s: 30}
  - hangup
"""


async def test_noise_clicks_and_backchannels_do_not_cut_the_reply(stack):
    report = await stack.call(FALSE_BARGE_INS)
    assert report["ok"], report.get("error")
    probes = report["false_barge_in_probes"]
    assert len(probes) == 3
    by_kind = {p.get("kind", p.get("source", str(i))): p for i, p in enumerate(probes)}
    # A click and a noise burst never reach the recogniser; the agent pauses for the "uh-huh" and resumes:
    # no StopAudio for any of them.
    assert [p["stopped"] for p in probes] == [False, False, False], probes
    # The reply completed: stored whole, not as interrupted, and no caller turn was invented.
    entries = history(stack, report["call_id"])
    replies = [m for m in entries if m["role"] == "assistant"]
    assert replies[-1]["content"].startswith("We're open Monday to Friday")
    assert not any(m.get("interrupted") for m in replies), by_kind
    assert [spoken(m["content"]) for m in entries if m["role"] == "user"] == ["what are your opening hours"]


async def test_stop_audio_at_onset_still_resumes_after_a_backchannel():
    """BARGE_IN_STOP_AUDIO=onset: the "uh-huh" draws a StopAudio at once, and the reply still completes."""
    async with local_stack(barge_in_stop_audio="onset", stt_pool_warm=1, tts_pool_warm=1) as stack:
        report = await stack.call(FALSE_BARGE_INS)
        assert report["ok"], report.get("error")
        probes = report["false_barge_in_probes"]
        assert [p["stopped"] for p in probes] == [False, False, True], probes
        entries = history(stack, report["call_id"])
        replies = [m for m in entries if m["role"] == "assistant"]
        assert replies[-1]["content"].startswith("We're open Monday to Friday")
        assert not any(m.get("interrupted") for m in replies)
        assert [spoken(m["content"]) for m in entries if m["role"] == "user"] == ["what are your opening hours"]


ECHO = """
name: echo on the line
direction: inbound
from: "+15551230006"
to: "+15550001000"
timeout_s: 90
echo: {db: -15, delay_ms: 120}
steps:
  - wait: {agent_done: 700, timeout_s: 30}
  - say: "What are your opening hours?"
  - wait: {agent_done: 1000, timeout_s: 30}
  - say: "Where is your office?"
  - barge_in: {at_ms: 1200, of: next, timeout_s: 30, say: "Sorry, what time do you close?"}
  - wait: {agent_done: 1000, timeout_s: 30}
  - hangup
"""


async def test_the_agents_own_echo_does_not_barge_in_but_the_caller_still_can(stack):
    report = await stack.call(ECHO)
    assert report["ok"], report.get("error")
    entries = history(stack, report["call_id"])
    replies = [m for m in entries if m["role"] == "assistant"]
    # The greeting and the first answer played whole over their own echo; only the real barge-in cut one.
    assert [bool(m.get("interrupted")) for m in replies] == [False, False, True, False], replies
    assert replies[1]["content"].startswith("We're open Monday to Friday")
    assert len(report["stop_audio_ms"]) == 1
    [barge] = report["barge_ins"]
    assert barge["stopped"] and barge["leaked_ms"] == 0
    assert 0 < barge["silenced_ms"] < 1000
    for _ in range(100):  # the count lands when the handler stops, just after the call ends
        if stack.state.metrics.echo_frames_rejected_total._value.get() > 0:
            break
        await asyncio.sleep(0.05)
    assert stack.state.metrics.echo_frames_rejected_total._value.get() > 0


DROP = """
name: drop
direction: inbound
from: "+15551230005"
to: "+15550001000"
timeout_s: 60
steps:
  - wait: {agent_done: 700, timeout_s: 30}
  - say: "What are your opening hours?"
  - silence: 30
"""


async def test_socket_dropped_mid_sentence_stops_every_lane(stack):
    engines = stack.state.speech
    phone = build_phone_from_script(DROP)
    call = await stack.emulator.place_inbound_call(phone, from_number="+15551230005", to_number="+15550001000")
    run = asyncio.ensure_future(phone.run(call))
    record = None
    # Wait until the agent is in the middle of its second reply.
    for _ in range(600):
        record = stack.state.calls.get(call.call_connection_id)
        handler = record.media_handler if record else None
        last = record.memo.history[-1]["role"] if record and record.memo.history else None
        if handler is not None and last == "user" and handler.playback.audible:
            break
        await asyncio.sleep(0.05)
    assert record is not None and record.media_handler is not None and record.media_handler.playback.audible
    assert engines.stt_pool.stats()["in_use"] == 1
    assert stack.state.recognition_workers.lanes == 1
    await phone.link.close("dropped by the test")  # the WebSocket goes away without CallDisconnected
    workers = stack.state.recognition_workers
    for _ in range(100):
        if record.media_handler is None and workers.lanes == 0:
            break
        await asyncio.sleep(0.05)
    assert record.media_handler is None
    assert workers.lanes == 0  # the call's lane stopped and no worker runs it
    assert lane_threads() == []  # no per-call thread either
    assert engines.stt_pool.stats()["in_use"] == 0
    assert engines.tts_pool.stats()["in_use"] == 0
    leftovers = [t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith(("turns:", "playback"))]
    assert leftovers == []
    # What the caller had heard of the cut reply is in the history, marked interrupted.
    assert record.memo.history[-1]["role"] == "assistant" and record.memo.history[-1].get("interrupted")
    run.cancel()
    await asyncio.gather(run, return_exceptions=True)
    call.hang_up_by_phone()


KEYS_OVER_THE_PROMPT = """
name: keys over the prompt
direction: inbound
from: "+15551230001"
to: "+15550001000"
timeout_s: 90
steps:
  - wait: {agent_done: 700, timeout_s: 30}
  - say: "I want to check my claim status."
  - wait: {seconds: 1.2}
  - dtmf: {digits: "1234#", gap_ms: 150}
  - wait: {agent_done: 900, timeout_s: 40}
  - hangup
"""


async def test_keying_digits_over_a_prompt_stops_it_and_is_taken_as_input(stack):
    report = await stack.call(KEYS_OVER_THE_PROMPT)
    assert report["ok"], report.get("error")
    assert report["stop_audio_ms"], "a key press over the prompt should stop it"
    entries = history(stack, report["call_id"])
    assert any(m.get("interrupted") for m in entries if m["role"] == "assistant")
    assert [m["content"] for m in entries if m["role"] == "user"][-1] == "1234#"
    assert "review" in entries[-1]["content"].lower()
