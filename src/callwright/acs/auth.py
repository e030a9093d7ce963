"""Verifying what ACS and Event Grid send us (acs-protocol.md §3.1, §4.1).

ACS signs callbacks and media WebSocket upgrades with an RS256 JWT; keys come from a JWKS found through
an OpenID configuration. Event Grid deliveries carry no token, so they are authenticated by a secret
query parameter compared in constant time.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from typing import Any

import httpx
import jwt

log = logging.getLogger("callwright.auth")


class AuthError(Exception):
    """Why a request was refused; logged and answered with 401 / WebSocket close 1008."""


class JwksCache:
    """Keys by kid, fetched lazily, refreshed when a token names an unknown kid (at most every few seconds)."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        openid_config_url: str,
        jwks_url: str | None = None,
        max_age_seconds: float = 3600.0,
        min_refresh_interval: float = 5.0,
    ) -> None:
        self._http = http
        self._openid_config_url = openid_config_url
        self._jwks_url = jwks_url
        self._max_age = max_age_seconds
        self._min_refresh = min_refresh_interval
        self._keys: dict[str, Any] = {}
        self._fetched_at = 0.0
        self._lock = asyncio.Lock()

    async def _resolve_jwks_url(self) -> str:
        if self._jwks_url:
            return self._jwks_url
        resp = await self._http.get(self._openid_config_url)
        resp.raise_for_status()
        url = resp.json().get("jwks_uri")
        if not isinstance(url, str):
            raise AuthError("OpenID configuration has no jwks_uri")
        self._jwks_url = url
        return url

    async def _refresh(self) -> None:
        try:
            url = await self._resolve_jwks_url()
            resp = await self._http.get(url)
            resp.raise_for_status()
            keyset = jwt.PyJWKSet.from_dict(resp.json())
        except (httpx.HTTPError, ValueError, jwt.PyJWKSetError) as exc:
            raise AuthError(f"cannot fetch signing keys: {exc}") from exc
        self._keys = {k.key_id: k for k in keyset.keys if k.key_id}
        self._fetched_at = time.monotonic()
        log.debug("fetched %d signing keys from %s", len(self._keys), url)

    async def key_for(self, kid: str) -> Any:
        async with self._lock:
            stale = time.monotonic() - self._fetched_at > self._max_age
            may_refresh = stale or time.monotonic() - self._fetched_at >= self._min_refresh
            if (kid not in self._keys or stale) and may_refresh:
                await self._refresh()
            key = self._keys.get(kid)
        if key is None:
            raise AuthError(f"unknown signing key id {kid!r}")
        return key.key


class AcsTokenVerifier:
    def __init__(self, keys: JwksCache, *, issuer: str, audience: str, leeway_seconds: float = 30.0) -> None:
        self._keys = keys
        self._issuer = issuer
        self._audience = audience
        self._leeway = leeway_seconds

    async def verify_header(self, authorization: str | None) -> dict[str, Any]:
        if not authorization:
            raise AuthError("missing Authorization header")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError("Authorization header is not 'Bearer <token>'")
        return await self.verify(token.strip())

    async def verify(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError as exc:
            raise AuthError(f"malformed token: {exc}") from None
        if header.get("alg") != "RS256":
            raise AuthError(f"unexpected token algorithm {header.get('alg')!r}")
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise AuthError("token header has no kid")
        key = await self._keys.key_for(kid)
        try:
            return jwt.decode(
                token,
                key,
                algorithms=["RS256"],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("token expired") from None
        except jwt.InvalidAudienceError:
            raise AuthError("token audience does not match ACS_JWT_AUDIENCE") from None
        except jwt.InvalidIssuerError:
            raise AuthError("token issuer does not match ACS_JWT_ISSUER") from None
        except jwt.InvalidSignatureError:
            raise AuthError("token signature does not verify") from None
        except jwt.PyJWTError as exc:
            raise AuthError(f"invalid token: {exc}") from None


def secret_matches(expected: str | None, presented: str | None) -> bool:
    if not expected or presented is None:
        return False
    return hmac.compare_digest(expected.encode(), presented.encode())
