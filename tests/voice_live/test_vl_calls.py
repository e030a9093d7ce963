"""voice_live calls end to end: greeting, answered turns, transcripts in the call record, both SDKs."""

from __future__ import annotations

from typing import Any

from .conftest import history, place_outbound, said, voice_live_stack

TWO_TURNS = """
name: two turns
direction: inbound
from: "+15551230001"
to: "+15550001000"
timeout_s: 120
steps:
  - wait: {agent_done: 900, timeout_s: 40}
  - say: "What are your opening hours?"
  - wait: {agent_done: 900, timeout_s: 40}
  - say: "Where is your office?"
  - wait: {agent_done: 900, timeout_s: 40}
  - hangup
"""


def _assert_two_turns(stack: Any, report: dict[str, Any]) -> list[dict[str, Any]]:
    assert report["ok"], report.get("error")
    agent_audio = [e for e in report["transcript"] if e["speaker"] == "agent"]
    heard = " ".join(e["text"] for e in agent_audio).lower()
    # The greeting and both answers reached the caller's ear (the phone's recogniser is rough: a few words).
    assert agent_audio and agent_audio[0]["start_ms"] < 10_000 and len(agent_audio[0]["text"].split()) >= 8, agent_audio
    assert "saturday" in heard and "floor" in heard, heard
    entries = history(stack, report["call_id"])
    replies = said(entries, "assistant")
    users = said(entries, "user")
    assert replies[0].startswith("Thank you for calling Contoso Insurance"), replies
    assert any("hours" in u for u in users) and any("office" in u for u in users), users
    assert any(r.startswith("We're open Monday to Friday") for r in replies), replies
    assert any("Harbor Street" in r for r in replies), replies
    assert not any(m.get("interrupted") for m in entries if m["role"] == "assistant")
    return entries


async def test_inbound_voice_live_call_answers_two_turns(stack):
    report = await stack.call(TWO_TURNS)
    entries = _assert_two_turns(stack, report)
    # The known caller is greeted by name: the greeting is rendered with the caller's profile.
    assert "Jordan" in said(entries, "assistant")[0]
    record = stack.state.calls.get(report["call_id"])
    assert record.mode == "voice_live"
    assert stack.state.voice_live.active == 0  # the realtime connection was given back


OUTBOUND = """
name: outbound voice_live
direction: outbound
from: "+15550001000"
to: "+15557770042"
outbound: {answer_after_s: 0.3, outcome: answer}
timeout_s: 120
steps:
  - wait: {agent_done: 900, timeout_s: 40}
  - say: "What are your opening hours?"
  - wait: {agent_done: 900, timeout_s: 40}
  - say: "Where is your office?"
  - wait: {agent_done: 900, timeout_s: 40}
  - hangup
"""


async def test_outbound_call_placed_with_mode_voice_live_through_the_openai_sdk():
    # The default mode is media: the API's per-call mode picks voice_live; the openai SDK (GA dialect,
    # 24 kHz with soxr resampling both ways) talks to the local realtime server.
    async with voice_live_stack(acs_streaming_mode="media", voicelive_local_sdk="openai") as stack:
        report = await place_outbound(stack, OUTBOUND, "voice_live")
        _assert_two_turns(stack, report)
        assert stack.state.calls.get(report["call_id"]).mode == "voice_live"


ONE_TURN = """
name: one turn through the VoiceLive backend
direction: inbound
from: "+15551230005"
to: "+15550001000"
timeout_s: 120
steps:
  - wait: {agent_done: 900, timeout_s: 40}
  - say: "What are your opening hours?"
  - wait: {agent_done: 900, timeout_s: 40}
  - hangup
"""


async def test_the_voicelive_backend_as_configured_for_azure_against_a_realtime_server():
    """AZURE_VOICELIVE_ENDPOINT/API_KEY/MODEL/API_VERSION exactly as for the cloud service, pointed at a
    separately running local realtime server (the only VoiceLive this machine can reach)."""
    from callwright.config import load_settings
    from callwright.realtime import running_realtime_server

    server_settings = load_settings(
        stt_pool_warm=1, tts_pool_warm=1, stt_pool_size=2, tts_pool_size=2, realtime_api_key="vl-key"
    )
    async with running_realtime_server(server_settings) as (url, app):
        async with voice_live_stack(
            azure_voicelive_endpoint=url,
            azure_voicelive_api_key="vl-key",
            azure_voicelive_model="callwright-scenario:insurance",
            azure_voicelive_api_version="2025-10-01",
        ) as stack:
            assert stack.state.voice_live.kind == "voicelive" and stack.state.voice_live.local_url is None
            report = await stack.call(ONE_TURN)
            assert report["ok"], report.get("error")
            replies = said(history(stack, report["call_id"]), "assistant")
            assert any(r.startswith("We're open Monday to Friday") for r in replies), replies
            turns = [t for t in report["turns"] if t["response_latency_ms"] is not None]
            assert turns, report["turns"]
            print("response latency at the ear (ms):", [t["response_latency_ms"] for t in turns])
        assert not app.state.realtime.sessions
