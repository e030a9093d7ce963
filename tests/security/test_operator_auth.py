"""The operator API's access control against a real server: API keys and roles, OIDC bearer tokens,
Host/Origin checks, the locked fresh install and the loopback development mode."""

from __future__ import annotations

import base64
import json
import logging
import subprocess
import sys

import httpx
import pytest

from callwright.config import SettingsError, load_settings
from callwright.security.keys import hash_key

from .conftest import (
    KEYS,
    OIDC_AUDIENCE,
    OPERATOR_KEY,
    VIEWER_KEY,
    bearer,
    idp_running,
    key_id,
    secured_server,
)

TARGET = {"target": "+15551230001"}


def with_header(token: str, **changes: object) -> str:
    """The token with its JOSE header edited (PyJWT refuses to mint such headers itself)."""
    head, payload, signature = token.split(".")
    header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    header.update(changes)
    raw = base64.urlsafe_b64encode(json.dumps(header).encode()).rstrip(b"=").decode()
    return f"{raw}.{payload}.{signature}"


async def test_api_key_matrix_for_every_operator_route():
    async with secured_server() as edge, httpx.AsyncClient(base_url=edge.url, timeout=30) as http:
        # Reads: nothing without a valid key; viewer and operator may read.
        for path in ("/api/v1/calls", "/api/v1/calls/some-call", "/metrics"):
            none = await http.get(path)
            assert none.status_code == 401, (path, none.text)
            assert none.headers["www-authenticate"].startswith("Bearer")
            assert none.json()["error"] == "unauthorized" and "X-API-Key" in none.json()["detail"]
            wrong = await http.get(path, headers=bearer("cw_guessed"))
            assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_credentials"
            assert 'error="invalid_token"' in wrong.headers["www-authenticate"]
            assert (await http.get(path, headers={"Authorization": f"Basic {VIEWER_KEY}"})).status_code == 401
        listed = await http.get("/api/v1/calls", headers=bearer(VIEWER_KEY))
        assert listed.status_code == 200 and listed.json() == {"active": [], "recent": []}
        assert (await http.get("/api/v1/calls", headers={"X-API-Key": OPERATOR_KEY})).status_code == 200
        metrics = await http.get("/metrics", headers={"X-API-Key": VIEWER_KEY})
        assert metrics.status_code == 200 and "callwright_calls_active" in metrics.text

        # Placing: operator only; the viewer's refusal is a 403 naming the role.
        refused = await http.post("/api/v1/calls", json=TARGET, headers=bearer(VIEWER_KEY))
        assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
        assert "operator role" in refused.json()["detail"]
        assert (await http.post("/api/v1/calls", json=TARGET)).status_code == 401
        placed = await http.post("/api/v1/calls", json=TARGET, headers=bearer(OPERATOR_KEY))
        assert placed.status_code == 201, placed.text
        call_id = placed.json()["call_connection_id"]
        assert len([r for r in edge.acs.requests if r.path == "/calling/callConnections"]) == 1

        # The viewer sees the call and its detail; nobody without a key does.
        detail = await http.get(f"/api/v1/calls/{call_id}", headers=bearer(VIEWER_KEY))
        assert detail.status_code == 200 and detail.json()["target"] == "4:+15551230001"
        assert (await http.get(f"/api/v1/calls/{call_id}")).status_code == 401

        # Hanging up: operator only.
        assert (await http.delete(f"/api/v1/calls/{call_id}")).status_code == 401
        assert (await http.delete(f"/api/v1/calls/{call_id}", headers=bearer(VIEWER_KEY))).status_code == 403
        hung = await http.delete(f"/api/v1/calls/{call_id}", headers=bearer(OPERATOR_KEY))
        assert hung.status_code == 202, hung.text

        # The audit log: operator only, and it names who did what.
        assert (await http.get("/api/v1/audit", headers=bearer(VIEWER_KEY))).status_code == 403
        audit = await http.get("/api/v1/audit", headers=bearer(OPERATOR_KEY))
        assert audit.status_code == 200
        entries = audit.json()["entries"]
        mine = [(e["actor"], e["action"], e["outcome"]) for e in entries]
        assert (key_id(OPERATOR_KEY), "place", "placed") in mine
        assert (key_id(OPERATOR_KEY), "hang_up", "hanging_up") in mine
        assert (key_id(VIEWER_KEY), "POST /api/v1/calls", "refused:forbidden") in mine
        assert ("anonymous", "DELETE " + f"/api/v1/calls/{call_id}", "refused:unauthorized") in mine
        placed_entry = next(e for e in entries if e["outcome"] == "placed")
        assert placed_entry["target"] == "+15551230001" and placed_entry["call_id"] == call_id

        # Refusals are counted by reason (the API's own codes, never client-chosen text).
        counted = (await http.get("/metrics", headers=bearer(VIEWER_KEY))).text
        assert 'callwright_operator_refused_total{reason="unauthorized"}' in counted
        assert (
            'callwright_operator_refused_total{reason="forbidden"} 3.0'
        )  # POST, DELETE, audit by the viewer in counted

        # Probes stay open and say nothing sensitive.
        assert (await http.get("/health")).status_code == 200
        ready = await http.get("/ready")
        assert ready.status_code == 200
        assert set(ready.json()["checks"]["store"]) == {"kind", "reachable"}
        # The hashes of the keys are never served anywhere we looked.
        for body in (ready.text, metrics.text, audit.text):
            assert hash_key(OPERATOR_KEY) not in body and OPERATOR_KEY not in body


