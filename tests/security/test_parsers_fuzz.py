"""Property-based fuzzing of what the operator API parses from a request before trusting it: bearer
tokens (JOSE header included), Host/Origin values and key lists. Each either yields a result or is
refused with its own error type — never another exception (which the server would answer with a 500)."""

from __future__ import annotations

import asyncio
import base64
import json

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st

from callwright.acs.auth import JwksCache
from callwright.security.keys import hash_key, match_key, parse_api_keys
from callwright.security.oidc import OidcError, OidcVerifier
from callwright.security.operator import host_matches, parse_allowed_hosts, same_origin
from support.servers import free_port

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)
HEADERS = st.dictionaries(
    st.sampled_from(["alg", "kid", "typ", "crit", "jku", "x5u", "b64", "zip"]) | st.text(max_size=6),
    JSON_VALUES | st.sampled_from(["RS256", "none", "HS256", "test-key-1"]),
    max_size=5,
)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token_from(header: dict | bytes, payload: bytes, signature: bytes) -> str:
    head = header if isinstance(header, bytes) else json.dumps(header).encode()
    return f"{b64(head)}.{b64(payload)}.{b64(signature)}"


async def _verify_all(tokens: list[str]) -> None:
    # The key endpoint is a closed port: tokens that get as far as asking for a key are refused too.
    async with httpx.AsyncClient(timeout=1.0) as http:
        url = f"http://127.0.0.1:{free_port()}"
        keys = JwksCache(http, openid_config_url=f"{url}/.well-known/openid-configuration", jwks_url=f"{url}/keys")
        verifier = OidcVerifier(keys, issuer=url, audience="api://x")
        for token in tokens:
            try:
                await verifier.verify(token)
            except OidcError:
                continue
            raise AssertionError(f"accepted a forged token: {token[:80]}")


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.builds(token_from, HEADERS, st.binary(max_size=40), st.binary(max_size=40)),
            st.builds(token_from, st.binary(max_size=60), st.binary(max_size=20), st.binary(max_size=20)),
            st.text(max_size=80),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_any_bearer_token_is_verified_or_refused_with_oidc_error(tokens):
    asyncio.run(_verify_all(tokens))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60), st.lists(st.text(max_size=20), max_size=4))
def test_host_checks_never_raise(host, allowed):
    assert isinstance(host_matches(host, tuple(allowed)), bool)
    for origin in (host, f"http://{host}", f"https://{host}", *allowed):
        assert isinstance(same_origin(origin, host, allowed[0] if allowed else None), bool)
    if host and not host.isspace():
        assert not same_origin(f"http://{host}.evil.example", host)
    try:
        parsed = parse_allowed_hosts(",".join(allowed))
    except ValueError:
        return
    assert isinstance(host_matches(host, parsed), bool)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200), st.text(max_size=80))
def test_key_lists_parse_or_name_the_bad_entry(spec, presented):
    try:
        entries = parse_api_keys(spec)
    except ValueError as exc:
        assert str(exc).startswith("entry ")
        return
    assert match_key(entries, presented) is None or hash_key(presented)[:8] in {e.key_id for e in entries}
