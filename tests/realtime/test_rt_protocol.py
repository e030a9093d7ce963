"""Dialects, session merging and validation, audio framing; and a fuzz of client events over a real socket."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import websockets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rt_support import realtime_server

from callwright.realtime.audio import FRAME_BYTES, InputFramer, OutputEncoder
from callwright.realtime.protocol import (
    ProtocolError,
    default_session,
    derive_config,
    dialect_for,
    event_name,
    merge_session,
    scenario_from,
)


def test_dialect_from_path_and_header() -> None:
    assert dialect_for("/voice-live/realtime", None) == "voicelive"
    assert dialect_for("/some/prefix/voice-live/realtime", None) == "voicelive"
    assert dialect_for("/v1/realtime", None) == "ga"
    assert dialect_for("/v1/realtime", "realtime=v1") == "beta"
    assert dialect_for("/openai/v1/realtime", None) == "ga"
    assert dialect_for("/openai/realtime", None) == "beta"
    assert dialect_for("/v1/chat", None) is None
    assert event_name("response.audio.delta", "ga") == "response.output_audio.delta"
    assert event_name("response.audio.delta", "voicelive") == "response.audio.delta"
    assert event_name("conversation.item.created", "ga") == "conversation.item.added"


def test_session_merge_is_deep_for_audio_and_validated() -> None:
    ga = default_session("ga", "sess_1", "m")
    merged = merge_session(ga, {"audio": {"output": {"format": {"type": "audio/pcm", "rate": 16000}}}, "id": "x"})
    assert merged["id"] == "sess_1"  # read-only fields are kept
    assert merged["audio"]["output"]["voice"] == "alloy"  # untouched siblings survive the merge
    config = derive_config("ga", merged)
    assert (config.input_rate, config.output_rate) == (24000, 16000)
    vl = merge_session(
        default_session("voicelive", "s", "m"),
        {"input_audio_sampling_rate": 16000, "output_audio_format": "pcm16_16000hz", "turn_detection": None},
    )
    config = derive_config("voicelive", vl)
    assert (config.input_rate, config.output_rate, config.turn_detection) == (16000, 16000, None)
    with pytest.raises(ProtocolError) as bad:
        derive_config("voicelive", {**vl, "output_audio_format": "opus"})
    assert bad.value.code == "unsupported_format"
    with pytest.raises(ProtocolError):
        derive_config("beta", {**default_session("beta", "s", "m"), "turn_detection": {"threshold": 7}})
    assert scenario_from("callwright-scenario:clinic", "") == "clinic"
    assert scenario_from("gpt-realtime", "use callwright-scenario:insurance please") == "insurance"


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.sampled_from(["turn_detection", "audio", "voice", "tools", "modalities",
                                        "input_audio_sampling_rate", "output_audio_format", "instructions"]),
                       st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                                    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c,
                                                                                          max_size=3),
                                    max_leaves=6)))  # fmt: skip
def test_any_session_update_is_accepted_or_a_protocol_error(update: dict[str, Any]) -> None:
    for dialect in ("voicelive", "beta", "ga"):
        merged = merge_session(default_session(dialect, "s", "m"), update)  # type: ignore[arg-type]
        try:
            derive_config(dialect, merged)  # type: ignore[arg-type]
        except ProtocolError as exc:
            assert exc.code and exc.message


def test_input_framer_and_output_encoder_keep_time() -> None:
    framer = InputFramer(24_000)
    frames: list[bytes] = []
    for _ in range(50):  # 1 s of 24 kHz in 20 ms pieces
        frames.extend(framer.push(b"\x10\x00" * 480))
    assert all(len(f) == FRAME_BYTES for f in frames)
    assert 48 <= len(frames) <= 50  # soxr holds back a little filter delay
    encoder = OutputEncoder(16_000, 24_000, delta_ms=100)
    out = b"".join(encoder.push(b"\x10\x00" * 16_000)) + b"".join(encoder.finish())
    assert abs(len(out) - 48_000) <= 4


_CLIENT_TYPES = [
    "session.update", "input_audio_buffer.append", "input_audio_buffer.commit", "input_audio_buffer.clear",
    "conversation.item.create", "conversation.item.truncate", "conversation.item.delete", "response.create",
    "response.cancel", "conversation.item.retrieve",
]  # fmt: skip
_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 10**6) | st.text(max_size=12),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.sampled_from(["type", "role", "content", "text",
              "item_id", "audio_end_ms", "audio", "session", "item", "call_id", "output", "response"]), c, max_size=4),
    max_leaves=8,
)  # fmt: skip
_EVENT = st.builds(
    lambda kind, fields: {**fields, "type": kind},
    st.sampled_from(_CLIENT_TYPES),
    st.dictionaries(st.sampled_from(["item", "session", "audio", "item_id", "audio_end_ms", "response",
                                     "content_index", "event_id"]), _VALUES, max_size=3),
)  # fmt: skip


async def test_fuzzed_client_events_never_kill_the_session() -> None:
    async with realtime_server() as (url, app):
        uri = url.replace("http://", "ws://") + "/v1/realtime"
        async with websockets.connect(uri) as ws:
            await ws.recv()
            sent = 0

            @settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
            @given(st.lists(_EVENT, min_size=1, max_size=4))
            def batch(events: list[dict[str, Any]]) -> None:
                nonlocal sent
                for event in events:
                    collected.append(json.dumps(event))
                sent += len(events)

            collected: list[str] = []
            batch()
            for text in collected:
                await ws.send(text)
            await ws.send(json.dumps({"type": "session.update", "session": {"instructions": "still here"}}))
            deadline = asyncio.get_running_loop().time() + 30
            while True:  # drain until the final update is answered: the socket is alive and in order
                remaining = deadline - asyncio.get_running_loop().time()
                event = json.loads(await asyncio.wait_for(ws.recv(), max(0.1, remaining)))
                if event["type"] == "session.updated" and event["session"].get("instructions") == "still here":
                    break
            assert sent > 0
            assert app.state.realtime.sessions  # still open


def test_g711_matches_the_reference_tables() -> None:
    """Every 16-bit sample encodes as the reference (audioop, still shipped with Python 3.11) does, and
    every code decodes likewise."""
    import warnings

    import numpy as np

    from callwright.realtime.audio import g711_decode, g711_encode

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        audioop = pytest.importorskip("audioop")
    every = np.arange(-32768, 32768, dtype=np.int32).astype("<i2").tobytes()
    codes = bytes(range(256))
    assert g711_encode(every, "ulaw") == audioop.lin2ulaw(every, 2)
    assert g711_encode(every, "alaw") == audioop.lin2alaw(every, 2)
    assert g711_decode(codes, "ulaw") == audioop.ulaw2lin(codes, 2)
    assert g711_decode(codes, "alaw") == audioop.alaw2lin(codes, 2)
    config = derive_config("ga", merge_session(default_session("ga", "s", "m"), {"audio": {
        "input": {"format": {"type": "audio/pcmu"}}, "output": {"format": {"type": "audio/pcma"}}}}))  # fmt: skip
    assert (config.input_codec, config.input_rate, config.output_codec, config.output_rate) == (
        "ulaw",
        8000,
        "alaw",
        8000,
    )
