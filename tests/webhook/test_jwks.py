"""JWKS refresh that never makes a valid callback wait, and JWT headers that can only ever give AuthError."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callwright.acs.auth import AcsTokenVerifier, AuthError, JwksCache, parse_token_header
from support.servers import TokenIssuer, running_app


class KeyEndpoint:
    """TokenIssuer's OpenID configuration and JWKS, with a switch that makes the JWKS hang (unreachable)."""

    def __init__(self) -> None:
        self.issuer = TokenIssuer()
        self.hang = asyncio.Event()
        self.release = asyncio.Event()
        self.jwks_requests = 0

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/calling/.well-known/acsopenidconfiguration")
        async def openid() -> dict[str, Any]:
            return {"issuer": self.issuer.issuer, "jwks_uri": f"{self.issuer.base_url}/calling/keys"}

        @app.get("/calling/keys")
        async def keys() -> dict[str, Any]:
            self.jwks_requests += 1
            if self.hang.is_set():
                await self.release.wait()
            return self.issuer.jwks()

        return app


@asynccontextmanager
async def key_endpoint() -> AsyncIterator[KeyEndpoint]:
    ep = KeyEndpoint()
    async with running_app(ep.app()) as url:
        ep.issuer.base_url = url
        try:
            yield ep
        finally:
            ep.release.set()  # a hanging JWKS request must end before the server can stop


def _verifier(ep: KeyEndpoint, http: httpx.AsyncClient, **kwargs: Any) -> tuple[JwksCache, AcsTokenVerifier]:
    cache = JwksCache(http, openid_config_url=ep.issuer.openid_config_url, **kwargs)
    return cache, AcsTokenVerifier(cache, issuer=ep.issuer.issuer, audience=ep.issuer.audience)


async def test_valid_callback_does_not_wait_behind_a_hanging_key_endpoint():
    async with key_endpoint() as ep, httpx.AsyncClient(timeout=30) as http:
        cache, verifier = _verifier(ep, http, min_refresh_interval=0.0, fetch_timeout=3.0)
        await verifier.verify(ep.issuer.token())  # keys fetched once
        assert cache.refreshes == 1
        ep.hang.set()  # the key endpoint stops answering
        bogus = [asyncio.create_task(verifier.verify(ep.issuer.token(kid=f"bogus-{i}"))) for i in range(6)]
        await asyncio.sleep(0.2)  # the bogus kids are now waiting on the (hanging) refresh
        t0 = time.perf_counter()
        claims = await verifier.verify(ep.issuer.token())
        elapsed = time.perf_counter() - t0
        assert claims["aud"] == ep.issuer.audience
        # Before: 29.7 s behind the lock. Now the known kid comes from the cache at once.
        assert elapsed < 1.0, elapsed
        assert not any(t.done() for t in bogus)
        # The six bogus kids share ONE in-flight refresh, which gives up after fetch_timeout.
        results = await asyncio.gather(*bogus, return_exceptions=True)
        assert all(isinstance(r, AuthError) for r in results), results
        assert cache.refreshes == 2
        assert ep.jwks_requests == 2


async def test_unknown_kids_trigger_at_most_one_refresh_per_interval():
    async with key_endpoint() as ep, httpx.AsyncClient(timeout=30) as http:
        cache, verifier = _verifier(ep, http, min_refresh_interval=60.0)
        await verifier.verify(ep.issuer.token())
        for i in range(20):
            with pytest.raises(AuthError, match="unknown signing key"):
                await verifier.verify(ep.issuer.token(kid=f"bogus-{i % 3}"))
        # First load only: the last attempt is younger than the interval, so no bogus kid refreshes.
        assert cache.refreshes == 1 and ep.jwks_requests == 1


async def test_unknown_kid_is_negatively_cached():
    async with key_endpoint() as ep, httpx.AsyncClient(timeout=30) as http:
        cache, verifier = _verifier(ep, http, min_refresh_interval=0.3)
        await verifier.verify(ep.issuer.token())
        await asyncio.sleep(0.35)
        with pytest.raises(AuthError):
            await verifier.verify(ep.issuer.token(kid="bogus"))
        assert cache.refreshes == 2  # the interval had passed: one refresh to look for it
        await asyncio.sleep(0.1)
        with pytest.raises(AuthError):
            await verifier.verify(ep.issuer.token(kid="bogus"))
        assert cache.refreshes == 2  # remembered as unknown for the interval


