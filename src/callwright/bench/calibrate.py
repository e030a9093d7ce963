"""How long the server's own endpointing must wait on a given caller utterance, replayed offline.

At the caller's ear, a response time with instant engines still contains the time the server needs to
*know* the caller stopped (``ENDPOINT_SILENCE_MS`` of unvoiced frames by its VAD) and a barge-in time
contains the voiced time it needs before it may call it speech (``BARGE_IN_MIN_SPEECH_MS``). Both are
settings, not pipeline cost, and both depend on the audio: the phone calls a frame voiced above −55 dBFS,
the server's VAD is stricter, so its "last voiced frame" comes earlier. Feeding the exact audio the
phone sends through the server's own segmenter gives, per utterance, the frame at which the server
could first have acted; what remains of the latency measured at the ear is the server's overhead.
"""

from __future__ import annotations

from dataclasses import dataclass

from callwright.acs.media import FRAME_MS
from callwright.config import Settings
from callwright.emulator.phone.audio import default_tts_cache_dir, flite_say_blocking, frame_is_voiced
from callwright.speech.factory import build_engines

_FRAME_BYTES = 16_000 * 2 * FRAME_MS // 1000


@dataclass(frozen=True, slots=True)
class Decision:
    end_lag_ms: float | None  # phone's last voiced frame → frame on which the server declares the end
    onset_lag_ms: float | None  # phone's first voiced frame → frame on which the server declares onset


def decision_lags(pcm16k: bytes, settings: Settings) -> Decision:
    segmenter = build_engines(settings).new_segmenter()
    frames = [pcm16k[i : i + _FRAME_BYTES] for i in range(0, len(pcm16k), _FRAME_BYTES)]
    frames[-1] = frames[-1].ljust(_FRAME_BYTES, b"\0")
    frames += [bytes(_FRAME_BYTES)] * (2000 // FRAME_MS)  # the phone sends silence after speaking
    voiced = [i for i, f in enumerate(frames) if frame_is_voiced(f)]
    if not voiced:
        return Decision(None, None)
    onset = end = None
    for i, f in enumerate(frames):
        ev = segmenter.feed(f, now=float(i) * FRAME_MS / 1000)
        if ev is not None and ev.kind == "onset" and onset is None:
            onset = i
        elif ev is not None and ev.kind == "end":
            end = i  # the last end: a pause inside the utterance may end an earlier segment
    return Decision(
        end_lag_ms=None if end is None else float((end - voiced[-1]) * FRAME_MS),
        onset_lag_ms=None if onset is None else float((onset - voiced[0]) * FRAME_MS),
    )


def calibrate(texts: list[str], voice: str, settings: Settings) -> dict[str, Decision]:
    """Per caller text, the server's decision lags on the audio flite renders for the phone."""
    cache = default_tts_cache_dir()
    return {t: decision_lags(flite_say_blocking(t, voice, cache), settings) for t in texts}
