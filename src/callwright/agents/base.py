"""The one interface every media handler uses to talk to an agent brain.

A handler feeds the orchestrator a :class:`Turn` (what the caller said or keyed) and consumes the async
stream of :data:`AgentEvent` it yields: speakable text chunks as soon as they exist, and actions
(handoff, transfer, hang-up) that the handler carries out after the audio before them has played.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class Turn:
    """One caller turn. ``kind='dtmf'`` carries the keyed digits in ``text`` (e.g. '1234#')."""

    text: str
    kind: Literal["speech", "dtmf"] = "speech"
    confidence: float | None = None


@dataclass(frozen=True, slots=True)
class TextChunk:
    """A clause-sized piece of the reply, ready for TTS."""

    text: str


@dataclass(frozen=True, slots=True)
class ToolInvoked:
    name: str
    arguments: dict[str, Any]
    result: Any = None
    # time.monotonic() around the tool's run, for its trace span and the post-call record
    started: float | None = None
    ended: float | None = None

    @property
    def failed(self) -> bool:
        return isinstance(self.result, dict) and "error" in self.result


@dataclass(frozen=True, slots=True)
class Handoff:
    """The active agent changed; the handler re-biases the recognizer with the new expected phrases."""

    from_agent: str
    to_agent: str


@dataclass(frozen=True, slots=True)
class Transfer:
    """Transfer the call to a phone number or ACS user after the preceding audio has played."""

    target: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class HangUp:
    """End the call after the preceding audio has played."""

    reason: str = ""


AgentEvent = TextChunk | ToolInvoked | Handoff | Transfer | HangUp


@dataclass(frozen=True, slots=True)
class Expectation:
    """What the agent is waiting for the caller to say next (end-of-turn detection waits for it): a
    ``digits`` slot of ``min_digits``..``max_digits``, a ``yes_no`` answer, a ``choice``, free ``text``."""

    kind: Literal["digits", "yes_no", "choice", "text"]
    min_digits: int = 1
    max_digits: int = 16


def expectation_of(orchestrator: object) -> Expectation | None:
    """The orchestrator's :meth:`expecting`, for orchestrators that have it (it is optional); None when
    it has none or it fails (end-of-turn detection then goes by the audio and words alone)."""
    expecting = getattr(orchestrator, "expecting", None)
    if expecting is None:
        return None
    try:
        result = expecting()
    except Exception:
        return None
    return result if isinstance(result, Expectation) else None


@dataclass
class CallInfo:
    """What an agent may know about the call it serves."""

    call_connection_id: str
    caller: str | None = None
    callee: str | None = None
    direction: Literal["inbound", "outbound"] = "inbound"
    context: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Orchestrator(Protocol):
    """One instance per call (it may keep per-call state such as slots and the active agent)."""

    @property
    def active_agent(self) -> str: ...

    def greeting(self) -> AsyncIterator[AgentEvent]:
        """The active agent's greeting, spoken when the media stream starts."""

    def respond(self, turn: Turn) -> AsyncIterator[AgentEvent]:
        """React to one caller turn. Cancelled (CancelledError) on barge-in; must not leave state half-done."""

    def expected_phrases(self) -> Sequence[str]:
        """Phrases the caller is likely to say next, for recognizer biasing. May be empty.

        Optional beside it: ``expecting() -> Expectation | None`` (see :func:`expectation_of`)."""
