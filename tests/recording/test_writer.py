"""The recording writer on its own: WAV layout, the call clock, barge-in cuts, crash safety, retention."""

from __future__ import annotations

import os
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from callwright.config import load_settings
from callwright.voice.recording import CallRecorder, RecordingService, file_stem, recording_path

FRAME = 320  # samples in 20 ms at 16 kHz


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def tone(value: int, samples: int = FRAME) -> bytes:
    return np.full(samples, value, dtype="<i2").tobytes()


def read(path: Path) -> tuple[np.ndarray, np.ndarray, wave.Wave_read]:
    with wave.open(str(path), "rb") as w:
        frames = w.readframes(w.getnframes())
        params = w
    data = np.frombuffer(frames, dtype="<i2")
    return data[0::2], data[1::2], params


async def test_channels_share_one_clock_and_a_cut_drops_unplayed_agent_audio(tmp_path: Path):
    clock = FakeClock()
    rec = CallRecorder(tmp_path / "a.wav", clock=clock)
    t0 = clock.t
    for n in range(100):  # 2 s of caller audio, one frame per 20 ms, value = frame number
        clock.t = t0 + (n + 1) * 0.02
        rec.caller(tone(n + 1))
        if n == 49:  # at 1.0 s the agent's frames for 1.0-1.5 s are sent ahead (playback lead)
            for k in range(25):
                rec.agent(tone(-(k + 1)), t0 + 1.0 + k * 0.02)
        if n == 59:  # at 1.2 s a StopAudio flushes what had not played yet
            rec.agent_cut(clock.t)
    info = await rec.close()
    left, right, params = read(rec.path)
    assert params.getnchannels() == 2 and params.getframerate() == 16_000 and params.getsampwidth() == 2
    assert info.seconds == pytest.approx(2.0, abs=0.03)
    assert info.cuts == 1 and info.frames_agent == 25
    # Caller frame n sits at n·20 ms: sequential, on the call clock.
    assert left[0] == 1 and left[FRAME * 50] == 51 and left[FRAME * 99] == 100
    # The agent plays from 1.0 s and stops at the cut (1.2 s), never past it.
    voiced = np.nonzero(right)[0]
    assert voiced[0] == 16_000 and right[16_000] == -1
    assert voiced[-1] == pytest.approx(int(1.2 * 16_000) - 1, abs=2)


