"""The toll-fraud guard on outbound calls, against a real server and ACS stand-in: destinations,
per-credential and global rate limits, the cap on calls in progress, draining, the context cap, the
audit log, and pending entries released when ACS fails."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import httpx
import pytest

from callwright.security.tollfraud import DEFAULT_BLOCKED_PREFIXES, DestinationPolicy, RateLimiter, parse_prefixes
from server.conftest import ACCESS_KEY
from support.servers import free_port

from .conftest import OPERATOR_KEY, OTHER_OPERATOR_KEY, VIEWER_KEY, bearer, key_id, secured_server

RECORDED = json.loads((Path(__file__).parents[1] / "data" / "events" / "recorded.json").read_text())
RECORDED_CALL_ID = RECORDED["CallConnected"][0]["data"]["callConnectionId"]


def created(edge) -> int:
    """create_call requests that reached the ACS stand-in."""
    return len([r for r in edge.acs.requests if r.path == "/calling/callConnections" and r.method == "POST"])


async def place(http: httpx.AsyncClient, target: str, key: str = OPERATOR_KEY, **extra) -> httpx.Response:
    return await http.post("/api/v1/calls", json={"target": target, **extra}, headers=bearer(key))


# --- the destination policy itself -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("allowed", "blocked", "target", "ok"),
    [
        ("", None, "4:+19005551234", False),  # premium rate, blocked by default
        ("", None, "4:+19765551234", False),
        ("", None, "4:+449012345678", False),  # UK 09x
        ("", None, "4:+882345678901", False),  # international networks
        ("", None, "4:+15551234567", True),
        ("", None, "4:+442071234567", True),  # UK geographic
        ("", None, "8:acs:resource_0000-1111", True),
        ("+1,+44", None, "4:+15551234567", True),
        ("+1,+44", None, "4:+4930123456", False),  # Germany is not on the list
        ("+1,+44", None, "4:+19005551234", False),  # +1 allowed, but +1900 is more specific and blocked
        ("+1,+1900555", None, "4:+19005551234", True),  # an explicit, more specific allow re-opens it
        ("+1,+1900555", None, "4:+19007771234", False),
        ("", "none", "4:+19005551234", True),
        ("", "+1876", "4:+19005551234", True),  # replaces the defaults
        ("", "+1876", "4:+18765551234", False),
        ("", "default,+1876", "4:+19005551234", False),  # extends them
        ("", "default,+1876", "4:+18765551234", False),
        ("+44", None, "8:acs:resource_0000-1111", True),  # ACS users are not PSTN calls
    ],
)  # fmt: skip
def test_destination_policy(allowed, blocked, target, ok):
    refusal = DestinationPolicy.from_settings(allowed, blocked).refusal(target)
    assert (refusal is None) == ok, refusal


def test_prefix_lists_are_validated_and_defaults_documented():
    assert parse_prefixes(" +1, +44 ,,") == ("+1", "+44")
    assert parse_prefixes("default", allow_keywords=True) == DEFAULT_BLOCKED_PREFIXES
    for bad in ("1", "+", "+1a", "+1234567890123456", "default"):
        with pytest.raises(ValueError, match=r"not an E\.164 prefix"):
            parse_prefixes(bad)
    assert {"+1900", "+1976", "+4490", "+4491", "+449"} <= set(DEFAULT_BLOCKED_PREFIXES)


def test_rate_limiter_takes_from_both_buckets_only_when_both_have_a_token():
    limiter = RateLimiter(per_key_per_minute=2, global_per_minute=3)
    assert limiter.acquire("a") is None and limiter.acquire("a") is None
    limited = limiter.acquire("a")
    assert limited is not None and limited[0] == "OUTBOUND_RATE_PER_MINUTE" and 1 <= limited[1] <= 30
    assert limiter.acquire("b") is None  # global now spent
    limited = limiter.acquire("c")
    assert limited is not None and limited[0] == "OUTBOUND_GLOBAL_RATE_PER_MINUTE"
    # "c" was refused by the global bucket without losing its own token: one of its two is still there.
    limiter._global._tokens = 3.0
    assert limiter.acquire("c") is None and limiter.acquire("c") is None
    assert limiter.acquire("c") is not None


# --- against the server ------------------------------------------------------------------------------


async def test_premium_rate_refused_by_default_and_allowed_numbers_placed(caplog):
    caplog.set_level(logging.INFO, logger="callwright.audit")
    async with secured_server() as edge, httpx.AsyncClient(base_url=edge.url, timeout=30) as http:
        for number in ("+19005550100", "+19765550100", "+449012345678"):
            resp = await place(http, number)
            assert resp.status_code == 403, resp.text
            assert resp.json()["error"] == "destination_not_allowed" and "blocked range" in resp.json()["detail"]
        assert created(edge) == 0 and await edge.state.directory.pending_count() == 0
        assert (await place(http, "+15551230001")).status_code == 201
        assert (await place(http, "8:acs:resource_1234-abcd")).status_code == 201
        assert created(edge) == 2
        entries = (await http.get("/api/v1/audit", headers=bearer(OPERATOR_KEY))).json()["entries"]
        metrics = (await http.get("/metrics", headers=bearer(VIEWER_KEY))).text
    assert 'callwright_outbound_total{outcome="refused:destination_not_allowed"} 3.0' in metrics
    assert 'callwright_outbound_total{outcome="placed"} 2.0' in metrics
    refused = [e for e in entries if e["outcome"] == "refused:destination_not_allowed"]
    assert [e["target"] for e in reversed(refused)] == ["+19005550100", "+19765550100", "+449012345678"]
    assert all(e["actor"] == key_id(OPERATOR_KEY) for e in refused)
    lines = [r.getMessage() for r in caplog.records if r.name == "callwright.audit"]
    assert sum("outcome=refused:destination_not_allowed" in line for line in lines) == 3
    assert sum("outcome=placed" in line for line in lines) == 2


async def test_allow_list_limits_destinations():
    async with (
        secured_server(outbound_allowed_prefixes="+1555,+44") as edge,
        httpx.AsyncClient(base_url=edge.url, timeout=30) as http,
    ):
        assert (await place(http, "+15551230001")).status_code == 201
        assert (await place(http, "+442071234567")).status_code == 201
        for number in ("+15561230001", "+4930123456", "+449012345678"):
            resp = await place(http, number)
            assert resp.status_code == 403, (number, resp.text)
        assert "OUTBOUND_ALLOWED_PREFIXES" in (await place(http, "+4930123456")).json()["detail"]
        assert created(edge) == 2


async def test_rate_limits_per_credential_and_global():
    async with (
        secured_server(outbound_rate_per_minute=2, outbound_global_rate_per_minute=3) as edge,
        httpx.AsyncClient(base_url=edge.url, timeout=30) as http,
    ):
        assert (await place(http, "+15551230001")).status_code == 201
        assert (await place(http, "+15551230002")).status_code == 201
        limited = await place(http, "+15551230003")
        assert limited.status_code == 429 and limited.json()["error"] == "rate_limited"
        assert "OUTBOUND_RATE_PER_MINUTE" in limited.json()["detail"]
        assert 1 <= int(limited.headers["retry-after"]) <= 30
        # Another key has its own bucket, until the global one is empty.
        assert (await place(http, "+15551230004", OTHER_OPERATOR_KEY)).status_code == 201
        limited = await place(http, "+15551230005", OTHER_OPERATOR_KEY)
        assert limited.status_code == 429 and "OUTBOUND_GLOBAL_RATE_PER_MINUTE" in limited.json()["detail"]
        assert int(limited.headers["retry-after"]) >= 1
        assert created(edge) == 3
        audit = (await http.get("/api/v1/audit", headers=bearer(OPERATOR_KEY))).json()["entries"]
        assert sum(e["outcome"] == "refused:rate_limited" for e in audit) == 2


async def test_cap_on_outbound_calls_in_progress():
    async with (
        secured_server(outbound_max_concurrent=2) as edge,
        httpx.AsyncClient(base_url=edge.url, timeout=30) as http,
    ):
        first = await place(http, "+15551230001")
        assert first.status_code == 201
        assert (await place(http, "+15551230002")).status_code == 201
        capped = await place(http, "+15551230003")
        assert capped.status_code == 429 and capped.json()["error"] == "too_many_calls"
        assert "OUTBOUND_MAX_CONCURRENT" in capped.json()["detail"] and capped.headers["retry-after"]
        assert created(edge) == 2
        # One call ends (ACS reports CallDisconnected): room for one more.
        call_id = first.json()["call_connection_id"]
        event = json.loads(json.dumps(RECORDED["CallDisconnected"]).replace(RECORDED_CALL_ID, call_id))
        resp = await http.post(edge.webhook(secret=False), json=event, headers=edge.auth())
        assert resp.status_code == 200, resp.text
        await edge.state.processor.drain()
        assert edge.state.calls.get(call_id).state == "disconnected"
        assert (await place(http, "+15551230003")).status_code == 201
        assert (await place(http, "+15551230004")).status_code == 429


async def test_no_calls_placed_while_draining():
    async with secured_server() as edge, httpx.AsyncClient(base_url=edge.url, timeout=30) as http:
        edge.state.draining = True
        resp = await place(http, "+15551230001")
        assert resp.status_code == 503 and resp.json()["error"] == "draining"
        assert created(edge) == 0 and await edge.state.directory.pending_count() == 0
        assert (await http.get("/ready")).json()["checks"]["draining"] is True


async def test_context_size_is_capped():
    async with (
        secured_server(outbound_context_max_bytes=1024) as edge,
        httpx.AsyncClient(base_url=edge.url, timeout=30) as http,
    ):
        big = await place(http, "+15551230001", context={"notes": "x" * 1100})
        assert big.status_code == 422 and big.json()["error"] == "context_too_large"
        assert "OUTBOUND_CONTEXT_MAX_BYTES" in big.json()["detail"]
        huge = await place(http, "+15551230001", context={"notes": "x" * 100_000})
        assert huge.status_code == 413 and huge.json()["error"] == "body_too_large"
        deep: dict = {}
        node = deep
        for _ in range(300):
            node["a"] = {}
            node = node["a"]
        nested = await http.post(
            "/api/v1/calls",
            content=json.dumps({"target": "+15551230001", "context": deep}),
            headers={**bearer(OPERATOR_KEY), "Content-Type": "application/json"},
        )
        assert nested.status_code == 422, nested.text
        assert created(edge) == 0 and await edge.state.directory.pending_count() == 0
        fine = await place(http, "+15551230001", context={"customer_name": "Ada"})
        assert fine.status_code == 201
        assert edge.state.calls.get(fine.json()["call_connection_id"]).context["customer_name"] == "Ada"


async def test_pending_entry_removed_when_acs_is_unreachable():
    closed = free_port()  # nothing listens here: every create_call attempt is refused
    async with secured_server() as edge, httpx.AsyncClient(base_url=edge.url, timeout=60) as http:
        from callwright.acs.call_control import CallAutomation

        st = edge.state
        good = st.automation
        st.automation = CallAutomation(
            f"endpoint=http://127.0.0.1:{closed}/;accesskey={ACCESS_KEY}",
            callback_url=st.settings.callback_url,
            media_url=st.settings.media_url,
        )
        try:
            resp = await place(http, "+15551230001")
        finally:
            await st.automation.close()
            st.automation = good
        assert resp.status_code == 502, resp.text
        assert resp.json()["error"] == "create_call_failed" and resp.json()["detail"]
        assert await st.directory.pending_count() == 0
        assert st.calls.active() == []
        audit = (await http.get("/api/v1/audit", headers=bearer(OPERATOR_KEY))).json()["entries"]
        assert audit[0]["action"] == "place" and audit[0]["outcome"] == "failed"
        # The failed attempt does not count against the cap on calls in progress.
        assert (await place(http, "+15551230001")).status_code == 201


def test_audit_tail_keeps_operators_entries_when_flooded_by_anonymous_refusals(caplog):
    from callwright.security.audit import AuditLog

    caplog.set_level(logging.INFO, logger="callwright.audit")
    audit = AuditLog(maxlen=50)
    audit.record(actor="key:0123abcd", action="place", target="+15551230001", outcome="placed")
    for _ in range(5000):
        audit.record(actor="anonymous", action="POST /api/v1/calls", outcome="refused:unauthorized")
    entries = audit.entries()
    assert any(e["actor"] == "key:0123abcd" for e in entries)
    assert len(entries) == 1 + 50  # the anonymous tail is capped too (at min(maxlen, ANONYMOUS_KEPT))
    # Every one still has its log line, and control characters cannot forge another line.
    audit.record(actor="oidc:eve\nFAKE audit actor=key:x", action="hang_up", outcome="hanging_up", call_id="c\r1")
    line = [r.getMessage() for r in caplog.records][-1]
    assert "\n" not in line and "\r" not in line and "eve\\nFAKE" in line
    assert sum(1 for r in caplog.records if r.name == "callwright.audit") == 5002
