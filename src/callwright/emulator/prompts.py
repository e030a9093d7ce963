"""Audio for REST ``:play`` and recognize prompts: text and SSML spoken by flite, files fetched over http.

flite rather than espeak-ng: the phone's transcriber (pocketsphinx) decodes flite's voices word for word
("press one for billing or two for support") where espeak came out garbled, and the phone's report and
``wait: {phrase: …}`` steps are only as useful as that decoding. espeak-ng remains the fallback when flite
is not installed.

Everything comes out as 16 kHz s16le mono, the format :meth:`PhoneSide.play_prompt` takes. Failures
raise :class:`PromptError` carrying the ACS result subcode the emulator reports in PlayFailed
(acs-protocol.md §3.4: 8535 bad file format, 8536 download failed, 8565 speech service error, 8582 empty
text).
"""

from __future__ import annotations

import asyncio
import re
import struct
from html import unescape
from typing import Any

import httpx
import numpy as np
import soxr

TARGET_RATE = 16_000
MAX_FILE_BYTES = 50 * 1024 * 1024
_TAG = re.compile(r"<[^>]+>")


class PromptError(Exception):
    def __init__(self, sub_code: int, message: str) -> None:
        super().__init__(message)
        self.sub_code = sub_code
        self.message = message


def _to_target_rate(samples: np.ndarray, rate: int) -> bytes:
    if rate != TARGET_RATE:
        samples = soxr.resample(samples, rate, TARGET_RATE)
    return np.clip(samples, -32768, 32767).astype("<i2").tobytes()


def decode_wav(data: bytes) -> bytes:
    """PCM WAV (8/16/32-bit int or 32-bit float, any rate, any channels) → 16 kHz s16le mono.

    Chunk sizes are trusted only as far as the bytes go: streaming writers (``espeak-ng --stdout``) put
    0x7fffffff placeholders in the RIFF and data sizes.
    """
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise PromptError(8535, "Action failed, file format is invalid (not a RIFF/WAVE file).")
    pos, fmt, pcm = 12, None, None
    while pos + 8 <= len(data):
        cid, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        body = data[pos + 8 : pos + 8 + size]
        if cid == b"fmt " and len(body) >= 16:
            fmt = struct.unpack("<HHIIHH", body[:16])
            if fmt[0] == 0xFFFE and len(body) >= 26:  # WAVE_FORMAT_EXTENSIBLE: the sub-format says PCM/float
                fmt = (struct.unpack("<H", body[24:26])[0], *fmt[1:])
        elif cid == b"data":
            pcm = body
            break
        pos += 8 + size + (size & 1)
    if fmt is None or pcm is None:
        raise PromptError(8535, "Action failed, file format is invalid (no fmt or data chunk).")
    audio_format, channels, rate, _, _, bits = fmt
    dtype = {(1, 8): "u1", (1, 16): "<i2", (1, 32): "<i4", (3, 32): "<f4"}.get((audio_format, bits))
    if dtype is None or channels < 1 or rate < 4000:
        raise PromptError(8535, f"Action failed, file format is invalid (format {audio_format}, {bits} bit).")
    width = np.dtype(dtype).itemsize * channels
    samples = np.frombuffer(pcm[: len(pcm) // width * width], dtype=dtype).astype(np.float64)
    if dtype == "u1":
        samples = (samples - 128.0) * 256.0
    elif dtype == "<i4":
        samples = samples / 65536.0
    elif dtype == "<f4":
        samples = samples * 32767.0
    if channels > 1:
        samples = samples.reshape(-1, channels).mean(axis=1)
    return _to_target_rate(samples, rate)


def ssml_to_text(ssml: str) -> str:
    """The spoken words of an SSML document (tags dropped, entities decoded, whitespace collapsed)."""
    return " ".join(unescape(_TAG.sub(" ", ssml)).split())


# TextSource.voiceKind → flite voice. Unset or male: awb, the voice pocketsphinx decodes best here.
_FLITE_VOICES = {"female": "slt", "male": "awb"}
_DEFAULT_FLITE_VOICE = "awb"


def flite_voice(voice_kind: Any) -> str:
    return _FLITE_VOICES.get(str(voice_kind or "").lower(), _DEFAULT_FLITE_VOICE)


async def speak(text: str, *, voice_kind: Any = None) -> bytes:
    """Synthesize ``text`` with flite (cached on disk by voice and text) in a worker thread."""
    if not text.strip():
        raise PromptError(8582, "Action failed, play source text/ssml is empty.")
    from callwright.emulator.phone.audio import AudioSourceError, default_tts_cache_dir, flite_say_blocking

    try:
        return await asyncio.to_thread(flite_say_blocking, text, flite_voice(voice_kind), default_tts_cache_dir())
    except AudioSourceError as exc:
        if "not installed" not in str(exc):
            raise PromptError(8565, f"Action failed, flite error: {exc}") from exc
    return await speak_espeak(text)


async def speak_espeak(text: str, *, voice: str = "en-us") -> bytes:
    """Synthesize ``text`` with espeak-ng in a subprocess (never blocking the loop)."""
    if not text.strip():
        raise PromptError(8582, "Action failed, play source text/ssml is empty.")
    try:
        proc = await asyncio.create_subprocess_exec(
            "espeak-ng",
            "--stdout",
            "-v",
            voice,
            "--",
            text,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except FileNotFoundError as exc:
        raise PromptError(8565, "Action failed, espeak-ng is not installed (Debian package).") from exc
    out, err = await proc.communicate()
    if proc.returncode != 0 or not out:
        raise PromptError(8565, f"Action failed, espeak-ng error: {err.decode(errors='replace').strip()}")
    return await asyncio.to_thread(decode_wav, out)


async def fetch_wav(http: httpx.AsyncClient, uri: str) -> bytes:
    try:
        resp = await http.get(uri, follow_redirects=True)
    except httpx.HTTPError as exc:
        raise PromptError(8536, f"Action failed, file could not be downloaded ({exc}).") from exc
    if resp.status_code >= 400:
        raise PromptError(8536, f"Action failed, file could not be downloaded (HTTP {resp.status_code}).")
    if len(resp.content) > MAX_FILE_BYTES:
        raise PromptError(8535, "Action failed, file is too large.")
    return await asyncio.to_thread(decode_wav, resp.content)


async def render_play_source(http: httpx.AsyncClient, source: Any) -> bytes:
    """One ``playSources[i]`` object → 16 kHz PCM. Raises PromptError with the ACS subcode."""
    if not isinstance(source, dict):
        raise PromptError(8535, "Action failed, play source is not an object.")
    kind = str(source.get("kind", "")).lower()
    if kind == "text":
        spec = source.get("text") if isinstance(source.get("text"), dict) else {}
        return await speak(str(spec.get("text", "")), voice_kind=spec.get("voiceKind"))
    if kind == "ssml":
        ssml = source.get("ssml")
        body = ssml.get("ssmlText", "") if isinstance(ssml, dict) else ""
        return await speak(ssml_to_text(str(body)))
    if kind == "file":
        file = source.get("file")
        uri = file.get("uri") if isinstance(file, dict) else None
        if not isinstance(uri, str) or not uri.startswith(("http://", "https://")):
            raise PromptError(8536, "Action failed, file source has no http(s) uri.")
        return await fetch_wav(http, uri)
    raise PromptError(8535, f"Action failed, play source kind {kind!r} is not supported by the emulator.")
