"""``GET /api/v1/live``: the operator page's live updates, pushed as Server-Sent Events.

The stream sends the call lists (the same JSON as ``GET /api/v1/calls``) at once and again whenever a call
changes, with the ids that changed, so the page re-reads a call's detail only when it moved; and the
readiness of the server when it changes. Changes arrive through the :class:`~callwright.sessions.feed.CallFeed`
(``app.state.feed``: notices from this process and, with Redis, from the other replicas). The stream also
compares what it would send every second, so it is right even where no notice is raised (a transcript
line, a call restored from the store).

Same credentials as the rest of the operator API (viewer role). The page reads it with ``fetch`` and an
``Authorization`` header rather than ``EventSource``, which cannot send one: the key never goes in a URL.
A stream ends by itself after ``_MAX_STREAM_S`` (the page reconnects), when the server shuts down, and
when the client goes away.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from callwright.api import calls as calls_api
from callwright.api import health as health_api
from callwright.security.operator import OperatorRoute, require_role
from callwright.security.principal import Principal
from callwright.sessions.feed import EVERYTHING, CallFeed

log = logging.getLogger("callwright.live")


@contextlib.asynccontextmanager
async def feed_lifespan(app: Any) -> AsyncIterator[None]:
    """Builds ``app.state.feed`` unless the app's own lifespan already did (then that one is used)."""
    st = app.state
    if getattr(st, "feed", None) is not None:
        yield
        return
    settings = st.settings
    st.feed = feed = CallFeed(settings.redis_url, prefix=settings.session_key_prefix)
    await feed.start()
    try:
        yield
    finally:
        await feed.close()
        st.feed = None


router = APIRouter(prefix="/api/v1", route_class=OperatorRoute, lifespan=feed_lifespan)

_CHECK_S = 1.0  # the stream's own comparison, for changes nobody announced
_READY_EVERY_S = 5.0
_KEEPALIVE_S = 15.0  # a comment line, so proxies do not close an idle stream
_MAX_STREAM_S = 600.0  # then the page reconnects: no stream lives for ever
_HEADERS = {"Cache-Control": "no-cache, no-store", "X-Accel-Buffering": "no", "X-Content-Type-Options": "nosniff"}


def _event(name: str, data: Any) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _marks(st: Any) -> dict[str, tuple[Any, ...]]:
    """Per call held here, what the page shows of it in the detail view: state, events, transcript."""
    out: dict[str, tuple[Any, ...]] = {}
    for record in st.calls.active():
        history = record.memo.history if record.memo is not None else []
        last = history[-1] if history else {}
        out[record.call_connection_id] = (
            record.state,
            record.end_reason,
            len(record.events_seen),
            len(record.participants),
            len(history),
            str(last.get("content", ""))[-40:],
            bool(last.get("interrupted")),
        )
    return out


def _list_marks(lists: dict[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for group in ("active", "recent"):
        for call in lists.get(group) or []:
            if isinstance(call, dict) and "call_connection_id" in call:
                out[str(call["call_connection_id"])] = json.dumps(call, sort_keys=True, default=str)
    return out


async def _lists(request: Request, who: Principal) -> dict[str, Any]:
    # The calls route's own function: the stream always shows exactly what GET /api/v1/calls would.
    result = calls_api.list_calls(request, who)
    if asyncio.iscoroutine(result):
        result = await result
    return dict(result)


async def _ready(request: Request) -> dict[str, Any]:
    try:
        resp = await health_api.ready(request)
        body = json.loads(bytes(resp.body))
    except Exception as exc:  # a readiness probe that breaks must not end the stream
        log.warning("live stream: readiness check failed: %s", exc)
        return {"ready": False, "checks": {}}
    checks = body.get("checks") or {}
    store = checks.get("store") or {}
    automation = checks.get("automation_client") or {}
    return {
        "ready": bool(body.get("ready")),
        "store_reachable": bool(store.get("reachable")),
        "acs_configured": bool(automation.get("configured")),
        "draining": bool(checks.get("draining")),
    }


def _stopping(st: Any, feed: CallFeed | None) -> bool:
    server = getattr(st, "http_server", None)
    return bool(getattr(server, "should_exit", False)) or (feed is not None and feed.closed)


async def _stream(request: Request, who: Principal) -> AsyncIterator[bytes]:
    st = request.app.state
    feed: CallFeed | None = getattr(st, "feed", None)
    started = time.monotonic()
    with feed.subscribe() if feed is not None else contextlib.nullcontext() as sub:
        lists = await _lists(request, who)
        shown = _list_marks(lists)
        marks = _marks(st)
        yield b"retry: 2000\n\n"
        yield _event("calls", {**lists, "changed": None})
        ready = await _ready(request)
        yield _event("ready", ready)
        last_ready = last_sent = time.monotonic()
        while time.monotonic() - started < _MAX_STREAM_S and not _stopping(st, feed):
            if sub is not None:
                noticed = await sub.wait(_CHECK_S)
            else:
                await asyncio.sleep(_CHECK_S)
                noticed = set()
            if await request.is_disconnected():
                break
            now_marks = _marks(st)
            changed = {cid for cid in now_marks.keys() | marks.keys() if now_marks.get(cid) != marks.get(cid)}
            marks = now_marks
            lists = await _lists(request, who)
            now_shown = _list_marks(lists)
            changed |= {cid for cid in now_shown.keys() | shown.keys() if now_shown.get(cid) != shown.get(cid)}
            shown = now_shown
            everything = EVERYTHING in noticed
            changed |= noticed - {EVERYTHING}
            now = time.monotonic()
            if changed or everything:
                yield _event("calls", {**lists, "changed": None if everything else sorted(changed)})
                last_sent = now
            if now - last_ready >= _READY_EVERY_S:
                last_ready = now
                fresh = await _ready(request)
                if fresh != ready:
                    ready = fresh
                    yield _event("ready", ready)
                    last_sent = now
            if now - last_sent >= _KEEPALIVE_S:
                yield b": keep-alive\n\n"
                last_sent = now
        yield _event("bye", {"reconnect": not _stopping(st, feed)})


@router.get("/live", response_class=StreamingResponse)
async def live(request: Request, who: Principal = Depends(require_role("viewer"))) -> StreamingResponse:
    return StreamingResponse(_stream(request, who), media_type="text/event-stream", headers=_HEADERS)
