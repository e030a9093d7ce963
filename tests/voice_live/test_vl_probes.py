"""Clicks, noise, a backchannel and the agent's own echo over a voice_live reply, through the service's VAD."""

from __future__ import annotations

from .conftest import history

FALSE_BARGE_INS = """
name: voice_live not interruptions
direction: inbound
from: "+15551230004"
to: "+15550001000"
timeout_s: 120
steps:
  - wait: {agent_done: 900, timeout_s: 40}
  - say: "What are your opening hours?"
  - barge_in: {at_ms: 800, of: next, timeout_s: 40, say: {click: true}}
  - barge_in: {at_ms: 2000, of: current, say: {noise: pink, ms: 400, db: -20}}
  - barge_in: {at_ms: 3600, of: current, say: {text: "uh-huh", probe: true}}
  - wait: {agent_done: 1200, timeout_s: 40}
  - hangup
"""


async def test_clicks_noise_and_a_backchannel_do_not_cut_the_reply(stack):
    report = await stack.call(FALSE_BARGE_INS)
    assert report["ok"], report.get("error")
    probes = report["false_barge_in_probes"]
    assert len(probes) == 3
    # The local server's VAD never fires on the click or the noise; on the "uh-huh" it sometimes does, and
    # the handler then holds the reply, hears a backchannel and resumes it: no StopAudio for any of them.
    assert [p["stopped"] for p in probes] == [False, False, False], probes
    entries = history(stack, report["call_id"])
    replies = [m for m in entries if m["role"] == "assistant"]
    assert replies[-1]["content"].startswith("We're open Monday to Friday")
    assert not any(m.get("interrupted") for m in replies)
    users = [m["content"].lower().strip(" .?") for m in entries if m["role"] == "user"]
    assert users == ["what are your opening hours"], users


ECHO = """
name: voice_live echo on the line
direction: inbound
from: "+15551230006"
to: "+15550001000"
timeout_s: 120
echo: {db: -15, delay_ms: 120}
steps:
  - wait: {agent_done: 900, timeout_s: 40}
  - say: "What are your opening hours?"
  - wait: {agent_done: 1200, timeout_s: 40}
  - say: "Where is your office?"
  - barge_in: {at_ms: 1200, of: next, timeout_s: 40, say: "Sorry, what time do you close?"}
  - wait: {agent_done: 1200, timeout_s: 40}
  - hangup
"""


async def test_the_agents_own_echo_through_the_services_vad(stack):
    report = await stack.call(ECHO)
    assert report["ok"], report.get("error")
    entries = history(stack, report["call_id"])
    replies = [m for m in entries if m["role"] == "assistant"]
    # The greeting and the first answer played whole over their own echo; only the real barge-in cut one.
    assert [bool(m.get("interrupted")) for m in replies] == [False, False, True, False], replies