async def test_a_hole_in_the_caller_stream_is_silence_not_drift(tmp_path: Path):
    clock = FakeClock()
    rec = CallRecorder(tmp_path / "b.wav", clock=clock)
    t0 = clock.t
    for n in range(10):
        clock.t = t0 + (n + 1) * 0.02
        rec.caller(tone(100))
    clock.t = t0 + 3.02  # 2.8 s of frames never came (the stream stopped)
    await rec.flush()
    rec.caller(tone(200))
    rec.agent(tone(-5), t0 + 3.0)  # the agent frame played at the same moment
    await rec.close()
    left, right, _ = read(rec.path)
    assert left[FRAME * 10 : FRAME * 149].max() == 0  # silence where nothing came
    at = int(np.nonzero(left == 200)[0][0])
    assert at == pytest.approx(np.nonzero(right)[0][0], abs=FRAME // 2)  # still aligned with the agent


async def test_a_backlog_at_the_start_is_placed_where_it_was_sent(tmp_path: Path):
    """The handler's start waited 0.7 s for engines: the frames queued meanwhile arrive in a burst."""
    clock = FakeClock()
    rec = CallRecorder(tmp_path / "c.wav", clock=clock)
    t0 = clock.t
    clock.t = t0 + 0.7
    await rec.flush()  # the writer ran during the wait: it must not write past the first caller frame
    for n in range(60):  # 35 frames of backlog at once, then on time
        clock.t = max(t0 + 0.7, t0 + (n + 1) * 0.02)
        rec.caller(tone(n + 1))
    rec.agent(tone(-9), t0 + 1.0)
    await rec.close()
    left, right, _ = read(rec.path)
    assert left[0] == 1 and left[FRAME * 50] == 51  # frame n at n·20 ms, as the caller sent it
    assert np.nonzero(right)[0][0] == 16_000


async def test_a_recorder_abandoned_without_close_leaves_a_playable_file_up_to_its_last_flush(tmp_path: Path):
    clock = FakeClock()
    rec = CallRecorder(tmp_path / "crash.wav", clock=clock)
    t0 = clock.t
    for n in range(150):  # 3 s
        clock.t = t0 + (n + 1) * 0.02
        rec.caller(tone(7))
        if n == 99:
            await rec.flush()  # what the background task does every second
    # The process dies here: no close(), the last second never written.
    left, right, params = read(rec.path)
    size = rec.path.stat().st_size
    assert params.getnframes() == (size - 44) // 4  # the header covers exactly what is on disk
    written = params.getnframes() / 16_000
    assert 1.5 <= written <= 2.0  # up to the last flush, minus the settle margin
    assert (left == 7).all() and (right == 0).all()


async def test_the_background_writer_streams_to_disk_with_bounded_memory(tmp_path: Path):
    rec = CallRecorder(tmp_path / "live.wav", flush_seconds=0.1)
    rec.start()
    start = time.monotonic()
    import asyncio

    while time.monotonic() - start < 1.2:
        rec.caller(tone(3))
        await asyncio.sleep(0.02)
    # Written while the call runs; only the unsettled tail is held in memory.
    assert rec.path.stat().st_size > 44 + 4 * 16_000 * 0.4
    assert len(rec._left) < 16_000 * 1.0
    info = await rec.close()
    assert info.seconds == pytest.approx(time.monotonic() - start, abs=0.3)


async def test_retention_deletes_old_recordings_only(tmp_path: Path):
    settings = load_settings(recording_enabled=True, recording_dir=tmp_path, recording_retention_days=7)
    service = RecordingService(settings)
    old, new, other = tmp_path / "old.wav", tmp_path / "new.wav", tmp_path / "notes.txt"
    for p in (old, new, other):
        p.write_bytes(b"x" * 100)
    ten_days_ago = time.time() - 10 * 86_400
    os.utime(old, (ten_days_ago, ten_days_ago))
    os.utime(other, (ten_days_ago, ten_days_ago))
    live = await service.open("call-in-progress")
    assert live is not None
    os.utime(tmp_path, None)
    try:
        removed = await service.sweep()
        assert removed == [old]
        assert new.exists() and other.exists()
        # A recording being written is never swept, however old its file looks.
        live.caller(tone(1))
        await live.flush()
        os.utime(live.path, (ten_days_ago, ten_days_ago))
        assert await service.sweep() == []
    finally:
        await service.close()


async def test_recording_is_opt_in_and_files_are_private(tmp_path: Path):
    assert load_settings().recording_enabled is False
    off = RecordingService(load_settings(recording_dir=tmp_path))
    assert await off.open("c1") is None
    await off.close()
    on = RecordingService(load_settings(recording_enabled=True, recording_dir=tmp_path / "rec"))
    rec = await on.open("c1")
    again = await on.open("c1")  # a second media leg of the same call
    assert rec is not None and again is not None and again.path.name == "c1-2.wav"
    rec.caller(tone(1))
    await on.finish(rec)
    await on.finish(again)
    await on.close()
    assert rec.path.stat().st_mode & 0o777 == 0o600
    # Ids that are not plain file names never become paths.
    assert "/" not in file_stem("a/../../etc") and recording_path(tmp_path, "a/b").parent == tmp_path


async def test_unmixed_audio_records_the_caller_not_every_participant_end_to_end(tmp_path: Path):
    clock = FakeClock()
    rec = CallRecorder(tmp_path / "u.wav", clock=clock)
    t0 = clock.t
    for n in range(50):  # each 20 ms: the caller's frame and another participant's
        clock.t = t0 + (n + 1) * 0.02
        rec.caller(tone(11), "4:+15551230001")
        rec.caller(tone(22), "8:acs:someone-else")
    info = await rec.close()
    left, _, _ = read(rec.path)
    assert info.seconds == pytest.approx(1.0, abs=0.03) and set(np.unique(left)) == {11}
    assert rec.other_frames == 50


CRASHING_WRITER = """
import asyncio, os, signal, sys, time
import numpy as np
from pathlib import Path
from callwright.voice.recording import CallRecorder

async def main():
    rec = CallRecorder(Path(sys.argv[1]), flush_seconds=0.2)
    rec.start()
    start = time.monotonic()
    while time.monotonic() - start < 1.5:
        rec.caller(np.full(320, 9, dtype="<i2").tobytes())
        await asyncio.sleep(0.02)
    os.kill(os.getpid(), signal.SIGKILL)  # no close(), no atexit, no flush of Python buffers

asyncio.run(main())
"""


def test_a_killed_process_leaves_a_playable_recording(tmp_path: Path):
    import subprocess
    import sys

    path = tmp_path / "killed.wav"
    proc = subprocess.run([sys.executable, "-c", CRASHING_WRITER, str(path)], timeout=60, check=False)
    assert proc.returncode == -9
    left, right, params = read(path)
    assert params.getnchannels() == 2 and params.getframerate() == 16_000
    assert params.getnframes() == (path.stat().st_size - 44) // 4
    assert 0.3 <= params.getnframes() / 16_000 <= 1.5  # what was fed, up to the last flush (0.2 s apart)
    assert (left == 9).all() and (right == 0).all()
