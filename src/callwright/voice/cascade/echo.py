"""Echo guard: caller frames that are only the agent's own audio coming back must not barge in.

A handset on speaker or a 2-wire hybrid sends part of what the caller hears back up the line, delayed
and attenuated. To the VAD that is speech — the agent's — and without a guard the agent pauses for its
own voice. The guard keeps what playback sent (with the time each frame plays at the caller's end) and
asks, for each caller frame that has energy while the agent is audible, whether the frame is explained
by that reference at some delay: the peak normalised cross-correlation over the plausible delays. An
echo correlates strongly (it *is* the reference, filtered); a caller talking over the agent does not,
even with the echo underneath, because the caller's voice dominates the frame.

Writers (playback, on the event loop) and the reader (the recognition lane thread) share one deque of
immutable tuples; ``deque.append`` and iteration over a snapshot are safe across threads in CPython.
"""

from __future__ import annotations

import collections
import time

import numpy as np

FRAME_SECONDS = 0.020


class EchoGuard:
    def __init__(
        self,
        *,
        sample_rate: int = 16_000,
        max_delay_ms: int = 500,
        threshold: float = 0.7,
        lock_threshold: float = 0.95,
        rms_floor: float = 100.0,
        block_frames: int = 3,
    ) -> None:
        self._rate = sample_rate
        self._frame = sample_rate * 20 // 1000
        self._max_delay = max_delay_ms / 1000
        self.threshold = threshold
        self.lock_threshold = lock_threshold
        self._rms_floor = rms_floor
        slots = int(self._max_delay / FRAME_SECONDS) + 4
        self._sent: collections.deque[tuple[float, bytes]] = collections.deque(maxlen=slots + block_frames)
        self._recent: collections.deque[np.ndarray] = collections.deque(maxlen=block_frames)
        self._block_frames = block_frames
        self._tolerance = 0.002  # seconds of jitter around the locked delay
        self._candidate: float | None = None
        self.delay: float | None = None  # the echo path's delay in seconds, once seen twice
        # The caller's frames come every 20 ms on the phone's clock; counting them gives each frame a
        # time free of the jitter of its arrival (event-loop lag would otherwise move the delay).
        self._mic_origin: float | None = None
        self._mic_frames = 0
        self.frames_rejected = 0

    # --- the event loop (playback) ------------------------------------------------------------------
    def reference(self, pcm: bytes, play_time: float) -> None:
        """A frame of agent audio that plays at the caller's end at ``play_time`` (monotonic)."""
        self._sent.append((play_time, pcm))

    # --- the recognition lane -----------------------------------------------------------------------
    def is_echo(self, frame: bytes, arrived: float | None = None) -> bool:
        """True when ``frame`` (a caller frame, received at ``arrived``) is the agent's audio coming back.

        Over one block, speech correlates with *some* delay of unrelated speech by chance, so the guard
        first learns the echo path's delay (a near-perfect match, seen twice at the same delay, from a
        block that is quieter than the audio it matches) and then only asks about that delay.
        """
        arrived = time.monotonic() if arrived is None else arrived
        if len(frame) != self._frame * 2:  # only whole 20 ms frames (odd bytes would not even decode)
            return False
        samples = np.frombuffer(frame, dtype="<i2").astype(np.float64)
        block_end = self._mic_time(arrived)
        self._recent.append(samples)
        floor = (self._rms_floor**2) * samples.size
        if float(np.dot(samples, samples)) < floor or len(self._recent) < self._block_frames:
            return False
        ref = self._reference_window(block_end)
        if ref is None:
            return False
        window, origin = ref
        mic = np.concatenate(self._recent)
        if window.size < mic.size:
            # The agent's audio started (plays) within the last block: too little reference to explain a
            # whole block, and no positions to correlate at (this was the "caller audio right as agent
            # audio starts" crash: argmax of an empty correlation).
            return False
        mic_energy = float(np.dot(mic, mic))
        ncc, ref_energy = self._ncc(window, mic, mic_energy)
        # The delay each position stands for: from the reference's play time to the block's end.
        delays = block_end - (origin + (np.arange(ncc.size) + mic.size) / self._rate)
        best = int(np.argmax(ncc))
        spread = all(float(np.dot(f, f)) >= floor for f in self._recent)
        if ncc[best] >= self.lock_threshold and spread and mic_energy <= ref_energy[best]:
            self._learn(float(delays[best]))
        if self.delay is None:
            return False
        near = np.abs(delays - self.delay) <= self._tolerance
        echo = bool(near.any()) and float(ncc[near].max()) >= self.threshold
        if echo:
            self.frames_rejected += 1
        return echo

    def reset(self) -> None:
        """Fresh state (after a failure): forget the learned delay and the caller's recent frames. The
        reference keeps flowing from playback; old entries are harmless and age out."""
        self._recent.clear()
        self._candidate = None
        self.delay = None
        self._mic_origin = None
        self._mic_frames = 0

    def _mic_time(self, arrived: float) -> float:
        """When this frame's last sample was sent, on the caller's steady 20 ms clock."""
        self._mic_frames += 1
        nominal = None if self._mic_origin is None else self._mic_origin + self._mic_frames * FRAME_SECONDS
        if nominal is None or abs(arrived - nominal) > 0.25:  # first frame, or the stream skipped
            self._mic_origin, self._mic_frames = arrived - FRAME_SECONDS, 1
            return arrived
        return nominal

    def _learn(self, delay: float) -> None:
        if self._candidate is not None and abs(delay - self._candidate) <= self._tolerance:
            self.delay = delay
        self._candidate = delay

    @staticmethod
    def _ncc(window: np.ndarray, mic: np.ndarray, mic_energy: float) -> tuple[np.ndarray, np.ndarray]:
        """Normalised cross-correlation of ``mic`` against every position inside ``window``."""
        n = 1 << (window.size - 1).bit_length()  # circular wrap only touches negative positions
        corr = np.fft.irfft(np.fft.rfft(window, n) * np.conj(np.fft.rfft(mic, n)), n)[: window.size - mic.size + 1]
        squares = np.concatenate(([0.0], np.cumsum(window * window)))
        ref_energy = squares[mic.size :] - squares[: -mic.size]
        ncc = np.zeros_like(corr)
        usable = ref_energy > 1e-3 * mic_energy
        ncc[usable] = corr[usable] / np.sqrt(ref_energy[usable] * mic_energy)
        return ncc, ref_energy

    def _reference_window(self, block_end: float) -> tuple[np.ndarray, float] | None:
        """The agent audio played from ``max_delay`` before the block's start up to its end, placed by
        play time with silence where nothing played, and the play time of its first sample; None when
        the agent played nothing in that span."""
        start = block_end - (self._block_frames + 1) * FRAME_SECONDS - self._max_delay
        sent = [(t, pcm) for t, pcm in list(self._sent) if start <= t <= block_end]
        if not sent:
            return None
        # The earliest play time, not the first handed over: playback may hand over a frame that plays
        # before an earlier one (a re-spoken sentence, a new grid after StopAudio).
        origin = min(t for t, _ in sent)
        window = np.zeros(round((block_end - origin) * self._rate) + self._frame, dtype=np.float64)
        for t, pcm in sent:
            at = round((t - origin) * self._rate)
            samples = np.frombuffer(pcm, dtype="<i2")[: self._frame]
            n = min(samples.size, window.size - at)
            if n > 0:
                window[at : at + n] = samples[:n]
        return window, origin
