"""The ACS emulator as one embeddable object: REST API, Event Grid, callbacks, JWKS, control API.

``async with Emulator() as emu:`` starts a uvicorn server on a free loopback port inside the running
event loop (tests, ``callwright demo``/``bench``) — or on a fixed port standalone (``callwright
emulator``). Point an ACS app at ``emu.endpoint`` + ``emu.access_key`` (or ``emu.connection_string`` over
TLS) and at ``emu.openid_config_url`` / ``emu.resource_id`` for JWT verification.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import socket
import tempfile
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from callwright.acs.identifiers import model_from_raw_id, raw_id_for
from callwright.emulator.calls import CallDeps, EmulatedCall, MediaOptions
from callwright.emulator.contracts import CallSide, OutboundBehaviour, PhoneDirectory, PhoneSide
from callwright.emulator.errors import AcsHttpError, bad_request
from callwright.emulator.events_out import EventGridWebhook, Poster, RetryPolicy
from callwright.emulator.hmac_auth import decode_access_key
from callwright.emulator.tls import CertFiles, generate_self_signed
from callwright.emulator.tokens import DEFAULT_ISSUER, TokenIssuer

log = logging.getLogger("callwright.emulator")

BOT_USER_PREFIX = "8:acs:"


class InboundCallError(RuntimeError):
    """The app did not take the call (rejected, redirected, never answered, webhook down)."""


class _Directory:
    """Virtual numbers registered on the emulator, plus any directories plugged in (e.g. a PhoneBook)."""

    def __init__(self) -> None:
        self._phones: dict[str, tuple[PhoneSide, OutboundBehaviour]] = {}
        self.extra: list[PhoneDirectory] = []

    def register(self, number: str, phone: PhoneSide, behaviour: OutboundBehaviour) -> None:
        self._phones[raw_id_for(number)] = (phone, behaviour)

    def unregister(self, number: str) -> None:
        self._phones.pop(raw_id_for(number), None)

    def phone_for_number(self, raw_id: str) -> tuple[PhoneSide, OutboundBehaviour] | None:
        found = self._phones.get(raw_id)
        if found is not None:
            return found
        for d in self.extra:
            found = d.phone_for_number(raw_id)
            if found is not None:
                return found
        return None


def _incoming_call_context(correlation_id: str) -> str:
    """Opaque like the real one: an unsigned JWT-shaped string (acs-protocol.md §1.2)."""

    def b64(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64({'cc': uuid.uuid4().hex, 'corr': correlation_id})}."


class Emulator:
    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        access_key: str | None = None,
        webhook_url: str | None = None,
        tls: bool = False,
        resource_id: str | None = None,
        issuer: str = DEFAULT_ISSUER,
        cert_dir: Path | None = None,
        retry: RetryPolicy | None = None,
        answer_timeout_s: float = 30.0,
        callback_verify: bool | str = True,
    ) -> None:
        self.host = host
        self._port = port
        self.access_key = access_key or base64.b64encode(os.urandom(32)).decode()
        self.access_key_bytes = decode_access_key(self.access_key)
        self.tls = tls
        self.resource_id = resource_id or str(uuid.uuid4())
        self.issuer = issuer
        self._cert_dir = cert_dir
        self._retry = retry or RetryPolicy()
        self.answer_timeout_s = answer_timeout_s
        self._callback_verify = callback_verify
        self._webhook_url = webhook_url
        self._webhook: EventGridWebhook | None = None
        self.directory = _Directory()
        self.transfers: list[dict[str, Any]] = []
        self.calls: dict[str, EmulatedCall] = {}
        self.finished_calls: dict[str, EmulatedCall] = {}
        self._incoming: dict[str, tuple[EmulatedCall, asyncio.Future[None]]] = {}
        self._outbound_waiters: dict[str, list[asyncio.Future[EmulatedCall]]] = {}
        self._server: uvicorn.Server | None = None
        self._server_task: asyncio.Task[None] | None = None
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.cert: CertFiles | None = None
        self.tokens: TokenIssuer | None = None
        self.http: httpx.AsyncClient | None = None
        self.control_state: Any = None  # owned by callwright.emulator.control

    # ---- addresses -------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._port

    @property
    def endpoint(self) -> str:
        """Base URL without trailing slash (the form the SDK constructor signs correctly)."""
        return f"{'https' if self.tls else 'http'}://{self.host}:{self._port}"

    @property
    def connection_string(self) -> str:
        return f"endpoint={self.endpoint}/;accesskey={self.access_key}"

    @property
    def jwks_url(self) -> str:
        return f"{self.endpoint}/calling/keys"

    @property
    def openid_config_url(self) -> str:
        return f"{self.endpoint}/calling/.well-known/acsopenidconfiguration"

    @property
    def cert_path(self) -> Path | None:
        return self.cert.cert_path if self.cert else None

    @property
    def webhook_url(self) -> str | None:
        return self._webhook_url

    @webhook_url.setter
    def webhook_url(self, url: str | None) -> None:
        """Point Event Grid at the app; the validation handshake runs before the next IncomingCall."""
        self._webhook_url = url
        self._webhook = None

    def info(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "connection_string": self.connection_string,
            "access_key": self.access_key,
            "resource_id": self.resource_id,
            "issuer": self.issuer,
            "jwks_url": self.jwks_url,
            "openid_config_url": self.openid_config_url,
            "webhook_url": self._webhook_url,
            "webhook_validated": bool(self._webhook and self._webhook.validated),
            "tls_cert": str(self.cert_path) if self.cert_path else None,
        }

    def jwks(self) -> dict[str, Any]:
        assert self.tokens is not None
        return self.tokens.jwks()

    # ---- lifecycle -------------------------------------------------------------------------------

    def build_app(self) -> FastAPI:
        from callwright.emulator import control, rest

        app = FastAPI(title="Callwright ACS emulator", docs_url=None, redoc_url=None, openapi_url=None)
        app.state.emulator = self
        rest.install_error_handlers(app)
        app.include_router(rest.wellknown_router())
        app.include_router(control.router)
        app.include_router(rest.router)
        return app

    async def start(self) -> None:
        if self._server is not None:
            return
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self._port))
        self._port = sock.getsockname()[1]
        ssl_args: dict[str, Any] = {}
        if self.tls:
            if self._cert_dir is None:
                self._tmpdir = tempfile.TemporaryDirectory(prefix="callwright-emulator-")
                self._cert_dir = Path(self._tmpdir.name)
            self.cert = await asyncio.to_thread(generate_self_signed, self._cert_dir, self.host)
            ssl_args = {"ssl_certfile": str(self.cert.cert_path), "ssl_keyfile": str(self.cert.key_path)}
        self.tokens = await asyncio.to_thread(TokenIssuer, issuer=self.issuer, audience=self.resource_id)
        self.http = httpx.AsyncClient(verify=self._callback_verify, timeout=self._retry.timeout_s)
        self._deps = CallDeps(
            poster=Poster(self.http, self._retry),
            issuer=self.tokens,
            http=self.http,
            record_transfer=self.transfers.append,
            forget=self._forget,
        )
        config = uvicorn.Config(
            self.build_app(),
            log_level="warning",
            lifespan="off",
            access_log=False,
            ws="none",
            # Idle keep-alive TLS connections otherwise hold shutdown for asyncio's 30 s SSL close timeout.
            timeout_graceful_shutdown=2,
            **ssl_args,
        )
        self._server = uvicorn.Server(config)
        self._server.install_signal_handlers = lambda: None  # type: ignore[method-assign]  # the host owns signals
        self._server_task = asyncio.create_task(self._server.serve(sockets=[sock]), name="emulator-uvicorn")
        while not self._server.started:
            if self._server_task.done():
                await self._server_task  # surfaces the startup error
                raise RuntimeError("emulator server stopped during startup")
            await asyncio.sleep(0.01)
        log.info("ACS emulator listening on %s (resource id %s)", self.endpoint, self.resource_id)

    async def stop(self) -> None:
        await asyncio.gather(*(call.shutdown() for call in list(self.calls.values())), return_exceptions=True)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            self._server.should_exit = True
            if self._server_task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await self._server_task
            self._server = None
        if self.http is not None:
            await self.http.aclose()
            self.http = None
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None

    async def __aenter__(self) -> Emulator:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ---- calls -----------------------------------------------------------------------------------

    def get_call(self, call_connection_id: str) -> EmulatedCall | None:
        return self.calls.get(call_connection_id) or self.finished_calls.get(call_connection_id)

    def _forget(self, call: EmulatedCall) -> None:
        self.calls.pop(call.call_connection_id, None)
        self.finished_calls[call.call_connection_id] = call
        self._incoming.pop(call.incoming_call_context, None)

    def register_phone(self, number: str, phone: PhoneSide, behaviour: OutboundBehaviour | None = None) -> None:
        """Make ``number`` dialable by the app (outbound create_call)."""
        self.directory.register(number, phone, behaviour or OutboundBehaviour())

    def unregister_phone(self, number: str) -> None:
        self.directory.unregister(number)

    def expect_outbound_call(self, number: str) -> asyncio.Future[EmulatedCall]:
        """A future resolved with the call as soon as the app dials ``number`` (it is then ringing).

        Await ``call.connected`` for the answer, ``call.ended`` for busy / no-answer outcomes.
        """
        fut: asyncio.Future[EmulatedCall] = asyncio.get_running_loop().create_future()
        self._outbound_waiters.setdefault(raw_id_for(number), []).append(fut)
        return fut

    async def _ensure_webhook(self) -> EventGridWebhook:
        if not self._webhook_url:
            raise InboundCallError("no Event Grid webhook configured (set webhook_url / --webhook)")
        if self._webhook is None or self._webhook.url != self._webhook_url:
            assert self.http is not None
            self._webhook = EventGridWebhook(
                self._deps.poster,
                self.http,
                self._webhook_url,
                topic=(
                    f"/subscriptions/{uuid.UUID(int=0)}/resourceGroups/callwright-emulator/providers/"
                    "Microsoft.Communication/communicationServices/callwright-emulator"
                ),
                validation_base=f"{self.endpoint}/emulator/eventgrid/validate",
            )
        if not self._webhook.validated and not await self._webhook.validate():
            raise InboundCallError(
                f"the webhook {self._webhook_url} did not complete the Event Grid validation handshake"
            )
        return self._webhook

    async def validate_webhook(self) -> bool:
        try:
            await self._ensure_webhook()
        except InboundCallError as exc:
            log.warning("%s", exc)
            return False
        return True

    def confirm_webhook_validation(self, code: str) -> bool:
        return self._webhook is not None and self._webhook.confirm_async_validation(code)

    async def place_inbound_call(
        self, phone: PhoneSide, *, from_number: str, to_number: str, timeout_s: float | None = None
    ) -> CallSide:
        """The phone dials the app: IncomingCall to the webhook; returns once the app answered and connected."""
        webhook = await self._ensure_webhook()
        from_raw, to_raw = raw_id_for(from_number), raw_id_for(to_number)
        call = EmulatedCall(self._deps, direction="inbound", remote_raw_id=from_raw, app_raw_id=to_raw, phone=phone)
        call.incoming_call_context = _incoming_call_context(call.correlation_id)
        refused: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.calls[call.call_connection_id] = call
        self._incoming[call.incoming_call_context] = (call, refused)
        data = {
            "to": model_from_raw_id(to_raw),
            "from": model_from_raw_id(from_raw),
            "serverCallId": call.server_call_id,
            "callerDisplayName": "",
            "customContext": {"sipHeaders": {}, "voipHeaders": {}},
            "incomingCallContext": call.incoming_call_context,
            "correlationId": call.correlation_id,
        }
        try:
            delivered = await webhook.deliver(
                "Microsoft.Communication.IncomingCall", subject=f"/caller/{from_raw}/recipient/{to_raw}", data=data
            )
            if not delivered:
                raise InboundCallError(f"the webhook {webhook.url} did not accept the IncomingCall event")
            connected = asyncio.ensure_future(call.connected.wait())
            done, _ = await asyncio.wait(
                {connected, refused}, timeout=timeout_s or self.answer_timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
            connected.cancel()
            if refused in done:
                refused.result()  # raises InboundCallError with the reason
            if not done:
                raise InboundCallError(f"the app did not answer within {timeout_s or self.answer_timeout_s:g} s")
            if call.state == "disconnected":
                raise InboundCallError(f"the call ended before it connected ({call.disconnect_reason})")
            return call
        except BaseException:
            self._incoming.pop(call.incoming_call_context, None)
            if call.state == "connecting" and call.callback_uri == "":
                self.calls.pop(call.call_connection_id, None)
            raise

    def _take_incoming(self, context: str) -> tuple[EmulatedCall, asyncio.Future[None]]:
        entry = self._incoming.pop(context, None)
        if entry is None:
            raise AcsHttpError(
                404, "8523", "Incoming call not found, already answered or expired (incomingCallContext)."
            )
        return entry

    def answer_incoming(
        self,
        context: str,
        *,
        callback_uri: str,
        api_version: str,
        operation_context: str | None,
        media: MediaOptions | None,
    ) -> EmulatedCall:
        call, _ = self._take_incoming(context)
        call.media = media
        call.answer_operation_context = operation_context
        call.start_callbacks(callback_uri, api_version)

        async def _connect() -> None:
            await asyncio.sleep(0.02)  # the 200 reaches the app before CallConnected, as with ACS
            await call.connect()

        call.spawn(_connect(), "connect")
        return call

    def reject_incoming(self, context: str, *, reason: str) -> None:
        call, refused = self._take_incoming(context)
        self._refuse(call, refused, f"the app rejected the call (reason {reason})")

    def redirect_incoming(self, context: str, *, target_raw_id: str) -> None:
        call, refused = self._take_incoming(context)
        self.transfers.append(
            {
                "kind": "redirect",
                "call_connection_id": call.call_connection_id,
                "target": target_raw_id,
                "correlation_id": call.correlation_id,
                "transferee": call.caller_raw_id,
            }
        )
        self._refuse(call, refused, f"the app redirected the call to {target_raw_id}")

    def _refuse(self, call: EmulatedCall, refused: asyncio.Future[None], why: str) -> None:
        call.state = "disconnected"
        call.disconnect_reason = why
        call.ended.set()
        self._forget(call)
        if not refused.done():
            refused.set_exception(InboundCallError(why))

    async def create_outbound_call(
        self,
        *,
        target_raw_id: str,
        source_number: str | None,
        callback_uri: str,
        api_version: str,
        operation_context: str | None,
        media: MediaOptions | None,
    ) -> EmulatedCall:
        if source_number is not None:
            try:
                app_raw = raw_id_for(source_number)
            except ValueError as exc:
                raise bad_request(f"sourceCallerIdNumber: {exc}") from None
        else:
            app_raw = f"{BOT_USER_PREFIX}{self.resource_id}_{uuid.uuid4()}"
        found = self.directory.phone_for_number(target_raw_id)
        call = EmulatedCall(
            self._deps,
            direction="outbound",
            remote_raw_id=target_raw_id,
            app_raw_id=app_raw,
            phone=found[0] if found else None,
        )
        call.source_caller_id = source_number
        call.media = media
        call.answer_operation_context = operation_context
        call.start_callbacks(callback_uri, api_version)
        self.calls[call.call_connection_id] = call
        call.spawn(self._ring(call, found[1] if found else None), "ring")
        for fut in self._outbound_waiters.pop(target_raw_id, []):
            if not fut.done():
                fut.set_result(call)
        return call

    async def _ring(self, call: EmulatedCall, behaviour: OutboundBehaviour | None) -> None:
        if behaviour is None:
            await asyncio.sleep(0.2)
            await self._create_failed(call, 404, 0, "Not Found: the number is not a registered virtual phone.")
            return
        await asyncio.sleep(max(0.0, behaviour.answer_after_s))
        if call.state != "connecting":
            return  # the app hung up while it rang
        if behaviour.outcome == "busy":
            await self._create_failed(call, 486, 0, "Busy Here")
        elif behaviour.outcome == "no_answer":
            await self._create_failed(call, 408, 0, "Request Timeout: the callee did not answer.")
        else:
            await call.connect()

    async def _create_failed(self, call: EmulatedCall, sip: int, sub: int, message: str) -> None:
        def failed() -> None:
            info = {"code": sip, "subCode": sub, "message": message, "sipDetails": {"code": sip, "message": message}}
            call.emit(
                "CreateCallFailed",
                {"resultInformation": info},
                operation_context=call.answer_operation_context,
                result=None,
            )

        await call.end(f"create_failed_{sip}", (sip, sub, message), extra_first=failed)