async def test_rotated_key_is_found_by_a_refresh():
    async with key_endpoint() as ep, httpx.AsyncClient(timeout=30) as http:
        cache, verifier = _verifier(ep, http, min_refresh_interval=0.0)
        await verifier.verify(ep.issuer.token())
        ep.issuer.kid = "rotated-key"
        claims = await verifier.verify(ep.issuer.token())
        assert claims["iss"] == ep.issuer.issuer and cache.refreshes == 2


async def test_unreachable_key_endpoint_is_an_auth_error_not_a_hang():
    async with httpx.AsyncClient(timeout=30) as http:
        cache = JwksCache(http, openid_config_url="http://127.0.0.1:9/none", fetch_timeout=2.0)
        verifier = AcsTokenVerifier(cache, issuer="i", audience="a")
        with pytest.raises(AuthError, match="signing keys unavailable"):
            await verifier.verify(TokenIssuer().token())


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _token(header: Any) -> str:
    return f"{_b64(json.dumps(header).encode())}.{_b64(b'{}')}.{_b64(b'sig')}"


MALFORMED = {
    "non-string kid": _token({"alg": "RS256", "kid": 5}),
    "list kid": _token({"alg": "RS256", "kid": ["a"]}),
    "crit": _token({"alg": "RS256", "kid": "test-key-1", "crit": ["exp"]}),
    "crit not a list": _token({"alg": "RS256", "kid": "test-key-1", "crit": 5}),
    "header not an object": _token([1, 2, 3]),
    "header null": _token(None),
    "alg none": _token({"alg": "none", "kid": "test-key-1"}),
    "alg HS256": _token({"alg": "HS256", "kid": "test-key-1"}),
    "kid with newline": _token({"alg": "RS256", "kid": "a\nb"}),
    "huge kid": _token({"alg": "RS256", "kid": "k" * 5000}),
    "huge token": "a" * 20_000 + ".b.c",
    "not base64": "!!!.@@@.###",
    "two segments": "abc.def",
    "header not json": f"{_b64(b'{nope')}.e30.c2ln",
    "deep header": f"{_b64(b'[' * 3000 + b']' * 3000)}.e30.c2ln",
    "bad utf-8 header": f"{_b64(bytes([0xFF, 0xFE, 0x7B]))}.e30.c2ln",
    "empty": "",
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
async def test_malformed_headers_are_401_on_the_webhook(edge, case):
    headers = {"Authorization": f"Bearer {MALFORMED[case]}"} if MALFORMED[case] else {"Authorization": "Bearer"}
    async with httpx.AsyncClient() as http:
        resp = await http.post(edge.webhook(secret=False), json=[{"id": "1", "type": "X"}], headers=headers)
    assert resp.status_code == 401, (case, resp.status_code, resp.text)
    assert resp.json()["error"] == "unauthorized"


_json_scalar = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=20))
_json = st.recursive(
    _json_scalar,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12,
)
_headers = st.one_of(
    _json,
    st.fixed_dictionaries(
        {"alg": st.one_of(st.just("RS256"), _json), "kid": st.one_of(st.just("test-key-1"), _json)},
        optional={"crit": _json, "typ": _json, "jku": _json, "x5u": _json},
    ),
)


@settings(max_examples=300, deadline=None)
@given(header=_headers, payload=st.binary(max_size=40), signature=st.binary(max_size=40))
def test_fuzzed_headers_parse_or_raise_auth_error_only(header, payload, signature):
    token = f"{_b64(json.dumps(header).encode())}.{_b64(payload)}.{_b64(signature)}"
    try:
        parsed = parse_token_header(token)
    except AuthError:
        return
    assert parsed["alg"] == "RS256" and isinstance(parsed["kid"], str) and "crit" not in parsed


@pytest.fixture
async def shared_verifier() -> AsyncIterator[tuple[KeyEndpoint, AcsTokenVerifier]]:
    async with key_endpoint() as ep, httpx.AsyncClient(timeout=10) as http:
        _, verifier = _verifier(ep, http)
        yield ep, verifier


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    token=st.one_of(st.text(max_size=200), st.binary(max_size=120).map(lambda b: b.decode("latin-1"))), data=st.data()
)
async def test_fuzzed_tokens_give_auth_error_only_end_to_end(shared_verifier, token, data):
    """Random tokens through the whole verifier (header parse, key lookup over a real socket, decode)."""
    _, verifier = shared_verifier
    header = data.draw(_headers)
    shaped = f"{_b64(json.dumps(header).encode())}.{_b64(token.encode('utf-8', 'surrogatepass'))}.c2ln"
    for candidate in (token, shaped):
        with pytest.raises(AuthError):
            await verifier.verify(candidate)