async def test_oidc_tokens_valid_expired_forged_wrong_audience_wrong_issuer():
    async with (
        idp_running() as idp,
        secured_server(operator_oidc_issuer=idp.issuer, operator_oidc_audience=OIDC_AUDIENCE) as edge,
        httpx.AsyncClient(base_url=edge.url, timeout=30) as http,
    ):
        op = idp.token(roles=["Callwright.Operator"])
        placed = await http.post("/api/v1/calls", json=TARGET, headers=bearer(op))
        assert placed.status_code == 201, placed.text
        viewer = idp.token(roles=["Callwright.Viewer"], sub="bob@contoso.test")
        assert (await http.get("/api/v1/calls", headers=bearer(viewer))).status_code == 200
        assert (await http.post("/api/v1/calls", json=TARGET, headers=bearer(viewer))).status_code == 403
        # A valid token without a Callwright role is authenticated but may do nothing.
        no_role = await http.get("/api/v1/calls", headers=bearer(idp.token(roles=["Other.Role"])))
        assert no_role.status_code == 403 and "no role" in no_role.json()["detail"]
        # A space-separated string claim is read too (some IdPs send roles/scopes that way).
        assert (await http.get("/metrics", headers=bearer(idp.token(roles="x Callwright.Viewer")))).status_code == 200

        refused = {
            "expired": idp.token(roles=["Callwright.Operator"], lifetime=-300),
            "signature": idp.token(roles=["Callwright.Operator"], wrong_key=True),
            "audience": idp.token(roles=["Callwright.Operator"], audience="api://someone-else"),
            "issuer": idp.token(roles=["Callwright.Operator"], issuer="https://login.example.test/other/v2.0"),
            "critical": idp.token(roles=["Callwright.Operator"], headers={"crit": ["exp"]}),
            "kid": with_header(idp.token(roles=["Callwright.Operator"]), kid=7),
            "kid list": with_header(idp.token(roles=["Callwright.Operator"]), kid=["test-key-1"]),
            "alg none": with_header(idp.token(roles=["Callwright.Operator"]), alg="none"),
            "unknown kid": idp.token(roles=["Callwright.Operator"], headers={"kid": "not-a-key"}),
        }
        for why, token in refused.items():
            resp = await http.post("/api/v1/calls", json=TARGET, headers=bearer(token))
            assert resp.status_code == 401, (why, resp.text)
            assert resp.json()["error"] == "invalid_token", why
            assert 'error="invalid_token"' in resp.headers["www-authenticate"]
        details = {
            why: (await http.get("/api/v1/calls", headers=bearer(t))).json()["detail"] for why, t in refused.items()
        }
        assert "expired" in details["expired"]
        assert "signature" in details["signature"]
        assert "OPERATOR_OIDC_AUDIENCE" in details["audience"]
        assert "OPERATOR_OIDC_ISSUER" in details["issuer"]
        # Only the valid operator token placed a call; the audit names its subject.
        assert len([r for r in edge.acs.requests if r.path == "/calling/callConnections"]) == 1
        audit = (await http.get("/api/v1/audit", headers=bearer(op))).json()["entries"]
        assert any(e["actor"] == "oidc:alice@contoso.test" and e["outcome"] == "placed" for e in audit)
        # API keys keep working beside OIDC.
        assert (await http.get("/api/v1/calls", headers=bearer(VIEWER_KEY))).status_code == 200


