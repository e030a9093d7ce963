"""Verifying what ACS and Event Grid send us (acs-protocol.md §3.1, §4.1).

ACS signs callbacks and media WebSocket upgrades with an RS256 JWT; keys come from a JWKS found through
an OpenID configuration. Event Grid deliveries carry no token, so they are authenticated by a secret
query parameter compared in constant time.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import json
import logging
import math
import re
import time
from collections import OrderedDict
from typing import Any

import httpx
import jwt

log = logging.getLogger("callwright.auth")


class AuthError(Exception):
    """Why a request was refused; logged and answered with 401 / WebSocket close 1008."""


class JwksCache:
    """Keys by kid, fetched lazily and refreshed without ever making a request wait behind the network.

    - Known kids are answered from the cache at once, also while a refresh runs and after ``max_age``
      (stale keys are served while a background refresh brings new ones).
    - One refresh at a time: a single in-flight task that every waiter shares, bounded by
      ``fetch_timeout``; no lock is held across network I/O.
    - An unknown kid triggers at most one refresh per ``min_refresh_interval`` (counted from the last
      attempt, failed or not) and is then remembered as unknown for that interval (a bounded negative
      cache), so bogus kids cannot make the server hammer — or wait on — the key endpoint.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        openid_config_url: str,
        jwks_url: str | None = None,
        max_age_seconds: float = 3600.0,
        min_refresh_interval: float = 5.0,
        fetch_timeout: float = 5.0,
        negative_cache_size: int = 1024,
    ) -> None:
        self._http = http
        self._openid_config_url = openid_config_url
        self._jwks_url = jwks_url
        self._max_age = max_age_seconds
        self._min_refresh = min_refresh_interval
        self._fetch_timeout = fetch_timeout
        self._keys: dict[str, Any] = {}
        self._fetched_at = 0.0
        self._attempted_at = -math.inf
        self._refresh_task: asyncio.Task[None] | None = None
        self._last_error: str | None = None
        self._unknown: OrderedDict[str, float] = OrderedDict()
        self._negative_size = negative_cache_size
        self.refreshes = 0  # fetch attempts so far (tests and diagnostics)

    async def _resolve_jwks_url(self) -> str:
        if self._jwks_url:
            return self._jwks_url
        resp = await self._http.get(self._openid_config_url)
        resp.raise_for_status()
        doc = resp.json()
        url = doc.get("jwks_uri") if isinstance(doc, dict) else None
        if not isinstance(url, str):
            raise AuthError("OpenID configuration has no jwks_uri")
        self._jwks_url = url
        return url

    async def _refresh(self) -> None:
        url = self._jwks_url or self._openid_config_url
        try:
            async with asyncio.timeout(self._fetch_timeout):
                url = await self._resolve_jwks_url()
                resp = await self._http.get(url)
                resp.raise_for_status()
                keyset = jwt.PyJWKSet.from_dict(resp.json())
        except TimeoutError:
            self._last_error = f"key endpoint did not answer within {self._fetch_timeout:g}s"
            raise AuthError(f"cannot fetch signing keys: {self._last_error}") from None
        except (httpx.HTTPError, ValueError, TypeError, AttributeError, jwt.PyJWKSetError, jwt.PyJWKError) as exc:
            self._last_error = str(exc)[:200]
            raise AuthError(f"cannot fetch signing keys: {self._last_error}") from exc
        self._keys = {k.key_id: k for k in keyset.keys if k.key_id}
        self._fetched_at = time.monotonic()
        self._last_error = None
        # Kids found unknown before this fetch may exist now.
        self._unknown.clear()
        log.debug("fetched %d signing keys from %s", len(self._keys), url)

    def _start_refresh(self) -> asyncio.Task[None] | None:
        """The in-flight refresh, starting one if none runs and the interval allows it."""
        task = self._refresh_task
        if task is not None and not task.done():
            return task
        if time.monotonic() - self._attempted_at < self._min_refresh:
            return None
        self._attempted_at = time.monotonic()
        self.refreshes += 1
        task = asyncio.get_running_loop().create_task(self._refresh(), name="jwks-refresh")
        task.add_done_callback(_log_refresh_failure)
        self._refresh_task = task
        return task

    def _known_unknown(self, kid: str, now: float) -> bool:
        seen = self._unknown.get(kid)
        if seen is None:
            return False
        if now - seen < self._min_refresh:
            return True
        del self._unknown[kid]
        return False

    def _remember_unknown(self, kid: str) -> None:
        self._unknown[kid] = time.monotonic()
        self._unknown.move_to_end(kid)
        while len(self._unknown) > self._negative_size:
            self._unknown.popitem(last=False)

    async def key_for(self, kid: str) -> Any:
        if not isinstance(kid, str) or not _KID.fullmatch(kid):
            raise AuthError("token kid is not a short printable string")
        now = time.monotonic()
        key = self._keys.get(kid)
        if key is not None:
            if now - self._fetched_at > self._max_age:
                self._start_refresh()  # stale-while-revalidate: this request does not wait for it
            return key.key
        if self._known_unknown(kid, now):
            raise AuthError(f"unknown signing key id {kid!r}")
        task = self._start_refresh()
        if task is not None:
            # shield: a caller that gives up (its own timeout, a dropped connection) does not cancel the
            # refresh the other waiters share. A failed refresh is reported below ("keys unavailable").
            with contextlib.suppress(AuthError):
                await asyncio.shield(task)
        key = self._keys.get(kid)
        if key is None:
            self._remember_unknown(kid)
            if not self._keys and self._last_error:
                raise AuthError(f"signing keys unavailable: {self._last_error}")
            raise AuthError(f"unknown signing key id {kid!r}")
        return key.key


