"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

router = APIRouter()


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
    checks: dict[str, Any] = {
        "store": {**st.store.health(), "reachable": store_ok},
        "automation_client": {"configured": st.automation is not None},
        "calls_active": len(st.calls),
        "pools": st.pool_stats() if callable(getattr(st, "pool_stats", None)) else {},
    }
    ok = store_ok and st.automation is not None
    return JSONResponse({"ready": ok, "checks": checks}, status_code=200 if ok else 503)


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
