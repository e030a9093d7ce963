"""The echo guard on real audio: the agent's espeak voice coming back, and a flite caller talking over it."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callwright.speech.tts_espeak import make_espeak
from callwright.voice.cascade.echo import EchoGuard

DATA = Path(__file__).parents[1] / "data" / "caller"
FRAME = 320
T0 = 1000.0


@pytest.fixture(scope="module")
def agent() -> np.ndarray:
    pcm = bytearray()
    make_espeak().synthesize(
        "We're open Monday to Friday, from eight in the morning to six in the evening, and on Saturday mornings.",
        lambda chunk: (pcm.extend(chunk), True)[1],
        None,
    )
    return np.frombuffer(bytes(pcm), dtype="<i2").astype(np.float64)


def _caller() -> np.ndarray:
    with wave.open(str(DATA / "office.wav")) as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64)


def _run(agent: np.ndarray, *, echo_db: float | None, delay_frames: int = 5, caller_at: int = 60) -> dict[str, list]:
    """Play ``agent`` frame by frame; the line returns it at ``echo_db`` and the caller speaks from frame
    ``caller_at``. Returns the guard's verdicts, by what the frame held."""
    guard = EchoGuard()
    caller = _caller()
    gain = 0.0 if echo_db is None else 10 ** (echo_db / 20)
    out: dict[str, list] = {"echo_only": [], "caller": []}
    for i in range(len(agent) // FRAME):
        t = T0 + i * 0.02
        guard.reference(agent[i * FRAME : (i + 1) * FRAME].astype("<i2").tobytes(), t)
        mic = np.zeros(FRAME)
        if i >= delay_frames:
            mic += agent[(i - delay_frames) * FRAME : (i - delay_frames + 1) * FRAME] * gain
        j = i - caller_at
        caller_voiced = False
        if j >= 0 and (j + 1) * FRAME <= len(caller):
            part = caller[j * FRAME : (j + 1) * FRAME]
            mic += part
            caller_voiced = float(np.sqrt(np.mean(part * part))) > 300
        loud = float(np.sqrt(np.mean(mic * mic))) > 300
        verdict = guard.is_echo(np.clip(mic, -32768, 32767).astype("<i2").tobytes(), t + 0.025)
        if caller_voiced:
            out["caller"].append(verdict)
        elif loud and j < 0:
            out["echo_only"].append(verdict)
    return out


def test_the_agents_own_voice_coming_back_is_recognised_as_echo(agent: np.ndarray) -> None:
    got = _run(agent, echo_db=-10)
    assert len(got["echo_only"]) > 20
    # All but the first blocks, spent learning the echo path's delay.
    assert sum(got["echo_only"]) >= len(got["echo_only"]) - 6, got["echo_only"]


def test_a_caller_talking_over_the_echo_is_not_echo(agent: np.ndarray) -> None:
    got = _run(agent, echo_db=-20)
    assert len(got["caller"]) > 40
    assert sum(got["caller"]) <= len(got["caller"]) // 10, got["caller"]


def test_without_echo_nothing_is_ever_taken_for_it(agent: np.ndarray) -> None:
    got = _run(agent, echo_db=None)
    assert got["caller"] and not any(got["caller"])


def test_caller_audio_as_agent_audio_starts_never_fails():
    """The ~8 ms race: the agent's first frame plays within a few ms of the end of a loud caller block.
    The reference window was then shorter than the block and the correlation empty (argmax raised, and
    the recognition lane died with it)."""
    rng = np.random.default_rng(3)

    def loud() -> bytes:
        return rng.normal(0, 3000, FRAME).astype("<i2").tobytes()

    for offset_ms in (0.0, 1.0, 2.0, 4.0, 6.0, 7.9, 8.0, 12.0, 19.0, 30.0, 45.0):
        guard = EchoGuard()
        t = T0
        for _ in range(5):
            t += 0.020
            assert guard.is_echo(loud(), t) is False
        t += 0.020
        guard.reference(loud(), t - offset_ms / 1000)
        assert guard.is_echo(loud(), t) is False, offset_ms
        # ... and the guard keeps working on the frames after it.
        for _ in range(3):
            t += 0.020
            guard.reference(loud(), t)
            assert guard.is_echo(loud(), t) is False


def test_frames_of_another_size_are_never_echo_and_never_fail():
    guard = EchoGuard()
    guard.reference(bytes(640), T0)
    for n in (0, 1, 320, 641, 642, 960, 3200):
        assert guard.is_echo(b"\x01" * n, T0) is False


def test_reference_frames_out_of_play_time_order_never_fail():
    """Playback can hand the guard a frame that plays before one it handed earlier (a reply re-spoken
    after a pause, a new play-time grid after StopAudio); the window then starts at the earliest, not
    at the first handed over (a negative offset once broke the window: seen in the robustness bench)."""
    rng = np.random.default_rng(5)

    def loud() -> bytes:
        return rng.normal(0, 3000, FRAME).astype("<i2").tobytes()

    guard = EchoGuard()
    t = T0
    for _ in range(5):
        t += 0.020
        assert guard.is_echo(loud(), t) is False
    guard.reference(loud(), t - 0.010)
    guard.reference(loud(), t - 0.045)  # plays earlier than the frame handed over before it
    guard.reference(loud(), t - 0.030)
    for _ in range(4):
        t += 0.020
        assert guard.is_echo(loud(), t) is False


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["ref", "mic", "mic"]),
            st.integers(min_value=-300, max_value=50),  # a reference's play time vs now, in ms
            st.sampled_from([640, 640, 640, 0, 320, 642, 960]),
            st.integers(min_value=0, max_value=9_000),
        ),
        max_size=80,
    )
)
def test_any_order_of_reference_and_caller_frames_never_fails(ops):
    """Whatever playback hands over (in any play-time order, any size) while caller frames arrive every
    20 ms, the guard answers True or False: an exception here costs the recognition lane a restart."""
    guard = EchoGuard()
    rng = np.random.default_rng(0)
    now = T0
    for kind, offset, nbytes, level in ops:
        pcm = rng.normal(0, level + 1, nbytes // 2).astype("<i2").tobytes()
        if kind == "ref":
            guard.reference(pcm, now + offset / 1000)
        else:
            now += 0.020
            assert guard.is_echo(pcm, now) in (True, False)
