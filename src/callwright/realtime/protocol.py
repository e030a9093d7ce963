"""The realtime wire protocol's dialects: event names, ids, error events and the session document.

Three dialects share one server (realtime-protocol.md §2):

- ``voicelive``: Azure VoiceLive (``…/voice-live/realtime``), flat session with
  ``input_audio_sampling_rate`` and ``output_audio_format: pcm16_16000hz``;
- ``beta``: OpenAI / Azure OpenAI preview (``OpenAI-Beta: realtime=v1``, ``/openai/realtime``), flat session;
- ``ga``: OpenAI / Azure OpenAI GA (``/v1/realtime``, ``/openai/v1/realtime``), nested ``audio`` session and
  renamed events (``response.output_audio.delta``, ``conversation.item.added``/``.done``).

The server works on :class:`SessionConfig` (the normalised settings) and keeps the client-facing session
document per dialect, so ``session.updated`` always returns the whole merged session in the client's shape.
"""

from __future__ import annotations

import copy
import re
import secrets
from dataclasses import dataclass, field
from typing import Any, Literal

Dialect = Literal["voicelive", "beta", "ga"]
Codec = Literal["pcm16", "ulaw", "alaw"]  # G.711 μ-law / A-law are 8 kHz

# Beta/VoiceLive event name → GA event name (realtime-protocol.md §2).
_GA_NAMES = {
    "response.audio.delta": "response.output_audio.delta",
    "response.audio.done": "response.output_audio.done",
    "response.audio_transcript.delta": "response.output_audio_transcript.delta",
    "response.audio_transcript.done": "response.output_audio_transcript.done",
    "response.text.delta": "response.output_text.delta",
    "response.text.done": "response.output_text.done",
    "conversation.item.created": "conversation.item.added",
}
_GA_PART_TYPES = {"audio": "output_audio", "text": "output_text"}

INPUT_RATES = (8000, 16000, 24000)
_VL_OUTPUT_RATES = {"pcm16": 24000, "pcm16_16000hz": 16000, "pcm16_8000hz": 8000}
_G711: dict[str, Codec] = {"g711_ulaw": "ulaw", "g711_alaw": "alaw"}
VAD_TYPES = (
    "server_vad",
    "semantic_vad",
    "azure_semantic_vad",
    "azure_semantic_vad_en",
    "azure_semantic_vad_multilingual",
)


def new_id(prefix: str) -> str:
    """Ids shaped like the services' (``event_…``, ``item_…``, ``resp_…``, ``call_…``, ``sess_…``)."""
    return f"{prefix}_{secrets.token_hex(10)}"


def event_name(name: str, dialect: Dialect) -> str:
    return _GA_NAMES.get(name, name) if dialect == "ga" else name


def part_type(kind: str, dialect: Dialect) -> str:
    """Content-part type of assistant output: ``audio``/``text``, GA ``output_audio``/``output_text``."""
    return _GA_PART_TYPES.get(kind, kind) if dialect == "ga" else kind


