"""The HAProxy the scale tests put in front of replicas: round-robin per request without stickiness, a
WebSocket tunnelled through, the serving backend named in a header and in the log, and a backend whose
/ready answers 503 taken out of the rotation (how a draining replica stops getting new work)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from fastapi import FastAPI, WebSocket
from fastapi.responses import JSONResponse
from websockets.asyncio.client import connect

from support.haproxy import SERVED_BY_HEADER, HAProxy
from support.servers import running_app


def _tiny_app(name: str) -> FastAPI:
    app = FastAPI()
    app.state.ready = True

    @app.get("/ready")
    async def ready() -> JSONResponse:
        return JSONResponse({"ready": app.state.ready}, status_code=200 if app.state.ready else 503)

    @app.get("/who")
    async def who() -> dict[str, str]:
        return {"name": name}

    @app.websocket("/ws")
    async def ws(socket: WebSocket) -> None:
        await socket.accept()
        async for text in socket.iter_text():
            await socket.send_text(f"{name}:{text}")

    return app


async def test_round_robin_without_stickiness_and_a_websocket_through_it(tmp_path: Path) -> None:
    a, b = _tiny_app("a"), _tiny_app("b")
    async with running_app(a) as url_a, running_app(b) as url_b, HAProxy({"a": url_a, "b": url_b}, tmp_path) as lb:
        await lb.wait_up()
        # One keep-alive client connection: still every request is balanced on its own.
        async with httpx.AsyncClient(timeout=10) as http:
            answers = [(await http.get(f"{lb.url}/who")) for _ in range(6)]
        names = [r.json()["name"] for r in answers]
        assert sorted(set(names)) == ["a", "b"], names
        assert all(names[i] != names[i + 1] for i in range(len(names) - 1)), names  # strict alternation
        assert [r.headers[SERVED_BY_HEADER] for r in answers] == names

        async with connect(f"{lb.ws_url}/ws", open_timeout=10) as ws:
            await ws.send("hello")
            echoed = await asyncio.wait_for(ws.recv(), 10)
            # the tunnel stays up across messages
            await ws.send("again")
            again = await asyncio.wait_for(ws.recv(), 10)
        server = str(echoed).split(":")[0]
        assert echoed == f"{server}:hello" and again == f"{server}:again"

        logged = lb.requests()
        assert [r.server for r in logged if r.path == "/who"] == names
        assert lb.servers_for("/ws") == [server]
        assert [r.status for r in logged if r.path == "/ws"] == [101]


async def test_a_backend_answering_503_on_ready_leaves_the_rotation_and_comes_back(tmp_path: Path) -> None:
    a, b = _tiny_app("a"), _tiny_app("b")
    async with running_app(a) as url_a, running_app(b) as url_b, HAProxy({"a": url_a, "b": url_b}, tmp_path) as lb:
        await lb.wait_up()
        b.state.ready = False  # what a draining replica does
        await asyncio.to_thread(lb.wait_states, {"b": "DOWN", "a": "UP"}, 20)
        async with httpx.AsyncClient(timeout=10) as http:
            names = [(await http.get(f"{lb.url}/who")).json()["name"] for _ in range(4)]
        assert names == ["a"] * 4
        b.state.ready = True
        await lb.wait_up(20)
        async with httpx.AsyncClient(timeout=10) as http:
            names = [(await http.get(f"{lb.url}/who")).json()["name"] for _ in range(4)]
        assert set(names) == {"a", "b"}


async def test_a_killed_backend_is_skipped_at_once(tmp_path: Path) -> None:
    """A request refused at connect time goes to another server (retries + redispatch) even before the
    health check has seen the backend die."""
    a = _tiny_app("a")
    async with running_app(a) as url_a:
        dead = "http://127.0.0.1:1"  # nothing listens there: connection refused
        async with HAProxy({"a": url_a, "dead": dead}, tmp_path, check_interval_ms=60_000) as lb:
            async with httpx.AsyncClient(timeout=20) as http:
                answers = [await http.get(f"{lb.url}/who") for _ in range(4)]
            assert [r.status_code for r in answers] == [200] * 4
            assert {r.json()["name"] for r in answers} == {"a"}
