"""Lookup tools over a scenario's local JSON fixture (the shipped demo scenarios' back office).

They read ``ctx.fixture`` (loaded once with the scenario, never mutated: bookings are kept in the
call's memo, so calls do not leak state into each other) and remember who was verified in the memo
context, which later turns and agents read.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from callwright.agents.context import ToolContext


def _digits(value: str) -> str:
    return "".join(c for c in value if c.isdigit())


def _remember(ctx: ToolContext, key: str, value: Any) -> None:
    if ctx.memo is not None:
        ctx.memo.set_context(key, value)


def _recall(ctx: ToolContext, key: str) -> Any:
    return ctx.memo.get_context(key) if ctx.memo is not None else None


# --- insurance ------------------------------------------------------------------------------------


def verify_policy(ctx: ToolContext, policy_number: str) -> dict[str, Any]:
    """Authenticate the caller by their policy number.

    Args:
        policy_number: the policy number the caller said or keyed, digits only.
    """
    number = _digits(policy_number)
    policy = (ctx.fixture.get("policies") or {}).get(number)
    if not policy:
        return {"found": False, "policy_number": number}
    _remember(ctx, "authenticated", True)
    _remember(ctx, "policy_number", number)
    return {
        "found": True,
        "policy_number": number,
        "holder": policy.get("holder"),
        "first_name": policy.get("first_name"),
        "type": policy.get("type"),
    }


def claim_status(ctx: ToolContext, policy_number: str | None = None) -> dict[str, Any]:
    """Status of the most recent claim on a verified policy.

    Args:
        policy_number: the policy to look up; defaults to the policy verified on this call.
    """
    number = _digits(policy_number or _recall(ctx, "policy_number") or "")
    if not number:
        return {"error": "the caller is not verified yet; ask for their policy number first"}
    policy = (ctx.fixture.get("policies") or {}).get(number)
    if not policy:
        return {"error": f"no policy {number}"}
    claims = policy.get("claims") or []
    if not claims:
        return {"has_claim": False, "policy_number": number}
    claim = claims[-1]
    return {"has_claim": True, "policy_number": number, **claim}


def account_balance(ctx: ToolContext, policy_number: str | None = None) -> dict[str, Any]:
    """Premium balance due on a verified policy.

    Args:
        policy_number: the policy to look up; defaults to the policy verified on this call.
    """
    number = _digits(policy_number or _recall(ctx, "policy_number") or "")
    policy = (ctx.fixture.get("policies") or {}).get(number)
    if not policy:
        return {"error": "the caller is not verified yet; ask for their policy number first"}
    return {"policy_number": number, "balance": policy.get("balance", 0), "due_date": policy.get("due_date")}


# --- clinic ---------------------------------------------------------------------------------------


def find_patient(ctx: ToolContext, patient_number: str) -> dict[str, Any]:
    """Find a patient record by patient number.

    Args:
        patient_number: the patient number from the caller's clinic card.
    """
    number = _digits(patient_number)
    patient = (ctx.fixture.get("patients") or {}).get(number)
    if not patient:
        return {"found": False, "patient_number": number}
    _remember(ctx, "patient_number", number)
    return {"found": True, "patient_number": number, **patient}


def open_slots(ctx: ToolContext, doctor: str, day: str | None = None) -> dict[str, Any]:
    """Free appointment times for a doctor, optionally on one weekday.

    Args:
        doctor: the doctor's name, e.g. 'Dr. Patel'.
        day: a weekday such as 'Tuesday'.
    """
    schedule = (ctx.fixture.get("schedule") or {}).get(doctor)
    if schedule is None:
        return {"error": f"no doctor named {doctor}", "doctors": sorted(ctx.fixture.get("schedule") or {})}
    booked = {(b["day"], b["time"]) for b in (_recall(ctx, "bookings") or []) if b["doctor"] == doctor}
    slots = [
        s for s in schedule if (day is None or s["day"].lower() == day.lower()) and (s["day"], s["time"]) not in booked
    ]
    return {"doctor": doctor, "slots": slots[:3], "available": bool(slots)}


def book_appointment(ctx: ToolContext, doctor: str, day: str) -> dict[str, Any]:
    """Book the first free time with a doctor on a weekday.

    Args:
        doctor: the doctor's name, e.g. 'Dr. Patel'.
        day: a weekday such as 'Tuesday'.
    """
    found = open_slots(ctx, doctor, day)
    if not found.get("available"):
        return {"booked": False, "doctor": doctor, "day": day}
    slot = found["slots"][0]
    booking = {"doctor": doctor, "day": slot["day"], "time": slot["time"]}
    _remember(ctx, "bookings", [*(_recall(ctx, "bookings") or []), booking])
    return {"booked": True, **booking}


TOOLSETS: dict[str, Sequence[Callable[..., Any]]] = {
    "insurance": (verify_policy, claim_status, account_balance),
    "clinic": (find_patient, open_slots, book_appointment),
}
