"""Call control through the official async Call Automation SDK — no hand-written REST.

:class:`CallAutomation` wraps one ``aio.CallAutomationClient`` for the whole app (built in the lifespan);
:class:`CallActions` is the per-call view that agents and handlers use (hang up, transfer, DTMF).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from azure.communication.callautomation import (
    AudioFormat,
    CommunicationUserIdentifier,
    MediaStreamingAudioChannelType,
    MediaStreamingContentType,
    MediaStreamingOptions,
    PhoneNumberIdentifier,
    StreamingTransportType,
)
from azure.core.exceptions import AzureError, HttpResponseError, ResourceNotFoundError

from callwright.acs.client import build_async_client
from callwright.acs.identifiers import raw_id_for
from callwright.acs.media import TONE_CHARS

log = logging.getLogger("callwright.calls")

T = TypeVar("T")
DEFAULT_TIMEOUT_SECONDS = 10.0


class CallControlError(RuntimeError):
    """A call-control request failed; the message says which and why."""


async def _bounded(op: str, call: Awaitable[T], timeout: float, *, not_found_ok: bool = False) -> T:
    """Run one SDK request with a deadline; transport failures become a CallControlError naming ``op``.

    The SDK retries refused connections with back-off for a long time: with ACS down a request must fail
    within ``timeout`` with a clear reason, not hold an API request (or the shutdown) open.
    An error answer from ACS becomes a CallControlError with its status, except a 404 when
    ``not_found_ok`` (the caller treats a call ACS no longer knows as done): that ResourceNotFoundError
    propagates.
    """
    try:
        async with asyncio.timeout(timeout):
            return await call
    except TimeoutError:
        log.error("%s: ACS did not answer within %.1fs", op, timeout)
        raise CallControlError(f"{op} timed out: ACS did not answer within {timeout:g}s") from None
    except ResourceNotFoundError as exc:
        if not_found_ok:
            raise
        raise CallControlError(f"{op} failed: {exc.status_code} {exc.message}") from exc
    except HttpResponseError as exc:
        raise CallControlError(f"{op} failed: {exc.status_code} {exc.message}") from exc
    except AzureError as exc:  # ServiceRequestError and friends: connection refused, DNS, TLS
        log.error("%s: ACS unreachable: %s", op, type(exc).__name__)
        raise CallControlError(f"{op} failed: ACS unreachable ({type(exc).__name__}: {exc})") from exc


def sdk_identifier(target: str) -> PhoneNumberIdentifier | CommunicationUserIdentifier:
    raw = raw_id_for(target)
    if raw.startswith("4:"):
        return PhoneNumberIdentifier(raw[2:])
    return CommunicationUserIdentifier(raw)


@dataclass(frozen=True)
class AnsweredCall:
    call_connection_id: str
    server_call_id: str | None
    correlation_id: str | None


class CallAutomation:
    def __init__(
        self,
        connection_string: str,
        *,
        callback_url: str,
        media_url: str,
        verify: bool | str = True,
        audio_channel: str = "mixed",
        source_phone_number: str | None = None,
        request_timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        self._client = build_async_client(connection_string, verify=verify, timeout=request_timeout)
        self.request_timeout = request_timeout
        self.callback_url = callback_url
        self.media_url = media_url
        self._audio_channel = audio_channel
        self._source_number = source_phone_number

    def _media_options(self) -> MediaStreamingOptions:
        return MediaStreamingOptions(
            transport_url=self.media_url,
            transport_type=StreamingTransportType.WEBSOCKET,
            content_type=MediaStreamingContentType.AUDIO,
            audio_channel_type=(
                MediaStreamingAudioChannelType.UNMIXED
                if self._audio_channel == "unmixed"
                else MediaStreamingAudioChannelType.MIXED
            ),
            start_media_streaming=True,
            enable_bidirectional=True,
            audio_format=AudioFormat.PCM16_K_MONO,
            enable_dtmf_tones=True,
        )

    async def answer(self, incoming_call_context: str, *, operation_context: str | None = None) -> AnsweredCall:
        props = await _bounded(
            "answer_call",
            self._client.answer_call(
                incoming_call_context,
                self.callback_url,
                media_streaming=self._media_options(),
                operation_context=operation_context,
            ),
            self.request_timeout,
        )
        return AnsweredCall(props.call_connection_id, props.server_call_id, getattr(props, "correlation_id", None))

    async def reject(self, incoming_call_context: str, *, reason: str = "busy") -> None:
        """Refuse an incoming call (e.g. while shutting down): ACS tells the caller the line is busy."""
        await _bounded(
            "reject_call",
            self._client.reject_call(incoming_call_context, call_reject_reason=reason),
            self.request_timeout,
        )

    async def create(self, target: str, *, operation_context: str | None = None) -> AnsweredCall:
        source = PhoneNumberIdentifier(self._source_number) if self._source_number else None
        props = await _bounded(
            "create_call",
            self._client.create_call(
                sdk_identifier(target),
                self.callback_url,
                source_caller_id_number=source,
                media_streaming=self._media_options(),
                operation_context=operation_context,
            ),
            self.request_timeout,
        )
        return AnsweredCall(props.call_connection_id, props.server_call_id, getattr(props, "correlation_id", None))

    def actions(self, call_connection_id: str, caller_raw_id: str | None = None) -> CallActions:
        return CallActions(self, call_connection_id, caller_raw_id)

    def connection(self, call_connection_id: str) -> Any:
        return self._client.get_call_connection(call_connection_id)

    async def call_state(self, call_connection_id: str) -> str | Literal["gone"]:
        """ACS's view of a call: its ``callConnectionState`` (e.g. "connected"), or "gone" when ACS no
        longer knows it (404). Raises CallControlError when ACS cannot be asked."""
        try:
            props = await _bounded(
                "get_call_properties",
                self.connection(call_connection_id).get_call_properties(),
                self.request_timeout,
                not_found_ok=True,
            )
        except ResourceNotFoundError:
            return "gone"
        return str(getattr(props, "call_connection_state", None) or "unknown").lower()

    async def start_media_streaming(self, call_connection_id: str, *, operation_context: str | None = None) -> None:
        """Ask ACS to (re)open the call's media WebSocket to ``media_url`` (set when the call was answered
        or created): after a replica died or lost the socket, ACS dials the load balancer again. A call ACS
        no longer knows raises ResourceNotFoundError (the caller stops trying)."""
        await _bounded(
            "start_media_streaming",
            self.connection(call_connection_id).start_media_streaming(operation_context=operation_context),
            self.request_timeout,
            not_found_ok=True,
        )

    async def stop_media_streaming(self, call_connection_id: str, *, operation_context: str | None = None) -> None:
        await _bounded(
            "stop_media_streaming",
            self.connection(call_connection_id).stop_media_streaming(operation_context=operation_context),
            self.request_timeout,
        )

    async def start_recording(
        self, call_connection_id: str, *, state_callback_url: str | None = None, channel: str = "unmixed"
    ) -> tuple[str, str]:
        """ACS Call Recording for a connected call (audio, WAV, ``channel`` mixed/unmixed): returns
        (recordingId, state). ACS reports each state change with RecordingStateChanged on
        ``state_callback_url`` (default: the call's callback URL)."""
        props = await _bounded(
            "start_recording",
            self._client.start_recording(
                call_connection_id=call_connection_id,
                recording_state_callback_url=state_callback_url or self.callback_url,
                recording_content_type="audio",
                recording_channel_type=channel,
                recording_format_type="wav",
            ),
            self.request_timeout,
        )
        return str(props.recording_id or ""), str(props.recording_state or "")

    async def close(self) -> None:
        await self._client.close()


class CallActions:
    """One call's telephony actions, as agents' tools and handlers need them."""

    def __init__(self, automation: CallAutomation, call_connection_id: str, caller_raw_id: str | None) -> None:
        self._automation = automation
        self.call_connection_id = call_connection_id
        self.caller_raw_id = caller_raw_id

    async def hang_up(self) -> None:
        try:
            await _bounded(
                "hang_up",
                self._automation.connection(self.call_connection_id).hang_up(is_for_everyone=True),
                self._automation.request_timeout,
                not_found_ok=True,
            )
        except ResourceNotFoundError:
            log.info("hang up: call already gone")

    async def transfer(self, target: str) -> None:
        await _bounded(
            "transfer",
            self._automation.connection(self.call_connection_id).transfer_call_to_participant(
                sdk_identifier(target), operation_context="callwright-transfer"
            ),
            self._automation.request_timeout,
        )

    async def send_dtmf(self, tones: str) -> None:
        if not self.caller_raw_id:
            raise CallControlError("send_dtmf: the caller's identifier is unknown")
        names = [TONE_CHARS[t] for t in tones.upper() if t in TONE_CHARS]
        await _bounded(
            "send_dtmf",
            self._automation.connection(self.call_connection_id).send_dtmf_tones(
                names, sdk_identifier(self.caller_raw_id)
            ),
            self._automation.request_timeout,
        )
