"""Speech recognize on an emulated call: find the caller's answer on the phone's audio and decode it.

The phone keeps everything it sent on one 20 ms timeline (``caller_track()``: PCM, per-frame voiced
flags, rate), over a media stream or the call's own path alike. An answer starts at the first voiced
frame after the listening point and ends after ``endSilenceTimeoutInMs`` of silence; it is decoded by
pocketsphinx (the phone's end-of-call transcriber when it has one, so the decoder is built once per
process). Choices match the decoded text against each choice's phrases with the same fuzzy test the
phone's ``wait: {phrase: …}`` uses, because pocketsphinx gets single words wrong.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Protocol

from rapidfuzz import fuzz

from callwright.emulator.phone.transcribe import PHRASE_MATCH_SCORE, normalise, phrase_heard

FRAME_S = 0.020
_POLL_S = 0.05
_PREROLL_FRAMES = 10  # soft onsets fall below the voicing floor
MAX_UTTERANCE_S = 30.0


class Transcriber(Protocol):
    def transcribe(self, pcm: bytes, rate: int, spans: list[tuple[int, int]]) -> list[str]: ...


@dataclass(frozen=True, slots=True)
class Heard:
    """One answer: ``text`` is "" when there was speech pocketsphinx could not make words of."""

    text: str
    onset_index: int


def track_of(phone: Any) -> tuple[bytearray, list[bool], int] | None:
    get = getattr(phone, "caller_track", None) if phone is not None else None
    return get() if callable(get) else None


def caller_position(phone: Any) -> int:
    """The caller timeline's current frame index (0 when the phone has no audio yet)."""
    track = track_of(phone)
    return len(track[1]) if track is not None else 0


async def wait_for_voice(phone: Any, start: int, deadline: float | None) -> int | None:
    """Index of the first voiced caller frame at or after ``start``, or None when ``deadline`` passes."""
    while True:
        track = track_of(phone)
        if track is not None:
            voiced = track[1]
            for i in range(start, len(voiced)):
                if voiced[i]:
                    return i
            start = max(start, len(voiced))
        if deadline is not None and time.monotonic() >= deadline:
            return None
        await asyncio.sleep(_POLL_S)


async def hear_answer(
    phone: Any, transcriber: Transcriber | None, *, start: int, initial_silence_s: float, end_silence_s: float
) -> Heard | None:
    """The caller's next utterance from frame ``start`` on, decoded; None on initial silence."""
    onset = await wait_for_voice(phone, start, time.monotonic() + initial_silence_s)
    if onset is None:
        return None
    quiet_frames = max(1, round(end_silence_s / FRAME_S))
    max_frames = round(MAX_UTTERANCE_S / FRAME_S)
    while True:
        track = track_of(phone)
        assert track is not None  # it had a voiced frame
        pcm, voiced, rate = track
        n = len(voiced)
        last = next(i for i in range(n - 1, onset - 1, -1) if voiced[i])
        if n - 1 - last >= quiet_frames or n - onset >= max_frames:
            break
        await asyncio.sleep(_POLL_S)
    fb = rate * 2 * 20 // 1000
    a, b = max(0, onset - _PREROLL_FRAMES) * fb, (last + 1) * fb
    audio = bytes(pcm[a:b])
    if transcriber is None:
        return Heard(text="", onset_index=onset)
    (text,) = await asyncio.to_thread(transcriber.transcribe, audio, rate, [(0, len(audio))])
    return Heard(text=text.strip(), onset_index=onset)


Choice = tuple[str, str | None, tuple[str, ...]]  # (label, tone, phrases)


def _phrase_score(phrase: str, text: str) -> float:
    """0-100: how well ``phrase`` appears in ``text``.

    Word-level fuzzy containment first (the phone's ``phrase_heard`` test); then, for phrases of four
    letters or more, the same with spaces removed, because pocketsphinx splits unfamiliar words into
    familiar ones ("cancel" → "can sell"). Short phrases ("no") must be a whole word: without spaces
    they hide inside other words ("nope").
    """
    p, t = normalise(phrase), normalise(text)
    if not p or not t:
        return 0.0
    if len(p) < 4:
        return 100.0 if p in t.split() else 0.0
    if phrase_heard(p, t):
        return float(fuzz.partial_ratio(p, t))
    joined = float(fuzz.partial_ratio(p.replace(" ", ""), t.replace(" ", "")))
    return joined if joined >= PHRASE_MATCH_SCORE else 0.0


def match_choice(text: str, choices: tuple[Choice, ...]) -> tuple[str, str, float] | None:
    """(label, phrase, confidence) of the best choice whose phrase was heard in ``text``, or None."""
    best: tuple[str, str, float] | None = None
    for label, _, phrases in choices:
        for phrase in phrases:
            score = _phrase_score(phrase, text)
            if score > 0 and (best is None or score / 100 > best[2]):
                best = (label, phrase, round(score / 100, 2))
    return best
