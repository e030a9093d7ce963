"""Call control as seen by agents, and the built-in telephony tools.

Design choice: ``hang_up`` and ``transfer_call`` do **not** act on the call when the tool runs. The
model (or a scenario intent) usually says a goodbye or "please hold" line in the same turn, and cutting
the call before that audio plays is the classic phone-bot bug. So these tools only record a
:class:`PendingAction` on the tool context; the orchestrator yields it as a ``HangUp``/``Transfer``
event after the turn's text, and the media handler performs it through :class:`CallControl` once the
audio before it has played. ``send_dtmf`` has no audio ordering issue and acts immediately.
"""

from __future__ import annotations

import re

from callwright.agents.context import CallControl, PendingAction, ToolContext

__all__ = ["TELEPHONY_TOOLS", "CallControl", "PendingAction", "collect_digits", "hang_up", "send_dtmf", "transfer_call"]

_TONES = re.compile(r"^[0-9*#A-Da-d]{1,32}$")
_PHONE = re.compile(r"^\+?[0-9]{3,15}$")


def hang_up(ctx: ToolContext, reason: str = "caller finished") -> dict[str, str]:
    """End the call after your goodbye line has played. Say a short goodbye in the same reply.

    Args:
        reason: why the call ends, for the call log.
    """
    ctx.pending_action = PendingAction("hangup", reason=reason)
    return {"status": "scheduled", "note": "the call ends after your next words; say goodbye briefly"}


def transfer_call(ctx: ToolContext, target: str | None = None, reason: str = "caller asked for a person") -> dict:
    """Transfer the caller to a human agent or a phone number after a short 'please hold' line.

    Args:
        target: E.164 phone number to transfer to; omit to reach the default human team.
        reason: why the call is transferred, for the call log.
    """
    number = target or ctx.human_number
    if not number:
        return {"error": "no human agent is available; offer to help further or end the call politely"}
    if not _PHONE.match(number.replace(" ", "")) and not number.startswith("8:"):
        return {"error": f"not a phone number: {number!r}"}
    ctx.pending_action = PendingAction("transfer", target=number, reason=reason)
    return {"status": "scheduled", "target": number, "note": "tell the caller you are connecting them now"}


def collect_digits(ctx: ToolContext, purpose: str, max_digits: int = 12, terminator: str = "#") -> dict:
    """Ask the caller to key digits on the phone keypad; their keys arrive as the next caller turn.

    Args:
        purpose: what the digits are, e.g. 'policy number'.
        max_digits: the most digits expected.
        terminator: key that ends the entry.
    """
    if ctx.memo is not None:
        ctx.memo.set_context("awaiting_digits", {"purpose": purpose, "max": max_digits, "end": terminator})
    return {
        "status": "waiting",
        "note": f"ask the caller to key their {purpose} followed by {terminator}, then stop talking",
    }


async def send_dtmf(ctx: ToolContext, tones: str) -> dict[str, str]:
    """Send keypad tones on the call, e.g. to navigate another company's phone menu.

    Args:
        tones: the keys to press, digits 0-9, * and #.
    """
    if not _TONES.match(tones):
        return {"error": "tones must be 1-32 of 0-9 * # A-D"}
    if ctx.call_control is None:
        return {"error": "call control is not available on this call"}
    await ctx.call_control.send_dtmf(tones)
    return {"status": "sent", "tones": tones}


TELEPHONY_TOOLS = (hang_up, transfer_call, collect_digits, send_dtmf)
