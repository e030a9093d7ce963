"""What both orchestrators share: the active agent, template context, greeting, handoff, history."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

from callwright.agents.base import AgentEvent, CallInfo, Handoff, HangUp, TextChunk, Transfer, Turn
from callwright.agents.chunker import split_clauses
from callwright.agents.context import CallControl, ToolContext
from callwright.agents.models import AgentSpec
from callwright.agents.scenario import Scenario

log = logging.getLogger("callwright.agents")

#: What the agent says when a call's media comes back mid-conversation (a replica died or drained, or the
#: socket dropped), before repeating its last words.
RESUME_LINE = "Sorry, I lost you for a second."
DIGIT_WORDS = ("zero", "oh", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
YES_NO_WORDS = ("yes", "no", "yeah", "nope", "correct", "that's right")


class AgentRuntime:
    """Per-call state common to the scenario agent and the LLM orchestrator."""

    def __init__(
        self,
        scenario: Scenario,
        call: CallInfo,
        memo: Any,
        *,
        call_control: CallControl | None = None,
    ) -> None:
        self.scenario = scenario
        self.call = call
        self.memo = memo
        resumed = memo.get_context("active_agent") if memo is not None else None
        self._active = resumed if resumed in scenario.agents else scenario.start_agent
        self.tool_context = ToolContext(
            memo=memo, fixture=scenario.fixture, call_control=call_control, human_number=scenario.human_number
        )

    # -- Orchestrator protocol members ---------------------------------------------------------------
    @property
    def active_agent(self) -> str:
        return self._active

    @property
    def agent(self) -> AgentSpec:
        return self.scenario.agents[self._active]

    @property
    def active_voice(self) -> str | None:
        """The active agent's TTS voice, if its file names one (optional member for handlers)."""
        return self.agent.voice

    async def greeting(self) -> AsyncIterator[AgentEvent]:
        self._ensure_profile()
        resume = self.resume_line()
        if resume is not None:
            # Already rendered when first said: split, not rendered again (a "{{" in it must stay text).
            for clause in split_clauses(resume):
                yield TextChunk(clause)
            return
        source = self.agent.greeting or "Hello, how can I help you today?"
        for chunk in self.say(source, {}):
            yield chunk

    def resume_line(self) -> str | None:
        """When the agent has spoken on this call already (its media handler starts again — another
        replica took the call over, or the socket came back): the apology and the agent's last words
        again (in full when the caller heard them cut off), instead of a second greeting. None on a new
        call."""
        if self.memo is None:
            return None
        text = last_agent_words(self.memo.history)
        if text is None:
            return None
        log.info("resuming the conversation on a new media stream [call=%s]", self.call.call_connection_id)
        return f"{RESUME_LINE} {text}".strip()

    # -- helpers -------------------------------------------------------------------------------------
    def _ensure_profile(self) -> None:
        # The CallConnected handler normally stores the profile; loading it here too keeps greetings
        # personal when the orchestrator is used on its own (tests, the browser channel).
        if self.memo is None or self.memo.get_context("profile") is not None:
            return
        caller = self.call.caller or self.memo.get_context("caller")
        profile = self.scenario.load_caller_profile(caller)
        if profile:
            self.memo.set_context("profile", profile)

    def template_context(self, extra: dict[str, Any]) -> dict[str, Any]:
        context = dict(self.memo.context) if self.memo is not None else {}
        profile = context.get("profile") or self.call.context.get("profile") or {}
        return {
            "caller": self.call.caller,
            "callee": self.call.callee,
            "direction": self.call.direction,
            "profile": profile,
            "context": context,
            "vars": self.scenario.spec.vars,
            "agent": self._active,
            **extra,
        }

    def render(self, source: str, extra: dict[str, Any]) -> str:
        try:
            return self.scenario.render(source, self.template_context(extra))
        except Exception:  # a template that fails at render time must not silence the call
            log.exception("template failed to render for agent %s", self._active)
            return ""

    def say(self, source: str, extra: dict[str, Any]) -> Iterator[TextChunk]:
        for clause in split_clauses(self.render(source, extra)):
            yield TextChunk(clause)

    def record_user_turn(self, turn: Turn) -> None:
        if self.memo is None:
            return
        if turn.kind == "dtmf":
            self.memo.append_history("user", turn.text, agent=self._active, kind="dtmf")
        else:
            self.memo.append_history("user", turn.text, agent=self._active)

    def switch_agent(self, target: str) -> list[AgentEvent]:
        """Make ``target`` active; returns the Handoff event and, when announced, its announce line."""
        previous, self._active = self._active, target
        if self.memo is not None:
            self.memo.set_context("active_agent", target)
        events: list[AgentEvent] = [Handoff(previous, target)]
        agent = self.scenario.agents[target]
        if self.scenario.handoff_style == "announced" and agent.announce:
            events.extend(self.say(agent.announce, {}))
        log.info("handoff %s -> %s [call=%s]", previous, target, self.call.call_connection_id)
        return events

    def take_pending_action(self) -> Transfer | HangUp | None:
        action, self.tool_context.pending_action = self.tool_context.pending_action, None
        if action is None:
            return None
        if action.kind == "transfer" and action.target:
            return Transfer(action.target, action.reason)
        return HangUp(action.reason)

    def base_phrases(self) -> list[str]:
        phrases: list[str] = []
        for intent in self.scenario.intents_for(self._active):
            phrases.extend(intent.examples)
        return phrases


def last_agent_words(history: list[dict[str, Any]]) -> str | None:
    """The agent's last message of a conversation (its full text if it was interrupted), without an earlier
    resume line's apology; None when the agent has not spoken. Server messages (agent "system": the
    shutdown goodbye, a speech-input apology) are not the agent's words."""
    for message in reversed(history):
        if not isinstance(message, dict) or message.get("role") != "assistant" or message.get("agent") == "system":
            continue
        text = message.get("full_text") if message.get("interrupted") else None
        text = str(text or message.get("content") or "").strip()
        while text.startswith(RESUME_LINE):
            text = text[len(RESUME_LINE) :].strip()
        return text
    return None
