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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

FRAME_MS = 20
SAMPLE_RATE = 16_000
BYTES_PER_SAMPLE = 2


def frame_bytes(sample_rate: int = SAMPLE_RATE) -> int:
    """Bytes in one 20 ms frame of s16le mono (640 at 16 kHz, 960 at 24 kHz)."""
    return sample_rate * FRAME_MS // 1000 * BYTES_PER_SAMPLE


class MediaFrameError(ValueError):
    """A media message that cannot be used; the message says why. The socket stays up."""


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
    try:
        doc = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MediaFrameError(f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise MediaFrameError(f"expected a JSON object, got {type(doc).__name__}")
    return _lower_keys(doc)


def _decode_pcm(b64: Any, what: str) -> bytes:
    if b64 is None:
        return b""
    if not isinstance(b64, str):
        raise MediaFrameError(f"{what}.data must be a base64 string")
    try:
        pcm = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        raise MediaFrameError(f"{what}.data is not valid base64") from None
    if len(pcm) % BYTES_PER_SAMPLE:
        raise MediaFrameError(f"{what}.data has {len(pcm)} bytes, not a whole number of 16-bit samples")
    return pcm


def parse_inbound(text: str | bytes) -> InboundMessage:
    """Parse one ACS → app message. Raises MediaFrameError naming the problem."""
    doc = _load(text)
    kind = doc.get("kind")
    if not isinstance(kind, str):
        raise MediaFrameError("missing 'kind'")
    k = kind.lower()
    payload = _lower_keys(doc.get(k))
    if k == "audiometadata":
        if not isinstance(payload, dict):
            raise MediaFrameError("AudioMetadata without an 'audioMetadata' object")
        try:
            rate = int(payload.get("samplerate", SAMPLE_RATE))
            channels = int(payload.get("channels", 1))
            length = int(payload.get("length", frame_bytes(rate)))
        except (TypeError, ValueError):
            raise MediaFrameError("AudioMetadata has a non-numeric sampleRate/channels/length") from None
        if rate not in (16_000, 24_000) or channels != 1:
            raise MediaFrameError(f"unsupported audio format {rate} Hz × {channels} channels")
        return AudioMetadata(
            subscription_id=payload.get("subscriptionid"),
            encoding=str(payload.get("encoding", "PCM")),
            sample_rate=rate,
            channels=channels,
            length=length,
        )
    if k == "audiodata":
        if not isinstance(payload, dict):
            raise MediaFrameError("AudioData without an 'audioData' object")
        pcm = _decode_pcm(payload.get("data"), "audioData")
        silent = payload.get("silent", False)
        return AudioData(
            pcm=pcm,
            silent=bool(silent),
            timestamp=payload.get("timestamp"),
            participant_raw_id=payload.get("participantrawid"),
        )
    if k == "dtmfdata":
        if not isinstance(payload, dict) or not isinstance(payload.get("data"), str):
            raise MediaFrameError("DtmfData without dtmfData.data")
        return DtmfData(
            tone=tone_to_char(payload["data"]),
            timestamp=payload.get("timestamp"),
            participant_raw_id=payload.get("participantrawid"),
        )
    if k == "transcriptiondata":
        if not isinstance(payload, dict):
            raise MediaFrameError("TranscriptionData without a 'transcriptionData' object")
        return TranscriptionData(
            text=str(payload.get("text", "")),
            result_status=str(payload.get("resultstatus", "")).lower(),
            raw=payload,
        )
    if k in ("transcriptionmetadata", "dtmfmetadata"):
        return IgnoredMessage(kind=kind)
    raise MediaFrameError(f"unknown kind {kind!r}")


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
