"""The realtime services a ``voice_live`` call can talk to, behind one small connection interface.

Both official SDKs are used for the handshake (URL, auth headers, TLS) and the socket; events are read as
raw JSON (``recv_bytes``) so the handler sees plain dicts with the wire's names in either dialect, and a
close is always reported with its code: the VoiceLive SDK's iterator would otherwise end silently even on
1011 (realtime-protocol.md §0.12), and the openai SDK parses unknown events into the wrong class (§0.4).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, Literal

from callwright.config import Settings

log = logging.getLogger("callwright.voice_live")

Dialect = Literal["voicelive", "ga"]
BackendKind = Literal["local", "voicelive", "openai", "azure_openai"]


class BackendError(Exception):
    """The service could not be reached or refused the session. ``reason`` is a fixed label."""

    def __init__(self, reason: Literal["unreachable", "auth", "refused", "timeout", "full"], detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class BackendClosed(Exception):
    """The service closed the connection (``code`` as received; 1006 when it just went away)."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"closed with {code} {reason}".strip())
        self.code = code


@dataclass(frozen=True)
class BackendSpec:
    kind: BackendKind
    sdk: Literal["voicelive", "openai"]
    endpoint: str | None  # None: the SDK's default (api.openai.com)
    key: str
    model: str
    api_version: str | None = None

    @property
    def dialect(self) -> Dialect:
        return "voicelive" if self.sdk == "voicelive" else "ga"

    @property
    def audio_rate(self) -> int:
        """VoiceLive takes and gives 16 kHz PCM when asked; OpenAI GA speaks 24 kHz only (§0.1)."""
        return 16_000 if self.dialect == "voicelive" else 24_000


def resolve_kind(settings: Settings) -> BackendKind:
    backend = settings.voicelive_backend
    if backend == "auto":
        return "voicelive" if settings.azure_voicelive_endpoint else "local"
    return backend


def backend_spec(settings: Settings, local_url: str | None = None) -> BackendSpec:
    """What to dial for a call; ``local_url`` is the in-process local realtime server (backend local)."""
    kind = resolve_kind(settings)
    if kind == "local":
        if local_url is None:
            raise BackendError("unreachable", "the local realtime server is not running")
        key = settings.realtime_api_key.get_secret_value() if settings.realtime_api_key else "local"
        if settings.azure_voicelive_api_key is not None:  # lets a deployment (or a test) present another key
            key = settings.azure_voicelive_api_key.get_secret_value()
        model = f"callwright-scenario:{settings.scenario}"
        if settings.voicelive_local_sdk == "openai" or not _voicelive_sdk_installed():
            return BackendSpec("local", "openai", f"{local_url}/v1", key, model)
        return BackendSpec("local", "voicelive", local_url, key, model)
    if kind == "voicelive":
        assert settings.azure_voicelive_endpoint and settings.azure_voicelive_api_key
        return BackendSpec(
            "voicelive", "voicelive", settings.azure_voicelive_endpoint,
            settings.azure_voicelive_api_key.get_secret_value(), settings.azure_voicelive_model,
            settings.azure_voicelive_api_version,
        )  # fmt: skip
    if kind == "openai":
        assert settings.openai_api_key is not None
        return BackendSpec(
            "openai", "openai", settings.voicelive_openai_base_url, settings.openai_api_key.get_secret_value(),
            settings.voicelive_openai_model,
        )  # fmt: skip
    assert settings.azure_openai_endpoint and settings.azure_openai_api_key
    # Azure OpenAI GA: /openai/v1/realtime?model=<deployment>, no api-version (realtime-protocol.md §1.1).
    return BackendSpec(
        "azure_openai", "openai", settings.azure_openai_endpoint.rstrip("/") + "/openai/v1",
        settings.azure_openai_api_key.get_secret_value(), settings.voicelive_openai_model,
    )  # fmt: skip


def _voicelive_sdk_installed() -> bool:
    """azure-ai-voicelive is a dev extra today; without it the local server is reached through openai."""
    import importlib.util

    try:
        return importlib.util.find_spec("azure.ai.voicelive") is not None
    except ModuleNotFoundError:
        return False


