"""Test doubles for the emulator's control-plane tests: a webhook app, a phone, a server helper."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from callwright.emulator.contracts import CallSide
from callwright.emulator.events_out import RetryPolicy


class FakePhone:
    """A PhoneSide double: no WebSocket; records what the emulator did to it."""

    def __init__(self, *, media_fails: bool = False, hold_prompts: bool = False) -> None:
        self.media_fails = media_fails
        self.hold_prompts = hold_prompts  # prompts play until cancelled (to test cancel / interrupt)
        self.media_calls: list[dict[str, Any]] = []
        self.prompts: list[int] = []
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.disconnected: str | None = None
        self.stopped = 0
        self._cancel = asyncio.Event()
        self.prompt_started = asyncio.Event()

    async def start_media(
        self, call: CallSide, *, transport_url: str, headers: dict[str, str], sample_rate: int, bidirectional: bool
    ) -> None:
        self.media_calls.append(
            {"call": call, "url": transport_url, "headers": headers, "rate": sample_rate, "bidi": bidirectional}
        )
        if self.media_fails:
            raise ConnectionRefusedError("test phone refuses media")

    async def stop_media(self) -> None:
        self.stopped += 1

    async def play_prompt(self, pcm16k: bytes) -> bool:
        self.prompts.append(len(pcm16k))
        self._cancel.clear()
        self.prompt_started.set()
        if not self.hold_prompts:
            return True
        await self._cancel.wait()
        return False

    def cancel_prompts(self) -> None:
        self._cancel.set()

    def on_callback_event(self, event_type: str, data: dict[str, Any]) -> None:
        self.events.append((event_type, data))

    async def on_disconnected(self, reason: str) -> None:
        self.disconnected = reason


@dataclass
class Delivery:
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class Webhook:
    """A stand-in app: records Event Grid deliveries and callbacks; can fail on purpose."""

    base: str = ""
    validations: list[Delivery] = field(default_factory=list)
    incoming: list[Delivery] = field(default_factory=list)
    callbacks: list[Delivery] = field(default_factory=list)
    callback_attempts: int = 0
    fail_callbacks: int = 0  # answer 500 to this many callback POSTs first
    new_item: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def eventgrid_url(self) -> str:
        return f"{self.base}/api/incoming?secret=s3cret"

    @property
    def callback_url(self) -> str:
        return f"{self.base}/api/callbacks?token=abc"

    def callback_types(self) -> list[str]:
        return [d.body[0]["type"].removeprefix("Microsoft.Communication.") for d in self.callbacks]

    async def wait_for(self, predicate: Any, timeout: float = 20.0) -> None:
        async def _loop() -> None:
            while not predicate():
                self.new_item.clear()
                await self.new_item.wait()

        await asyncio.wait_for(_loop(), timeout)

    async def wait_callback(self, event_type: str, timeout: float = 20.0) -> dict[str, Any]:
        await self.wait_for(lambda: event_type in self.callback_types(), timeout)
        return next(d.body[0] for d in self.callbacks if d.body[0]["type"].endswith("." + event_type))

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/api/incoming")
        async def incoming(request: Request) -> Response:
            body = await request.json()
            d = Delivery(str(request.url), dict(request.headers), body)
            if request.headers.get("aeg-event-type") == "SubscriptionValidation":
                self.validations.append(d)
                return JSONResponse({"validationResponse": body[0]["data"]["validationCode"]})
            self.incoming.append(d)
            self.new_item.set()
            return Response(status_code=200)

        @app.post("/api/callbacks")
        async def callbacks(request: Request) -> Response:
            self.callback_attempts += 1
            if self.fail_callbacks > 0:
                self.fail_callbacks -= 1
                return Response(status_code=500)
            self.callbacks.append(Delivery(str(request.url), dict(request.headers), await request.json()))
            self.new_item.set()
            return Response(status_code=200)

        return app


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextlib.asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[str]:
    sock = free_socket()
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", ws="none"))
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:  # noqa: ASYNC110 - uvicorn exposes only a flag
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


FAST_RETRY = RetryPolicy(max_attempts=4, base_delay_s=0.1, max_delay_s=0.5, timeout_s=10.0)
