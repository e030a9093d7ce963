"""The embedded scenario agent: intents, slots, tools and handoffs from YAML, no LLM.

Each turn is planned first (intent match, slot filling, tool calls, state changes on a copy of the
state) and the events are yielded afterwards. A barge-in cancels the generator while it yields, when
the plan is already committed: what the caller asked for has been done, only the telling is cut short,
which is what a human would do too. Slot and failure state is committed only after planning, so a cancel
during a tool call leaves it as it was; a handoff is the exception (the agent switches as it is planned,
so the on_enter step renders with the new agent) — handlers read ``active_agent`` after every turn.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from rapidfuzz import fuzz

from callwright.agents.base import AgentEvent, Expectation, HangUp, ToolInvoked, Transfer, Turn
from callwright.agents.matching import (
    IntentMatcher,
    content_words,
    match_choice,
    parse_digits,
    parse_yes_no,
    phonetic,
)
from callwright.agents.models import ActionSpec, SlotSpec
from callwright.agents.runtime import DIGIT_WORDS, YES_NO_WORDS, AgentRuntime

log = logging.getLogger("callwright.agents.scenario")

# A topic change while a slot is pending must be a clear match, or digits like "for two" would be
# mistaken for new requests.
_SWITCH_MARGIN = 8
# Goal-changing requests ("can I talk to a person", "goodbye") are spotted anywhere in the utterance,
# because STT wraps them in noise ("saturday can i talk to a person an status") that sinks a
# whole-utterance match; the bar is high since they override a pending slot.
_ESCAPE_SCORE = 85.0


@dataclass
class _Pending:
    intent: str
    action: ActionSpec
    slots: dict[str, str] = field(default_factory=dict)


@dataclass
class _State:
    agent: str
    pending: _Pending | None = None
    failures: int = 0
    offering_human: bool = False


class ScenarioOrchestrator(AgentRuntime):
    """The offline default :class:`~callwright.agents.base.Orchestrator`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._matchers: dict[str, IntentMatcher] = {}
        self._escapes: dict[str, list[tuple[str, list[str], str]]] = {}
        self._pending: _Pending | None = None
        self._failures = 0
        self._offering_human = False

    # -- Orchestrator ------------------------------------------------------------------------------
    async def respond(self, turn: Turn) -> AsyncIterator[AgentEvent]:
        self.record_user_turn(turn)
        state = _State(self._active, copy.deepcopy(self._pending), self._failures, self._offering_human)
        events: list[AgentEvent] = []
        await self._plan(turn, state, events)
        # commit: nothing above touched self except through switch_agent (applied below, in order)
        self._pending, self._failures, self._offering_human = state.pending, state.failures, state.offering_human
        for event in events:
            yield event

    def expected_phrases(self) -> Sequence[str]:
        phrases = self.base_phrases()
        pending = self._pending
        if pending is not None:
            slot = self._next_slot(pending)
            if slot is not None and slot.type == "choice":
                phrases.extend(slot.options)
        phrases.extend(DIGIT_WORDS)
        phrases.extend(YES_NO_WORDS)
        return list(dict.fromkeys(phrases))

    def expecting(self) -> Expectation | None:
        """The slot being filled (or the yes/no of an offer of a person), for end-of-turn detection."""
        if self._offering_human:
            return Expectation("yes_no")
        pending = self._pending
        slot = self._next_slot(pending) if pending is not None else None
        if slot is None:
            return None
        if slot.type == "digits":
            return Expectation("digits", slot.min_digits, slot.max_digits)
        return Expectation(slot.type)

    # -- planning ----------------------------------------------------------------------------------
    def _matcher(self, agent: str) -> IntentMatcher:
        if agent not in self._matchers:
            self._matchers[agent] = IntentMatcher({i.name: i.examples for i in self.scenario.intents_for(agent)})
        return self._matchers[agent]

    def _intent(self, agent: str, name: str) -> ActionSpec:
        return next(i for i in self.scenario.intents_for(agent) if i.name == name)

    async def _plan(self, turn: Turn, state: _State, events: list[AgentEvent]) -> None:
        text = turn.text.strip()
        if state.offering_human:
            answer = _yes_no(turn)
            if answer is True:
                return self._transfer(None, "caller accepted a person after failed attempts", state, events)
            if answer is False:
                state.offering_human, state.failures = False, 0
                events.extend(self.say("Okay, let's try again. What can I help you with?", {}))
                return None
            state.offering_human = False  # anything else: treat it as a fresh request below

        if state.pending is not None:
            slot = self._next_slot(state.pending)
            assert slot is not None
            # Asking for a person or hanging up beats a slot reading of the same words ("no, let me
            # talk to a person" is not a "no", "to a person" is not the digit 2).
            escape = self._escape(turn, state.agent)
            if escape is not None:
                state.pending = None
                return await self._start(escape, turn, state, events)
            value = _extract(slot, turn, strict=False)
            if value is not None:
                state.pending.slots[slot.name] = value
                pending, state.pending = state.pending, None
                return await self._run(pending, state, events)
            switch = self._match(turn, state) if turn.kind == "speech" else None
            if switch is not None and switch[0] != state.pending.intent:
                state.pending = None
                return await self._start(switch[0], turn, state, events)
            return self._not_understood(state, events, slot)

        if turn.kind == "dtmf":
            dtmf_intent = self.scenario.agents[state.agent].dtmf_intent
            if dtmf_intent:
                return await self._start(dtmf_intent, turn, state, events)
            return self._not_understood(state, events, None)

        match = self._match(turn, state) if text else None
        intent = match[0] if match is not None else self._escape(turn, state.agent)
        if intent is None:
            return self._not_understood(state, events, None)
        return await self._start(intent, turn, state, events)

    def _match(self, turn: Turn, state: _State) -> tuple[str, float] | None:
        matcher = self._matcher(state.agent)
        best = matcher.best(turn.text)
        if best is None:
            return None
        if state.pending is not None and best.score < matcher.threshold + _SWITCH_MARGIN:
            return None
        return best.intent, best.score

    def _escape(self, turn: Turn, agent: str) -> str | None:
        """A transfer or hang-up intent whose example appears (fuzzily) inside the utterance."""
        if turn.kind != "speech":
            return None
        words = content_words(turn.text)
        if not words:
            return None
        if agent not in self._escapes:
            self._escapes[agent] = [
                (i.name, content_words(ex), phonetic(content_words(ex)))
                for i in self.scenario.intents_for(agent)
                if i.action in ("transfer", "hangup")
                for ex in i.examples
            ]
        best: tuple[float, str] | None = None
        for name, ex_words, ex_ph in self._escapes[agent]:
            k = len(ex_words)
            if k == 1 and len(words) > 2:
                # One fuzzy word ("bye", "operator") inside a longer request is weak evidence: a garbled
                # name or number turned into "goodbye" must not end the call.
                continue
            # windows the example's length (or one longer, for a stray word inside the request)
            for size in {min(k, len(words)), min(k + 1, len(words))}:
                for start in range(len(words) - size + 1):
                    window = words[start : start + size]
                    lexical = fuzz.ratio(" ".join(window), " ".join(ex_words))
                    sound = fuzz.ratio(phonetic(window), ex_ph) * 0.95 if len(ex_ph) >= 4 else 0.0
                    score = max(lexical, sound)
                    if score >= _ESCAPE_SCORE and (best is None or score > best[0]):
                        best = (score, name)
        return best[1] if best is not None else None

    async def _start(self, intent: str, turn: Turn, state: _State, events: list[AgentEvent]) -> None:
        action = self._intent(state.agent, intent)
        pending = _Pending(intent, action)
        # Slots can be filled by the very utterance that triggered the intent ("my policy number is
        # one two three four") or by the keys that started it.
        for slot in action.slots:
            value = _extract(slot, turn, strict=True)
            if value is not None:
                pending.slots[slot.name] = value
                break
        log.info("intent %s (agent %s) [call=%s]", intent, state.agent, self.call.call_connection_id)
        await self._run(pending, state, events)

    async def _run(self, pending: _Pending, state: _State, events: list[AgentEvent]) -> None:
        action = pending.action
        slot = self._next_slot(pending)
        if slot is not None:
            state.pending = pending
            events.extend(self.say(slot.prompt, {"slots": pending.slots}))
            return
        values: dict[str, Any] = {"slots": pending.slots, "result": {}}
        if action.tool is not None:
            args = {k: self.render(v, values) for k, v in action.tool.args.items()}
            started = time.monotonic()
            result = await self.scenario.registry.call(action.tool.name, args, self.tool_context)
            events.append(ToolInvoked(action.tool.name, args, result, started, time.monotonic()))
            values["result"] = result
            failed = isinstance(result, dict) and "error" in result
            if not failed and action.tool.fail_when:
                failed = bool(self.scenario.evaluate(action.tool.fail_when, self.template_context(values)))
            if failed:
                state.failures += 1
                if action.tool.fail_say:
                    events.extend(self.say(action.tool.fail_say, values))
                retry = action.tool.retry_slot
                if retry and state.failures < self.scenario.agents[state.agent].max_failures:
                    pending.slots.pop(retry, None)
                    state.pending = pending
                    slot = next(s for s in action.slots if s.name == retry)
                    events.extend(self.say(slot.reprompt or slot.prompt, values))
                    return
                return self._offer_human(state, events)
        state.failures = 0
        if self.memo is not None:
            for key, source in action.set_context.items():
                self.memo.set_context(key, self.render(source, values))
        if action.say:
            events.extend(self.say(action.say, values))
        pending_action = self.take_pending_action()
        if pending_action is not None:
            events.append(pending_action)
            return
        if action.handoff and action.handoff != state.agent:
            # the runtime's active agent changes now so rendering below uses the new agent
            events.extend(self.switch_agent(action.handoff))
            state.agent = action.handoff
            on_enter = self.scenario.agents[state.agent].on_enter
            if on_enter is not None:
                await self._run(_Pending("on_enter", on_enter), state, events)
            return
        if action.action == "transfer":
            return self._transfer(action.transfer_to, "caller asked for a person", state, events, spoken=True)
        if action.action == "hangup":
            events.append(HangUp("caller said goodbye"))

    def _transfer(
        self, target: str | None, reason: str, state: _State, events: list[AgentEvent], *, spoken: bool = False
    ) -> None:
        number = target or self.scenario.human_number
        if not number:
            events.extend(
                self.say(
                    "I'm sorry, there's no one available to take your call right now. "
                    "Is there anything else I can help with?",
                    {},
                )
            )
            return
        if not spoken:
            events.extend(self.say("Of course. I'm connecting you to one of our team now, please hold.", {}))
        state.offering_human = False
        events.append(Transfer(number, reason))

    def _not_understood(self, state: _State, events: list[AgentEvent], slot: SlotSpec | None) -> None:
        state.failures += 1
        agent = self.scenario.agents[state.agent]
        if state.failures >= agent.max_failures:
            return self._offer_human(state, events)
        if slot is not None:
            events.extend(self.say(slot.reprompt or slot.prompt, {"slots": {}}))
            return
        lines = agent.reprompts or ["Sorry, I didn't catch that. Could you say it again?"]
        events.extend(self.say(lines[min(state.failures, len(lines)) - 1], {}))

    def _offer_human(self, state: _State, events: list[AgentEvent]) -> None:
        agent = self.scenario.agents[state.agent]
        if not self.scenario.human_number:
            events.extend(self.say(agent.reprompts[-1] if agent.reprompts else "Sorry, I didn't get that.", {}))
            return
        state.pending = None
        state.offering_human = True
        events.extend(self.say(agent.offer_human, {}))

    @staticmethod
    def _next_slot(pending: _Pending) -> SlotSpec | None:
        return next((s for s in pending.action.slots if s.name not in pending.slots), None)


def _yes_no(turn: Turn) -> bool | None:
    if turn.kind == "dtmf":
        keys = turn.text.strip("#* ")
        return {"1": True, "2": False}.get(keys[:1])
    return parse_yes_no(turn.text)


def _extract(slot: SlotSpec, turn: Turn, *, strict: bool) -> str | None:
    """A slot value from the turn, or None. ``strict`` is used when the turn's purpose was another."""
    if slot.type == "digits":
        digits = parse_digits(turn.text, strict=strict and turn.kind == "speech")
        if digits and slot.min_digits <= len(digits) <= slot.max_digits:
            return digits
        return None
    if turn.kind == "dtmf":
        if slot.type == "yes_no":
            answer = _yes_no(turn)
            return None if answer is None else ("yes" if answer else "no")
        return None
    if slot.type == "yes_no":
        if strict:
            return None
        answer = parse_yes_no(turn.text)
        return None if answer is None else ("yes" if answer else "no")
    if slot.type == "choice":
        return match_choice(turn.text, slot.options)
    text = turn.text.strip()
    return None if strict or not text else text