async def test_oidc_alone_with_an_explicit_jwks_url_and_malformed_credentials():
    """No API keys at all: OIDC is enough to configure access. Malformed credentials are 401, never 500."""
    async with (
        idp_running() as idp,
        secured_server(
            operator_api_keys="",
            operator_oidc_issuer=idp.issuer,
            operator_oidc_audience=OIDC_AUDIENCE,
            operator_oidc_jwks_url=idp.jwks_url,
            operator_oidc_operator_role="Dialler",
        ) as edge,
        httpx.AsyncClient(base_url=edge.url, timeout=30) as http,
    ):
        assert (
            await http.post("/api/v1/calls", json=TARGET, headers=bearer(idp.token(roles=["Dialler"])))
        ).status_code == 201
        nasty = [
            "a.b.c",
            "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",  # alg none
            "eyJhbGciOiJIUzI1NiJ9.e30.c2ln",  # HS256
            "x" * 5000,
            ".".join(["eyJ" + "A" * 50] * 3),
            "Bearer Bearer",
        ]
        for value in nasty:
            resp = await http.get("/api/v1/calls", headers={"Authorization": f"Bearer {value}"})
            assert resp.status_code == 401, (value[:40], resp.status_code, resp.text)
        # Bytes that are not UTF-8 in the header reach the server as-is.
        resp = await http.get("/api/v1/calls", headers=[(b"X-API-Key", b"\xff\xfe\x80key")])
        assert resp.status_code == 401


async def test_cross_origin_requests_are_refused():
    async with secured_server() as edge, httpx.AsyncClient(base_url=edge.url, timeout=30) as http:
        host = edge.url.removeprefix("http://")
        for origin in ("http://evil.example", "null", f"http://{host}.evil.example", "https://127.0.0.1:1"):
            resp = await http.post("/api/v1/calls", json=TARGET, headers={**bearer(OPERATOR_KEY), "Origin": origin})
            assert resp.status_code == 403, (origin, resp.text)
            assert resp.json()["error"] == "cross_origin"
        resp = await http.get("/api/v1/calls", headers={**bearer(OPERATOR_KEY), "Origin": "http://evil.example"})
        assert resp.status_code == 403
        assert not [r for r in edge.acs.requests if r.path == "/calling/callConnections"]
        # The page's own origin is fine.
        same = await http.post("/api/v1/calls", json=TARGET, headers={**bearer(OPERATOR_KEY), "Origin": edge.url})
        assert same.status_code == 201, same.text


async def test_allowed_hosts_refuse_other_host_headers():
    async with (
        secured_server(allowed_hosts="callwright.example.com,*.ops.example.com") as edge,
        httpx.AsyncClient(base_url=edge.url, timeout=30) as http,
    ):
        wrong = await http.get("/api/v1/calls", headers=bearer(VIEWER_KEY))  # Host: 127.0.0.1:<port>
        assert wrong.status_code == 403 and wrong.json()["error"] == "host_not_allowed"
        assert (await http.get("/metrics", headers=bearer(VIEWER_KEY))).status_code == 403
        for host in ("callwright.example.com", "CallWright.Example.com:8443", "eu.ops.example.com"):
            resp = await http.get("/api/v1/calls", headers={**bearer(VIEWER_KEY), "Host": host})
            assert resp.status_code == 200, (host, resp.text)
        assert (
            await http.get("/api/v1/calls", headers={**bearer(VIEWER_KEY), "Host": "ops.example.com.evil"})
        ).status_code == 403
        # Probes answer whatever the Host (load balancers probe by address).
        assert (await http.get("/health")).status_code == 200


async def test_fresh_install_without_keys_refuses_with_a_clear_message(caplog):
    caplog.set_level(logging.WARNING, logger="callwright.security")
    async with secured_server(operator_api_keys="") as edge, httpx.AsyncClient(base_url=edge.url, timeout=30) as http:
        for method, path in (("GET", "/api/v1/calls"), ("POST", "/api/v1/calls"), ("GET", "/metrics")):
            for headers in ({}, bearer(OPERATOR_KEY)):
                resp = await http.request(method, path, json=TARGET if method == "POST" else None, headers=headers)
                assert resp.status_code == 403, (method, path, resp.text)
                body = resp.json()
                assert body["error"] == "operator_auth_not_configured"
                assert "set OPERATOR_API_KEYS" in body["detail"] and "OPERATOR_DEV_LOOPBACK" in body["detail"]
        assert not [r for r in edge.acs.requests if r.path == "/calling/callConnections"]
    assert any("operator API locked" in r.getMessage() for r in caplog.records)


