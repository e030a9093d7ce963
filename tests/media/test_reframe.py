"""The inbound re-framer: any frame length at 16 or 24 kHz becomes the same 20 ms 16 kHz frames."""

from __future__ import annotations

import logging

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from callwright.logs import LogLimiter
from callwright.voice.framing import OUT_FRAME, InboundReframer


def sine(freq: float, seconds: float, rate: int, amp: float = 0.4) -> bytes:
    t = np.arange(int(rate * seconds)) / rate
    return (amp * 32767 * np.sin(2 * np.pi * freq * t)).astype("<i2").tobytes()


def run(chunks: list[bytes], rate: int = 16_000) -> list[bytes]:
    r = InboundReframer(rate)
    out = []
    for c in chunks:
        out += [f.pcm for f in r.push(c)]
    return out


def split(pcm: bytes, sizes: list[int]) -> list[bytes]:
    chunks, i = [], 0
    for n in sizes:
        chunks.append(pcm[i : i + n])
        i += n
    if i < len(pcm):
        chunks.append(pcm[i:])
    return chunks


STREAM = np.random.default_rng(7).integers(-20000, 20000, 16_000, dtype="<i2").tobytes()  # 0.5 s of noise


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=2000).map(lambda n: n * 2), max_size=60))
def test_any_split_of_a_16k_stream_gives_the_same_frames(sizes):
    frames = run(split(STREAM, sizes))
    assert all(len(f) == OUT_FRAME for f in frames)
    assert frames == [STREAM[i : i + OUT_FRAME] for i in range(0, len(STREAM) - OUT_FRAME + 1, OUT_FRAME)]


def test_the_frame_sizes_that_made_the_agent_deaf():
    for size in (320, 642, 960, 1280, 3200):
        frames = run(split(STREAM, [size] * (len(STREAM) // size + 1)))
        assert len(frames) == len(STREAM) // OUT_FRAME, size
        assert b"".join(frames) == STREAM[: len(frames) * OUT_FRAME], size


def test_empty_frames_are_skipped_and_odd_ones_refused():
    r = InboundReframer()
    assert r.push(b"") == [] and r.frames_in == 0
    try:
        r.push(bytes(641))
        raise AssertionError("odd byte count accepted")
    except ValueError:
        pass
    assert r.buffered == 0


def _dominant_hz(pcm: bytes, rate: int) -> float:
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.argmax(spectrum) * rate / x.size)


@settings(max_examples=8, deadline=None)
@given(st.sampled_from([300.0, 440.0, 1000.0, 3000.0]), st.sampled_from([960, 480, 2400, 4800, 962]))
def test_a_24k_sine_becomes_a_16k_sine_of_the_same_frequency(freq, size):
    pcm = sine(freq, 1.0, 24_000)
    frames = run(split(pcm, [size] * (len(pcm) // size + 1)), rate=24_000)
    out = b"".join(frames)
    # soxr holds back a few ms for its filter; the rest comes out at 16 kHz: 2/3 of the samples.
    assert abs(len(out) - len(pcm) * 2 // 3) <= 2 * OUT_FRAME
    assert abs(_dominant_hz(out[OUT_FRAME * 5 :], 16_000) - freq) < 5
    # Stateful across chunks: no clicks at frame boundaries (a per-frame resample would leave them).
    body = np.frombuffer(out[OUT_FRAME * 5 : -OUT_FRAME * 5], dtype="<i2").astype(np.float64)
    step = 2 * np.pi * freq / 16_000 * 0.4 * 32767
    assert np.max(np.abs(np.diff(body))) <= step * 1.1


def test_silent_flag_only_for_frames_made_wholly_of_silent_input():
    r = InboundReframer()
    loud = STREAM[:640]
    frames = r.push(bytes(640), silent=True) + r.push(loud[:320]) + r.push(loud[320:]) + r.push(loud, silent=True)
    assert [f.silent for f in frames] == [True, False, True]
    assert frames[2].pcm == bytes(640)  # silent input is zeroed, whatever it carried


def test_rate_change_starts_a_fresh_converter():
    r = InboundReframer()
    assert r.push(STREAM[:640])[0].pcm == STREAM[:640]
    r.set_rate(24_000)
    out = b"".join(f.pcm for f in r.push(sine(440, 0.5, 24_000)))
    assert 0 < len(out) <= 16_000


def test_log_limiter_keeps_a_flood_to_one_line(caplog):
    limiter = LogLimiter(logging.getLogger("callwright.test"), interval=60)
    with caplog.at_level(logging.WARNING, "callwright.test"):
        logged = [limiter.warning("empty", "frame skipped %d", i) for i in range(500)]
        limiter.warning("odd_length", "other reason")
    assert logged.count(True) == 1
    assert len(caplog.records) == 2
