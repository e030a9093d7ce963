"""Each plug-in in examples/ through a whole emulated call: a scripted phone, the emulator, the server
with the plug-in loaded from CALLWRIGHT_PLUGINS, real sockets."""

from __future__ import annotations

import pytest

from .conftest import EXAMPLES, history, plugin_stack, said

# Whole calls with a server start each: generous on a loaded two-core machine (one call takes ~30 s there).
pytestmark = pytest.mark.timeout(300)

WEATHER_CALL = """
name: weather
direction: inbound
from: "+15551230101"
to: "+15550001000"
timeout_s: 120
steps:
  - wait: {agent_done: 700, timeout_s: 30}
  - say: "What is the weather like in London?"
  - wait: {agent_done: 700, timeout_s: 30}
  - hangup
"""


async def test_custom_tool_answers_from_the_plugins_toolset(examples_on_path) -> None:
    async with plugin_stack(
        callwright_plugins="custom_tool.plugin:setup",
        scenarios_dir=EXAMPLES / "custom_tool" / "scenarios",
        scenario="weather_desk",
    ) as stack:
        assert "weather" in stack.state.services.toolsets
        report = await stack.call(WEATHER_CALL)
        assert report["ok"], report.get("error")
        record = stack.state.calls.get(report["call_id"])
        assert record.memo.get_context("last_forecast_city") == "London"  # the tool ran, with its context
        replies = said(history(stack, report["call_id"]), "assistant")
        assert "Harbor Weather Line" in replies[0]
        assert "light rain" in " ".join(replies[1:])  # the tool's result, spoken through the template


DTMF_CALL = """
name: keys
direction: inbound
from: "+15551230102"
to: "+15550001000"
timeout_s: 120
steps:
  - wait: {agent_done: 700, timeout_s: 30}
  - say: "I want to check my claim status."
  - wait: {agent_done: 700, timeout_s: 30}
  - dtmf: {digits: "1234#", gap_ms: 150}
  - wait: {agent_done: 900, timeout_s: 40}
  - hangup
"""


async def test_custom_event_handler_runs_on_dtmf_tone_events(examples_on_path) -> None:
    async with plugin_stack(callwright_plugins="custom_handler.plugin:setup") as stack:
        from custom_handler.plugin import my_custom_handler

        from callwright.acs.events import ACSEventTypes

        assert my_custom_handler in stack.state.processor.handlers_for(ACSEventTypes.DTMF_TONE_RECEIVED)
        report = await stack.call(DTMF_CALL)
        assert report["ok"], report.get("error")
        assert "ContinuousDtmfRecognitionToneReceived" in report["events"]
        record = stack.state.calls.get(report["call_id"])
        assert record.memo.get_context("custom_field") == "value"
        # With tone events on, each key still reaches the agent once: the policy is verified, not
        # "11223344##", and the claims specialist answers.
        users = [m for m in history(stack, report["call_id"]) if m["role"] == "user"]
        assert [m["content"] for m in users if m.get("kind") == "dtmf"] == ["1234#"]
        assert record.memo.get_context("active_agent") == "claims"


PARROT_CALL = """
name: parrot
direction: inbound
from: "+15551230103"
to: "+15550001000"
timeout_s: 120
steps:
  - wait: {agent_done: 700, timeout_s: 30}
  - say: "What are your opening hours?"
  - wait: {agent_done: 700, timeout_s: 30}
  - say: "Goodbye."
  - wait: {disconnected: true, timeout_s: 40}
"""


async def test_custom_orchestrator_serves_the_call(examples_on_path) -> None:
    async with plugin_stack(
        callwright_plugins="custom_orchestrator.plugin:setup", unchecked={"agent_engine": "parrot"}
    ) as stack:
        report = await stack.call(PARROT_CALL)
        assert report["ok"], report.get("error")
        entries = history(stack, report["call_id"])
        replies = said(entries, "assistant")
        assert replies[0].startswith("Hello, this is the parrot.")
        assert "you said" in replies[1].lower() and "opening hours" in replies[1].lower()
        assert {m.get("agent") for m in entries if m["role"] == "assistant"} == {"parrot"}
        assert said(entries, "user")[0].lower().startswith("what are your opening hours")
        assert "CallDisconnected" in report["events"]  # the parrot hung up after its goodbye