async def test_dev_loopback_mode_grants_operator_to_local_requests_only_when_enabled(caplog):
    caplog.set_level(logging.WARNING, logger="callwright.security")
    async with (
        secured_server(operator_api_keys="", operator_dev_loopback=True) as edge,
        httpx.AsyncClient(base_url=edge.url, timeout=30) as http,
    ):
        assert (await http.get("/api/v1/calls")).status_code == 200
        placed = await http.post("/api/v1/calls", json=TARGET)
        assert placed.status_code == 201, placed.text
        # A request that came through a proxy is not local, whatever the socket says.
        proxied = await http.get("/api/v1/calls", headers={"X-Forwarded-For": "203.0.113.9"})
        assert proxied.status_code == 403
        # A presented credential is checked, not waved through.
        assert (await http.get("/api/v1/calls", headers=bearer("cw_wrong"))).status_code == 403
        audit = (await http.get("/api/v1/audit")).json()["entries"]
        assert any(e["actor"] == "dev-loopback" and e["outcome"] == "placed" for e in audit)
    assert any("OPERATOR_DEV_LOOPBACK=true" in r.getMessage() for r in caplog.records)


async def test_dev_loopback_beside_keys_still_checks_a_presented_key():
    async with secured_server(operator_dev_loopback=True) as edge, httpx.AsyncClient(base_url=edge.url) as http:
        assert (await http.get("/api/v1/calls")).status_code == 200
        assert (await http.get("/api/v1/calls", headers=bearer("cw_wrong"))).status_code == 401
        # A viewer key is a viewer, even from loopback.
        assert (await http.post("/api/v1/calls", json=TARGET, headers=bearer(VIEWER_KEY))).status_code == 403


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"OPERATOR_API_KEYS": "operator:cw_plain-key"}, "invalid setting OPERATOR_API_KEYS: entry 1: the part after"),
        ({"OPERATOR_API_KEYS": f"admin:{hash_key('x')}"}, "invalid setting OPERATOR_API_KEYS: entry 1: expected role"),
        ({"OPERATOR_API_KEYS": f"{KEYS},viewer"}, "invalid setting OPERATOR_API_KEYS: entry 4"),
        ({"OUTBOUND_ALLOWED_PREFIXES": "+1,44"}, "invalid setting OUTBOUND_ALLOWED_PREFIXES: '44' is not an E.164"),
        ({"OUTBOUND_BLOCKED_PREFIXES": "default,+1x"}, "invalid setting OUTBOUND_BLOCKED_PREFIXES"),
        ({"ALLOWED_HOSTS": "https://a.example"}, "invalid setting ALLOWED_HOSTS"),
        ({"OPERATOR_OIDC_ISSUER": "https://login.example/t/v2.0"}, "OPERATOR_OIDC_AUDIENCE are needed together"),
        ({"OUTBOUND_RATE_PER_MINUTE": "0"}, "invalid setting OUTBOUND_RATE_PER_MINUTE"),
    ],
)  # fmt: skip
def test_bad_operator_settings_stop_with_one_line(monkeypatch, env, needle):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SettingsError) as err:
        load_settings()
    message = str(err.value)
    assert needle in message and "\n" not in message
    assert "cw_plain-key" not in message  # a key pasted by mistake is not echoed into logs


def test_key_helper_makes_keys_whose_entries_the_settings_accept():
    made = subprocess.run(
        [sys.executable, "-m", "callwright.security.keys", "new", "--role", "viewer"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    key = made.stdout.split("key (give to the client, store nowhere else): ")[1].split()[0]
    entry = made.stdout.split("OPERATOR_API_KEYS entry: ")[1].split()[0]
    assert entry == f"viewer:{hash_key(key)}"
    assert load_settings(operator_api_keys=entry).operator_api_keys == entry
    hashed = subprocess.run(
        [sys.executable, "-m", "callwright.security.keys", "hash", "-", "--role", "operator"],
        input=key + "\n", capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert hashed.stdout.strip() == f"operator:{hash_key(key)}"
