"""Server-side call recording: one stereo 16 kHz 16-bit WAV per call, streamed to disk as the call runs.

Left channel: the caller, as the server received it. Right channel: the agent *as the caller heard it* —
the frames playback actually sent, placed at the time they play at the caller's end, and cut where a
StopAudio flushed them (barge-in), not what TTS produced. Both channels advance on one call clock (the
monotonic clock from the moment the handler started), with silence where nobody speaks.

Memory stays bounded: a recorder keeps only the audio not yet on disk (about a second plus the playback
lead). A background task writes it every ``flush_seconds`` on a small thread pool (never file IO on the
event loop) and fixes the WAV header after each write, so a crash leaves a playable file up to the last
flush. Recordings are opt-in (``RECORDING_ENABLED``, default off: a production operator decides to record
callers, and tells them), kept in ``RECORDING_DIR`` with mode 0600 and swept after
``RECORDING_RETENTION_DAYS``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import struct
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("callwright.recording")

RATE = 16_000
CHANNELS = 2
SAMPLE_BYTES = 2
HEADER_BYTES = 44
FLUSH_SECONDS = 1.0
# Audio younger than this is not written yet: agent frames are placed up to the playback lead ahead of
# now, and a StopAudio may still cut frames sent but not yet played.
SETTLE_SECONDS = 0.25
# Caller frames are placed one after another from the start (ACS sends one every 20 ms; a burst after a
# stall — the handler's start waiting for engines, a busy loop — belongs where it was sent, not where it
# arrived). Only a stream that stopped for this long (a real hole) resumes at its arrival time.
CALLER_RESYNC_SECONDS = 2.0
# A caller stream silent this long no longer holds back the write position ...
CALLER_IDLE_SECONDS = 0.5
# ... nor does one that has not started yet, after this long (a media leg that never sends audio).
FIRST_FRAME_WAIT_SECONDS = 5.0
# Recordings are never buffered beyond this, whatever the clock does (a stalled writer drops audio).
MAX_BUFFER_SECONDS = 30.0
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
SUFFIX = ".wav"


def file_stem(call_id: str) -> str:
    """A file name for a call id: the id itself when it is a plain name, else a hash of it (ids may hold
    '/' or ':')."""
    if _SAFE_NAME.fullmatch(call_id) and ".." not in call_id:
        return call_id
    return "call-" + hashlib.sha256(call_id.encode()).hexdigest()[:32]


def recording_path(directory: Path, call_id: str) -> Path:
    return directory / f"{file_stem(call_id)}{SUFFIX}"


def wav_header(data_bytes: int, *, rate: int = RATE, channels: int = CHANNELS) -> bytes:
    block = channels * SAMPLE_BYTES
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + data_bytes,
        b"WAVE",
        b"fmt ",
        16,
        1,
        channels,
        rate,
        rate * block,
        block,
        SAMPLE_BYTES * 8,
        b"data",
        data_bytes,
    )


def wav_seconds(path: Path) -> float:
    """The length of a recording on disk, from its size (the header may lag by up to one flush)."""
    try:
        size = path.stat().st_size
    except OSError:
        return 0.0
    return max(0, size - HEADER_BYTES) // (CHANNELS * SAMPLE_BYTES) / RATE


@dataclass
class RecordingInfo:
    path: Path
    seconds: float
    started_at: float  # wall clock
    frames_caller: int
    frames_agent: int
    cuts: int
    dropped_seconds: float

    def to_context(self) -> dict[str, Any]:
        """What the call's session keeps about its recording (no server paths)."""
        return {
            "file": self.path.name,
            "seconds": round(self.seconds, 2),
            "sample_rate": RATE,
            "channels": ["caller", "agent"],
            "started_at": self.started_at,
            "cuts": self.cuts,
        }


