"""One emulated call: its identity, state, callback stream and the non-media operations on it.

An :class:`EmulatedCall` is what the REST layer acts on and what the phone sees as its
:class:`~callwright.emulator.contracts.CallSide`. Play and recognize live in :mod:`media_ops`; this file
holds the lifecycle (connect, stream, transfer, add participant, disconnect) and the event envelope data.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol, runtime_checkable

import httpx

from callwright.acs.identifiers import model_from_raw_id
from callwright.acs.media import TONE_CHARS
from callwright.emulator.contracts import PhoneSide
from callwright.emulator.errors import bad_request
from callwright.emulator.events_out import CallbackChannel, Poster
from callwright.emulator.tokens import TokenIssuer

log = logging.getLogger("callwright.emulator.calls")

OK_RESULT = (200, 0, "Action completed successfully.")
APP_HANGUP_RESULT = (
    200,
    7000,
    "Call was ended by Azure Communication Service Call Automation API or a server bot. DiagCode: 0#7000.@",
)
REMOTE_HANGUP_RESULT = (200, 0, "The conversation has ended. DiagCode: 0#0.@")
TRANSFER_RESULT = (200, 7015, "Call was transferred. DiagCode: 0#7015.@")
# ACS's code/subCode for a media socket lost mid-call are not documented (acs-protocol.md §3.4, [INF]);
# 500/8581 is what this emulator already sends when the socket cannot be opened.
STREAM_INTERRUPTED_RESULT = (500, 8581, "Action failed, the media WebSocket connection was interrupted.")


@runtime_checkable
class ResumableMedia(Protocol):
    """A phone's media path that outlives one WebSocket (the virtual phone's ``MediaLink``).

    With one, a socket the app's side drops is reported here (MediaStreamingFailed) and the next
    ``startMediaStreaming`` attaches a new socket to the same path, so the phone's script and recording
    go on. A phone without one (``start_media``/``stop_media`` only) gets a fresh ``start_media`` instead.
    """

    down: bool
    closed: asyncio.Event

    async def reconnect(self, url: str, headers: dict[str, str]) -> None: ...

    async def suspend(self, reason: str) -> None: ...

    def set_drop_listener(self, listener: Callable[[str], None] | None) -> None: ...


@dataclass(frozen=True, slots=True)
class MediaOptions:
    """The call's ``mediaStreamingOptions`` (acs-protocol.md §2.5)."""

    transport_url: str
    sample_rate: int
    bidirectional: bool
    start_on_connect: bool
    audio_channel: str
    enable_dtmf_tones: bool

    @classmethod
    def from_body(cls, raw: Any) -> MediaOptions | None:
        if raw is None:
            return None
        if not isinstance(raw, dict):
            raise bad_request("mediaStreamingOptions must be an object")
        if str(raw.get("transportType", "websocket")).lower() != "websocket":
            raise bad_request(f"mediaStreamingOptions.transportType {raw.get('transportType')!r} is not supported")
        url = raw.get("transportUrl")
        if not isinstance(url, str) or not url.startswith(("ws://", "wss://")):
            raise bad_request("mediaStreamingOptions.transportUrl must be a ws:// or wss:// URL")
        fmt = str(raw.get("audioFormat") or "pcm16KMono")
        if fmt not in ("pcm16KMono", "pcm24KMono"):
            raise bad_request(f"mediaStreamingOptions.audioFormat {fmt!r} must be pcm16KMono or pcm24KMono")
        return cls(
            transport_url=url,
            sample_rate=24_000 if fmt == "pcm24KMono" else 16_000,
            bidirectional=bool(raw.get("enableBidirectional", False)),
            start_on_connect=bool(raw.get("startMediaStreaming", False)),
            audio_channel=str(raw.get("audioChannelType") or "mixed"),
            enable_dtmf_tones=bool(raw.get("enableDtmfTones", False)),
        )


