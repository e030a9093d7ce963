"""Spoken calls: a flite caller voice, a phrase heard live in the agent's speech, the agent transcript."""

from __future__ import annotations

import asyncio
from pathlib import Path

from callwright.emulator.phone.audio import flite_say_blocking

from .conftest import FakeApp, audio_msg, run_phone


async def test_phrase_wait_flite_caller_and_agent_transcript(tts_cache: Path) -> None:
    greeting = await asyncio.to_thread(
        flite_say_blocking, "Thank you for calling. How can I help you today?", "rms", tts_cache
    )
    reply = await asyncio.to_thread(
        flite_say_blocking, "We are open from nine to five, Monday to Friday.", "rms", tts_cache
    )

    async def app_side(app: FakeApp) -> None:
        await asyncio.sleep(0.2)
        await app.send(audio_msg(greeting))
        end = await app.next_utterance_end(hangover_frames=12)  # words have short pauses
        await asyncio.sleep(max(0.0, end + 0.3 - asyncio.get_running_loop().time()))
        await app.send(audio_msg(reply))

    script = """
name: speech
steps:
  - wait: {phrase: "how can I help", timeout_s: 15}
  - say: "What are your opening hours?"
  - wait: {agent_done: 600, timeout_s: 15}
  - hangup
"""
    async with FakeApp(app_side) as app:
        phone, _, report = await run_phone(script, app, transcribe=True, tts_cache=tts_cache)
    assert report["ok"], report["error"]
    # The caller spoke only after the greeting's phrase was heard (live STT), i.e. not before it began.
    caller = [e for e in report["transcript"] if e["speaker"] == "caller"]
    agent = [e for e in report["transcript"] if e["speaker"] == "agent"]
    assert [c["text"] for c in caller] == ["What are your opening hours?"]
    assert len(agent) == 2, agent
    assert caller[0]["start_ms"] > agent[0]["start_ms"] + 1000
    assert report["agent_transcript_engine"] == "pocketsphinx"
    assert "help" in agent[0]["text"]
    assert "monday" in agent[1]["text"] or "friday" in agent[1]["text"], agent[1]
    [turn] = report["turns"]
    assert abs(turn["response_latency_ms"] - 300) <= 20, turn
    # The caller voice is flite slt at 16 kHz: about 2 s of voiced frames went out.
    voiced = sum(1 for v in phone.link.timeline.caller_voiced if v) if phone.link else 0
    assert 50 <= voiced <= 150, voiced
