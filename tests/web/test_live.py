"""The change feed and the live stream (/api/v1/live): local fan-out, Redis across replicas, auth, ends."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from callwright.app import create_app
from callwright.config import load_settings
from callwright.localstack import free_port, serve_asgi
from callwright.security.keys import hash_key, new_key
from callwright.sessions.feed import EVERYTHING, CallFeed


async def test_notices_fan_out_to_every_subscriber_and_a_slow_one_gets_everything():
    feed = CallFeed()
    await feed.start()
    try:
        with feed.subscribe() as a, feed.subscribe() as b:
            assert feed.subscribers == 2
            feed.notify("call-1")
            feed.notify("call-2")
            feed.notify("")  # ignored: not an id
            assert await a.wait(5) == {"call-1", "call-2"}
            assert await b.wait(5) == {"call-1", "call-2"}
            assert await a.wait(0.05) == set()  # nothing new: the wait times out empty
            for i in range(1000):  # far more than a subscriber's queue holds
                feed.notify(f"call-{i}")
            assert EVERYTHING in await a.wait(5)
        assert feed.subscribers == 0
    finally:
        await feed.close()


async def test_a_notice_on_one_replica_reaches_the_other_through_redis(redis_server):
    a = CallFeed(redis_server.url, prefix="t1")
    b = CallFeed(redis_server.url, prefix="t1")
    other = CallFeed(redis_server.url, prefix="t2")  # another deployment on the same Redis
    for feed in (a, b, other):
        await feed.start()
    try:
        for feed in (a, b, other):
            await asyncio.wait_for(feed.listening.wait(), 15)
        assert a.channel == "t1:feed"
        with a.subscribe() as on_a, b.subscribe() as on_b, other.subscribe() as on_other:
            a.notify("call-x")
            assert await on_b.wait(15) == {"call-x"}
            assert await on_a.wait(5) == {"call-x"}
            # A's own notice came back from Redis too (B got it by then), and was not fanned out twice.
            assert b.received == 1
            assert await on_a.wait(0.5) == set()
            assert a.published == 1 and a.received == 0
            assert await on_other.wait(0.3) == set()
    finally:
        for feed in (a, b, other):
            await feed.close()


async def test_a_feed_without_redis_keeps_working_when_redis_is_unreachable():
    feed = CallFeed(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    await feed.start()
    try:
        with feed.subscribe() as sub:
            feed.notify("call-1")
            assert await sub.wait(5) == {"call-1"}  # the local fan-out does not wait for Redis
        assert not feed.listening.is_set()
    finally:
        await asyncio.wait_for(feed.close(), 10)


class Events:
    """An SSE stream read event by event."""

    def __init__(self, resp: httpx.Response) -> None:
        self.resp = resp
        self.lines = resp.aiter_lines()

    async def next(self, timeout: float = 20) -> tuple[str, Any]:
        async def read() -> tuple[str, Any]:
            name, data = "message", []
            async for line in self.lines:
                if line == "":
                    if data:
                        return name, json.loads("\n".join(data))
                    name = "message"
                    continue
                if line.startswith("event:"):
                    name = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].strip())
            raise AssertionError("the stream ended")

        return await asyncio.wait_for(read(), timeout)

    async def until(self, want: Any, timeout: float = 20) -> tuple[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            name, data = await self.next(max(0.1, deadline - time.monotonic()))
            if want(name, data):
                return name, data


def _app(key: str, redis_url: str | None = None) -> Any:
    settings = load_settings(
        acs_connection_string=None, redis_url=redis_url, operator_api_keys=f"viewer:{hash_key(key)}"
    )
    return create_app(settings)


@pytest.fixture
async def served() -> AsyncIterator[tuple[str, str, Any]]:
    key = new_key()
    app = _app(key)
    async with serve_asgi(app, free_port()) as url:
        yield url, key, app


async def test_the_stream_needs_the_operator_key(served):
    url, _, _ = served
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        resp = await http.get("/api/v1/live")
        assert resp.status_code == 401
        assert resp.json()["error"] == "unauthorized"
        resp = await http.get("/api/v1/live", headers={"Authorization": "Bearer cw_wrong"})
        assert resp.status_code == 401 and resp.json()["error"] == "invalid_credentials"
        # Another site's page cannot open it in the operator's browser either.
        resp = await http.get("/api/v1/live", headers={"Origin": "https://evil.example"})
        assert resp.status_code == 403 and resp.json()["error"] == "cross_origin"


async def test_the_stream_sends_the_lists_then_each_change_and_ends_when_the_server_stops():
    key = new_key()
    app = _app(key)
    headers = {"Authorization": f"Bearer {key}"}
    ended = asyncio.Event()
    async with (
        serve_asgi(app, free_port()) as url,
        httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(10, read=30)) as http,
        http.stream("GET", "/api/v1/live", headers=headers) as resp,
    ):
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        events = Events(resp)
        name, data = await events.next()
        assert name == "calls" and data == {"active": [], "recent": [], "changed": None}
        name, data = await events.next()
        assert name == "ready" and data["ready"] is False and data["acs_configured"] is False

        app.state.feed.notify("call-from-elsewhere")
        name, data = await events.until(lambda n, d: n == "calls")
        assert data["changed"] == ["call-from-elsewhere"]

        async def drain_rest() -> None:
            with contextlib.suppress(httpx.HTTPError):
                async for _ in events.lines:
                    pass
            ended.set()

        reader = asyncio.create_task(drain_rest())
        app.state.http_server.should_exit = True
        await asyncio.wait_for(ended.wait(), 15)  # the open stream did not hold the server up
        await reader


async def test_a_change_on_replica_b_reaches_a_page_on_replica_a(redis_server):
    key = new_key()
    app_a, app_b = _app(key, redis_server.url), _app(key, redis_server.url)
    headers = {"Authorization": f"Bearer {key}"}
    async with serve_asgi(app_a, free_port()) as url_a, serve_asgi(app_b, free_port()):
        await asyncio.wait_for(app_a.state.feed.listening.wait(), 15)
        await asyncio.wait_for(app_b.state.feed.listening.wait(), 15)
        async with (
            httpx.AsyncClient(base_url=url_a, timeout=httpx.Timeout(10, read=30)) as http,
            http.stream("GET", "/api/v1/live", headers=headers) as resp,
        ):
            assert resp.status_code == 200
            events = Events(resp)
            await events.until(lambda n, d: n == "ready")
            app_b.state.feed.notify("call-on-b")
            _, data = await events.until(lambda n, d: n == "calls" and "call-on-b" in (d["changed"] or []))
            assert data["changed"] == ["call-on-b"]
