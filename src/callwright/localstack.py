"""The whole system on one machine: the emulator and the Callwright server, wired to each other.

Used by ``callwright demo``, ``callwright bench`` and the end-to-end tests. The server is configured
exactly as it would be for real ACS — connection string, callback URL, JWT audience and OpenID URL,
Event Grid secret — only the values point at the emulator.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from callwright.app import create_app
from callwright.config import Settings, load_settings
from callwright.emulator.service import Emulator


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def serve_asgi(app: Any, port: int) -> AsyncIterator[str]:
    """Serve ``app`` on 127.0.0.1:``port`` exactly as ``callwright serve`` does (callwright.serving): the
    same limits and the same drain when its server is told to exit (``app.state.http_server``)."""
    from callwright.serving import build_server

    server = build_server(app, host="127.0.0.1", port=port)
    task = asyncio.create_task(server.serve(), name=f"uvicorn:{port}")
    deadline = time.monotonic() + 60
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("the server stopped while starting")
        if time.monotonic() > deadline:
            raise TimeoutError("the server did not start within 60 s")
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(task, timeout=15)


def _new_transcriber() -> Any:
    from callwright.emulator.phone.transcribe import AgentTranscriber

    return AgentTranscriber()  # shared by the stack's phones: one decoder per process, not per call


@dataclass
class LocalStack:
    emulator: Emulator
    app: Any
    settings: Settings
    url: str
    transcriber: Any = field(default_factory=_new_transcriber)
    # The plain operator API key local_stack made (its hash is in the settings); "" when overridden.
    operator_key: str = ""

    @property
    def state(self) -> Any:
        return self.app.state

    @property
    def operator_headers(self) -> dict[str, str]:
        """Headers that authenticate a request to the operator API (``/api/v1/calls*``, ``/metrics``)."""
        return {"Authorization": f"Bearer {self.operator_key}"} if self.operator_key else {}

    async def call(
        self, script_text: str, *, record_dir: Path | None = None, timeout_s: float = 120.0
    ) -> dict[str, Any]:
        """Run one scripted call (inbound, or outbound placed through the server's API) to its end."""
        from callwright.emulator.phone import build_phone_from_script

        phone = build_phone_from_script(script_text, record_dir=record_dir, transcriber=self.transcriber)
        spec = phone.script
        if spec.direction == "outbound":
            return await self._outbound(phone, timeout_s)
        call = await self.emulator.place_inbound_call(
            phone, from_number=spec.from_number or phone.number, to_number=spec.to_number or "+15550001000"
        )
        return await asyncio.wait_for(phone.run(call), timeout_s)

    async def _outbound(self, phone: Any, timeout_s: float) -> dict[str, Any]:
        import httpx

        self.emulator.register_phone(phone.number, phone, phone.outbound_behaviour)
        try:
            waiter = self.emulator.expect_outbound_call(phone.number)
            async with httpx.AsyncClient(timeout=30) as http:
                resp = await http.post(
                    f"{self.url}/api/v1/calls", json={"target": phone.number}, headers=self.operator_headers
                )
                resp.raise_for_status()
            call = await asyncio.wait_for(waiter, timeout_s)
            if phone.outbound_behaviour.outcome != "answer":
                await call.ended.wait()
                return {"ok": True, "call_id": call.call_connection_id, "events": list(call.events_sent)}
            await call.connected.wait()
            return await asyncio.wait_for(phone.run(call), timeout_s)
        finally:
            self.emulator.unregister_phone(phone.number)


@contextlib.asynccontextmanager
async def local_stack(**overrides: Any) -> AsyncIterator[LocalStack]:
    from callwright.security.keys import hash_key, new_key

    secret = secrets.token_urlsafe(16)
    # The operator API is locked without a key: make one for this stack unless the caller set its own.
    operator_key = "" if "operator_api_keys" in overrides else new_key()
    async with Emulator() as emulator:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        values: dict[str, Any] = {
            "acs_connection_string": emulator.connection_string,
            "acs_callback_url": base,
            "acs_jwt_audience": emulator.resource_id,
            "acs_openid_config_url": emulator.openid_config_url,
            "eventgrid_secret": secret,
        }
        if operator_key:
            values["operator_api_keys"] = f"operator:{hash_key(operator_key)}"
        values.update(overrides)
        settings = load_settings(**values)
        app = create_app(settings)
        async with serve_asgi(app, port) as url:
            emulator.webhook_url = f"{url}/api/v1/call-events?secret={secret}"
            yield LocalStack(emulator=emulator, app=app, settings=settings, url=url, operator_key=operator_key)
