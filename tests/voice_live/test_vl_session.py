"""The realtime session built from the call's scenario agent: instructions rendered with the caller's
profile, the agent's tools as function tools, formats per dialect, and a handoff's new session."""

from __future__ import annotations

from callwright.agents.base import CallInfo
from callwright.agents.factory import build_orchestrator, load_scenario
from callwright.config import load_settings
from callwright.sessions.memo import MemoManager
from callwright.sessions.store import InMemorySessionStore
from callwright.voice.realtime.backends import backend_spec
from callwright.voice.realtime.session import AgentView, beta_name, greeting_request, session_update


def _agent(sdk: str = "voicelive", **overrides):
    settings = load_settings(azure_voicelive_endpoint="https://vl.example.com", azure_voicelive_api_key="k",
                             **overrides)  # fmt: skip
    if sdk == "openai":
        settings = load_settings(voicelive_backend="openai", openai_api_key="k", **overrides)
    scenario = load_scenario(settings)
    memo = MemoManager("call-1", InMemorySessionStore(ttl_seconds=60))
    memo.set_context("profile", {"first_name": "Jordan"})
    call = CallInfo(call_connection_id="call-1", caller="+15551230001", callee="+15550001000", direction="inbound")
    orch = build_orchestrator(settings, scenario, call, memo)
    spec = backend_spec(settings)
    return settings, spec, AgentView(orch, spec)


def test_voicelive_session_for_the_front_desk_at_16_khz():
    settings, spec, agent = _agent()
    session = session_update(settings, spec, agent, first=True)["session"]
    assert session["input_audio_sampling_rate"] == 16_000 and session["output_audio_format"] == "pcm16_16000hz"
    assert session["turn_detection"]["type"] == "server_vad"
    assert session["input_audio_transcription"]["model"] == "azure-speech"
    assert session["voice"] == {"type": "azure-standard", "name": "en-US-AvaMultilingualNeural"}
    assert "Jordan" in session["instructions"]  # rendered with the caller's profile
    names = [t["name"] for t in session["tools"]]
    assert {"verify_policy", "claim_status", "transfer_call", "hang_up", "handoff_to_claims"} <= set(names)
    greeting = greeting_request(spec, agent.greeting())
    text = greeting["response"]["pre_generated_assistant_message"]["content"][0]["text"]
    assert text.startswith("Thank you for calling Contoso Insurance, hello Jordan")


def test_a_handoff_sends_the_new_agents_instructions_and_tools():
    settings, spec, agent = _agent()
    agent.orch.switch_agent("claims")
    session = session_update(settings, spec, agent, first=False)["session"]
    assert "claims specialist" in session["instructions"]
    assert session["voice"]["name"] == "en-US-AndrewMultilingualNeural"
    names = [t["name"] for t in session["tools"]]
    assert "account_balance" in names and "handoff_to_front_desk" in names and "verify_policy" not in names
    assert "input_audio_sampling_rate" not in session  # formats and turn detection are set once


def test_openai_ga_session_is_24_khz_with_an_openai_voice():
    settings, spec, agent = _agent("openai", voicelive_vad_silence_ms=400)
    session = session_update(settings, spec, agent, first=True)["session"]
    assert session["type"] == "realtime"
    assert session["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24_000}
    assert session["audio"]["output"]["voice"] == "marin"  # Azure voice names mean nothing to OpenAI
    assert session["audio"]["input"]["turn_detection"]["silence_duration_ms"] == 400
    assert beta_name("response.output_audio.delta") == "response.audio.delta"
