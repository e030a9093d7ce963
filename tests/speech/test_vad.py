from __future__ import annotations

import pytest

from callwright.speech.vad import SegmentEvent, SpeechSegmenter, WebRtcVad

from .conftest import frames_of, read_wav

SPEECH = ["hours.wav", "office.wav", "claim.wav", "person.wav", "yes.wav", "policy.wav"]


def segment(name: str, vad: WebRtcVad | None = None, **kw: int) -> list[SegmentEvent]:
    seg = SpeechSegmenter(vad or WebRtcVad(), **kw)
    events = []
    for i, frame in enumerate(frames_of(read_wav(name))):
        ev = seg.feed(frame, now=100.0 + (i + 1) * 0.02)
        if ev is not None:
            events.append(ev)
    return events


@pytest.mark.parametrize("name", SPEECH)
def test_onset_then_end_on_speech(name: str) -> None:
    events = segment(name, min_speech_ms=120, endpoint_silence_ms=300)
    assert [e.kind for e in events] == ["onset", "end"]
    onset, end = events
    # 0.3 s of padding precede the speech; the onset is the first voiced frame, not the confirming one.
    assert 280 <= onset.offset_ms <= 700
    assert onset.time == pytest.approx(100.0 + onset.offset_ms / 1000)
    assert end.offset_ms > onset.offset_ms + 120
    # The preroll starts with the lead-in and holds every frame since the first voiced one.
    assert len(onset.preroll) >= 6
    assert all(len(f) == 640 for f in onset.preroll)


def test_no_onset_on_silence() -> None:
    assert segment("silence.wav") == []


def test_click_is_not_speech() -> None:
    assert segment("click.wav") == []
    # Even without the noise gate a 5 ms click is far below the 120 ms needed for an onset.
    assert segment("click.wav", WebRtcVad(max_flatness=None)) == []


def test_noise_burst_rejected_by_flatness_gate() -> None:
    # What webrtcvad alone does: a 150 ms burst of white noise reads as speech and gives an onset.
    plain = segment("noise_burst.wav", WebRtcVad(max_flatness=None))
    assert [e.kind for e in plain][:1] == ["onset"]
    # The spectral-flatness gate drops those frames, so barge-in does not fire on static.
    assert segment("noise_burst.wav") == []


@pytest.mark.parametrize("name", ["uh_huh.wav", "okay.wav"])
def test_backchannels_do_give_an_onset(name: str) -> None:
    # Short backchannels are speech; telling them from interruptions is the cascade's job (by text).
    assert [e.kind for e in segment(name)] == ["onset", "end"]


def test_longer_min_speech_ignores_short_words() -> None:
    # "yes" is ~0.6 s of voiced frames; with a 1 s requirement it never reaches onset.
    assert segment("yes.wav", min_speech_ms=1000) == []


def test_vad_rejects_wrong_frame_size() -> None:
    with pytest.raises(ValueError, match="640 bytes"):
        WebRtcVad().is_speech(b"\0" * 320)


def test_reset_clears_state() -> None:
    seg = SpeechSegmenter(WebRtcVad())
    frames = frames_of(read_wav("hours.wav"))
    onset_seen = any(seg.feed(f, now=float(i)) is not None for i, f in enumerate(frames[:60]))
    assert onset_seen and seg.in_speech
    seg.reset()
    assert not seg.in_speech
