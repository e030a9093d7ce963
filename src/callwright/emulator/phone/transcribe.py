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
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from rapidfuzz import fuzz

from callwright.emulator.phone.audio import resample

log = logging.getLogger(__name__)

PHRASE_MATCH_SCORE = 80.0
_END_SILENT_FRAMES = 40  # 800 ms of silence ends a live utterance (sentence pauses stay inside)
_CHECK_EVERY_FRAMES = 10  # read the partial hypothesis five times a second
# The first utterance is held until 1 s of it (or all of it, if shorter) can estimate the cepstral
# mean. Measured on 15 espeak greetings, how often the first words survived is erratic in the
# estimate's length (1 s: 10/15, 2 s: 0/15, 2.5 s: 14/15, 4 s: 14/15; a flite greeting lost its
# phrase at 4 s); longer holds also delay partials, and re-decoding the first utterance at its end
# was a CPU burst that delayed the event loop, so 1 s it is.
_PRIME_FRAMES = 50
_FRAME_BYTES = 640  # 20 ms at 16 kHz
# Transcripts and the first live utterance's final take the mean from up to 4 s of the utterance:
# longer estimates are steadier, but the batch pass holds the GIL ~20 ms per second of audio.
_TRANSCRIPT_PRIME_BYTES = 4 * 16_000 * 2
_PRIME_SEARCH = "_cmn_prime"
_IDLE_POLL_S = 0.1
_PREROLL_FRAMES = 10  # soft word onsets fall below the voicing floor; feed the 200 ms before it too


def _decoder():  # type: ignore[no-untyped-def]
    from pocketsphinx import Decoder

    # No second passes (fwdflat, bestpath): they run inside end_utt and hold the GIL ~0.5 s on a
    # 10 s utterance, stalling an event loop that shares the process (the server's paced playback).
    dec = Decoder(samprate=16_000, loglevel="FATAL", fwdflat=False, bestpath=False)
    dec.add_keyphrase(_PRIME_SEARCH, "hello")
    return dec


def _prime_cmn(dec: Any, audio: bytes) -> None:
    """Set the decoder's cepstral mean from ``audio`` (a batch estimate) without decoding it.

    Live cepstral mean normalisation starts from a generic mean and garbles the first words, which is
    where phrases are. A whole-utterance pass computes the mean from the audio itself; running it
    under a keyphrase search rather than the LM costs ~20 ms per second of audio instead of ~150.
    """
    lm_search = dec.current_search()
    dec.activate_search(_PRIME_SEARCH)
    try:
        dec.start_utt()
        dec.process_raw(audio, full_utt=True)
        dec.end_utt()
    finally:
        dec.activate_search(lm_search)


def _feed(dec: Any, audio: bytes) -> None:
    # In frame-sized pieces, yielding the GIL after each: pocketsphinx keeps it for the whole of each
    # call, and a tight loop of calls would win it back before a waiting event loop gets a turn.
    for i in range(0, len(audio), _FRAME_BYTES):
        dec.process_raw(audio[i : i + _FRAME_BYTES])
        time.sleep(0)


class AgentTranscriber:
    """End-of-call transcription with one pocketsphinx decoder, built on first use and then reused.

    A decoder costs ~0.3 s and ~90 MB to build, so a benchmark running hundreds of calls shares one;
    the lock serialises calls because a decoder is not thread-safe. Blocking: run it in a thread.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._dec: Any = None
        self.decoders_built = 0

    def transcribe(self, pcm: bytes, rate: int, spans: list[tuple[int, int]]) -> list[str]:
        """Decode byte spans of one mono s16le track."""
        if not spans:
            return []
        with self._lock:
            if self._dec is None:
                self._dec = _decoder()
                self.decoders_built += 1
            dec = self._dec
            out = []
            for a, b in spans:
                audio = resample(pcm[a:b], rate, 16_000)
                _prime_cmn(dec, audio[:_TRANSCRIPT_PRIME_BYTES])
                dec.start_utt()
                _feed(dec, audio)
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
        self._q: queue.Queue[tuple[bytes, bool, float] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="phone-live-stt", daemon=True)
        self._thread.start()

    def feed(self, pcm: bytes, voiced: bool) -> None:
        """One played 20 ms agent frame. Dry ticks (nothing played) are not fed: a pause in feeding
        as long as the end-of-utterance silence ends the utterance too."""
        self._q.put((pcm, voiced, time.monotonic()))

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
        # Frames are decoded as they arrive (bounded work per second of audio, no growing re-decodes).
        # The first seconds of agent audio prime the cepstral mean before they are decoded; later
        # utterances inherit the mean the decoder keeps across utterances.
        primed = False
        held: list[bytes] = []  # the first utterance's frames, until they can prime the mean
        in_utt = False
        silent = n = 0
        idx = -1
        preroll: deque[bytes] = deque(maxlen=_PREROLL_FRAMES)

        def publish_partial() -> None:
            hyp = dec.hyp()
            self._publish(idx, hyp.hypstr if hyp is not None else "")

        def prime_and_feed() -> None:
            nonlocal primed
            audio = b"".join(held)
            held.clear()
            _prime_cmn(dec, audio)
            primed = True
            dec.start_utt()
            _feed(dec, audio)

        def finish() -> None:
            nonlocal in_utt
            if not primed:
                prime_and_feed()
            in_utt = False
            dec.end_utt()
            publish_partial()

        last_fed = 0.0
        while True:
            try:
                item = self._q.get(timeout=_IDLE_POLL_S)
            except queue.Empty:
                if in_utt and time.monotonic() - last_fed >= _END_SILENT_FRAMES * 0.02:
                    finish()
                continue
            if item is None:
                break
            pcm, voiced, last_fed = item
            pcm = resample(pcm, self.rate, 16_000)
            if not in_utt:
                if not voiced:
                    preroll.append(pcm)
                    continue
                in_utt, silent, n = True, 0, 0
                idx += 1
                lead = b"".join(preroll)
                preroll.clear()
                if primed:
                    dec.start_utt()
                    _feed(dec, lead)
                else:
                    held.append(lead)
            n += 1
            silent = 0 if voiced else silent + 1
            if primed:
                dec.process_raw(pcm)
            else:
                held.append(pcm)
                if n >= _PRIME_FRAMES:
                    prime_and_feed()
            if silent >= _END_SILENT_FRAMES:
                finish()
            elif primed and n % _CHECK_EVERY_FRAMES == 0:
                publish_partial()
        if in_utt and primed:
            dec.end_utt()
