"""Caller audio for virtual phones: loading WAV/PCM, a local TTS voice (flite), noise, clicks.

Everything here returns 16 kHz s16le mono PCM. flite is deliberately a different engine from the
agent's espeak-ng/Piper voices, so the server's recogniser hears a voice it was not tuned on, and the
phone's own STT can tell the two speakers apart.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np
import soxr

log = logging.getLogger(__name__)

RATE = 16_000
FRAME_MS = 20
# RMS below this (≈ −55 dBFS) counts as silence: TTS leading/trailing pads and dither are not speech.
SILENCE_RMS = 60.0


class AudioSourceError(RuntimeError):
    """Caller audio that cannot be produced (missing file, flite failure); the message says which."""


def frame_is_voiced(pcm: bytes) -> bool:
    """True when a frame carries sound above the silence floor."""
    if len(pcm) < 2:
        return False
    samples = np.frombuffer(pcm[: len(pcm) - len(pcm) % 2], dtype="<i2").astype(np.float32)
    return float(np.sqrt(np.mean(samples * samples))) > SILENCE_RMS


def resample(pcm: bytes, src_rate: int, dst_rate: int) -> bytes:
    if src_rate == dst_rate or not pcm:
        return pcm
    samples = np.frombuffer(pcm, dtype="<i2")
    out = soxr.resample(samples, src_rate, dst_rate)
    return np.clip(out, -32768, 32767).astype("<i2").tobytes()


def read_wav(path: Path) -> bytes:
    """A WAV file as 16 kHz mono s16le (downmixed and resampled when needed)."""
    try:
        with wave.open(str(path), "rb") as w:
            channels, width, rate = w.getnchannels(), w.getsampwidth(), w.getframerate()
            raw = w.readframes(w.getnframes())
    except (OSError, wave.Error, EOFError) as exc:
        raise AudioSourceError(f"cannot read WAV {path}: {exc}") from None
    if width != 2:
        raise AudioSourceError(f"{path}: only 16-bit PCM WAV is supported (got {8 * width}-bit)")
    samples = np.frombuffer(raw, dtype="<i2")
    if channels > 1:
        samples = samples.reshape(-1, channels).mean(axis=1).astype("<i2")
    return resample(samples.tobytes(), rate, RATE)


def read_audio_file(path: Path) -> bytes:
    """WAV by header; anything else (``.pcm``/``.raw``) is taken as 16 kHz s16le mono."""
    if path.suffix.lower() == ".wav":
        return read_wav(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise AudioSourceError(f"cannot read audio file {path}: {exc}") from None
    return raw[: len(raw) - len(raw) % 2]


def default_tts_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "callwright" / "phone-tts"


async def flite_say(text: str, voice: str, cache_dir: Path) -> bytes:
    """Speak ``text`` with flite in a worker thread (synthesis and file I/O never touch the loop)."""
    return await asyncio.to_thread(flite_say_blocking, text, voice, cache_dir)


def flite_say_blocking(text: str, voice: str, cache_dir: Path) -> bytes:
    """flite as a subprocess, cached on disk by (voice, text): suites and benchmarks repeat lines."""
    key = hashlib.sha256(f"{voice}\0{text}".encode()).hexdigest()[:24]
    cached = cache_dir / f"{voice}-{key}.wav"
    if cached.exists():
        try:
            return read_wav(cached)
        except AudioSourceError:
            log.warning("phone TTS cache entry %s unreadable; re-synthesising", cached)
    cache_dir.mkdir(parents=True, exist_ok=True)
    # Write to a temp name then rename, so a concurrent phone never reads a half-written file.
    fd, tmp = tempfile.mkstemp(suffix=".wav", dir=cache_dir)
    os.close(fd)
    try:
        proc = subprocess.run(
            ["flite", "-voice", voice, "-t", text, "-o", tmp], capture_output=True, timeout=30, check=False
        )
        if proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip()
            raise AudioSourceError(f"flite failed for voice {voice!r}: {err}")
        os.replace(tmp, cached)
    except FileNotFoundError:
        raise AudioSourceError("flite is not installed (Debian package 'flite')") from None
    except subprocess.TimeoutExpired:
        raise AudioSourceError(f"flite took over 30 s for {text[:40]!r}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return read_wav(cached)


def pink_noise(ms: int, level_dbfs: float, seed: int) -> bytes:
    """Pink (1/f) noise at an RMS level, shaped in the frequency domain."""
    n = RATE * ms // 1000
    rng = np.random.default_rng(seed)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / RATE)
    freqs[0] = freqs[1] if n > 1 else 1.0
    noise = np.fft.irfft(spectrum / np.sqrt(freqs), n)
    return _at_level(noise, level_dbfs)


def white_noise(ms: int, level_dbfs: float, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    return _at_level(rng.standard_normal(RATE * ms // 1000), level_dbfs)


def click(level_dbfs: float = -6.0) -> bytes:
    """A 4 ms decaying impulse (a knock on the handset), padded to one 20 ms frame."""
    n = RATE * 4 // 1000
    burst = np.exp(-np.arange(n) / (n / 5)) * np.sign(np.sin(np.arange(n) * 1.7))
    peak = 32767 * 10 ** (level_dbfs / 20)
    out = np.zeros(RATE * FRAME_MS // 1000)
    out[:n] = burst * peak
    return out.astype("<i2").tobytes()


def tone(freq_hz: float, ms: int, level_dbfs: float) -> bytes:
    t = np.arange(RATE * ms // 1000) / RATE
    return _at_level(np.sin(2 * np.pi * freq_hz * t), level_dbfs)


def _at_level(signal: np.ndarray, level_dbfs: float) -> bytes:
    rms = float(np.sqrt(np.mean(signal**2))) or 1.0
    target = 32767 * 10 ** (level_dbfs / 20)
    return np.clip(signal * (target / rms), -32768, 32767).astype("<i2").tobytes()


def write_stereo_wav(path: Path, left: bytes, right: bytes, rate: int) -> None:
    """Interleave two mono s16le tracks of the same timeline into one stereo WAV."""
    a = np.frombuffer(left, dtype="<i2")
    b = np.frombuffer(right, dtype="<i2")
    n = max(len(a), len(b))
    stereo = np.zeros((n, 2), dtype="<i2")
    stereo[: len(a), 0] = a
    stereo[: len(b), 1] = b
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(stereo.tobytes())
