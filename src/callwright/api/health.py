"""Liveness, readiness and Prometheus metrics.

``/health`` and ``/ready`` stay open for load balancers and orchestrators, so they say only what a probe
needs (reachable or not, counts) — no error strings, hosts or call details. ``/metrics`` needs the
viewer role like the rest of the operator API (give the scraper a viewer key).
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from callwright.security.operator import OperatorRoute, require_role
from callwright.security.principal import Principal

router = APIRouter(route_class=OperatorRoute)


@router.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready")
async def ready(request: Request) -> Response:
    st = request.app.state
    try:
        store_ok = await asyncio.wait_for(st.store.ping(), timeout=1.0)
    except TimeoutError:
        store_ok = False
    draining = bool(getattr(st, "draining", False))
    store = st.store.health()
    checks: dict[str, Any] = {
        # Only the kind and reachability: the store's last error text can name hosts and addresses.
        "store": {"kind": store.get("kind"), "reachable": store_ok},
        "automation_client": {"configured": st.automation is not None},
        "calls_active": len(st.calls),
        "pools": st.pool_stats() if callable(getattr(st, "pool_stats", None)) else {},
        "draining": draining,
        # Sessions whose final save waits for the store (retried in the background, spilled at exit).
        "sessions_unsaved": st.saver.pending if getattr(st, "saver", None) is not None else 0,
        # Lane restarts and calls that lost speech input (apologised to, then transferred or ended).
        "media": st.media_health.snapshot() if getattr(st, "media_health", None) is not None else {},
    }
    ok = store_ok and st.automation is not None and not draining
    return JSONResponse({"ready": ok, "checks": checks}, status_code=200 if ok else 503)


@router.get("/metrics")
async def metrics(request: Request, who: Principal = Depends(require_role("viewer"))) -> Response:
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
