"""Goal-changing requests win over slot filling: a caller asked for a policy number may ask for a person."""

from __future__ import annotations

import pytest
from agent_helpers import collect, say, spoken

from callwright.agents.base import HangUp, ToolInvoked, Transfer
from callwright.agents.factory import build_orchestrator
from callwright.agents.scenario import load_scenario


@pytest.fixture
def orch(settings, insurance, call, memo):
    return build_orchestrator(settings, insurance, call, memo)


async def _asked_for_policy(orch) -> None:
    assert "policy number" in spoken(await say(orch, "I want to check my claim status"))


@pytest.mark.parametrize(
    "utterance",
    [
        "Sorry, can I talk to a person instead?",
        "saturday can i talk to a person an status",  # the STT output seen in a real emulated call
        "no just let me speak to an agent",
        "operator",
        # a request buried in a long sentence sinks a whole-utterance match; it is spotted inside
        "sorry i do not have the number with me right now can i talk to a person",
    ],
)
async def test_person_request_while_filling_a_slot_transfers(orch, utterance):
    await _asked_for_policy(orch)
    events = await say(orch, utterance)
    assert isinstance(events[-1], Transfer)
    assert events[-1].target == "+15550009999"
    assert "didn't get that" not in spoken(events)
    # the abandoned slot is gone: the next turn is a fresh request, not a policy number
    assert "Monday to Friday" in spoken(await say(orch, "what are your opening hours"))


@pytest.mark.parametrize("utterance", ["okay bye", "thanks goodbye", "i don't know it bye"])
async def test_goodbye_while_filling_a_slot_hangs_up(orch, utterance):
    await _asked_for_policy(orch)
    events = await say(orch, utterance)
    assert isinstance(events[-1], HangUp)
    assert "goodbye" in spoken(events).lower()


async def test_strong_other_intent_while_filling_a_slot_answers_it(orch):
    await _asked_for_policy(orch)
    assert "Monday to Friday" in spoken(await say(orch, "what are your opening hours"))


async def test_digits_still_fill_the_slot(orch):
    await _asked_for_policy(orch)
    events = await say(orch, "one two three four")
    assert any(isinstance(e, ToolInvoked) and e.arguments == {"policy_number": "1234"} for e in events)
    assert not any(isinstance(e, (Transfer, HangUp)) for e in events)


async def test_noise_while_filling_a_slot_still_reprompts(orch):
    await _asked_for_policy(orch)
    events = await say(orch, "by the way")
    assert "key in your policy number" in spoken(events)
    assert not any(isinstance(e, (Transfer, HangUp)) for e in events)


async def test_person_request_wrapped_in_noise_without_a_slot(orch):
    events = await say(orch, "um sorry can i talk to a person instead")
    assert isinstance(events[-1], Transfer)


async def test_clinic_person_request_while_choosing_a_doctor(settings, call, memo):
    clinic = load_scenario(settings.model_copy(update={"scenario": "clinic"}))
    orch = build_orchestrator(settings, clinic, call, memo)
    await collect(orch.greeting())
    assert "which doctor" in spoken(await say(orch, "I'd like to book an appointment")).lower()
    events = await say(orch, "actually can i talk to a person")
    assert isinstance(events[-1], Transfer)
    assert events[-1].target == "+15550004444"