@dataclass(slots=True)
class CallDeps:
    """What every call shares with the emulator; built by :class:`~callwright.emulator.service.Emulator`."""

    poster: Poster
    issuer: TokenIssuer
    http: httpx.AsyncClient
    record_transfer: Callable[[dict[str, Any]], None]
    forget: Callable[[EmulatedCall], None]


@dataclass(slots=True)
class TransferRecord:
    call_connection_id: str
    target_raw_id: str
    operation_context: str | None
    custom_calling_context: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def new_server_call_id() -> str:
    url = f"https://emulator.callwright.local/conv/{uuid.uuid4().hex}?i=10-0-0-1"
    return base64.b64encode(url.encode()).decode()


class EmulatedCall:
    """A call between the app and one virtual phone (the remote party)."""

    def __init__(
        self,
        deps: CallDeps,
        *,
        direction: str,
        remote_raw_id: str,
        app_raw_id: str,
        phone: PhoneSide | None,
        correlation_id: str | None = None,
    ) -> None:
        self._deps = deps
        self.call_connection_id = str(uuid.uuid4())
        self.correlation_id = correlation_id or str(uuid.uuid4())
        self.server_call_id = new_server_call_id()
        self.caller_raw_id = remote_raw_id
        self.app_raw_id = app_raw_id
        self.direction = direction
        self.phone = phone
        self.state = "connecting"
        self.incoming_call_context = ""
        self.callback_uri = ""
        self.api_version = "2026-03-12"
        self.answer_operation_context: str | None = None
        self.source_caller_id: str | None = None
        self.media: MediaOptions | None = None
        self.streaming = False
        # The phone's media path is down but kept (a drop, or the app stopped streaming) for the next start.
        self._media_held = False
        self._starting_media = False
        self.media_sessions = 0  # sockets opened
        self.media_drops = 0  # sockets the app's side closed or broke mid-call
        self.media_subscription_id = str(uuid.uuid4())
        self.participants: list[str] = [remote_raw_id, app_raw_id]
        self._participants_seq = 0
        self.continuous_dtmf_context: str | None = None
        self.continuous_dtmf_url: str | None = None
        self._dtmf_seq = 0
        self.disconnect_reason: str | None = None
        self.events_sent: list[str] = []
        self.connected = asyncio.Event()
        self.ended = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._channel: CallbackChannel | None = None
        # Imported here: media_ops needs EmulatedCall's type, and a call always has exactly one.
        from callwright.emulator.media_ops import MediaOperations

        self.media_ops = MediaOperations(self, deps.http)

    # ---- plumbing -------------------------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run background work for this call, keeping a reference and logging (not raising) failures."""
        task = self._loop.create_task(coro, name=f"{name}-{self.call_connection_id[:8]}")
        self._tasks.add(task)

        def _done(t: asyncio.Task[Any]) -> None:
            self._tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.error("call %s: %s failed", self.call_connection_id, name, exc_info=t.exception())

        task.add_done_callback(_done)
        return task

    def start_callbacks(self, callback_uri: str, api_version: str) -> None:
        self.callback_uri = callback_uri
        self.api_version = api_version
        if self._channel is None:
            self._channel = CallbackChannel(self._deps.poster, self._deps.issuer, self.call_connection_id)

    def emit(
        self,
        event_type: str,
        extra: dict[str, Any] | None = None,
        *,
        operation_context: str | None = None,
        result: tuple[int, int, str] | None = OK_RESULT,
        url: str | None = None,
    ) -> None:
        """Queue one callback event (real envelope and common fields, acs-protocol.md §3.2–3.3)."""
        data: dict[str, Any] = dict(extra or {})
        if operation_context is not None:
            data["operationContext"] = operation_context
        if result is not None:
            data["resultInformation"] = {"code": result[0], "subCode": result[1], "message": result[2]}
        data.update(
            {
                "version": self.api_version,
                "callConnectionId": self.call_connection_id,
                "serverCallId": self.server_call_id,
                "correlationId": self.correlation_id,
                "publicEventType": f"Microsoft.Communication.{event_type}",
            }
        )
        self.events_sent.append(event_type)
        if self.phone is not None:
            try:
                self.phone.on_callback_event(event_type, data)
            except Exception:
                log.exception("phone.on_callback_event raised for %s", event_type)
        target = url or self.callback_uri
        if self._channel is None or not target:
            log.warning("call %s: no callbackUri, dropping %s", self.call_connection_id, event_type)
            return
        self._channel.send(target, event_type, data)

    async def drain_callbacks(self) -> None:
        if self._channel is not None:
            await self._channel.drain()

    def properties(self) -> dict[str, Any]:
        """CallConnectionProperties as ACS returns them (always with rawId and kind)."""
        props: dict[str, Any] = {
            "callConnectionId": self.call_connection_id,
            "serverCallId": self.server_call_id,
            "targets": [model_from_raw_id(self.caller_raw_id)],
            "callConnectionState": self.state,
            "callbackUri": self.callback_uri,
            "source": model_from_raw_id(self.app_raw_id),
            "correlationId": self.correlation_id,
        }
        if self.source_caller_id:
            props["sourceCallerIdNumber"] = {"value": self.source_caller_id}
        if self.media is not None:
            props["mediaStreamingSubscription"] = {
                "id": self.media_subscription_id,
                "state": "active" if self.streaming else "inactive",
                "subscribedContentTypes": ["audio"],
            }
        return props

    def new_invitation_id(self) -> str:
        return str(uuid.uuid4())

    def participant_model(self, raw_id: str) -> dict[str, Any]:
        return {"identifier": model_from_raw_id(raw_id), "isMuted": False, "isOnHold": False}

    def _participants_updated(self) -> None:
        self._participants_seq += 1
        self.emit(
            "ParticipantsUpdated",
            {
                "participants": [self.participant_model(p) for p in self.participants],
                "sequenceNumber": self._participants_seq,
            },
            result=(200, 0, ""),
        )

    def require_active(self) -> None:
        if self.state in ("disconnecting", "disconnected", "transferAccepted"):
            from callwright.emulator.errors import call_not_found

            raise call_not_found(self.call_connection_id)

    # ---- lifecycle ------------------------------------------------------------------------------

    async def connect(self) -> None:
        """The remote party is on the line: CallConnected, ParticipantsUpdated, then media if auto-start."""
        if self.state != "connecting":
            return
        self.state = "connected"
        self.emit("CallConnected", operation_context=self.answer_operation_context, result=(200, 0, ""))
        self._participants_updated()
        self.connected.set()
        if self.media is not None and self.media.start_on_connect:
            await self.start_streaming(operation_context=None, url=None)

    def _media_link(self) -> ResumableMedia | None:
        link = getattr(self.phone, "link", None)
        return link if isinstance(link, ResumableMedia) else None

    async def start_streaming(self, *, operation_context: str | None, url: str | None) -> None:
        media = self.media
        # One socket at a time: two replicas taking over the same call may both ask to start.
        if media is None or self.streaming or self._starting_media:
            return
        self._starting_media = True
        try:
            await self._start_streaming(media, operation_context, url)
        finally:
            self._starting_media = False

    async def _start_streaming(self, media: MediaOptions, operation_context: str | None, url: str | None) -> None:
        update = {"contentType": "Audio"}
        # Fresh per socket, as ACS does (a new JWT on every upgrade).
        headers = {
            "Authorization": f"Bearer {self._deps.issuer.media_token()}",
            "x-ms-call-connection-id": self.call_connection_id,
            "x-ms-call-correlation-id": self.correlation_id,
        }
        opened = False
        link: ResumableMedia | None = None
        if self.phone is None:
            log.warning("call %s: no phone attached; media streaming cannot start", self.call_connection_id)
        else:
            link = self._media_link()
            try:
                if link is not None and link.down and not link.closed.is_set():
                    await link.reconnect(media.transport_url, headers)
                else:
                    await self.phone.start_media(
                        self,
                        transport_url=media.transport_url,
                        headers=headers,
                        sample_rate=media.sample_rate,
                        bidirectional=media.bidirectional,
                    )
                    link = self._media_link()
                opened = True
            except Exception as exc:  # the phone raises whatever its WebSocket client raised
                log.warning(
                    "call %s: media WebSocket to %s failed: %s", self.call_connection_id, media.transport_url, exc
                )
        if self.state == "disconnected":
            # The call ended while the socket was opening: no stream and no event after CallDisconnected.
            if opened and self.phone is not None:
                with contextlib.suppress(Exception):
                    await self.phone.stop_media()
            return
        if opened:
            self.streaming = True
            self._media_held = False
            self.media_sessions += 1
            update |= {
                "mediaStreamingStatus": "mediaStreamingStarted",
                "mediaStreamingStatusDetails": "subscriptionStarted",
            }
            self.emit(
                "MediaStreamingStarted", {"mediaStreamingUpdate": update}, operation_context=operation_context, url=url
            )
            if link is not None:
                link.set_drop_listener(partial(self._media_dropped, operation_context, url))
        else:
            update |= {
                "mediaStreamingStatus": "mediaStreamingFailed",
                "mediaStreamingStatusDetails": "initialWebSocketConnectionFailed",
            }
            self.emit(
                "MediaStreamingFailed",
                {"mediaStreamingUpdate": update},
                operation_context=operation_context,
                result=(500, 8581, "Action failed, the media WebSocket connection could not be established."),
                url=url,
            )

    def _media_dropped(self, operation_context: str | None, url: str | None, reason: str) -> None:
        """The app's side closed or broke the media socket; the call itself goes on, as with ACS."""
        if not self.streaming:
            return  # the app stopped streaming, or the call is ending: not a failure
        self.streaming = False
        self._media_held = True
        if self.state != "connected":
            return
        self.media_drops += 1
        log.warning("call %s: media socket lost mid-call (%s); the call stays up", self.call_connection_id, reason)
        update = {
            "contentType": "Audio",
            "mediaStreamingStatus": "mediaStreamingFailed",
            "mediaStreamingStatusDetails": "streamConnectionInterrupted",
        }
        self.emit(
            "MediaStreamingFailed",
            {"mediaStreamingUpdate": update},
            operation_context=operation_context,
            result=STREAM_INTERRUPTED_RESULT,
            url=url,
        )

    async def stop_streaming(self, *, operation_context: str | None, url: str | None, notify: bool = True) -> None:
        if not self.streaming:
            return
        self.streaming = False
        link = self._media_link()
        if self.phone is not None:
            try:
                if notify and link is not None and self.state == "connected":
                    # The app stopped streaming, not the call: the caller stays on the line for a restart.
                    await link.suspend("media streaming stopped by the app")
                    self._media_held = True
                else:
                    await self.phone.stop_media()
            except Exception:
                log.exception("call %s: stopping the phone's media failed", self.call_connection_id)
        if notify:
            update = {
                "contentType": "Audio",
                "mediaStreamingStatus": "mediaStreamingStopped",
                "mediaStreamingStatusDetails": "subscriptionStopped",
            }
            self.emit(
                "MediaStreamingStopped", {"mediaStreamingUpdate": update}, operation_context=operation_context, url=url
            )

    async def _close_media(self) -> None:
        """The call is ending: close the phone's media path, live or held for a restart."""
        if not (self.streaming or self._media_held):
            return
        self.streaming = False
        self._media_held = False
        if self.phone is not None:
            try:
                await self.phone.stop_media()
            except Exception:
                log.exception("call %s: phone.stop_media failed", self.call_connection_id)

    async def end(
        self, reason: str, result: tuple[int, int, str], *, extra_first: Callable[[], None] | None = None
    ) -> None:
        """Disconnect once: stop media operations and streaming, CallDisconnected, tell the phone."""
        if self.state == "disconnected":
            return
        self.state = "disconnected"
        self.disconnect_reason = reason
        self.media_ops.shutdown()
        await self._close_media()
        if extra_first is not None:
            extra_first()
        if self._channel is not None:
            self.emit("CallDisconnected", result=result)
        self.ended.set()
        self.connected.set()  # wakes anyone still waiting for the connection
        if self.phone is not None:
            try:
                await self.phone.on_disconnected(reason)
            except Exception:
                log.exception("call %s: phone.on_disconnected failed", self.call_connection_id)
        if self._channel is not None:
            channel = self._channel
            self.spawn(channel.close(drain_timeout_s=60.0), "close-callbacks")
        self._deps.forget(self)

    # ---- operations from the app (REST) ---------------------------------------------------------

    def hang_up(self) -> None:
        self.state = "disconnecting"
        self.spawn(self.end("app_hangup", APP_HANGUP_RESULT), "hangup")

    def transfer(self, target_raw_id: str, operation_context: str | None, body: dict[str, Any]) -> None:
        record = {
            "call_connection_id": self.call_connection_id,
            "correlation_id": self.correlation_id,
            "target": target_raw_id,
            "transferee": self.caller_raw_id,
            "operation_context": operation_context,
            "custom_calling_context": body.get("customCallingContext"),
        }
        self._deps.record_transfer(record)
        self.state = "transferring"
        url = body.get("operationCallbackUri") if isinstance(body.get("operationCallbackUri"), str) else None

        async def _run() -> None:
            self.emit(
                "CallTransferAccepted",
                {
                    "transferTarget": model_from_raw_id(target_raw_id),
                    "transferee": model_from_raw_id(self.caller_raw_id),
                },
                operation_context=operation_context,
                url=url,
            )
            self.state = "transferAccepted"
            await self.end("transferred", TRANSFER_RESULT)

        self.spawn(_run(), "transfer")

    def add_participant(self, raw_id: str, operation_context: str | None, url: str | None) -> None:
        async def _run() -> None:
            await asyncio.sleep(0.05)  # the invitee "answers"
            if self.state != "connected":
                return
            if raw_id not in self.participants:
                self.participants.append(raw_id)
            self.emit(
                "AddParticipantSucceeded",
                {"participant": model_from_raw_id(raw_id)},
                operation_context=operation_context,
                url=url,
            )
            self._participants_updated()

        self.spawn(_run(), "add-participant")

    def start_continuous_dtmf(self, operation_context: str | None, url: str | None) -> None:
        self.continuous_dtmf_context = operation_context or ""
        self.continuous_dtmf_url = url

    def stop_continuous_dtmf(self, operation_context: str | None, url: str | None) -> None:
        if self.continuous_dtmf_context is None:
            return
        self.continuous_dtmf_context = None
        self.continuous_dtmf_url = None
        self.emit("ContinuousDtmfRecognitionStopped", operation_context=operation_context, url=url)

    # ---- CallSide: what the phone does ----------------------------------------------------------

    def hang_up_by_phone(self) -> None:
        def _schedule() -> None:
            self.spawn(self.end("remote_hangup", REMOTE_HANGUP_RESULT), "remote-hangup")

        self._loop.call_soon_threadsafe(_schedule)

    def dtmf_from_phone(self, tone_char: str) -> None:
        def _deliver() -> None:
            name = TONE_CHARS.get(tone_char.upper())
            if name is None:
                log.warning("call %s: phone pressed unknown DTMF key %r", self.call_connection_id, tone_char)
                return
            if self.state != "connected":
                return
            if self.continuous_dtmf_context is not None:
                self._dtmf_seq += 1
                self.emit(
                    "ContinuousDtmfRecognitionToneReceived",
                    {"sequenceId": self._dtmf_seq, "tone": name},
                    operation_context=self.continuous_dtmf_context or None,
                    result=(200, 0, "DTMF tone received successfully."),
                    url=self.continuous_dtmf_url,
                )
            self.media_ops.on_tone(name)

        self._loop.call_soon_threadsafe(_deliver)

    async def shutdown(self) -> None:
        """Emulator stopping: end the call quietly and cancel leftover background work."""
        if self.state != "disconnected":
            await self.end("emulator_shutdown", REMOTE_HANGUP_RESULT)
        if self._channel is not None:
            await self._channel.close(drain_timeout_s=2.0)
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
