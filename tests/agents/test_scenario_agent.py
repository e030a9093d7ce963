"""The embedded scenario agent through the Orchestrator interface, on the shipped insurance scenario."""

from __future__ import annotations

import pytest
from agent_helpers import collect, say, spoken

from callwright.agents.base import Handoff, HangUp, Orchestrator, TextChunk, ToolInvoked, Transfer
from callwright.agents.factory import build_orchestrator


@pytest.fixture
def orch(settings, insurance, call, memo):
    return build_orchestrator(settings, insurance, call, memo)


async def test_greeting_is_personal_and_clause_chunked(orch):
    assert isinstance(orch, Orchestrator)
    events = await collect(orch.greeting())
    assert all(isinstance(e, TextChunk) for e in events)
    assert len(events) >= 3  # several clauses, so streaming TTS can start early
    text = spoken(events)
    assert text.startswith("Thank you for calling Contoso Insurance")
    assert "Jordan" in text  # profile loaded from the fixture by caller number


@pytest.mark.parametrize(
    "utterance",
    ["what are your opening hours", "what are you opening ours", "when do you open", "what time you close"],
)
async def test_hours_faq_tolerates_stt_errors(orch, utterance):
    text = spoken(await say(orch, utterance))
    assert "Monday to Friday" in text


@pytest.mark.parametrize("utterance", ["where is your office", "were is you office", "wear is your office"])
async def test_address_faq_tolerates_stt_errors(orch, utterance):
    assert "Harbor Street" in spoken(await say(orch, utterance))


async def test_user_turns_go_to_history_but_assistant_text_does_not(orch, memo):
    await say(orch, "what are your opening hours")
    roles = [m["role"] for m in memo.get_history()]
    assert roles == ["user"]
    assert memo.get_history()[0]["agent"] == "front_desk"


async def test_claim_status_with_dtmf_authentication_hands_off_to_claims(orch, memo):
    asked = spoken(await say(orch, "I want to check my claim status"))
    assert "policy number" in asked
    events = await say(orch, "1234#", kind="dtmf")
    tools = [e for e in events if isinstance(e, ToolInvoked)]
    assert [t.name for t in tools] == ["verify_policy", "claim_status"]
    assert tools[0].arguments == {"policy_number": "1234"}
    handoffs = [e for e in events if isinstance(e, Handoff)]
    assert handoffs == [Handoff("front_desk", "claims")]
    after = events[events.index(handoffs[0]) + 1 :]
    assert spoken(after).startswith("Hi, this is Sam from the claims team")
    assert "under review" in spoken(after)  # from the fixture, through the claim_status tool
    assert orch.active_agent == "claims"
    assert memo.get_context("authenticated") is True


@pytest.mark.parametrize("digits", ["one two three four", "twelve thirty four", "my policy number is 1 2 3 4"])
async def test_policy_number_spoken(orch, digits):
    await say(orch, "what is the status of my claim")
    events = await say(orch, digits)
    assert any(isinstance(e, Handoff) and e.to_agent == "claims" for e in events)


async def test_policy_number_in_the_first_sentence(orch):
    events = await say(orch, "my policy number is one two three four")
    assert any(isinstance(e, ToolInvoked) and e.arguments == {"policy_number": "1234"} for e in events)
    assert orch.active_agent == "claims"


async def test_unknown_policy_asks_again(orch):
    await say(orch, "I want to check my claim status")
    events = await say(orch, "9999#", kind="dtmf")
    text = spoken(events)
    assert "couldn't find a policy" in text and "9 9 9 9" in text
    assert "policy number" in text.split("9 9 9 9", 1)[1]  # asks again
    assert orch.active_agent == "front_desk"
    events = await say(orch, "5678#", kind="dtmf")
    assert "don't see any open claims" in spoken(events)


async def test_transfer_on_request(orch):
    events = await say(orch, "I'd like to speak to a person")
    assert isinstance(events[-1], Transfer)
    assert events[-1].target == "+15550009999"
    assert "please hold" in spoken(events)


async def test_goodbye_hangs_up_after_the_goodbye_line(orch):
    events = await say(orch, "that's all thank you, goodbye")
    assert isinstance(events[-1], HangUp)
    assert "goodbye" in spoken(events).lower()


async def test_reprompt_then_offer_a_human_then_transfer(orch):
    first = spoken(await say(orch, "purple elephants dancing"))
    assert "didn't catch that" in first
    second = spoken(await say(orch, "banana telescope"))
    assert "didn't get that" in second
    third = spoken(await say(orch, "xylophone marmalade"))
    assert "connect you to a person" in third
    events = await say(orch, "yes please")
    assert isinstance(events[-1], Transfer)


async def test_declining_the_human_resets(orch):
    for junk in ("purple elephants", "banana telescope", "xylophone marmalade"):
        await say(orch, junk)
    events = await say(orch, "no")
    assert "try again" in spoken(events)
    assert "Monday to Friday" in spoken(await say(orch, "what are your opening hours"))


async def test_expected_phrases_follow_the_active_agent(orch):
    before = set(orch.expected_phrases())
    assert "what are your opening hours" in before and "one" in before and "yes" in before
    await say(orch, "my policy number is one two three four")
    after = set(orch.expected_phrases())
    assert "how much do I owe" in after and "how much do I owe" not in before
    assert "I'd like to speak to a person" in after  # scenario-wide intents stay


async def test_claims_agent_tools_and_back_to_front_desk(orch):
    await say(orch, "my policy number is one two three four")
    assert "125.50 dollars" in spoken(await say(orch, "how much do I owe"))
    events = await say(orch, "I have another question")
    assert Handoff("claims", "front_desk") in events
    assert orch.active_agent == "front_desk"


async def test_silent_handoff_has_no_announce(settings, insurance, call, memo):
    insurance.handoff_style = "silent"
    orch = build_orchestrator(settings, insurance, call, memo)
    events = await say(orch, "my policy number is one two three four")
    assert "Sam from the claims team" not in spoken(events)
    assert "under review" in spoken(events)


async def test_clinic_scenario_books_with_choice_slots(settings, call, memo):
    from callwright.agents.scenario import load_scenario

    clinic = load_scenario(settings.model_copy(update={"scenario": "clinic"}))
    orch = build_orchestrator(settings, clinic, call, memo)
    assert "Riverside" in spoken(await collect(orch.greeting()))
    assert "which doctor" in spoken(await say(orch, "I'd like to book an appointment")).lower()
    assert "day" in spoken(await say(orch, "doctor patel please")).lower()
    events = await say(orch, "tuesday")
    assert any(isinstance(e, ToolInvoked) and e.name == "book_appointment" for e in events)
    assert "Tuesday" in spoken(events)
