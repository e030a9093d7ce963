"""The virtual phone's options for misbehaving senders: frame_ms, sample_rate and raw frames, validated."""

from __future__ import annotations

import json

import pytest

from callwright.acs import media as m
from callwright.emulator.phone.script import FrameSize, Raw, ScriptError, parse_script


def script(extra: str = "", steps: str = "  - hangup") -> str:
    return f"name: t\n{extra}\nsteps:\n{steps}\n"


def test_options_parse():
    s = parse_script(
        script(
            "frame_ms: 100\nsample_rate: 24000",
            '  - raw: "garbage"\n  - raw: {audio_bytes: 642, repeat: 3}\n  - raw: {nested: 2000}\n  - frame_ms: 10',
        )
    )
    assert s.frame_ms == 100 and s.sample_rate == 24000
    garbage, audio, nested, size = s.steps
    assert garbage == Raw("garbage")
    assert isinstance(audio, Raw) and audio.repeat == 3
    frame = m.parse_inbound(audio.text)
    assert isinstance(frame, m.AudioData) and len(frame.pcm) == 642
    assert isinstance(nested, Raw) and nested.text.count("{") == 2001
    with pytest.raises(m.MediaFrameError):
        m.parse_inbound(nested.text)
    assert size == FrameSize(10)
    assert parse_script(script()).frame_ms == 20 and parse_script(script()).sample_rate is None


@pytest.mark.parametrize(
    ("extra", "steps", "needle"),
    [
        ("frame_ms: 0", "  - hangup", "'frame_ms' must be"),
        ("frame_ms: 2.5", "  - hangup", "'frame_ms' must be"),
        ("sample_rate: 8000", "  - hangup", "'sample_rate' must be 16000 or 24000"),
        ("", "  - frame_ms: 5000", "'frame_ms' must be"),
        ("", "  - raw: 5", "'raw' must be text or a mapping"),
        ("", "  - raw: {text: a, nested: 3}", "exactly one of"),
        ("", "  - raw: {audio_bytes: -1}", "'audio_bytes' must be"),
        ("", "  - raw: {nested: 0}", "'nested' must be"),
        ("", "  - raw: {text: a, repeat: 0}", "'repeat' must be"),
        ("", "  - raw: {text: a, bogus: 1}", "unknown field 'bogus'"),
    ],
)
def test_bad_options_are_named(extra, steps, needle):
    with pytest.raises(ScriptError, match=needle):
        parse_script(script(extra, steps))


def test_raw_text_is_sent_verbatim():
    doc = {"kind": "AudioMetadata", "audioMetadata": {"sampleRate": 1e300}}
    s = parse_script(script("", f"  - raw: {json.dumps(json.dumps(doc))}"))
    assert isinstance(s.steps[0], Raw) and json.loads(s.steps[0].text) == doc
