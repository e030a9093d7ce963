"""OIDC bearer tokens for operators (e.g. Microsoft Entra ID app roles), verified against the IdP's JWKS.

The keys come through the same :class:`~callwright.acs.auth.JwksCache` that verifies ACS's tokens (our own
instance, pointed at the operator IdP). The role comes from a claim (``roles`` by default, as Entra ID
puts app roles), mapped from configurable values to ``operator`` / ``viewer``.
"""

from __future__ import annotations

import logging
from typing import Any

from callwright.acs.auth import AuthError, JwksCache, verify_rs256
from callwright.security.audit import clean
from callwright.security.principal import Principal

log = logging.getLogger("callwright.security")


class OidcError(Exception):
    """Why a token was refused (answered 401; the reason is logged, not sent)."""


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2 and len(token) > 20


class OidcVerifier:
    def __init__(
        self,
        keys: JwksCache,
        *,
        issuer: str,
        audience: str,
        role_claim: str = "roles",
        operator_value: str = "Callwright.Operator",
        viewer_value: str = "Callwright.Viewer",
        leeway_seconds: float = 60.0,
    ) -> None:
        self._keys = keys
        self._issuer = issuer
        self._audience = audience
        self._role_claim = role_claim
        self._operator_value = operator_value
        self._viewer_value = viewer_value
        self._leeway = leeway_seconds

    async def verify(self, token: str) -> Principal:
        try:
            claims = await verify_rs256(
                token,
                self._keys,
                issuer=self._issuer,
                audience=self._audience,
                leeway=self._leeway,
                settings=("OPERATOR_OIDC_ISSUER", "OPERATOR_OIDC_AUDIENCE"),
            )
        except AuthError as exc:
            raise OidcError(str(exc)) from None
        except Exception as exc:  # the key endpoint failing must not turn into a 500
            raise OidcError(f"cannot fetch signing keys: {type(exc).__name__}") from None
        subject = claims.get("sub") or claims.get("oid") or "unknown"
        return Principal(id=f"oidc:{clean(subject)[:80]}", role=self._role(claims), kind="oidc")

    def _role(self, claims: dict[str, Any]) -> Any:
        raw = claims.get(self._role_claim)
        values = raw.split() if isinstance(raw, str) else raw if isinstance(raw, list) else []
        values = [v for v in values if isinstance(v, str)]
        if self._operator_value in values:
            return "operator"
        if self._viewer_value in values:
            return "viewer"
        return None
