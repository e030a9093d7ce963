"""What tools run with: call control (implemented by the server) and the per-call tool context."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable


@runtime_checkable
class CallControl(Protocol):
    """Implemented by the server over the ACS call-automation client (one per call)."""

    async def hang_up(self) -> None: ...

    async def transfer(self, target: str) -> None: ...

    async def send_dtmf(self, tones: str) -> None: ...


@dataclass(frozen=True, slots=True)
class PendingAction:
    kind: Literal["hangup", "transfer"]
    target: str | None = None
    reason: str = ""


@dataclass
class ToolContext:
    """What a running tool may see and do for the call it serves."""

    memo: Any = None  # MemoManager; Any keeps tools importable without the sessions package
    fixture: dict[str, Any] = field(default_factory=dict)
    call_control: CallControl | None = None
    human_number: str | None = None
    # Set by hang_up/transfer tools; the orchestrator turns it into a HangUp/Transfer event at the end
    # of the turn so the goodbye line plays before the call ends.
    pending_action: PendingAction | None = None