class _WavFile:
    """The blocking side (run on the recording thread pool): append PCM, keep the header true."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._f = os.fdopen(fd, "wb")
        self._f.write(wav_header(0))
        self._f.flush()
        self.data_bytes = 0

    def append(self, data: bytes) -> None:
        if data:
            self._f.write(data)
            self.data_bytes += len(data)
        # The header is fixed after every write: a crash leaves a file whose header covers what is on disk.
        self._f.seek(0)
        self._f.write(wav_header(self.data_bytes))
        self._f.seek(0, os.SEEK_END)
        self._f.flush()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._f.close()


class CallRecorder:
    """One call's recording. ``caller``/``agent``/``agent_cut`` are called on the event loop and only
    touch memory; the writer task moves settled audio to disk."""

    def __init__(
        self,
        path: Path,
        *,
        executor: ThreadPoolExecutor | None = None,
        flush_seconds: float = FLUSH_SECONDS,
        clock: Any = time.monotonic,
    ) -> None:
        self.path = path
        self._executor = executor
        self._flush_seconds = flush_seconds
        self._clock = clock
        self._t0 = clock()
        self.started_at = time.time()
        self._base = 0  # sample index of the first sample still in memory (everything before is on disk)
        self._left = np.zeros(0, dtype="<i2")
        self._right = np.zeros(0, dtype="<i2")
        self._caller_pos = 0  # next caller sample index
        self._high = 0  # end of the latest audio placed (either channel)
        self._caller_seen: float | None = None  # monotonic time of the last caller frame
        self._file: _WavFile | None = None
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._write_lock = asyncio.Lock()
        self._closed = False
        self.frames_caller = 0
        self._who: str | None = None
        self.other_frames = 0
        self.frames_agent = 0
        self.cuts = 0
        self.dropped_samples = 0
        self.written_samples = 0
        self.failed: str | None = None

    # --- the call clock ---------------------------------------------------------------------------
    def _pos(self, t: float) -> int:
        return round((t - self._t0) * RATE)

    def _ensure(self, end: int) -> None:
        """Room in memory up to sample index ``end`` (silence-filled)."""
        need = end - self._base
        have = len(self._left)
        if need > have:
            grow = max(need, have + RATE // 2)
            self._left = np.concatenate([self._left, np.zeros(grow - have, dtype="<i2")])
            self._right = np.concatenate([self._right, np.zeros(grow - have, dtype="<i2")])

    # --- taps (event loop) ------------------------------------------------------------------------
    def start(self) -> None:
        if self._task is None and not self._closed:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"recording:{self.path.stem}")

    def caller(self, pcm: bytes, who: str | None = None) -> None:
        """One inbound frame (16 kHz mono PCM), in arrival order. With unmixed audio (a stream per
        participant) the first participant heard is the caller; other participants' frames are skipped
        rather than laid end to end on the caller's timeline."""
        if self._closed or not pcm:
            return
        if who:
            if self._who is None:
                self._who = who
            elif who != self._who:
                self.other_frames += 1
                return
        now = self._clock()
        if self._caller_seen is not None and now - self._caller_seen > CALLER_RESYNC_SECONDS:
            at = self._pos(now) - len(pcm) // SAMPLE_BYTES  # the frame ended when it arrived
            self._caller_pos = max(self._caller_pos, at)  # a hole in the stream: silence, then on
        start = max(self._caller_pos, self._base)
        self._caller_pos = start + len(pcm) // SAMPLE_BYTES
        self._caller_seen = now
        self.frames_caller += 1
        self._put(True, start, pcm)

    def agent(self, pcm: bytes, play_at: float) -> None:
        """One frame sent to the caller, which plays at monotonic ``play_at`` at the caller's end."""
        if self._closed or not pcm:
            return
        self.frames_agent += 1
        self._put(False, self._pos(play_at), pcm)

    def agent_cut(self, at: float | None = None) -> None:
        """A StopAudio flushed what was sent but not yet played: agent audio from ``at`` on never played."""
        if self._closed:
            return
        cut = max(self._pos(self._clock() if at is None else at), self._base)
        offset = cut - self._base
        if offset < len(self._right):
            self._right[offset:] = 0
        self.cuts += 1

    def _put(self, left: bool, start: int, pcm: bytes) -> None:
        samples = np.frombuffer(pcm[: len(pcm) - len(pcm) % SAMPLE_BYTES], dtype="<i2")
        if start < self._base:  # already on disk (a very late frame): keep only its unwritten tail
            samples = samples[self._base - start :]
            start = self._base
        if not len(samples):
            return
        end = start + len(samples)
        if end - self._base > MAX_BUFFER_SECONDS * RATE:
            self.dropped_samples += len(samples)
            return
        self._ensure(end)
        target = self._left if left else self._right
        target[start - self._base : end - self._base] = samples
        self._high = max(self._high, end)

    # --- writing (background task + thread pool) --------------------------------------------------
    def _settled_until(self, *, final: bool) -> int:
        now = self._clock()
        if final:
            # The call ends with its last audio (the caller's stream stops with the socket), not when the
            # handler got round to closing the recorder.
            return max(self._caller_pos, self._high)
        until = self._pos(now - SETTLE_SECONDS)
        # Caller frames still on their way belong before the horizon: it waits for them.
        if self._caller_seen is None:
            if now - self._t0 < FIRST_FRAME_WAIT_SECONDS:
                until = min(until, self._caller_pos)
        elif now - self._caller_seen < CALLER_IDLE_SECONDS:
            until = min(until, self._caller_pos)
        return until

    def _take(self, until: int) -> bytes:
        n = until - self._base
        if n <= 0:
            return b""
        self._ensure(until)
        stereo = np.empty(2 * n, dtype="<i2")
        stereo[0::2] = self._left[:n]
        stereo[1::2] = self._right[:n]
        self._left = self._left[n:]
        self._right = self._right[n:]
        self._base = until
        self._caller_pos = max(self._caller_pos, until)
        return stereo.tobytes()

    async def _write(self, data: bytes) -> None:
        loop = asyncio.get_running_loop()
        try:
            if self._file is None:
                self._file = await loop.run_in_executor(self._executor, _WavFile, self.path)
            await loop.run_in_executor(self._executor, self._file.append, data)
            self.written_samples += len(data) // (CHANNELS * SAMPLE_BYTES)
        except (OSError, RuntimeError) as exc:  # RuntimeError: the writer threads were shut down
            if self.failed is None:
                log.error("recording %s could not be written: %s", self.path.name, exc)
            self.failed = str(exc)

    async def _run(self) -> None:
        # Stopped through the event, never cancelled: a write cut off mid-way could leave the file to two
        # writers (the thread still running, and the final flush).
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._flush_seconds):
                    await self._stop.wait()
            if not self._stop.is_set():
                await self.flush()

    async def flush(self, *, final: bool = False) -> None:
        """Write what has settled (the background task does this every ``flush_seconds``)."""
        async with self._write_lock:
            data = self._take(self._settled_until(final=final))
            if self.failed is None:  # after a failure the clock moves on in memory, bounded, unwritten
                await self._write(data)

    async def close(self) -> RecordingInfo:
        """Write the rest (both channels to the same length) and close the file. Idempotent."""
        if not self._closed:
            self._closed = True
            self._stop.set()
            task, self._task = self._task, None
            if task is not None:
                with contextlib.suppress(Exception):
                    await task
            await self.flush(final=True)
            if self._file is not None:
                file, self._file = self._file, None
                with contextlib.suppress(RuntimeError):
                    await asyncio.get_running_loop().run_in_executor(self._executor, file.close)
        return RecordingInfo(
            path=self.path,
            seconds=self.written_samples / RATE,
            started_at=self.started_at,
            frames_caller=self.frames_caller,
            frames_agent=self.frames_agent,
            cuts=self.cuts,
            dropped_seconds=self.dropped_samples / RATE,
        )


