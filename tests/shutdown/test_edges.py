"""Bounded edges on a real uvicorn server: header/body/idle deadlines and the connection cap, while
/health keeps answering; an outbound POST with ACS down becomes a quick 502."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Iterator

import httpx
from fastapi import FastAPI, Request, WebSocket

from callwright.localstack import free_port
from callwright.serving import ServerLimits, build_server
from support.servers import running_app


def tiny_app() -> FastAPI:
    app = FastAPI()

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"bytes": len(await request.body())}

    return app


@contextlib.asynccontextmanager
async def bounded(limits: ServerLimits) -> AsyncIterator[int]:
    port = free_port()
    server = build_server(tiny_app(), host="127.0.0.1", port=port, limits=limits)
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done()
        await asyncio.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 20)


@contextlib.contextmanager
def raw(port: int) -> Iterator[socket.socket]:
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        yield s
    finally:
        s.close()


async def closed_within(s: socket.socket, timeout: float) -> float:
    """Seconds until the server closes ``s`` (EOF or reset); fails after ``timeout``."""
    started = time.monotonic()
    s.setblocking(False)
    loop = asyncio.get_running_loop()
    while time.monotonic() - started < timeout:
        try:
            data = await asyncio.wait_for(loop.sock_recv(s, 4096), 0.2)
        except TimeoutError:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return time.monotonic() - started
        if data == b"":
            return time.monotonic() - started
    raise AssertionError(f"the server kept the connection open for more than {timeout}s")


async def health(port: int) -> int:
    async with httpx.AsyncClient(timeout=5) as http:
        return (await http.get(f"http://127.0.0.1:{port}/health")).status_code


async def test_a_slowloris_header_is_cut_at_the_header_timeout_while_health_answers():
    async with bounded(ServerLimits(header_timeout=1.5, body_timeout=5)) as port:
        with raw(port) as slow, raw(port) as idle:
            loop = asyncio.get_running_loop()
            started = time.monotonic()

            async def trickle() -> None:  # a header byte every 0.2 s, never finished
                with contextlib.suppress(OSError):
                    for byte in b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200:
                        await loop.sock_sendall(slow, bytes([byte]))
                        await asyncio.sleep(0.2)

            sender = asyncio.create_task(trickle())
            assert await health(port) == 200  # answered while the slow sockets are open
            took_slow = await closed_within(slow, 10)
            took_idle = await closed_within(idle, 10)  # a socket that never sends a byte
            sender.cancel()
            assert time.monotonic() - started >= 1.0
            assert took_slow < 1.5 + 3 and took_idle < 1.5 + 3
            assert await health(port) == 200


async def test_a_trickling_body_is_cut_at_the_body_timeout():
    async with bounded(ServerLimits(header_timeout=5, body_timeout=1.5)) as port:
        with raw(port) as s:
            s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10)
            took = await closed_within(s, 10)
            assert 1.0 <= took < 1.5 + 3
        # A body that arrives in time is served.
        async with httpx.AsyncClient() as http:
            resp = await http.post(f"http://127.0.0.1:{port}/echo", content=b"y" * 5000)
        assert resp.json() == {"bytes": 5000}


async def test_keep_alive_connections_serve_requests_and_idle_ones_close():
    async with bounded(ServerLimits(header_timeout=3, keep_alive=1)) as port:
        with raw(port) as s:
            s.setblocking(False)
            loop = asyncio.get_running_loop()
            for _ in range(3):  # requests on one connection keep working
                await loop.sock_sendall(s, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                assert b"200 OK" in await asyncio.wait_for(loop.sock_recv(s, 4096), 5)
                await asyncio.sleep(0.3)
            took = await closed_within(s, 10)  # then idle: closed by the keep-alive timeout
            assert took < 1 + 3


async def test_the_connection_cap_drops_stalest_idle_sockets_and_health_still_answers():
    async with bounded(ServerLimits(header_timeout=30, max_connections=8)) as port:
        socks = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(40)]
        try:
            for s in socks:
                s.sendall(b"GET /health HTTP/1.1\r\n")  # headers never finished
            await asyncio.sleep(0.5)
            for _ in range(5):
                assert await health(port) == 200  # never locked out by the idle flood
            closed = 0
            for s in socks:
                s.setblocking(False)
                try:
                    if s.recv(1) == b"":
                        closed += 1
                except BlockingIOError:
                    pass
                except OSError:
                    closed += 1
            assert closed >= 40 - 8  # at most the cap stays open
        finally:
            for s in socks:
                s.close()


async def test_an_outbound_call_with_acs_down_is_a_quick_502(tmp_path):
    from callwright.app import create_app
    from callwright.config import load_settings
    from server.conftest import ACCESS_KEY

    port = free_port()
    settings = load_settings(
        acs_connection_string=f"endpoint=http://127.0.0.1:{free_port()}/;accesskey={ACCESS_KEY}",
        acs_callback_url=f"http://127.0.0.1:{port}",
        acs_auth_enabled=False,
        acs_request_timeout_seconds=1.0,
        acs_source_phone_number="+15550001000",
        operator_dev_loopback=True,
        stt_pool_warm=0,
        tts_pool_warm=0,
        session_spill_dir=tmp_path,
    )
    app = create_app(settings)
    async with running_app(app, port=port) as url, httpx.AsyncClient(timeout=30) as http:
        started = time.monotonic()
        resp = await http.post(f"{url}/api/v1/calls", json={"target": "+15551230001"})
        elapsed = time.monotonic() - started
        assert resp.status_code == 502, resp.text
        assert "create_call" in resp.text and ("unreachable" in resp.text or "timed out" in resp.text)
        assert elapsed < 6
        assert await app.state.directory.pending_count() == 0  # nothing left behind


def ws_app() -> FastAPI:
    app = tiny_app()

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.close()

    return app


async def test_a_websocket_upgrade_with_an_oversized_header_gets_a_431_not_silence():
    """The websockets library re-parses an upgrade with an 8 KB line limit and, past it, uvicorn neither
    answered nor closed: ACS's media socket (or a scanner) hung until the header timeout."""
    port = free_port()
    server = build_server(ws_app(), host="127.0.0.1", port=port, limits=ServerLimits(header_timeout=30))
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done()
        await asyncio.sleep(0.02)
    try:
        for size, expected in ((2_000, b"101"), (9_000, b"431"), (60_000, b"431")):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(
                (
                    f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                    f"Authorization: Bearer {'a' * size}\r\n\r\n"
                ).encode()
            )
            await writer.drain()
            status = await asyncio.wait_for(reader.readline(), 10)  # well inside the 30 s header timeout
            assert status.split(b" ")[1] == expected, (size, status)
            writer.close()
        assert await health(port) == 200
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 20)
