"""Errors the emulator answers with, shaped like ACS's ``CommunicationErrorResponse`` (acs-protocol.md §2.7)."""

from __future__ import annotations

from typing import Any


class AcsHttpError(Exception):
    """Raised anywhere in request handling; answered as ``{"error": {"code", "message"}}``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


def bad_request(message: str) -> AcsHttpError:
    return AcsHttpError(400, "BadRequest", message)


def call_not_found(call_connection_id: str) -> AcsHttpError:
    return AcsHttpError(404, "8523", f"Call {call_connection_id} not found or has been terminated.")


def not_supported(message: str) -> AcsHttpError:
    return AcsHttpError(400, "NotSupported", f"{message} is not supported by the Callwright ACS emulator.")
