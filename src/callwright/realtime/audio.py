"""Audio in and out at the session's format: PCM16 at 16/24/8 kHz or G.711 μ-law/A-law at 8 kHz on the
wire, 16 kHz PCM16 for the engines.

Conversion uses one stateful ``soxr`` stream per direction and item (realtime-protocol.md §8.1: ~79 dB
SNR against ~19 dB for per-chunk interpolation). Input is cut into the 20 ms frames the VAD takes.
G.711 is ITU-T G.711 (the tables audioop had), vectorised with numpy.
"""

from __future__ import annotations

import base64
import binascii

import numpy as np

from callwright.realtime.protocol import Codec, ProtocolError
from callwright.speech.resample import StreamResampler


def _ulaw_table() -> np.ndarray:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent, mantissa = (u >> 4) & 7, u & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return np.where(u & 0x80, -magnitude, magnitude).astype("<i2")


def _alaw_table() -> np.ndarray:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    exponent, mantissa = (a >> 4) & 7, a & 0x0F
    magnitude = np.where(exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0))
    return np.where(a & 0x80, magnitude, -magnitude).astype("<i2")


_DECODE = {"ulaw": _ulaw_table(), "alaw": _alaw_table()}
_ULAW_SEG_END = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])


def g711_decode(data: bytes, codec: Codec) -> bytes:
    return _DECODE[codec][np.frombuffer(data, dtype=np.uint8)].tobytes()


def g711_encode(pcm: bytes, codec: Codec) -> bytes:
    x = np.frombuffer(pcm, dtype="<i2").astype(np.int32)
    if codec == "ulaw":  # 14-bit segments, bias 33, clip 8159 (the reference implementation's)
        v = x >> 2
        negative = v < 0
        mask = np.where(negative, 0x7F, 0xFF)
        v = np.minimum(np.where(negative, -v, v), 8159) + 33
        seg = np.searchsorted(_ULAW_SEG_END, v, side="left")
        code = (np.minimum(seg, 7) << 4) | ((v >> (np.minimum(seg, 7) + 1)) & 0x0F)
        code = np.where(seg >= 8, 0x7F, code)
        return ((code ^ mask) & 0xFF).astype(np.uint8).tobytes()
    sign = np.where(x >= 0, 0x80, 0)
    mag = np.minimum(np.where(x >= 0, x, -x - 1), 32767)
    exponent = np.where(mag < 256, 0, np.floor(np.log2(np.maximum(mag, 1))).astype(np.int32) - 7)
    mantissa = np.where(mag < 256, mag >> 4, (mag >> (exponent + 3)) & 0x0F)
    return ((sign | (exponent << 4) | mantissa) ^ 0x55).astype(np.uint8).tobytes()


ENGINE_RATE = 16_000
FRAME_BYTES = ENGINE_RATE * 20 // 1000 * 2  # 20 ms of 16 kHz s16le


def decode_audio(value: object) -> bytes:
    if not isinstance(value, str):
        raise ProtocolError("invalid_type", "audio must be a base64 string", param="audio")
    try:
        pcm = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError("invalid_value", "audio is not valid base64", param="audio") from None
    return pcm


class InputFramer:
    """Appended client audio (any supported rate/codec) → 20 ms 16 kHz frames for the VAD and recognizer."""

    def __init__(self, rate: int, codec: Codec = "pcm16") -> None:
        self.rate = rate
        self.codec = codec
        self._resampler = StreamResampler(rate, ENGINE_RATE)
        self._carry = b""

    def push(self, audio: bytes) -> list[bytes]:
        if self.codec == "pcm16":
            if len(audio) % 2:
                raise ProtocolError("invalid_value", "audio must be PCM16 (an even number of bytes)", param="audio")
            pcm = audio
        else:
            pcm = g711_decode(audio, self.codec)
        data = self._carry + self._resampler.process(pcm)
        whole = len(data) - len(data) % FRAME_BYTES
        self._carry = data[whole:]
        return [data[i : i + FRAME_BYTES] for i in range(0, whole, FRAME_BYTES)]

    def clear(self) -> None:
        self._carry = b""
        self._resampler.reset()


class OutputEncoder:
    """Engine audio (16 kHz) → the session's output rate, cut into deltas of ``delta_ms``.

    One per assistant item: a fresh stream per item keeps a cut-off reply's filter tail out of the next.
    """

    def __init__(self, in_rate: int, out_rate: int, delta_ms: int = 100, codec: Codec = "pcm16") -> None:
        self.out_rate = out_rate
        self.codec = codec
        self._resampler = StreamResampler(in_rate, out_rate)
        self._delta_bytes = max(2, out_rate * delta_ms // 1000 * 2)  # counted in PCM16 before encoding
        self._pending = b""

    def push(self, pcm: bytes) -> list[bytes]:
        self._pending += self._resampler.process(pcm)
        out = []
        while len(self._pending) >= self._delta_bytes:
            out.append(self._encode(self._pending[: self._delta_bytes]))
            self._pending = self._pending[self._delta_bytes :]
        return out

    def finish(self) -> list[bytes]:
        rest = self._pending + self._resampler.flush()
        self._pending = b""
        return [self._encode(rest)] if rest else []

    def _encode(self, pcm: bytes) -> bytes:
        return pcm if self.codec == "pcm16" else g711_encode(pcm, self.codec)

    def duration_ms(self, n_bytes: int) -> float:
        """Milliseconds in ``n_bytes`` of this encoder's output."""
        per_sample = 2 if self.codec == "pcm16" else 1
        return n_bytes / per_sample / self.out_rate * 1000.0
