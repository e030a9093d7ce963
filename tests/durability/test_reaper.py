"""The call reaper: calls with no media and no events are checked with ACS and ended; ACS timeouts."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from callwright.acs.call_control import CallAutomation, CallControlError
from callwright.app import create_app
from callwright.config import load_settings
from callwright.events.handlers import ensure_call
from callwright.localstack import free_port
from server.conftest import ACCESS_KEY
from support.servers import running_app


@dataclass
class FakeAcs:
    """ACS's call-connection endpoints as the SDK sees them; ``states`` decides what each call is."""

    states: dict[str, str] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.api_route("/{path:path}", methods=["GET", "POST", "DELETE"])
        async def any_request(path: str, request: Request) -> Response:
            self.requests.append((request.method, "/" + path))
            parts = path.split("/")
            if len(parts) < 3 or parts[1] != "callConnections":
                return Response(status_code=202)
            cid = parts[2].split(":")[0]
            state = self.states.get(cid, "gone")
            if state == "gone":
                return JSONResponse({"error": {"code": "8522", "message": "call not found"}}, status_code=404)
            if request.method == "GET":
                return JSONResponse(
                    {
                        "callConnectionId": cid,
                        "serverCallId": "c2VydmVyLWNhbGw",
                        "callConnectionState": state,
                        "callbackUri": "http://127.0.0.1/api/v1/call-events",
                        "targets": [
                            {"kind": "phoneNumber", "rawId": "4:+15551230001", "phoneNumber": {"value": "+15551230001"}}
                        ],
                        "source": {
                            "kind": "communicationUser",
                            "rawId": "8:acs:bot_1",
                            "communicationUser": {"id": "8:acs:bot_1"},
                        },
                    }
                )
            if path.endswith(":terminate"):
                self.states[cid] = "gone"
                return Response(status_code=204)
            return Response(status_code=202)

        return app


@contextlib.asynccontextmanager
async def reaper_server(acs_url: str, **overrides: Any) -> AsyncIterator[Any]:
    port = free_port()
    settings = load_settings(
        acs_connection_string=f"endpoint={acs_url}/;accesskey={ACCESS_KEY}",
        acs_callback_url=f"http://127.0.0.1:{port}",
        acs_auth_enabled=False,
        stt_pool_warm=0,
        tts_pool_warm=0,
        **overrides,
    )
    app = create_app(settings)
    async with running_app(app, port=port):
        yield app


async def _wait_until(predicate: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.05)


async def test_reaper_ends_idle_calls_after_asking_acs(tmp_path):
    acs = FakeAcs()
    async with (
        running_app(acs.app()) as acs_url,
        reaper_server(
            acs_url, call_idle_reap_minutes=0.01, call_reap_interval_seconds=0.1, session_spill_dir=tmp_path
        ) as app,
    ):
        st = app.state
        alive, gone, busy = "call-alive-1", "call-gone-1", "call-busy-1"
        acs.states[alive] = "connected"  # ACS still has it (CallDisconnected lost): hang up, then end
        for cid in (alive, gone, busy):
            record = await ensure_call(st, cid)
            record.memo.append_history("user", f"words on {cid}")
        st.calls.get(busy).media_connected = True  # media flowing: never reaped

        await _wait_until(lambda: st.calls.get(alive).state == "disconnected", 15)
        await _wait_until(lambda: st.calls.get(gone).state == "disconnected", 15)
        for cid in (alive, gone):
            record = st.calls.get(cid)
            assert record.end_reason == "reaped"
            doc = await st.store.load(cid)
            assert doc["context"]["call_state"] == "disconnected"  # saved
            assert doc["history"][0]["content"] == f"words on {cid}"
        asked = {path for method, path in acs.requests if method == "GET"}
        assert f"/calling/callConnections/{alive}" in asked and f"/calling/callConnections/{gone}" in asked
        terminated = [path for method, path in acs.requests if method == "POST" and path.endswith(":terminate")]
        assert terminated == [f"/calling/callConnections/{alive}:terminate"]  # only the live one
        await asyncio.sleep(0.5)
        assert st.calls.get(busy).state != "disconnected"  # its media socket counts as activity


async def test_reaper_ends_calls_locally_when_acs_cannot_be_asked(tmp_path):
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens: ACS unreachable
    async with reaper_server(
        dead,
        call_idle_reap_minutes=0.01,
        call_reap_interval_seconds=0.1,
        acs_request_timeout_seconds=1.0,
        session_spill_dir=tmp_path,
    ) as app:
        record = await ensure_call(app.state, "call-orphan-1")
        await _wait_until(lambda: record.state == "disconnected", 20)
        assert record.end_reason == "reaped"


async def test_events_keep_a_call_from_being_reaped(tmp_path):
    acs = FakeAcs()
    async with (
        running_app(acs.app()) as acs_url,
        reaper_server(
            acs_url, call_idle_reap_minutes=0.02, call_reap_interval_seconds=0.1, session_spill_dir=tmp_path
        ) as app,
    ):
        record = await ensure_call(app.state, "call-chatty-1")
        for _ in range(20):  # 2 s of events, each well inside the 1.2 s idle limit
            record.events_seen.append("ParticipantsUpdated")
            await asyncio.sleep(0.1)
        assert record.state != "disconnected"
        await _wait_until(lambda: record.state == "disconnected", 15)  # silence: reaped
        assert ("GET", "/calling/callConnections/call-chatty-1") in acs.requests


# --- ACS timeouts -------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def silent_acs() -> AsyncIterator[str]:
    """Accepts connections, reads requests, never answers: ACS hanging."""
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        with contextlib.suppress(Exception):
            while await reader.read(65536):
                pass

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        for w in held:
            w.close()
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("acs_kind", ["hanging", "refusing"])
async def test_call_control_fails_fast_with_a_clear_reason_when_acs_is_down(acs_kind):
    async with contextlib.AsyncExitStack() as stack:
        if acs_kind == "hanging":
            url = await stack.enter_async_context(silent_acs())
        else:
            url = f"http://127.0.0.1:{free_port()}"
        automation = CallAutomation(
            f"endpoint={url}/;accesskey={ACCESS_KEY}",
            callback_url="http://127.0.0.1:1/api/v1/call-events",
            media_url="ws://127.0.0.1:1/api/v1/media/stream",
            request_timeout=1.0,
        )
        stack.push_async_callback(automation.close)
        for name, op in (
            ("create_call", lambda: automation.create("+15551230001", operation_context=str(uuid.uuid4()))),
            ("hang_up", lambda: automation.actions("call-x").hang_up()),
            ("get_call_properties", lambda: automation.call_state("call-x")),
        ):
            started = time.monotonic()
            with pytest.raises(CallControlError) as info:
                await op()
            elapsed = time.monotonic() - started
            assert elapsed < 5.0, f"{name} took {elapsed:.1f}s"
            assert name in str(info.value)
            assert ("timed out" in str(info.value)) or ("unreachable" in str(info.value))
