"""Inbound re-framing: whatever ACS sends becomes exactly 20 ms frames of 16 kHz s16le for the handler.

ACS documents 640-byte frames at 16 kHz, but the wire carries what the sender chose: 24 kHz when the
stream was negotiated so (960-byte frames), other projects' load tools send 100 ms frames, and a lost or
duplicated packet shows up as an odd size. Everything downstream (VAD, echo guard, segmenter) is built for
20 ms frames, so the cut happens once, here, at the edge:

- audio at the stream's rate is resampled to 16 kHz with one stateful soxr stream per call (a fresh
  converter per frame clicks at every boundary and loses ~20 dB of SNR);
- the 16 kHz samples are accumulated and cut into 640-byte frames, whatever the input sizes, so any
  split of the same stream gives the same frames;
- a frame is ``silent`` only when everything in it came from ``silent`` input (whose samples are zeroed:
  ACS marks them silent because they carry nothing).
"""

from __future__ import annotations

from dataclasses import dataclass

from callwright.acs.media import BYTES_PER_SAMPLE, SAMPLE_RATE, SUPPORTED_RATES, frame_bytes
from callwright.speech.resample import StreamResampler

OUT_FRAME = frame_bytes(SAMPLE_RATE)  # 640 bytes: 20 ms at 16 kHz


@dataclass(frozen=True, slots=True)
class Frame:
    pcm: bytes  # exactly OUT_FRAME bytes of 16 kHz s16le
    silent: bool


class InboundReframer:
    """One call's inbound audio → 20 ms 16 kHz frames. Not thread-safe (the media loop owns it)."""

    def __init__(self, in_rate: int = SAMPLE_RATE) -> None:
        self._buf = bytearray()
        self._loud_end = 0  # bytes of the buffer up to the end of the last non-silent input
        self._resampler: StreamResampler | None = None
        self.in_rate = SAMPLE_RATE
        self.frames_in = 0
        self.frames_out = 0
        self.reframed = 0  # input frames that were not one 20 ms frame at the stream's rate
        self.set_rate(in_rate)

    def set_rate(self, rate: int) -> None:
        """The stream's rate (from AudioMetadata); a change starts a fresh converter."""
        if rate not in SUPPORTED_RATES:
            raise ValueError(f"unsupported sample rate {rate} (supported: {SUPPORTED_RATES})")
        if rate == self.in_rate and (self._resampler is not None or rate == SAMPLE_RATE):
            return
        self.in_rate = rate
        self._resampler = None if rate == SAMPLE_RATE else StreamResampler(rate, SAMPLE_RATE, "HQ")

    @property
    def buffered(self) -> int:
        """Bytes of 16 kHz audio waiting for the rest of their frame."""
        return len(self._buf)

    def push(self, pcm: bytes, silent: bool = False) -> list[Frame]:
        """Add one inbound frame's samples (any even length, at ``in_rate``); return the whole 20 ms frames
        now complete, oldest first."""
        if len(pcm) % BYTES_PER_SAMPLE:
            raise ValueError(f"s16le PCM must have an even byte count, got {len(pcm)}")
        if not pcm:
            return []
        self.frames_in += 1
        if len(pcm) != frame_bytes(self.in_rate):
            self.reframed += 1
        if silent:
            pcm = bytes(len(pcm))
        if self._resampler is not None:
            pcm = self._resampler.process(pcm)
        self._buf += pcm
        if not silent:
            self._loud_end = len(self._buf)
        out: list[Frame] = []
        while len(self._buf) >= OUT_FRAME:
            frame = bytes(self._buf[:OUT_FRAME])
            del self._buf[:OUT_FRAME]
            out.append(Frame(frame, silent=self._loud_end <= 0))
            self._loud_end = max(0, self._loud_end - OUT_FRAME)
        self.frames_out += len(out)
        return out

    def reset(self) -> None:
        self._buf.clear()
        self._loud_end = 0
        if self._resampler is not None:
            self._resampler.reset()
