"""espeak-ng text-to-speech: the instant default (first audio in ~0.1 ms, a sentence in ~2 ms).

The library is loaded with ctypes from the ``espeakng-loader`` wheel (it ships the library and its data)
and run in synchronous mode: espeak calls back every ~60 ms of audio, each chunk is resampled
22050 → 16000 Hz and handed on at once, and a sink returning False makes the callback return 1, which
aborts synthesis mid-word (barge-in). Without the loader, ``espeak-ng --stdout`` runs as a subprocess.
"""

from __future__ import annotations

import ctypes
import logging
import shutil
import subprocess
import threading
from collections.abc import Callable
from typing import Any

from callwright.speech.base import ChunkSink, Synthesizer
from callwright.speech.resample import StreamResampler

log = logging.getLogger("callwright.speech.tts")

OUT_RATE = 16_000
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_CHARS_UTF8 = 1
_ESPEAK_RATE = 1
_ESPEAK_OK = 0


class _Voice(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p), ("languages", ctypes.c_char_p), ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte), ("age", ctypes.c_ubyte), ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte), ("score", ctypes.c_int), ("spare", ctypes.c_void_p),
    ]  # fmt: skip


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

# libespeak-ng keeps one set of global state per process (voice, parameters, the synth callback), so
# every instance in the process must share one lock and one initialisation; that is why these two live
# at module level rather than on an instance.
_LIB_LOCK = threading.Lock()
_LIB: dict[str, Any] = {}


class TtsUnavailable(RuntimeError):
    """The selected TTS engine cannot run here (missing package, library or voice)."""


def _load_library() -> tuple[ctypes.CDLL, int]:
    """Load and initialise libespeak-ng once per process; call with _LIB_LOCK held."""
    if "lib" not in _LIB:
        try:
            import espeakng_loader
        except ImportError as exc:
            raise TtsUnavailable("espeakng-loader is not installed") from exc
        lib = ctypes.CDLL(str(espeakng_loader.get_library_path()))
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetSynthCallback.argtypes = [_CALLBACK]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByProperties.argtypes = [ctypes.POINTER(_Voice)]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
            ctypes.c_void_p, ctypes.c_void_p,
        ]  # fmt: skip
        data = str(espeakng_loader.get_data_path()).encode()
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 60, data, 0)
        if rate <= 0:
            raise TtsUnavailable(f"espeak_Initialize failed ({rate}) with data at {data.decode()}")
        _LIB["lib"], _LIB["rate"] = lib, rate
        _LIB["callback"] = _CALLBACK(_dispatch)  # kept alive here: espeak holds the pointer
        lib.espeak_SetSynthCallback(_LIB["callback"])
    return _LIB["lib"], _LIB["rate"]


def _dispatch(wav: Any, numsamples: int, _events: Any) -> int:
    """The C callback: forwards to the synthesis in progress (there is at most one, under the lock)."""
    handler: Callable[[bytes], bool] | None = _LIB.get("handler")
    if handler is None or not wav or numsamples <= 0:
        return 0
    try:
        keep_going = handler(ctypes.string_at(wav, numsamples * 2))
    except Exception:
        log.exception("TTS chunk sink failed; stopping this synthesis")
        keep_going = False
    return 0 if keep_going else 1


class EspeakSynthesizer(Synthesizer):
    """espeak-ng through its library. ``voice`` is an espeak voice name (``en-us``, ``en-gb``,
    ``en-us+f3`` …); ``rate`` is words per minute."""

    sample_rate = OUT_RATE

    def __init__(self, voice: str = "en-us", rate: int = 175) -> None:
        self.voice = voice
        self.rate = rate
        with _LIB_LOCK:
            _load_library()
            self._check_voice(voice)

    @staticmethod
    def _check_voice(voice: str) -> None:
        lib = _LIB["lib"]
        if lib.espeak_SetVoiceByName(voice.encode()) == _ESPEAK_OK:
            return
        # Names such as "en-gb" are language tags rather than voice names in espeak-ng 1.52.
        props = _Voice(languages=voice.encode())
        if lib.espeak_SetVoiceByProperties(ctypes.byref(props)) != _ESPEAK_OK:
            raise TtsUnavailable(f"espeak-ng has no voice {voice!r} (try en-us, en-gb, en-us+f3)")

    def synthesize(self, text: str, on_chunk: ChunkSink, voice: str | None = None) -> bool:
        text = text.strip()
        if not text:
            return True
        encoded = text.encode("utf-8")
        with _LIB_LOCK:
            lib, in_rate = _load_library()
            self._check_voice(voice or self.voice)
            lib.espeak_SetParameter(_ESPEAK_RATE, self.rate, 0)
            resampler = StreamResampler(in_rate, OUT_RATE)
            state = {"cancelled": False}

            def handle(chunk: bytes) -> bool:
                out = resampler.process(chunk)
                if out and not on_chunk(out):
                    state["cancelled"] = True
                return not state["cancelled"]

            _LIB["handler"] = handle
            try:
                err = lib.espeak_Synth(encoded, len(encoded) + 1, 0, 0, 0, _CHARS_UTF8, None, None)
            finally:
                _LIB["handler"] = None
        if state["cancelled"]:
            return False
        if err != _ESPEAK_OK:
            raise RuntimeError(f"espeak_Synth failed with error {err} for {text[:40]!r}")
        tail = resampler.flush()
        return on_chunk(tail) if tail else True

    def close(self) -> None:
        return None  # the library stays loaded for the process; nothing per instance to free


class EspeakProcessSynthesizer(Synthesizer):
    """Fallback: ``espeak-ng --stdout`` per sentence, streamed as the process writes; cancelling kills it."""

    sample_rate = OUT_RATE
    chunk_bytes = 2 * 1323  # ~60 ms at 22050 Hz, like the library's callback

    def __init__(self, voice: str = "en-us", rate: int = 175, binary: str | None = None) -> None:
        found = binary or shutil.which("espeak-ng")
        if found is None:
            raise TtsUnavailable("espeak-ng is not installed (Debian package espeak-ng)")
        self.binary = found
        self.voice = voice
        self.rate = rate

    def synthesize(self, text: str, on_chunk: ChunkSink, voice: str | None = None) -> bool:
        text = text.strip()
        if not text:
            return True
        cmd = [self.binary, "--stdout", "-v", voice or self.voice, "-s", str(self.rate), "--", text]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdout is not None
        try:
            header = proc.stdout.read(44)
            if len(header) < 44 or header[:4] != b"RIFF":
                err = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
                raise RuntimeError(f"espeak-ng produced no audio: {err or 'no WAV header'}")
            in_rate = int.from_bytes(header[24:28], "little")
            resampler = StreamResampler(in_rate, OUT_RATE)
            pending = b""
            while chunk := proc.stdout.read(self.chunk_bytes):
                pending += chunk
                usable = len(pending) - len(pending) % 2
                out = resampler.process(pending[:usable])
                pending = pending[usable:]
                if out and not on_chunk(out):
                    return False
            tail = resampler.flush()
            return on_chunk(tail) if tail else True
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            proc.stdout.close()
            if proc.stderr is not None:
                proc.stderr.close()

    def close(self) -> None:
        return None


def make_espeak(voice: str | None = None, rate: int = 175) -> Synthesizer:
    """The library engine, or the subprocess when the loader wheel is missing."""
    try:
        return EspeakSynthesizer(voice or "en-us", rate)
    except TtsUnavailable as exc:
        if "no voice" in str(exc):
            raise
        log.warning("espeak-ng library unavailable (%s); using the espeak-ng subprocess", exc)
        return EspeakProcessSynthesizer(voice or "en-us", rate)
