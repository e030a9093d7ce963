"""Property-based fuzzing of the inbound media parser: whatever arrives, the answer is a valid message or
MediaFrameError with a reason from the fixed set — never another exception (one used to end the socket)."""

from __future__ import annotations

import base64
import json
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callwright.acs import media as m

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

KINDS = ["AudioMetadata", "AudioData", "DtmfData", "TranscriptionData", "TranscriptionMetadata", "audiodata", "x"]

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
numbers = (
    st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([16000, 24000, 16000.0, 24000.5, "16000", True, None, [], {}])
)


def check(text: str | bytes) -> m.InboundMessage | None:
    """The parser's contract, asserted: a message that is usable as typed, or a named MediaFrameError."""
    try:
        msg = m.parse_inbound(text)
    except m.MediaFrameError as exc:
        assert exc.reason in m.REJECT_REASONS
        assert str(exc)
        return None
    if isinstance(msg, m.AudioMetadata):
        assert msg.sample_rate in m.SUPPORTED_RATES and msg.channels == 1
        assert isinstance(msg.length, int) and msg.length > 0
        assert msg.subscription_id is None or isinstance(msg.subscription_id, str)
    elif isinstance(msg, m.AudioData):
        assert isinstance(msg.pcm, bytes) and len(msg.pcm) % 2 == 0
        assert isinstance(msg.silent, bool)
        assert msg.timestamp is None or isinstance(msg.timestamp, str)
        assert msg.participant_raw_id is None or isinstance(msg.participant_raw_id, str)
    elif isinstance(msg, m.DtmfData):
        assert msg.tone in m.TONE_CHARS
    else:
        assert isinstance(msg, m.TranscriptionData | m.IgnoredMessage)
    return msg


@FUZZ
@given(st.text(max_size=300))
def test_random_text(text):
    check(text)


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes(data):
    check(data)


@FUZZ
@given(st.sampled_from(KINDS), json_values)
def test_random_json_under_every_kind(kind, payload):
    key = kind[0].lower() + kind[1:]
    check(json.dumps({"kind": kind, key: payload}))


@FUZZ
@given(json_values)
def test_random_json_documents(doc):
    check(json.dumps(doc))


@FUZZ
@given(numbers, numbers, numbers)
def test_metadata_numbers_of_any_size(rate, channels, length):
    text = json.dumps({"kind": "AudioMetadata",
                       "audioMetadata": {"sampleRate": rate, "channels": channels, "length": length}})  # fmt: skip
    msg = check(text)
    if msg is not None and rate is not None:  # null = absent = 16 kHz; else only exact negotiated rates
        assert isinstance(rate, int | float) and not isinstance(rate, bool) and math.isfinite(rate)
        assert float(rate) in (16000.0, 24000.0)


@FUZZ
@given(st.integers(min_value=1, max_value=5000), st.sampled_from("[{"))
def test_deep_nesting(depth, bracket):
    close = "]" if bracket == "[" else "}"
    body = ('{"a":' * depth + "1" + "}" * depth) if bracket == "{" else "[" * depth + "1" + close * depth
    check('{"kind":"AudioData","audioData":' + body + "}")
    check(body)


@FUZZ
@given(st.integers(min_value=0, max_value=70_000))
def test_base64_payloads_of_any_length(n):
    data = base64.b64encode(bytes(n)).decode()
    msg = check(json.dumps({"kind": "AudioData", "audioData": {"data": data}}))
    if msg is not None:
        assert isinstance(msg, m.AudioData) and len(msg.pcm) == n  # even, at most one second of audio
    else:
        assert n % 2 or n > 48_000


def test_named_triggers_from_the_issue():
    # sampleRate 1e999 is +inf after json.loads: int(inf) raised OverflowError and ended the media loop.
    for rate in ("1e999", "-1e999", "NaN", "Infinity", "1" + "0" * 5000):
        text = '{"kind":"AudioMetadata","audioMetadata":{"sampleRate":' + rate + "}}"
        try:
            m.parse_inbound(text)
            raise AssertionError(f"sampleRate {rate[:10]} accepted")
        except m.MediaFrameError as exc:
            assert exc.reason in ("bad_metadata", "not_json")
    # 2,000-deep JSON raised RecursionError.
    try:
        m.parse_inbound("[" * 2000 + "]" * 2000)
        raise AssertionError("deep JSON accepted")
    except m.MediaFrameError as exc:
        assert exc.reason == "not_json"
    # Over the size cap: refused before parsing.
    try:
        m.parse_inbound(" " * (m.MAX_MESSAGE_CHARS + 1))
        raise AssertionError("huge text accepted")
    except m.MediaFrameError as exc:
        assert exc.reason == "too_large"
    # An odd byte count is skipped by name (not trimmed: which byte is extra cannot be known).
    try:
        m.parse_inbound(m.build_audio_data(bytes(641), silent=False))
        raise AssertionError("odd frame accepted")
    except m.MediaFrameError as exc:
        assert exc.reason == "odd_length"
    # 24 kHz is negotiable; 642 bytes is a whole number of samples and passes (the edge re-frames it).
    meta = m.parse_inbound(m.build_audio_metadata("s", 24_000))
    assert isinstance(meta, m.AudioMetadata) and meta.sample_rate == 24_000 and meta.length == 960
    audio = m.parse_inbound(m.build_audio_data(bytes(642), silent=False))
    assert isinstance(audio, m.AudioData) and len(audio.pcm) == 642