class RecordingService:
    """Per app (``app.state.recordings``): opens recorders for calls, owns the writer threads and sweeps
    recordings older than the retention."""

    def __init__(self, settings: Any, metrics: Any = None) -> None:
        self._metrics = metrics
        self.enabled = bool(getattr(settings, "recording_enabled", False))
        self.directory = Path(getattr(settings, "recording_dir", Path("recordings"))).resolve()
        self.retention_days = float(getattr(settings, "recording_retention_days", 30.0))
        self.sweep_interval = float(getattr(settings, "recording_sweep_interval_seconds", 3600.0))
        self._executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="recording")
        self._active: dict[Path, CallRecorder] = {}
        self._sweeper: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Sweep now, then every ``sweep_interval`` (when recording or retention applies)."""
        if self._sweeper is None and self.retention_days > 0:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep_loop(), name="recording-sweeper")

    async def close(self) -> None:
        task, self._sweeper = self._sweeper, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for recorder in list(self._active.values()):
            with contextlib.suppress(Exception):
                await self.finish(recorder)
        self._executor.shutdown(wait=False)

    def path_for(self, call_id: str) -> Path:
        return recording_path(self.directory, call_id)

    async def open(self, call_id: str) -> CallRecorder | None:
        """A started recorder for a call, or None when recording is off. A second media leg of the same
        call (a reconnect) gets its own file: ``<id>-2.wav`` and so on."""
        if not self.enabled:
            return None
        path = self.path_for(call_id)
        loop = asyncio.get_running_loop()
        n = 2
        while path in self._active or await loop.run_in_executor(self._executor, path.exists):
            path = self.directory / f"{file_stem(call_id)}-{n}{SUFFIX}"
            n += 1
            if n > 100:
                log.error("recording not started: too many recordings for one call")
                return None
        recorder = CallRecorder(path, executor=self._executor)
        self._active[path] = recorder
        recorder.start()
        if self._metrics is not None:
            self._metrics.recordings_active.inc()
        log.info("recording the call to %s", path.name)
        return recorder

    async def finish(self, recorder: CallRecorder) -> RecordingInfo:
        try:
            info = await recorder.close()
        finally:
            if self._active.pop(recorder.path, None) is not None and self._metrics is not None:
                self._metrics.recordings_active.dec()
        if self._metrics is not None:
            self._metrics.recording_seconds_total.inc(info.seconds)
            if recorder.failed is not None:
                self._metrics.recording_failures_total.labels("write").inc()
        return info

    # --- retention --------------------------------------------------------------------------------
    def _sweep_blocking(self, cutoff: float, keep: set[Path]) -> list[Path]:
        removed: list[Path] = []
        if not self.directory.is_dir():
            return removed
        for path in self.directory.iterdir():
            if path.suffix != SUFFIX or path in keep or not path.is_file():
                continue
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed.append(path)
            except OSError as exc:
                log.warning("old recording %s could not be deleted: %s", path.name, exc)
        return removed

    async def sweep(self, *, now: float | None = None) -> list[Path]:
        """Delete recordings older than the retention (never one being written); returns what went."""
        if self.retention_days <= 0:
            return []
        cutoff = (time.time() if now is None else now) - self.retention_days * 86_400
        removed = await asyncio.get_running_loop().run_in_executor(
            self._executor, self._sweep_blocking, cutoff, set(self._active)
        )
        if removed:
            log.info("retention: %d recording(s) older than %g days deleted", len(removed), self.retention_days)
        return removed

    async def _sweep_loop(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception:
                log.exception("recording retention sweep failed")
            await asyncio.sleep(self.sweep_interval)


def recording_service(app_state: Any) -> RecordingService:
    """The app's RecordingService (built by the recordings router's lifespan; made here on first use when
    the app was built without it, like ``media_health``)."""
    service = getattr(app_state, "recordings", None)
    if service is None:
        service = RecordingService(app_state.settings, getattr(app_state, "metrics", None))
        app_state.recordings = service
        service.start()
    return service  # type: ignore[no-any-return]


async def open_recorder(app_state: Any, call_id: str) -> CallRecorder | None:
    """A recorder for this call when RECORDING_ENABLED, else None (handlers call this at start)."""
    if not getattr(app_state.settings, "recording_enabled", False):
        return None
    try:
        return await recording_service(app_state).open(call_id)
    except OSError as exc:  # a full or read-only disk never costs the call
        log.error("recording not started: %s", exc)
        metrics = getattr(app_state, "metrics", None)
        if metrics is not None:
            metrics.recording_failures_total.labels("open").inc()
        return None


async def close_recorder(app_state: Any, recorder: CallRecorder | None, memo: Any) -> RecordingInfo | None:
    """Finish a call's recording and note it in the session (context key ``server_recording``)."""
    if recorder is None:
        return None
    service = getattr(app_state, "recordings", None)
    try:
        # Without a service (the app is shutting down and closed it), the recorder was closed with it.
        info = await (service.finish(recorder) if service is not None else recorder.close())
    except Exception:
        log.exception("recording could not be closed")
        return None
    if memo is not None:
        memo.set_context("server_recording", info.to_context())
    log.info("recording closed: %.1f s, %d barge-in cut(s)", info.seconds, info.cuts)
    return info