class ProtocolError(Exception):
    """A client event the server refuses; becomes an ``error`` event, and the socket stays up."""

    def __init__(self, code: str, message: str, *, param: str | None = None, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param
        self.kind = kind


def error_event(exc: ProtocolError, client_event_id: str | None) -> dict[str, Any]:
    return {
        "type": "error",
        "error": {
            "type": exc.kind,
            "code": exc.code,
            "message": exc.message,
            "param": exc.param,
            "event_id": client_event_id,
        },
    }


def _vad_defaults(dialect: Dialect) -> dict[str, Any]:
    vad: dict[str, Any] = {
        "type": "server_vad",
        "threshold": 0.5,
        "prefix_padding_ms": 300,
        "silence_duration_ms": 500,
        "create_response": True,
        "interrupt_response": True,
    }
    if dialect == "voicelive":
        vad["auto_truncate"] = False
    return vad


def default_session(dialect: Dialect, session_id: str, model: str) -> dict[str, Any]:
    """The session document sent in ``session.created`` (values as the services document as defaults)."""
    if dialect == "ga":
        return {
            "type": "realtime",
            "object": "realtime.session",
            "id": session_id,
            "model": model,
            "output_modalities": ["audio"],
            "instructions": "",
            "audio": {
                "input": {
                    "format": {"type": "audio/pcm", "rate": 24000},
                    "transcription": None,
                    "noise_reduction": None,
                    "turn_detection": _vad_defaults(dialect),
                },
                "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "alloy", "speed": 1.0},
            },
            "tools": [],
            "tool_choice": "auto",
            "max_output_tokens": "inf",
        }
    session: dict[str, Any] = {
        "id": session_id,
        "model": model,
        "modalities": ["text", "audio"],
        "instructions": "",
        "voice": {"name": "en-US-AvaNeural", "type": "azure-standard"} if dialect == "voicelive" else "alloy",
        "input_audio_format": "pcm16",
        "output_audio_format": "pcm16",
        "input_audio_transcription": None,
        "turn_detection": _vad_defaults(dialect),
        "tools": [],
        "tool_choice": "auto",
        "temperature": 0.8,
        "max_response_output_tokens": "inf",
    }
    if dialect == "voicelive":
        session["input_audio_sampling_rate"] = 24000
    else:
        session["object"] = "realtime.session"
    return session


# Container keys merged key by key on update (GA merges audio.input/audio.output deeply); any other
# value, including a turn_detection object, replaces the old one.
_DEEP = {"audio", "input", "output"}
_READ_ONLY = {"id", "object", "type", "expires_at"}


def merge_session(current: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(current)

    def merge(into: dict[str, Any], new: dict[str, Any], depth: int) -> None:
        for key, value in new.items():
            if depth == 0 and key in _READ_ONLY:
                continue
            if key in _DEEP and isinstance(value, dict) and isinstance(into.get(key), dict):
                merge(into[key], value, depth + 1)
            else:
                into[key] = copy.deepcopy(value)

    merge(merged, update, 0)
    return merged


@dataclass(frozen=True)
class TurnDetection:
    type: str = "server_vad"
    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500
    speech_duration_ms: int = 120
    create_response: bool = True
    interrupt_response: bool = True
    auto_truncate: bool = False


@dataclass(frozen=True)
class SessionConfig:
    """What the server acts on, derived from the client's session document (validated)."""

    model: str
    instructions: str = ""
    voice: str | None = None
    input_rate: int = 24000
    output_rate: int = 24000
    input_codec: Codec = "pcm16"
    output_codec: Codec = "pcm16"
    text_only: bool = False
    transcription: bool = False
    turn_detection: TurnDetection | None = field(default_factory=TurnDetection)
    tools: tuple[dict[str, Any], ...] = ()
    tool_choice: Any = "auto"

    @property
    def tool_names(self) -> frozenset[str]:
        return frozenset(str(t.get("name")) for t in self.tools)


def _int(value: Any, name: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        raise ProtocolError("invalid_value", f"{name} must be a number from {lo} to {hi}, got {value!r}", param=name)
    return int(value)


def _turn_detection(raw: Any, param: str) -> TurnDetection | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ProtocolError("invalid_type", f"{param} must be an object or null", param=param)
    kind = raw.get("type", "server_vad")
    if not isinstance(kind, str) or kind not in VAD_TYPES:
        raise ProtocolError(
            "invalid_value", f"{param}.type must be one of {', '.join(VAD_TYPES)}, got {kind!r}", param=f"{param}.type"
        )
    threshold = raw.get("threshold", 0.5)
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0.0 <= threshold <= 1.0:
        raise ProtocolError("invalid_value", f"{param}.threshold must be from 0.0 to 1.0", param=f"{param}.threshold")
    return TurnDetection(
        type=kind,
        threshold=float(threshold),
        prefix_padding_ms=_int(raw.get("prefix_padding_ms", 300), f"{param}.prefix_padding_ms", 0, 5000),
        silence_duration_ms=_int(raw.get("silence_duration_ms", 500), f"{param}.silence_duration_ms", 20, 10000),
        speech_duration_ms=_int(raw.get("speech_duration_ms", 120), f"{param}.speech_duration_ms", 20, 5000),
        create_response=bool(raw.get("create_response", True)),
        interrupt_response=bool(raw.get("interrupt_response", True)),
        auto_truncate=bool(raw.get("auto_truncate", False)),
    )


def _voice(raw: Any) -> str | None:
    if isinstance(raw, str):
        return raw or None
    if isinstance(raw, dict) and isinstance(raw.get("name"), str):
        return str(raw["name"])
    return None


def _tools(raw: Any, param: str = "tools") -> tuple[dict[str, Any], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ProtocolError("invalid_type", f"{param} must be a list", param=param)
    tools = []
    for i, t in enumerate(raw):
        if not isinstance(t, dict) or not isinstance(t.get("name"), str) or t.get("type", "function") != "function":
            raise ProtocolError(
                "invalid_value", f"{param}[{i}] must be a function tool with a name", param=f"{param}[{i}]"
            )
        tools.append(t)
    return tuple(tools)


_GA_G711: dict[str, Codec] = {"audio/pcmu": "ulaw", "audio/pcma": "alaw"}


def _ga_format(fmt: dict[str, Any], param: str) -> tuple[Codec, int]:
    """GA format object → (codec, rate): ``{"type": "audio/pcm", "rate": 24000}``, ``audio/pcmu``,
    ``audio/pcma``. The real GA service takes PCM at 24 kHz only; this server also takes 16 and 8 kHz,
    so phone bridges can skip resampling."""
    kind = fmt.get("type", "audio/pcm")
    if kind in _GA_G711:
        return _GA_G711[kind], 8000
    if kind != "audio/pcm":
        raise ProtocolError(
            "unsupported_format", f"{param}.type must be audio/pcm, audio/pcmu or audio/pcma, got {kind!r}",
            param=param,
        )  # fmt: skip
    rate = fmt.get("rate", 24000)
    if isinstance(rate, bool) or not isinstance(rate, int) or rate not in INPUT_RATES:
        raise ProtocolError("invalid_value", f"{param}.rate must be one of {INPUT_RATES}, got {rate!r}", param=param)
    return "pcm16", int(rate)


_SCENARIO_MODEL = re.compile(r"callwright-scenario:([A-Za-z0-9_.-]+)")


def scenario_from(model: str, instructions: str) -> str | None:
    """``callwright-scenario:<name>`` in the model name, or else in the instructions."""
    for text in (model, instructions):
        match = _SCENARIO_MODEL.search(text or "")
        if match:
            return match.group(1)
    return None


def _obj(value: Any, param: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ProtocolError("invalid_type", f"{param} must be an object", param=param)
    return value


def _modalities(value: Any, param: str, default: list[str]) -> list[str]:
    if value is None:
        return default
    if not isinstance(value, list) or not all(isinstance(m, str) for m in value):
        raise ProtocolError("invalid_type", f"{param} must be a list of strings", param=param)
    return value or default


def _name(value: Any, param: str, allowed: Any) -> Any:
    if not isinstance(value, str | int) or isinstance(value, bool) or value not in allowed:
        shown = ", ".join(str(a) for a in allowed)
        raise ProtocolError("unsupported_format", f"{param} must be one of {shown}, got {value!r}", param=param)
    return value


def derive_config(dialect: Dialect, session: dict[str, Any]) -> SessionConfig:
    """Validate a merged session document and derive the settings the server acts on."""
    model = str(session.get("model") or "")
    instructions = session.get("instructions") or ""
    if not isinstance(instructions, str):
        raise ProtocolError("invalid_type", "instructions must be a string", param="instructions")
    if dialect == "ga":
        audio = _obj(session.get("audio"), "audio")
        inp = _obj(audio.get("input"), "audio.input")
        out = _obj(audio.get("output"), "audio.output")
        modalities = _modalities(session.get("output_modalities"), "output_modalities", ["audio"])
        in_codec, in_rate = _ga_format(_obj(inp.get("format"), "audio.input.format"), "audio.input.format")
        out_codec, out_rate = _ga_format(_obj(out.get("format"), "audio.output.format"), "audio.output.format")
        return SessionConfig(
            model=model,
            instructions=instructions,
            voice=_voice(out.get("voice")),
            input_rate=in_rate,
            output_rate=out_rate,
            input_codec=in_codec,
            output_codec=out_codec,
            text_only="audio" not in modalities,
            transcription=inp.get("transcription") is not None,
            turn_detection=_turn_detection(inp.get("turn_detection"), "audio.input.turn_detection"),
            tools=_tools(session.get("tools")),
            tool_choice=session.get("tool_choice", "auto"),
        )
    in_fmt = _name(session.get("input_audio_format", "pcm16"), "input_audio_format", ("pcm16", *_G711))
    rates = {**(_VL_OUTPUT_RATES if dialect == "voicelive" else {"pcm16": 24000}), **dict.fromkeys(_G711, 8000)}
    out_fmt = _name(session.get("output_audio_format", "pcm16"), "output_audio_format", tuple(rates))
    in_rate = session.get("input_audio_sampling_rate", 24000) if dialect == "voicelive" else 24000
    if isinstance(in_rate, bool) or in_rate not in INPUT_RATES:
        raise ProtocolError(
            "invalid_value", f"input_audio_sampling_rate must be one of {INPUT_RATES}, got {in_rate!r}",
            param="input_audio_sampling_rate",
        )  # fmt: skip
    if in_fmt in _G711:
        in_rate = 8000
    modalities = _modalities(session.get("modalities"), "modalities", ["text", "audio"])
    return SessionConfig(
        model=model,
        instructions=instructions,
        voice=_voice(session.get("voice")),
        input_rate=int(in_rate),
        output_rate=rates[out_fmt],
        input_codec=_G711.get(in_fmt, "pcm16"),
        output_codec=_G711.get(out_fmt, "pcm16"),
        text_only="audio" not in modalities,
        transcription=session.get("input_audio_transcription") is not None,
        turn_detection=_turn_detection(session.get("turn_detection"), "turn_detection"),
        tools=_tools(session.get("tools")),
        tool_choice=session.get("tool_choice", "auto"),
    )


def dialect_for(path: str, beta_header: str | None) -> Dialect | None:
    """The dialect a handshake path speaks (any prefix before the known endings is allowed)."""
    path = path.rstrip("/")
    beta = bool(beta_header) and "realtime=v1" in beta_header.replace(" ", "")
    if path.endswith("/voice-live/realtime"):
        return "voicelive"
    if path.endswith("/openai/v1/realtime") or path.endswith("/v1/realtime"):
        return "beta" if beta else "ga"
    if path.endswith("/openai/realtime"):
        return "beta"
    return None
