"""CommunicationIdentifierModel helpers (acs-protocol.md §2.8).

Requests from the SDK carry ``rawId`` and one typed sub-object without ``kind``; ACS responses and events
carry ``kind`` too. Everything here accepts both and always emits both.
"""

from __future__ import annotations

import re
from typing import Any

E164 = re.compile(r"^\+[1-9]\d{6,14}$")
ACS_USER = re.compile(r"^8:acs:[A-Za-z0-9\-]+_[A-Za-z0-9\-]+$")
# ACS call connection ids are GUID-like or base64url-ish tokens; anything else (control characters, lone
# surrogates, kilobytes of text) is refused at the edge, because it would reach logs, JSON and Redis keys.
CALL_CONNECTION_ID = re.compile(r"^[A-Za-z0-9._:=+/\-]{1,128}$")


class IdentifierError(ValueError):
    """An identifier that is neither an E.164 number nor an ACS user id."""


def is_call_connection_id(value: object) -> bool:
    """True for a string that can be a callConnectionId (safe to log, to serialise and to use in keys)."""
    return isinstance(value, str) and CALL_CONNECTION_ID.fullmatch(value) is not None


def is_phone_number(value: str) -> bool:
    return bool(E164.match(value))


def raw_id_for(target: str) -> str:
    """Normalise a user-facing target ('+15551230001', '4:+1555…', '8:acs:…') into a rawId."""
    target = target.strip()
    if target.startswith("4:") and is_phone_number(target[2:]):
        return target
    if is_phone_number(target):
        return f"4:{target}"
    if ACS_USER.match(target):
        return target
    raise IdentifierError(
        f"{target!r} is not an E.164 phone number (e.g. +15551230001) or an ACS user id (8:acs:<resource>_<guid>)"
    )


def model_from_raw_id(raw_id: str) -> dict[str, Any]:
    """The wire model ACS emits for a rawId (with ``kind``)."""
    if raw_id.startswith("4:"):
        return {"kind": "phoneNumber", "rawId": raw_id, "phoneNumber": {"value": raw_id[2:]}}
    if raw_id.startswith("8:acs:") or raw_id.startswith("8:spool:"):
        return {"kind": "communicationUser", "rawId": raw_id, "communicationUser": {"id": raw_id}}
    return {"kind": "unknown", "rawId": raw_id}


def raw_id_from_model(model: Any) -> str | None:
    """Read a CommunicationIdentifierModel in either request or event shape; None when unreadable."""
    if not isinstance(model, dict):
        return None
    raw = model.get("rawId")
    if isinstance(raw, str) and raw:
        return raw
    phone = model.get("phoneNumber")
    if isinstance(phone, dict) and isinstance(phone.get("value"), str):
        return f"4:{phone['value']}"
    user = model.get("communicationUser")
    if isinstance(user, dict) and isinstance(user.get("id"), str):
        return user["id"]
    return None


def display_number(raw_id: str | None) -> str | None:
    """'4:+1555…' → '+1555…'; other ids are returned as they are."""
    if raw_id and raw_id.startswith("4:"):
        return raw_id[2:]
    return raw_id