def _log_refresh_failure(task: asyncio.Task[None]) -> None:
    if task.cancelled():
        return
    exc = task.exception()  # retrieved here, so an unawaited failure is never "never retrieved"
    if exc is not None:
        log.warning("%s", exc)


_KID = re.compile(r"[\x21-\x7e]{1,256}")
MAX_TOKEN_CHARS = 16_384
_SEGMENT = re.compile(r"[A-Za-z0-9_\-]*")


def parse_token_header(token: str) -> dict[str, Any]:
    """The JOSE header of a compact JWS, checked strictly; AuthError for anything else, never another error."""
    if not isinstance(token, str) or not token:
        raise AuthError("malformed token: empty")
    if len(token) > MAX_TOKEN_CHARS:
        raise AuthError(f"malformed token: longer than {MAX_TOKEN_CHARS} characters")
    parts = token.split(".")
    if len(parts) != 3 or not all(_SEGMENT.fullmatch(p) for p in parts) or not parts[0]:
        raise AuthError("malformed token: not three base64url segments")
    try:
        raw = base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4))
        header = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError, binascii.Error):
        raise AuthError("malformed token: the header is not base64url-encoded JSON") from None
    if not isinstance(header, dict):
        raise AuthError("malformed token: the header is not a JSON object")
    if "crit" in header:
        raise AuthError("token header has critical extensions ('crit'), none are supported")
    if header.get("alg") != "RS256":
        alg = header.get("alg")
        shown = alg[:20] if isinstance(alg, str) and alg.isprintable() else type(alg).__name__
        raise AuthError(f"unexpected token algorithm {shown!r}")
    kid = header.get("kid")
    if not isinstance(kid, str) or not _KID.fullmatch(kid):
        raise AuthError("token header has no kid (a short printable string)")
    return header


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
        return await verify_rs256(
            token,
            self._keys,
            issuer=self._issuer,
            audience=self._audience,
            leeway=self._leeway,
            settings=("ACS_JWT_ISSUER", "ACS_JWT_AUDIENCE"),
        )


async def verify_rs256(
    token: str,
    keys: JwksCache,
    *,
    issuer: str,
    audience: str,
    leeway: float,
    settings: tuple[str, str],
) -> dict[str, Any]:
    """The claims of an RS256 JWT signed by a key of ``keys``, with exp, iss and aud checked; AuthError for
    anything else, never another error. ``settings`` names the issuer and audience settings in messages.
    Shared by ACS's callback/media tokens and operators' OIDC tokens."""
    header = parse_token_header(token)
    key = await keys.key_for(header["kid"])
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=["RS256"],
            audience=audience,
            issuer=issuer,
            leeway=leeway,
            options={"require": ["exp", "iss", "aud"]},
        )
    except jwt.ExpiredSignatureError:
        raise AuthError("token expired") from None
    except jwt.InvalidAudienceError:
        raise AuthError(f"token audience does not match {settings[1]}") from None
    except jwt.InvalidIssuerError:
        raise AuthError(f"token issuer does not match {settings[0]}") from None
    except jwt.InvalidSignatureError:
        raise AuthError("token signature does not verify") from None
    except jwt.PyJWTError as exc:
        raise AuthError(f"invalid token: {str(exc)[:200]}") from None
    except (ValueError, TypeError, KeyError, OverflowError, RecursionError) as exc:
        # Whatever else a hostile token provokes inside the library is a refusal, never a 500.
        raise AuthError(f"invalid token ({type(exc).__name__})") from None
    if not isinstance(claims, dict):
        raise AuthError("invalid token: the claims are not a JSON object")
    return claims


def secret_matches(expected: str | None, presented: str | None) -> bool:
    if not expected or presented is None:
        return False
    return hmac.compare_digest(expected.encode(), presented.encode())
