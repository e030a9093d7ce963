"""The emulator's token issuer: an RSA key, its JWKS, and the RS256 JWTs ACS puts on callbacks and media.

Real ACS signs every callback POST and media WebSocket upgrade with a JWT from its own keys
(acs-protocol.md §3.1, §4.1). The emulator does the same with a key it generates at start, so the app's
real verification path (OpenID configuration → JWKS → RS256, iss, aud, exp) runs unchanged.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

DEFAULT_ISSUER = "https://acscallautomation.communication.azure.com"
CALLBACK_TOKEN_TTL_S = 5 * 60
MEDIA_TOKEN_TTL_S = 24 * 60 * 60


class TokenIssuer:
    """Mints RS256 JWTs with ``kid`` in the header and publishes the public key as a JWKS."""

    def __init__(self, *, issuer: str = DEFAULT_ISSUER, audience: str) -> None:
        self.issuer = issuer
        self.audience = audience
        self.kid = uuid.uuid4().hex
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwks(self) -> dict[str, Any]:
        jwk: dict[str, Any] = RSAAlgorithm.to_jwk(self._key.public_key(), as_dict=True)
        jwk.update({"kid": self.kid, "use": "sig", "alg": "RS256"})
        return {"keys": [jwk]}

    def mint(self, ttl_s: int, **extra_claims: Any) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "iat": now,
            "nbf": now,
            "exp": now + ttl_s,
            "jti": uuid.uuid4().hex,
            **extra_claims,
        }
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self.kid})

    def callback_token(self) -> str:
        """A fresh token per callback POST (ACS: new token per event, 5 minutes)."""
        return self.mint(CALLBACK_TOKEN_TTL_S)

    def media_token(self) -> str:
        """A fresh token per media WebSocket connection (ACS: 24 hours)."""
        return self.mint(MEDIA_TOKEN_TTL_S)
