"""Events as ACS and Event Grid deliver them (acs-protocol.md §1, §3): parsing and type constants.

One webhook receives three shapes — Event Grid schema arrays, CloudEvents (single or batch) and ACS
callback arrays (CloudEvents) — which are normalised here into :class:`CallEvent`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from callwright.acs.identifiers import is_call_connection_id

# Event Grid's own maximum per delivery (and a ~1 MB body): more is refused whole with 413.
MAX_EVENTS_PER_DELIVERY = 5_000
# Real events nest 5-6 levels; anything far deeper is an attack on the parser or on whatever later
# serialises the event's data (RecursionError), so it is refused before any event is used.
MAX_JSON_DEPTH = 64


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
    CONNECT_FAILED = "Microsoft.Communication.ConnectFailed"
    REMOVE_PARTICIPANT_SUCCEEDED = "Microsoft.Communication.RemoveParticipantSucceeded"
    REMOVE_PARTICIPANT_FAILED = "Microsoft.Communication.RemoveParticipantFailed"
    CANCEL_ADD_PARTICIPANT_SUCCEEDED = "Microsoft.Communication.CancelAddParticipantSucceeded"
    CANCEL_ADD_PARTICIPANT_FAILED = "Microsoft.Communication.CancelAddParticipantFailed"
    HOLD_AUDIO_STARTED = "Microsoft.Communication.HoldAudioStarted"
    HOLD_AUDIO_PAUSED = "Microsoft.Communication.HoldAudioPaused"
    HOLD_AUDIO_RESUMED = "Microsoft.Communication.HoldAudioResumed"
    HOLD_AUDIO_COMPLETED = "Microsoft.Communication.HoldAudioCompleted"
    HOLD_FAILED = "Microsoft.Communication.HoldFailed"
    TRANSCRIPTION_STARTED = "Microsoft.Communication.TranscriptionStarted"
    TRANSCRIPTION_UPDATED = "Microsoft.Communication.TranscriptionUpdated"
    TRANSCRIPTION_STOPPED = "Microsoft.Communication.TranscriptionStopped"
    TRANSCRIPTION_FAILED = "Microsoft.Communication.TranscriptionFailed"
    RECORDING_STATE_CHANGED = "Microsoft.Communication.RecordingStateChanged"
    START_RECORDING_FAILED = "Microsoft.Communication.StartRecordingFailed"
    # Event Grid (not callback) events about calls: they carry no callConnectionId (acs-protocol.md §3.2:
    # recording events are sourced `calling/recordings/{serverCallId}/…`), so they are logged, never an error.
    RECORDING_FILE_STATUS_UPDATED = "Microsoft.Communication.RecordingFileStatusUpdated"
    CALL_STARTED = "Microsoft.Communication.CallStarted"
    CALL_ENDED = "Microsoft.Communication.CallEnded"
    CALL_PARTICIPANT_ADDED = "Microsoft.Communication.CallParticipantAdded"
    CALL_PARTICIPANT_REMOVED = "Microsoft.Communication.CallParticipantRemoved"

    @classmethod
    def all(cls) -> set[str]:
        return {
            v for k, v in vars(cls).items() if k.isupper() and isinstance(v, str) and "." in v and not v.endswith(".")
        }

    @classmethod
    def call_less(cls) -> frozenset[str]:
        """Known types that carry no callConnectionId (Event Grid notifications about calls)."""
        return frozenset(
            {
                cls.SUBSCRIPTION_VALIDATION,
                cls.INCOMING_CALL,
                cls.RECORDING_FILE_STATUS_UPDATED,
                cls.CALL_STARTED,
                cls.CALL_ENDED,
                cls.CALL_PARTICIPANT_ADDED,
                cls.CALL_PARTICIPANT_REMOVED,
            }
        )

    @classmethod
    def call_bound(cls) -> frozenset[str]:
        """Call Automation callback types: each must name its call with a valid callConnectionId."""
        return frozenset(cls.all() - cls.call_less())


class EventParseError(ValueError):
    """Nothing in the delivery can be used; the message names the problem (answered with 400)."""


class DeliveryTooLarge(EventParseError):
    """More events than one delivery may carry (answered with 413, which Event Grid does not retry)."""


@dataclass(frozen=True, slots=True)
class EventRejection:
    """One event of a delivery that was refused on its own; the others are still processed."""

    index: int
    reason: str
    type: str | None = None  # the event's type when it was a sane string (metric label, response)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"index": self.index, "reason": self.reason}
        if self.type is not None:
            out["type"] = self.type
        return out


@dataclass(frozen=True, slots=True)
class Delivery:
    """A parsed webhook body: the usable events and the per-event rejections."""

    events: list[CallEvent]
    rejections: list[EventRejection]


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
        # Only ids that are safe to log, serialise and use as keys ever name a call.
        return v if is_call_connection_id(v) else None

    @property
    def correlation_id(self) -> str | None:
        v = self.data.get("correlationId")
        return v if _is_token(v) else None

    @property
    def server_call_id(self) -> str | None:
        v = self.data.get("serverCallId")
        return v if _is_token(v) else None

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

    @property
    def is_call_less(self) -> bool:
        """An event about no particular call connection (e.g. RecordingFileStatusUpdated)."""
        return self.call_connection_id is None


# Event ids and types are echoed in logs, metrics and responses: printable ASCII, bounded.
_EVENT_ID = re.compile(r"[\x20-\x7e]{1,256}")
_EVENT_TYPE = re.compile(r"[\x21-\x7e]{1,256}")
# serverCallId (base64, ~200 chars) and correlationId (GUID): used as ordering and dedup keys.
_TOKEN = re.compile(r"[\x21-\x7e]{1,2048}")
_STRING_LITERAL = re.compile(rb'"(?:[^"\\]++|\\.)*+"')
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
_INNERMOST_PAIR = re.compile(rb"\[\]|\{\}")
# A JSON \u escape of a UTF-16 surrogate, or a UTF-8-encoded surrogate: the body may hold a lone one.
_SURROGATE_HINT = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")


def _is_token(v: object) -> bool:
    return isinstance(v, str) and _TOKEN.fullmatch(v) is not None


def _printable(v: object, limit: int = 60) -> str:
    """A fragment of sender input that is safe to put in a reason (ASCII, no control characters)."""
    text = v if isinstance(v, str) else type(v).__name__
    text = text.encode("ascii", "backslashreplace").decode("ascii")
    text = "".join(c if " " <= c <= "~" else f"\\x{ord(c):02x}" for c in text)
    return text if len(text) <= limit else text[:limit] + "…"


def json_depth_exceeds(doc: bytes, max_depth: int) -> bool:
    """True when valid JSON ``doc`` nests arrays/objects deeper than ``max_depth``.

    Works on the bytes in C-speed passes: strings are blanked, everything but brackets dropped, then
    innermost ``[]``/``{}`` pairs are peeled once per level — at most ``max_depth`` passes.
    """
    skeleton = _STRING_LITERAL.sub(b"", doc).translate(None, _NOT_BRACKET)
    for _ in range(max_depth):
        if not skeleton:
            return False
        skeleton = _INNERMOST_PAIR.sub(b"", skeleton)
    return bool(skeleton)


def loads_bounded(doc: bytes | str, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` that never lets a RecursionError or a deep document through: EventParseError instead."""
    raw = doc.encode("utf-8", "surrogatepass") if isinstance(doc, str) else doc
    try:
        value = json.loads(raw)
    except RecursionError:
        raise EventParseError(f"JSON nested deeper than {max_depth} levels") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise EventParseError(f"not JSON: {_printable(str(exc), 120)}") from None
    if isinstance(value, dict | list) and json_depth_exceeds(raw, max_depth):
        raise EventParseError(f"JSON nested deeper than {max_depth} levels")
    return value


