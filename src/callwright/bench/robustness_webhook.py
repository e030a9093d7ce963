"""The webhook attack: thousands of good, bad and hostile bodies to ``/api/v1/call-events``, then whether
the server still serves (health, operator API, metrics, a whole scripted call)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

import httpx

from callwright.bench.lag import LagMonitor
from callwright.bench.robustness_common import SEED, Note, _user_turns
from callwright.bench.robustness_inputs import WebhookInput, webhook_inputs

if TYPE_CHECKING:
    from callwright.bench.robustness import RobustnessPlan


def _secret_params(inp: WebhookInput, secret: str) -> tuple[dict[str, str], dict[str, str]]:
    params: dict[str, str] = {}
    headers = {"content-type": inp.content_type} if inp.content_type else {}
    if inp.secret == "valid":
        params["secret"] = secret
    elif inp.secret == "wrong":
        params["secret"] = secret[:-2] + "xx"
    elif inp.secret == "code":
        params["code"] = secret
    elif inp.secret == "bearer_garbage":
        headers["authorization"] = "Bearer not.a.token"
    return params, headers


WHOLE_CALL_SCRIPT = """
name: robustness whole call
direction: inbound
from: "+15552220000"
to: "+15550001000"
timeout_s: 60
transcribe: false
steps:
  - barge_in: {at_ms: 800, of: next, timeout_s: 20, say: "What are your opening hours?"}
  - silence: 3.0
  - hangup
"""


async def _still_serving(stack: Any, http: httpx.AsyncClient) -> dict[str, Any]:
    """What a victim of the attack would check: liveness, the operator API, metrics, a whole call."""
    auth = dict(getattr(stack, "operator_headers", {}) or {})
    out: dict[str, Any] = {}
    for name, path in (("health", "/health"), ("calls_api", "/api/v1/calls"), ("metrics", "/metrics")):
        t = time.monotonic()
        try:
            resp = await http.get(f"{stack.url}{path}", headers=auth, timeout=30)
            out[name] = {"status": resp.status_code, "ms": round((time.monotonic() - t) * 1000),
                         "bytes": len(resp.content)}  # fmt: skip
        except httpx.HTTPError as exc:
            out[name] = {"status": None, "error": type(exc).__name__}
    out["whole_call"] = await _whole_call(stack)
    return out


async def _whole_call(stack: Any, script: str = WHOLE_CALL_SCRIPT) -> dict[str, Any]:
    from callwright.emulator.phone import build_phone_from_script

    try:
        phone = build_phone_from_script(script, transcriber=stack.transcriber)
        spec = phone.script
        call = await stack.emulator.place_inbound_call(phone, from_number=spec.from_number, to_number=spec.to_number)
        report = await asyncio.wait_for(phone.run(call), 90)
    except Exception as exc:  # a refused or broken call is the outcome being measured
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    turns = _user_turns(stack, call.call_connection_id)
    return {"ok": bool(report.get("ok")) and turns >= 1, "phone_ok": bool(report.get("ok")), "user_turns": turns,
            "call_id": call.call_connection_id}  # fmt: skip


async def post_bodies(url: str, inputs: list[WebhookInput], secret: str, *, workers: int = 12) -> dict[str, Any]:
    """Send every body (``workers`` at a time) and count the answers: the webhook surface's core."""
    statuses: Counter[str] = Counter()
    by_kind_5xx: Counter[str] = Counter()
    dropped: Counter[str] = Counter()
    accepted_unauthenticated = 0
    slowest = (0.0, "")
    it = iter(inputs)

    async def worker(http: httpx.AsyncClient) -> None:
        nonlocal accepted_unauthenticated, slowest
        for inp in it:
            params, headers = _secret_params(inp, secret)
            t = time.monotonic()
            try:
                resp = await http.request(inp.method, url, params=params, content=inp.body, headers=headers)
            except httpx.HTTPError as exc:
                dropped[f"{inp.kind}:{type(exc).__name__}"] += 1
                continue
            took = time.monotonic() - t
            if took > slowest[0]:
                slowest = (took, inp.kind)
            statuses[str(resp.status_code)] += 1
            if resp.status_code >= 500:
                by_kind_5xx[inp.kind] += 1
            if inp.secret in ("none", "wrong", "bearer_garbage") and 200 <= resp.status_code < 300:
                accepted_unauthenticated += 1

    t0 = time.monotonic()
    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=workers)) as http:
        await asyncio.gather(*(worker(http) for _ in range(workers)))
    return {
        "inputs": len(inputs),
        "http_5xx": sum(v for k, v in statuses.items() if k.startswith("5")),
        "dropped": sum(dropped.values()),
        "dropped_by_kind": dict(dropped),
        "statuses": dict(statuses),
        "5xx_by_kind": dict(by_kind_5xx),
        "accepted_without_secret": accepted_unauthenticated,
        "inputs_by_kind": dict(Counter(i.kind for i in inputs)),
        "wall_s": round(time.monotonic() - t0, 1),
        "slowest_request": {"s": round(slowest[0], 2), "kind": slowest[1]},
    }


async def webhook_surface(stack: Any, plan: RobustnessPlan, note: Note) -> dict[str, Any]:
    note(f"webhook: {plan.webhook_bodies:,} bodies")
    inputs: list[WebhookInput] = await asyncio.to_thread(
        lambda: list(webhook_inputs(plan.webhook_bodies, SEED, big_batches=plan.big_batches))
    )
    lag = LagMonitor()  # this process's loop is the server's: its stalls are the server's
    lag.start()
    try:
        out = await post_bodies(f"{stack.url}/api/v1/call-events", inputs,
                                stack.settings.eventgrid_secret.get_secret_value())  # fmt: skip
    finally:
        out_lag = lag.take()
        await lag.stop()
    out["loop_lag_ms"] = out_lag
    note("webhook: is the server still serving?")
    async with httpx.AsyncClient() as http:
        out["after"] = await _still_serving(stack, http)
    return out
