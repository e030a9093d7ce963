"""Comparing the server's recording with the phone's own recording of the same call."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

RATE = 16_000
FRAME = 320  # 20 ms


def read_stereo(path: Path) -> tuple[np.ndarray, np.ndarray, int, int]:
    """(left, right, channels, rate) of a 16-bit WAV."""
    with wave.open(str(path), "rb") as w:
        channels, rate, width = w.getnchannels(), w.getframerate(), w.getsampwidth()
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    assert width == 2
    if channels == 1:
        return data, np.zeros_like(data), channels, rate
    return data[0::2].astype(np.float64), data[1::2].astype(np.float64), channels, rate


def best_lag(server: np.ndarray, phone: np.ndarray, max_lag: int) -> tuple[int, float]:
    """The lag L (samples) with phone[n + L] ≈ server[n], and the normalised correlation there."""
    size = 1 << (len(server) + len(phone)).bit_length()
    cc = np.fft.irfft(np.conj(np.fft.rfft(server, size)) * np.fft.rfft(phone, size), size)
    lags = np.r_[0 : max_lag + 1, -max_lag:0]
    values = cc[lags % size]
    lag = int(lags[int(np.argmax(values))])
    return lag, correlation_at(server, phone, lag)


def correlation_at(server: np.ndarray, phone: np.ndarray, lag: int) -> float:
    a, b = (server, phone[lag:]) if lag >= 0 else (server[-lag:], phone)
    n = min(len(a), len(b))
    a, b = a[:n], b[:n]
    if n == 0 or a.std() == 0 or b.std() == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def envelope(x: np.ndarray) -> np.ndarray:
    """RMS per 20 ms frame."""
    n = len(x) // FRAME
    return np.sqrt((x[: n * FRAME].reshape(n, FRAME) ** 2).mean(axis=1))


def voiced_frames(x: np.ndarray, threshold: float = 300.0) -> np.ndarray:
    return envelope(x) > threshold


def last_voiced_end_ms(x: np.ndarray, start_ms: float, end_ms: float) -> float | None:
    """End (ms) of the last voiced 20 ms frame inside [start_ms, end_ms]."""
    v = voiced_frames(x)
    first, last = max(0, int(start_ms // 20)), min(len(v), int(end_ms // 20))
    idx = np.nonzero(v[first:last])[0]
    return None if not len(idx) else (first + int(idx[-1]) + 1) * 20.0