class RealtimeConnection:
    """One open session: ``send`` a client event, ``recv`` the next server event as a dict."""

    def __init__(self, spec: BackendSpec, conn: Any, owner: Any) -> None:
        self.spec = spec
        self._conn = conn
        self._owner = owner  # what must be closed besides the socket (the VoiceLive manager / openai client)
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    async def send(self, event: dict[str, Any]) -> None:
        if self._closed:
            raise BackendClosed(1006, "already closed")
        try:
            await self._conn.send(event)
        except Exception as exc:  # both SDKs raise their own types once the socket is gone
            raise BackendClosed(1006, f"send failed: {exc}") from exc

    async def recv(self) -> dict[str, Any]:
        """The next event; raises :class:`BackendClosed` when the service closed (any code)."""
        while True:
            raw = await self._recv_raw()
            if not raw:
                continue  # an unexpected frame type (the VoiceLive SDK hands back b"")
            try:
                event = json.loads(raw)
            except ValueError:
                log.warning("realtime service sent a frame that is not JSON (%d bytes); skipped", len(raw))
                continue
            if isinstance(event, dict) and isinstance(event.get("type"), str):
                return event

    async def _recv_raw(self) -> bytes:
        if self.spec.sdk == "voicelive":
            from azure.ai.voicelive.aio import ConnectionClosed

            try:
                return bytes(await self._conn.recv_bytes())
            except ConnectionClosed as exc:
                raise BackendClosed(exc.code, exc.reason) from exc
        from websockets.exceptions import ConnectionClosed as WsClosed

        try:
            return bytes(await self._conn.recv_bytes())
        except WsClosed as exc:
            code = exc.rcvd.code if exc.rcvd is not None else 1006
            raise BackendClosed(code, exc.rcvd.reason if exc.rcvd is not None else "") from exc

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self._conn.close()
        except Exception as exc:
            log.debug("closing the realtime connection: %s", exc)
        if self.spec.sdk == "openai" and self._owner is not None:
            try:
                await self._owner.close()
            except Exception as exc:
                log.debug("closing the openai client: %s", exc)


async def open_connection(spec: BackendSpec) -> RealtimeConnection:
    """Dial the service; raises :class:`BackendError` naming why it failed (no socket is left open)."""
    if spec.sdk == "voicelive":
        return await _open_voicelive(spec)
    return await _open_openai(spec)


async def _open_voicelive(spec: BackendSpec) -> RealtimeConnection:
    import aiohttp
    from azure.ai.voicelive.aio import ConnectionError as VoiceLiveConnectionError
    from azure.ai.voicelive.aio import connect
    from azure.core.credentials import AzureKeyCredential

    kwargs: dict[str, Any] = {
        "endpoint": spec.endpoint,
        "credential": AzureKeyCredential(spec.key),
        "model": spec.model,
    }
    if spec.api_version:
        kwargs["api_version"] = spec.api_version
    manager = connect(**kwargs)
    try:
        conn = await manager.__aenter__()
    except VoiceLiveConnectionError as exc:
        cause = exc.__cause__
        if isinstance(cause, aiohttp.WSServerHandshakeError):
            raise _status_error(cause.status, str(exc)) from None
        raise BackendError("unreachable", str(exc)) from None
    except (aiohttp.ClientError, OSError) as exc:
        raise BackendError("unreachable", str(exc)) from None
    return RealtimeConnection(spec, conn, manager)


async def _open_openai(spec: BackendSpec) -> RealtimeConnection:
    import openai
    from websockets.exceptions import InvalidStatus, WebSocketException

    headers = {"api-key": spec.key} if spec.kind == "azure_openai" else None
    kwargs: dict[str, Any] = {"api_key": spec.key, "default_headers": headers, "max_retries": 0}
    if spec.endpoint:
        kwargs["base_url"] = spec.endpoint
    client = openai.AsyncOpenAI(**kwargs)
    try:
        conn = await client.realtime.connect(model=spec.model).enter()
    except InvalidStatus as exc:
        await client.close()
        raise _status_error(exc.response.status_code, str(exc)) from None
    except (OSError, WebSocketException, openai.OpenAIError) as exc:
        await client.close()
        raise BackendError("unreachable", str(exc)) from None
    return RealtimeConnection(spec, conn, client)


def _status_error(status: int, detail: str) -> BackendError:
    if status in (401, 403):
        return BackendError("auth", f"the realtime service refused the key ({status})")
    return BackendError("refused", f"the realtime service refused the session ({status}): {detail}")
