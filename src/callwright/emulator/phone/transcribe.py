"""What the agent said, as heard by the phone: pocketsphinx over the agent channel.

Two uses, both optional because a decoder costs ~0.2 s to start and ~90 MB: a batch pass over the
recorded agent segments for the report's transcript, and a live spotter for ``wait: {phrase: ...}``.
Both run off the event loop (a thread), and both only exist when a script asks for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import re
import threading
from collections import deque
from collections.abc import Callable

from rapidfuzz import fuzz

from callwright.emulator.phone.audio import resample

log = logging.getLogger(__name__)

PHRASE_MATCH_SCORE = 80.0
_END_SILENT_FRAMES = 40  # 800 ms of silence ends a live utterance (sentence pauses stay inside)
_REDECODE_EVERY_FRAMES = 50  # re-decode a long utterance every second, so phrases match mid-speech
_REDECODE_WINDOW_S = 6
_PREROLL_FRAMES = 10  # soft word onsets fall below the voicing floor; feed the 200 ms before it too


def _decoder():  # type: ignore[no-untyped-def]
    from pocketsphinx import Decoder

    return Decoder(samprate=16_000, loglevel="FATAL")


def transcribe_blocking(pcm: bytes, rate: int, spans: list[tuple[int, int]]) -> list[str]:
    """Decode byte spans of one mono s16le track; blocking (call it in a thread)."""
    if not spans:
        return []
    dec = _decoder()
    out = []
    for a, b in spans:
        audio = resample(pcm[a:b], rate, 16_000)
        dec.start_utt()
        dec.process_raw(audio, full_utt=True)
        dec.end_utt()
        hyp = dec.hyp()
        out.append(hyp.hypstr if hyp is not None else "")
    return out


def normalise(text: str) -> str:
    return re.sub(r"[^a-z0-9' ]+", " ", text.lower()).strip()


def phrase_heard(phrase: str, heard: str) -> bool:
    """Fuzzy containment: pocketsphinx gets words wrong, so an exact match would be too strict."""
    p, h = normalise(phrase), normalise(heard)
    if not p or not h:
        return False
    return p in h or fuzz.partial_ratio(p, h) >= PHRASE_MATCH_SCORE


class LiveSpotter:
    """Streams played agent frames through pocketsphinx in a worker thread.

    ``texts`` holds one entry per agent utterance (the latest partial until it is final); updates land
    on the event loop through ``call_soon_threadsafe``, so readers on the loop need no lock.
    """

    def __init__(self, rate: int, loop: asyncio.AbstractEventLoop, on_update: Callable[[], None]) -> None:
        self.rate = rate
        self.texts: list[str] = []
        self._loop = loop
        self._on_update = on_update
        self._q: queue.Queue[tuple[bytes, bool] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="phone-live-stt", daemon=True)
        self._thread.start()

    def feed(self, pcm: bytes, voiced: bool) -> None:
        self._q.put((pcm, voiced))

    def close(self) -> None:
        self._q.put(None)

    def _publish(self, idx: int, text: str) -> None:
        def apply() -> None:
            while len(self.texts) <= idx:
                self.texts.append("")
            self.texts[idx] = text
            self._on_update()

        with contextlib.suppress(RuntimeError):  # the loop may be closed at the end of a call
            self._loop.call_soon_threadsafe(apply)

    def _run(self) -> None:
        try:
            dec = _decoder()
        except Exception:
            log.exception("phone live STT: pocketsphinx failed to start; phrase waits will time out")
            return

        # Whole-utterance decodes (full_utt) rather than frame-by-frame streaming: pocketsphinx's live
        # cepstral normalisation garbles the first words of each utterance, which is where phrases are.
        def decode(audio: bytes) -> str:
            dec.start_utt()
            dec.process_raw(audio, full_utt=True)
            dec.end_utt()
            hyp = dec.hyp()
            return hyp.hypstr if hyp is not None else ""

        window = _REDECODE_WINDOW_S * 16_000 * 2
        buf = bytearray()
        in_utt = False
        silent = n = 0
        idx = -1
        preroll: deque[bytes] = deque(maxlen=_PREROLL_FRAMES)
        while True:
            item = self._q.get()
            if item is None:
                break
            pcm, voiced = item
            pcm = resample(pcm, self.rate, 16_000)
            if not in_utt:
                if not voiced:
                    preroll.append(pcm)
                    continue
                in_utt, silent, n = True, 0, 0
                idx += 1
                buf = bytearray(b"".join(preroll))
                preroll.clear()
            buf += pcm
            n += 1
            silent = 0 if voiced else silent + 1
            if silent >= _END_SILENT_FRAMES:
                in_utt = False
                self._publish(idx, decode(bytes(buf)))
            elif n % _REDECODE_EVERY_FRAMES == 0:
                self._publish(idx, decode(bytes(buf[-window:])))