def _has_lone_surrogate(item: Any) -> bool:
    try:
        json.dumps(item, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    except (ValueError, RecursionError):  # pragma: no cover - depth was checked, floats are finite-safe
        return True
    return False


def _str_field(item: dict[str, Any], name: str, pattern: re.Pattern[str]) -> str:
    v = item.get(name)
    if not isinstance(v, str) or not v:
        raise EventParseError(f"missing or empty '{name}'")
    if pattern.fullmatch(v) is None:
        raise EventParseError(f"'{name}' is not printable ASCII of at most 256 characters")
    return v


def _data(item: dict[str, Any]) -> dict[str, Any]:
    data = item.get("data", {})
    if data is None:
        data = {}
    if isinstance(data, str):  # CloudEvents may carry data as a JSON string
        try:
            data = loads_bounded(data)
        except EventParseError as exc:
            raise EventParseError(f"'data' is a string but {exc}") from None
    if not isinstance(data, dict):
        raise EventParseError("'data' must be an object")
    return data


def _one(item: Any) -> CallEvent:
    if not isinstance(item, dict):
        raise EventParseError(f"expected an object, got {type(item).__name__}")
    if "eventType" in item:
        ev = CallEvent(
            id=_str_field(item, "id", _EVENT_ID),
            type=_str_field(item, "eventType", _EVENT_TYPE),
            data=_data(item),
            schema="eventgrid",
            source=_opt_str(item.get("topic")),
            subject=_opt_str(item.get("subject")),
            time=_opt_str(item.get("eventTime")),
            raw=item,
        )
    elif "type" in item or "specversion" in item:
        ev = CallEvent(
            id=_str_field(item, "id", _EVENT_ID),
            type=_str_field(item, "type", _EVENT_TYPE),
            data=_data(item),
            schema="cloudevents",
            source=_opt_str(item.get("source")),
            subject=_opt_str(item.get("subject")),
            time=_opt_str(item.get("time")),
            raw=item,
        )
    else:
        raise EventParseError("neither an Event Grid event (eventType) nor a CloudEvent (type)")
    _check_ids(ev)
    return ev


def _opt_str(v: object) -> str | None:
    return v if isinstance(v, str) else None


def _check_ids(ev: CallEvent) -> None:
    if "callConnectionId" in ev.data and not is_call_connection_id(ev.data["callConnectionId"]):
        raise EventParseError(f"{ev.short_type}: data.callConnectionId is not a valid call connection id")
    for name in ("serverCallId", "correlationId"):
        if ev.data.get(name) is not None and not _is_token(ev.data[name]):
            raise EventParseError(f"{ev.short_type}: data.{name} is not printable ASCII of at most 2048 characters")
    if ev.type == ACSEventTypes.SUBSCRIPTION_VALIDATION:
        if not isinstance(ev.data.get("validationCode"), str):
            raise EventParseError("SubscriptionValidationEvent without data.validationCode")
    elif ev.type == ACSEventTypes.INCOMING_CALL:
        if not isinstance(ev.data.get("incomingCallContext"), str):
            raise EventParseError("IncomingCall without data.incomingCallContext")
        if not (ev.server_call_id or ev.correlation_id):
            raise EventParseError("IncomingCall without serverCallId or correlationId")
    elif ev.type in _CALL_BOUND and ev.call_connection_id is None:
        raise EventParseError(f"{ev.short_type}: missing data.callConnectionId")


_CALL_BOUND = ACSEventTypes.call_bound()


def _sane_type(item: Any) -> str | None:
    if not isinstance(item, dict):
        return None
    v = item.get("eventType", item.get("type"))
    return v if isinstance(v, str) and _EVENT_TYPE.fullmatch(v) else None


def parse_delivery(
    body: bytes,
    *,
    max_events: int = MAX_EVENTS_PER_DELIVERY,
    max_depth: int = MAX_JSON_DEPTH,
    callbacks_allowed: bool = True,
) -> Delivery:
    """Parse a webhook body (one event or an array) into usable events and per-event rejections.

    Outcomes, and only these: a :class:`Delivery` (possibly with rejections, possibly with no usable
    event at all); :class:`DeliveryTooLarge` for more than ``max_events`` events; :class:`EventParseError`
    when the body as a whole is unusable (empty, not JSON, nested deeper than ``max_depth``, not an
    object or array, an empty array). Nothing else escapes — not RecursionError, not UnicodeError.

    ``callbacks_allowed=False`` (a delivery authenticated by the Event Grid secret alone) rejects Call
    Automation callback types: ACS signs every callback with its JWT, so a CallDisconnected or a DTMF tone
    arriving with only the secret was not sent by ACS.
    """
    if not body.strip():
        raise EventParseError("empty body")
    try:
        doc = loads_bounded(body, max_depth=max_depth)
    except EventParseError as exc:
        raise EventParseError(f"body is {exc}" if str(exc).startswith("not JSON") else str(exc)) from None
    if isinstance(doc, dict):
        items: list[Any] = [doc]
    elif isinstance(doc, list):
        items = doc
    else:
        raise EventParseError(f"body must be a JSON object or array, got {type(doc).__name__}")
    if not items:
        raise EventParseError("empty event array")
    if len(items) > max_events:
        raise DeliveryTooLarge(f"{len(items)} events in one delivery; at most {max_events} are accepted")
    check_surrogates = _SURROGATE_HINT.search(body) is not None
    events: list[CallEvent] = []
    rejections: list[EventRejection] = []
    for idx, item in enumerate(items):
        try:
            if check_surrogates and _has_lone_surrogate(item):
                raise EventParseError("contains text that is not valid Unicode (a lone surrogate)")
            event = _one(item)
            if not callbacks_allowed and event.type in ACSEventTypes.call_bound():
                raise EventParseError(
                    f"{event.short_type} is a Call Automation callback: it must carry ACS's JWT, not only the "
                    "Event Grid secret"
                )
            events.append(event)
        except EventParseError as exc:
            rejections.append(EventRejection(idx, f"event {idx}: {exc}", _sane_type(item)))
    return Delivery(events, rejections)
