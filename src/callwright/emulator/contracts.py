"""The seam between the emulated ACS (call control, events) and the virtual phone (the remote party).

The emulator owns calls and implements :class:`CallSide`; the phone package implements
:class:`PhoneSide` and :class:`PhoneDirectory`. Neither side imports the other's internals: everything
they say to each other goes through these Protocols, so each can be tested with a small double.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable


@runtime_checkable
class CallSide(Protocol):
    """One emulated call, as the phone sees it: what the remote party may do to the call."""

    call_connection_id: str
    correlation_id: str
    server_call_id: str
    caller_raw_id: str  # the remote party's rawId, e.g. "4:+15551230001"

    def hang_up_by_phone(self) -> None:
        """The remote party hangs up: the emulator ends the call and sends CallDisconnected."""
        ...

    def dtmf_from_phone(self, tone_char: str) -> None:
        """The remote party pressed a key ('0'-'9', '*', '#', 'A'-'D').

        The emulator emits ContinuousDtmfRecognitionToneReceived when continuous DTMF is on and feeds a
        pending DTMF recognize. The phone itself sends the DtmfData media frame.
        """
        ...


@runtime_checkable
class PhoneSide(Protocol):
    """The remote party, as the emulator sees it: what ACS does to the phone."""

    async def start_media(
        self,
        call: CallSide,
        *,
        transport_url: str,
        headers: dict[str, str],
        sample_rate: int,
        bidirectional: bool,
    ) -> None:
        """Connect the media WebSocket; raise on failure (the emulator then sends MediaStreamingFailed).

        ``headers`` carry ``Authorization: Bearer <JWT>``, ``x-ms-call-connection-id`` and
        ``x-ms-call-correlation-id`` exactly as ACS sends them on the upgrade.
        """
        ...

    async def stop_media(self) -> None: ...

    async def play_prompt(self, pcm16k: bytes) -> bool:
        """Play a REST ``:play`` prompt (16 kHz s16le mono) into the caller's ear.

        Returns True when fully played, False when cancelled (see :meth:`cancel_prompts`).
        """
        ...

    def cancel_prompts(self) -> None: ...

    def on_callback_event(self, event_type: str, data: dict) -> None:
        """Every callback event the emulator delivers for this call, in order (for the report)."""
        ...

    async def on_disconnected(self, reason: str) -> None: ...


@dataclass(frozen=True, slots=True)
class OutboundBehaviour:
    """How a virtual number reacts when the app dials it."""

    answer_after_s: float = 1.0
    outcome: Literal["answer", "busy", "no_answer"] = "answer"


@runtime_checkable
class PhoneDirectory(Protocol):
    """Resolves outbound call targets to virtual phones."""

    def phone_for_number(self, raw_id: str) -> tuple[PhoneSide, OutboundBehaviour] | None: ...
