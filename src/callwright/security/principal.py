"""Who is asking (a principal with a role) and the refusal an operator route answers with."""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi.responses import JSONResponse

from callwright.security.keys import Role

_RANK: dict[str, int] = {"viewer": 1, "operator": 2}


@dataclass(frozen=True, slots=True)
class Principal:
    """``id`` names the credential in logs, rate limits and the audit log: ``key:<first 8 hex of its
    hash>``, ``oidc:<subject>`` or ``dev-loopback``. ``role`` is None for a valid token with no role."""

    id: str
    role: Role | None
    kind: str  # "api_key" | "oidc" | "dev_loopback"

    def has(self, role: Role) -> bool:
        return self.role is not None and _RANK[self.role] >= _RANK[role]


@dataclass
class OperatorDenied(Exception):
    """Raised by the operator dependency; answered as ``{"error", "detail"}`` by :class:`OperatorRoute`."""

    status: int
    error: str
    detail: str
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.status} {self.error}: {self.detail}"

    def response(self) -> JSONResponse:
        return JSONResponse({"error": self.error, "detail": self.detail}, status_code=self.status, headers=self.headers)
