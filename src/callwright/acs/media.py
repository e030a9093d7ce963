"""ACS bidirectional media-streaming messages (acs-protocol.md §4), both directions.

Server side: :func:`parse_inbound` reads what ACS sends (``kind`` lower-case, camelCase payload keys,
``participantRawID``, ``silent``) and :func:`build_outbound_audio` / :func:`build_stop_audio` write the
documented PascalCase form. Emulator side: :func:`build_audio_metadata`, :func:`build_audio_data`,
:func:`build_dtmf` write what ACS sends and :func:`parse_outbound` reads every casing variant apps use
(documented PascalCase, the JS SDK's camelCase ``"kind":"audioData"``, .NET's extra fields).

Keys and the kind value are matched case-insensitively in both parsers: the documented and the SDK forms
differ only in case, and a strict parser would drop real traffic.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

FRAME_MS = 20
SAMPLE_RATE = 16_000
BYTES_PER_SAMPLE = 2


def frame_bytes(sample_rate: int = SAMPLE_RATE) -> int:
    """Bytes in one 20 ms frame of s16le mono (640 at 16 kHz, 960 at 24 kHz)."""
    return sample_rate * FRAME_MS // 1000 * BYTES_PER_SAMPLE


# Largest text frame read at all (an ACS frame is ~1.4 KB; "Data packet: 64 Kbytes"), checked before parsing.
MAX_MESSAGE_CHARS = 1_000_000
# Largest audio payload in one frame: one second at the stream's rate (ACS sends 20 ms).
MAX_FRAME_SECONDS = 1
SUPPORTED_RATES = (16_000, 24_000)

# The reasons a frame is skipped: a fixed set, so the metric's label values cannot be chosen by the sender.
REJECT_REASONS = (
    "binary",  # a binary WebSocket frame (ACS sends JSON text)
    "too_large",  # over MAX_MESSAGE_CHARS, or more than MAX_FRAME_SECONDS of audio
    "not_json",  # unparseable, too deeply nested, numbers out of range
    "not_object",  # JSON, but not an object
    "unknown_kind",  # no 'kind', or one this server does not know
    "bad_metadata",  # AudioMetadata with a rate/channels/length outside the negotiated set
    "bad_audio",  # AudioData whose data is not base64 text
    "odd_length",  # audio that is not a whole number of 16-bit samples
    "bad_dtmf",
    "bad_transcription",
    "empty",  # AudioData with no samples
    "malformed",  # anything else
)


class MediaFrameError(ValueError):
    """A media message that cannot be used; the message says why and ``reason`` (one of REJECT_REASONS)
    names the class of problem for the metric. The socket stays up."""

    def __init__(self, message: str, reason: str = "malformed") -> None:
        super().__init__(message)
        self.reason = reason if reason in REJECT_REASONS else "malformed"


@dataclass(frozen=True, slots=True)
class AudioMetadata:
    subscription_id: str | None
    encoding: str
    sample_rate: int
    channels: int
    length: int


@dataclass(frozen=True, slots=True)
class AudioData:
    pcm: bytes
    silent: bool
    timestamp: str | None = None
    participant_raw_id: str | None = None


@dataclass(frozen=True, slots=True)
class DtmfData:
    tone: str
    timestamp: str | None = None
    participant_raw_id: str | None = None


@dataclass(frozen=True, slots=True)
class TranscriptionData:
    text: str
    result_status: str
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class IgnoredMessage:
    """A well-formed message of a kind the receiver does not act on (e.g. TranscriptionMetadata, Mark)."""

    kind: str


InboundMessage = AudioMetadata | AudioData | DtmfData | TranscriptionData | IgnoredMessage


@dataclass(frozen=True, slots=True)
class OutboundAudio:
    pcm: bytes


@dataclass(frozen=True, slots=True)
class OutboundStop:
    pass


OutboundMessage = OutboundAudio | OutboundStop | IgnoredMessage

# DTMF tone names used by Call Automation events, and the characters media DtmfData carries.
TONE_NAMES = {
    "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
    "seven": "7", "eight": "8", "nine": "9", "a": "A", "b": "B", "c": "C", "d": "D",
    "pound": "#", "asterisk": "*",
}  # fmt: skip
TONE_CHARS = {v: k for k, v in TONE_NAMES.items()}


def tone_to_char(tone: str) -> str:
    """'five' → '5', '#' → '#'; raises MediaFrameError for anything else."""
    t = tone.strip()
    if t.lower() in TONE_NAMES:
        return TONE_NAMES[t.lower()]
    if t.upper() in TONE_CHARS:
        return t.upper()
    raise MediaFrameError(f"unknown DTMF tone {tone!r}")


def _lower_keys(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k).lower(): v for k, v in obj.items()}
    return obj


def _load(text: str | bytes) -> dict[str, Any]:
    if not isinstance(text, str | bytes | bytearray):
        raise MediaFrameError(f"expected text, got {type(text).__name__}", "malformed")
    if len(text) > MAX_MESSAGE_CHARS:
        raise MediaFrameError(f"message of {len(text)} characters (limit {MAX_MESSAGE_CHARS})", "too_large")
    try:
        doc = json.loads(text)
    except RecursionError:
        # The C scanner counts nesting against the recursion limit: 2,000 '[' end here, not in a crash.
        raise MediaFrameError("JSON nested too deeply", "not_json") from None
    except (ValueError, UnicodeDecodeError, OverflowError, TypeError) as exc:
        # ValueError covers integers past Python's 4,300-digit limit too.
        raise MediaFrameError(f"not JSON: {str(exc)[:80]}", "not_json") from None
    if not isinstance(doc, dict):
        raise MediaFrameError(f"expected a JSON object, got {type(doc).__name__}", "not_object")
    return _lower_keys(doc)


def _opt_str(value: Any, limit: int = 256) -> str | None:
    """A short optional string field; anything else (objects, numbers, kilobytes) is dropped."""
    return value if isinstance(value, str) and len(value) <= limit else None


def _whole_number(value: Any, what: str, default: int) -> int:
    """A finite integral JSON number (``16000`` or ``16000.0``); ``1e999`` (inf), NaN, 16000.5, strings and
    booleans are refused by name."""
    if value is None:
        return default
    if isinstance(value, bool):
        raise MediaFrameError(f"AudioMetadata.{what} must be a number, got a boolean", "bad_metadata")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    raise MediaFrameError(f"AudioMetadata.{what} must be a finite whole number, got {str(value)[:40]}", "bad_metadata")


def _decode_pcm(b64: Any, what: str, max_bytes: int | None = None) -> bytes:
    if b64 is None:
        return b""
    if not isinstance(b64, str):
        raise MediaFrameError(f"{what}.data must be a base64 string", "bad_audio")
    if max_bytes is not None and len(b64) > (max_bytes + 2) // 3 * 4:
        raise MediaFrameError(f"{what}.data holds more than {max_bytes} bytes of audio", "too_large")
    try:
        pcm = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        raise MediaFrameError(f"{what}.data is not valid base64", "bad_audio") from None
    if len(pcm) % BYTES_PER_SAMPLE:
        # Skipped, not trimmed: which byte is extra is unknowable, and a misaligned frame decodes as loud
        # noise that could barge in; losing one frame is inaudible to recognition.
        raise MediaFrameError(f"{what}.data has {len(pcm)} bytes, not a whole number of 16-bit samples", "odd_length")
    return pcm


# Inbound audio is never longer than this, whatever the rate (checked before decoding).
_MAX_INBOUND_PCM = max(SUPPORTED_RATES) * BYTES_PER_SAMPLE * MAX_FRAME_SECONDS


def parse_inbound(text: str | bytes) -> InboundMessage:
    """Parse one ACS → app message. Raises MediaFrameError (and nothing else) naming the problem."""
    try:
        return _parse_inbound(text)
    except MediaFrameError:
        raise
    except (RecursionError, MemoryError):
        raise MediaFrameError("message too complex to read", "not_json") from None
    except Exception as exc:  # a parser bug must cost one frame, never the socket
        raise MediaFrameError(f"unreadable message ({type(exc).__name__})", "malformed") from None


def _parse_inbound(text: str | bytes) -> InboundMessage:
    doc = _load(text)
    kind = doc.get("kind")
    if not isinstance(kind, str) or len(kind) > 64:
        raise MediaFrameError("missing 'kind'", "unknown_kind")
    k = kind.lower()
    payload = _lower_keys(doc.get(k))
    if k == "audiometadata":
        if not isinstance(payload, dict):
            raise MediaFrameError("AudioMetadata without an 'audioMetadata' object", "bad_metadata")
        rate = _whole_number(payload.get("samplerate"), "sampleRate", SAMPLE_RATE)
        channels = _whole_number(payload.get("channels"), "channels", 1)
        if rate not in SUPPORTED_RATES or channels != 1:
            raise MediaFrameError(
                f"unsupported audio format {rate} Hz × {channels} channels (negotiable: 16000 or 24000 Hz mono)",
                "bad_metadata",
            )
        length = _whole_number(payload.get("length"), "length", frame_bytes(rate))
        encoding = payload.get("encoding", "PCM")
        if not isinstance(encoding, str) or encoding.upper() != "PCM":
            raise MediaFrameError(f"unsupported encoding {str(encoding)[:20]!r} (PCM only)", "bad_metadata")
        return AudioMetadata(
            subscription_id=_opt_str(payload.get("subscriptionid")),
            encoding=encoding,
            sample_rate=rate,
            channels=channels,
            length=length if 0 < length <= _MAX_INBOUND_PCM else frame_bytes(rate),
        )
    if k == "audiodata":
        if not isinstance(payload, dict):
            raise MediaFrameError("AudioData without an 'audioData' object", "bad_audio")
        pcm = _decode_pcm(payload.get("data"), "audioData", _MAX_INBOUND_PCM)
        silent = payload.get("silent", False)
        return AudioData(
            pcm=pcm,
            silent=silent is True,
            timestamp=_opt_str(payload.get("timestamp")),
            participant_raw_id=_opt_str(payload.get("participantrawid")),
        )
    if k == "dtmfdata":
        if not isinstance(payload, dict) or not isinstance(payload.get("data"), str):
            raise MediaFrameError("DtmfData without dtmfData.data", "bad_dtmf")
        if len(payload["data"]) > 16:
            raise MediaFrameError("DtmfData.data is not a tone", "bad_dtmf")
        try:
            tone = tone_to_char(payload["data"])
        except MediaFrameError as exc:
            raise MediaFrameError(str(exc), "bad_dtmf") from None
        return DtmfData(
            tone=tone,
            timestamp=_opt_str(payload.get("timestamp")),
            participant_raw_id=_opt_str(payload.get("participantrawid")),
        )
    if k == "transcriptiondata":
        if not isinstance(payload, dict):
            raise MediaFrameError("TranscriptionData without a 'transcriptionData' object", "bad_transcription")
        text_v, status = payload.get("text", ""), payload.get("resultstatus", "")
        if not isinstance(text_v, str) or not isinstance(status, str):
            raise MediaFrameError("TranscriptionData text/resultStatus must be strings", "bad_transcription")
        return TranscriptionData(text=text_v, result_status=status.lower(), raw=payload)
    if k in ("transcriptionmetadata", "dtmfmetadata"):
        return IgnoredMessage(kind=kind)
    raise MediaFrameError(f"unknown kind {kind[:40]!r}", "unknown_kind")


def build_outbound_audio(pcm: bytes) -> str:
    """App → ACS audio in the documented PascalCase form."""
    data = base64.b64encode(pcm).decode("ascii")
    return json.dumps({"Kind": "AudioData", "AudioData": {"Data": data}, "StopAudio": None})


STOP_AUDIO = json.dumps({"Kind": "StopAudio", "AudioData": None, "StopAudio": {}})


def build_stop_audio() -> str:
    return STOP_AUDIO


def parse_outbound(text: str | bytes) -> OutboundMessage:
    """Parse one app → ACS message in any casing variant (§4.3). Raises MediaFrameError."""
    doc = _load(text)
    kind = doc.get("kind")
    if not isinstance(kind, str):
        raise MediaFrameError("missing 'Kind'")
    k = kind.lower()
    if k == "audiodata":
        payload = _lower_keys(doc.get("audiodata") or doc.get("serveraudiodata"))
        if not isinstance(payload, dict):
            raise MediaFrameError("AudioData without an 'AudioData' object")
        return OutboundAudio(pcm=_decode_pcm(payload.get("data"), "AudioData"))
    if k == "stopaudio":
        return OutboundStop()
    if k in ("mark", "markdata"):
        return IgnoredMessage(kind=kind)
    raise MediaFrameError(f"unknown outbound kind {kind!r}")


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def build_audio_metadata(subscription_id: str, sample_rate: int = SAMPLE_RATE) -> str:
    return json.dumps(
        {
            "kind": "AudioMetadata",
            "audioMetadata": {
                "subscriptionId": subscription_id,
                "encoding": "PCM",
                "sampleRate": sample_rate,
                "channels": 1,
                "length": frame_bytes(sample_rate),
            },
        }
    )


def build_audio_data(
    pcm: bytes, *, silent: bool, participant_raw_id: str | None = None, timestamp: str | None = None
) -> str:
    body: dict[str, Any] = {
        "timestamp": timestamp or _now_iso(),
        "data": base64.b64encode(pcm).decode("ascii"),
        "silent": silent,
    }
    if participant_raw_id:
        body["participantRawID"] = participant_raw_id
    return json.dumps({"kind": "AudioData", "audioData": body})


def build_dtmf(tone_char: str, participant_raw_id: str | None = None) -> str:
    body: dict[str, Any] = {"data": tone_char, "timestamp": _now_iso()}
    if participant_raw_id:
        body["participantRawID"] = participant_raw_id
    return json.dumps({"kind": "DtmfData", "dtmfData": body})
