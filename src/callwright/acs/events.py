"""Events as ACS and Event Grid deliver them (acs-protocol.md §1, §3): parsing and type constants.

One webhook receives three shapes — Event Grid schema arrays, CloudEvents (single or batch) and ACS
callback arrays (CloudEvents) — which are normalised here into :class:`CallEvent`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal


class ACSEventTypes:
    """Event type strings, as they appear in ``type`` / ``eventType``."""

    PREFIX = "Microsoft.Communication."
    SUBSCRIPTION_VALIDATION = "Microsoft.EventGrid.SubscriptionValidationEvent"
    INCOMING_CALL = "Microsoft.Communication.IncomingCall"
    CALL_CONNECTED = "Microsoft.Communication.CallConnected"
    CALL_DISCONNECTED = "Microsoft.Communication.CallDisconnected"
    CALL_TRANSFER_ACCEPTED = "Microsoft.Communication.CallTransferAccepted"
    CALL_TRANSFER_FAILED = "Microsoft.Communication.CallTransferFailed"
    CREATE_CALL_FAILED = "Microsoft.Communication.CreateCallFailed"
    ANSWER_FAILED = "Microsoft.Communication.AnswerFailed"
    PARTICIPANTS_UPDATED = "Microsoft.Communication.ParticipantsUpdated"
    ADD_PARTICIPANT_SUCCEEDED = "Microsoft.Communication.AddParticipantSucceeded"
    ADD_PARTICIPANT_FAILED = "Microsoft.Communication.AddParticipantFailed"
    CONTINUOUS_DTMF_TONE_RECEIVED = "Microsoft.Communication.ContinuousDtmfRecognitionToneReceived"
    CONTINUOUS_DTMF_TONE_FAILED = "Microsoft.Communication.ContinuousDtmfRecognitionToneFailed"
    CONTINUOUS_DTMF_STOPPED = "Microsoft.Communication.ContinuousDtmfRecognitionStopped"
    DTMF_TONE_RECEIVED = CONTINUOUS_DTMF_TONE_RECEIVED  # the seed's name for the same event
    SEND_DTMF_COMPLETED = "Microsoft.Communication.SendDtmfTonesCompleted"
    SEND_DTMF_FAILED = "Microsoft.Communication.SendDtmfTonesFailed"
    PLAY_STARTED = "Microsoft.Communication.PlayStarted"
    PLAY_COMPLETED = "Microsoft.Communication.PlayCompleted"
    PLAY_FAILED = "Microsoft.Communication.PlayFailed"
    PLAY_CANCELED = "Microsoft.Communication.PlayCanceled"
    RECOGNIZE_COMPLETED = "Microsoft.Communication.RecognizeCompleted"
    RECOGNIZE_FAILED = "Microsoft.Communication.RecognizeFailed"
    RECOGNIZE_CANCELED = "Microsoft.Communication.RecognizeCanceled"
    MEDIA_STREAMING_STARTED = "Microsoft.Communication.MediaStreamingStarted"
    MEDIA_STREAMING_STOPPED = "Microsoft.Communication.MediaStreamingStopped"
    MEDIA_STREAMING_FAILED = "Microsoft.Communication.MediaStreamingFailed"

    @classmethod
    def all(cls) -> set[str]:
        return {v for k, v in vars(cls).items() if k.isupper() and isinstance(v, str) and "." in v}


class EventParseError(ValueError):
    """The delivery cannot be used; the message names the problem (answered with 400)."""


@dataclass(frozen=True, slots=True)
class CallEvent:
    id: str
    type: str
    data: dict[str, Any]
    schema: Literal["eventgrid", "cloudevents"]
    source: str | None = None
    subject: str | None = None
    time: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def call_connection_id(self) -> str | None:
        v = self.data.get("callConnectionId")
        return v if isinstance(v, str) and v else None

    @property
    def correlation_id(self) -> str | None:
        v = self.data.get("correlationId")
        return v if isinstance(v, str) and v else None

    @property
    def server_call_id(self) -> str | None:
        v = self.data.get("serverCallId")
        return v if isinstance(v, str) and v else None

    @property
    def operation_context(self) -> str | None:
        v = self.data.get("operationContext")
        return v if isinstance(v, str) else None

    @property
    def correlation_key(self) -> str | None:
        """What orders this event among its call's events: callConnectionId, else the ids IncomingCall has."""
        return self.call_connection_id or self.server_call_id or self.correlation_id

    @property
    def short_type(self) -> str:
        return self.type.rsplit(".", 1)[-1]


def _str_field(item: dict[str, Any], name: str, idx: int) -> str:
    v = item.get(name)
    if not isinstance(v, str) or not v:
        raise EventParseError(f"event {idx}: missing or empty '{name}'")
    return v


def _data(item: dict[str, Any], idx: int) -> dict[str, Any]:
    data = item.get("data", {})
    if data is None:
        data = {}
    if isinstance(data, str):  # CloudEvents may carry data as a JSON string
        try:
            data = json.loads(data)
        except ValueError:
            raise EventParseError(f"event {idx}: 'data' is a string but not JSON") from None
    if not isinstance(data, dict):
        raise EventParseError(f"event {idx}: 'data' must be an object")
    return data


def _one(item: Any, idx: int) -> CallEvent:
    if not isinstance(item, dict):
        raise EventParseError(f"event {idx}: expected an object, got {type(item).__name__}")
    if "eventType" in item:
        ev = CallEvent(
            id=_str_field(item, "id", idx),
            type=_str_field(item, "eventType", idx),
            data=_data(item, idx),
            schema="eventgrid",
            source=item.get("topic"),
            subject=item.get("subject"),
            time=item.get("eventTime"),
            raw=item,
        )
    elif "type" in item or "specversion" in item:
        ev = CallEvent(
            id=_str_field(item, "id", idx),
            type=_str_field(item, "type", idx),
            data=_data(item, idx),
            schema="cloudevents",
            source=item.get("source"),
            subject=item.get("subject"),
            time=item.get("time"),
            raw=item,
        )
    else:
        raise EventParseError(f"event {idx}: neither an Event Grid event (eventType) nor a CloudEvent (type)")
    _check_ids(ev, idx)
    return ev


def _check_ids(ev: CallEvent, idx: int) -> None:
    if ev.type == ACSEventTypes.SUBSCRIPTION_VALIDATION:
        if not isinstance(ev.data.get("validationCode"), str):
            raise EventParseError(f"event {idx}: SubscriptionValidationEvent without data.validationCode")
    elif ev.type == ACSEventTypes.INCOMING_CALL:
        if not isinstance(ev.data.get("incomingCallContext"), str):
            raise EventParseError(f"event {idx}: IncomingCall without data.incomingCallContext")
        if not (ev.server_call_id or ev.correlation_id):
            raise EventParseError(f"event {idx}: IncomingCall without serverCallId or correlationId")
    elif ev.type.startswith(ACSEventTypes.PREFIX) and ev.call_connection_id is None:
        raise EventParseError(f"event {idx} ({ev.short_type}): missing data.callConnectionId")


def parse_delivery(body: bytes) -> list[CallEvent]:
    """Parse a webhook body (single event or array). Raises EventParseError naming the problem."""
    if not body.strip():
        raise EventParseError("empty body")
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise EventParseError(f"body is not JSON: {exc}") from None
    items = doc if isinstance(doc, list) else [doc]
    if not items:
        raise EventParseError("empty event array")
    return [_one(item, i) for i, item in enumerate(items)]
