"""The insurance scenario in voice_live mode: DTMF authentication, the claim-status lookup through
realtime function calling (run by Callwright's tool registry), and a transfer to a person."""

from __future__ import annotations

from .conftest import history, said

CLAIM_THEN_PERSON = """
name: voice_live claim by keypad, then a person
direction: inbound
from: "+15551230001"
to: "+15550001000"
timeout_s: 150
steps:
  - wait: {agent_done: 900, timeout_s: 40}
  - say: "I want to check my claim status."
  - wait: {agent_done: 900, timeout_s: 40}
  - dtmf: {digits: "1234#", gap_ms: 150}
  - wait: {agent_done: 1200, timeout_s: 50}
  - say: "I'd like to speak to a person."
  - wait: {disconnected: true, timeout_s: 40}
"""


async def test_dtmf_authentication_claim_status_by_function_call_and_transfer(stack):
    report = await stack.call(CLAIM_THEN_PERSON)
    assert report["ok"], report.get("error")
    entries = history(stack, report["call_id"])
    users = [m for m in entries if m["role"] == "user"]
    assert "claim" in users[0]["content"]
    assert users[1]["content"] == "1234#" and users[1].get("kind") == "dtmf"
    # The realtime model asked for the tools; Callwright ran them against the scenario's fixture.
    tools = [m.get("name") for m in entries if m["role"] == "tool"]
    assert "verify_policy" in tools and "claim_status" in tools, tools
    answer = " ".join(said(entries, "assistant")).lower()
    assert "review" in answer, answer  # the claim status for policy 1234, read from the fixture
    record = stack.state.calls.get(report["call_id"])
    assert record.memo.get_context("policy_number") == "1234"
    # The agent's transfer became a real transfer, recorded by the emulator.
    assert "CallTransferAccepted" in report["events"], report["events"]
    [transfer] = stack.emulator.transfers
    assert "+15550009999" in str(transfer)
    assert "transfer_call" in tools
    [summary] = [m for m in record.memo.metrics if m["name"] == "voice_live"]
    assert not any(k.startswith("error:") for k in summary["events"]), summary
