"""A custom orchestrator: your own agent logic in place of the scenario agent or the LLM.

Run it::

    cd examples
    AGENT_ENGINE=parrot callwright serve --app custom_orchestrator.plugin:setup

An orchestrator serves one call (one instance per call, built by the registered builder) and implements
:class:`callwright.agents.base.Orchestrator`: ``greeting()`` and ``respond(turn)`` are async generators of
agent events — ``TextChunk`` (spoken as soon as it is yielded, so yield clause by clause), ``ToolInvoked``,
``Handoff``, ``Transfer``, ``HangUp`` (carried out after the audio before it has played). ``respond`` is
cancelled on barge-in (``CancelledError``), so keep state consistent at every ``yield``.
``expected_phrases()`` biases the recognizer toward what the caller will likely say next.

This one, the parrot, repeats what it heard: a handy stand-in to hear what the recognizer understood.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from callwright.agents.base import AgentEvent, CallInfo, HangUp, TextChunk, Turn
from callwright.agents.factory import OrchestratorRequest
from callwright.services import Services
from callwright.sessions.memo import MemoManager

GOODBYES = ("goodbye", "bye", "hang up")


class ParrotOrchestrator:
    def __init__(self, call: CallInfo, memo: MemoManager | None) -> None:
        self.call = call
        self.memo = memo  # the call's session: history, context (persisted by Callwright)
        self.turns = 0

    @property
    def active_agent(self) -> str:
        return "parrot"

    async def greeting(self) -> AsyncIterator[AgentEvent]:
        yield TextChunk("Hello, this is the parrot.")
        yield TextChunk("Say something and I will repeat it.")

    async def respond(self, turn: Turn) -> AsyncIterator[AgentEvent]:
        self.turns += 1
        text = turn.text.strip()
        # The orchestrator records the caller's turns; Callwright records the agent's replies as heard
        # (cut where a barge-in cut them), so the history matches the call.
        if self.memo is not None:
            self.memo.append_history("user", text, agent=self.active_agent, kind=turn.kind)
        if turn.kind == "dtmf":
            yield TextChunk("You pressed " + " ".join(text) + ".")
            return
        if any(word in text.lower() for word in GOODBYES):
            yield TextChunk("Goodbye!")
            yield HangUp("the caller said goodbye")
            return
        yield TextChunk(f"You said: {text}." if text else "I heard nothing.")

    def expected_phrases(self) -> Sequence[str]:
        return ("goodbye",)


def build_parrot(request: OrchestratorRequest) -> ParrotOrchestrator:
    # request also carries the settings, the loaded scenario, call control (hang up, transfer, DTMF)
    # and the app's LLM client, for orchestrators that need them.
    return ParrotOrchestrator(request.call, request.memo)


def setup(services: Services) -> None:
    services.orchestrators.register("parrot", build_parrot)
