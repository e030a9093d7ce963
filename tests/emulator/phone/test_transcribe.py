"""The phone's pocketsphinx use: live phrase spotting on agent speech, one reused decoder.

The agent speech here is flite's natural voice: pocketsphinx decodes the server's default espeak voice
unreliably (the greeting's first words came through in about 10 of 15 espeak takes, because espeak varies
slightly from take to take), so a phrase wait on espeak audio is documented as best-effort, not asserted.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from callwright.emulator.phone.audio import flite_say_blocking, frame_is_voiced
from callwright.emulator.phone.transcribe import AgentTranscriber, LiveSpotter, phrase_heard
from callwright.speech.tts_espeak import EspeakSynthesizer

GREETING = (
    "Thank you for calling Contoso Insurance, hello Jordan. I can help with our opening hours, "
    "our office address, or the status of a claim. How can I help you today?"
)
FRAME = 640  # 20 ms at 16 kHz


def _espeak(text: str) -> bytes:
    chunks: list[bytes] = []
    EspeakSynthesizer().synthesize(text, lambda c: chunks.append(c) or True)
    return b"".join(chunks)


async def _spot(pcm: bytes, utterances: int) -> list[str]:
    """Feed ``pcm`` as 20 ms frames; return the texts once ``utterances`` finals are in, or on timeout."""
    spotter = LiveSpotter(16_000, asyncio.get_running_loop(), lambda: None)
    silence = b"\0" * FRAME
    try:
        for _ in range(utterances):
            for i in range(0, len(pcm), FRAME):
                frame = pcm[i : i + FRAME]
                spotter.feed(frame, frame_is_voiced(frame))
            for _ in range(60):  # 1.2 s of silence ends the utterance
                spotter.feed(silence, False)
        spotter.feed(silence, False)
        spotter.close()
        async with asyncio.timeout(90):
            while spotter._thread.is_alive():
                await asyncio.to_thread(spotter._thread.join, 0.2)
        await asyncio.sleep(0)  # let the last call_soon_threadsafe update land
        return list(spotter.texts)
    finally:
        spotter.close()


def _spoken(text: str, cache: Path) -> bytes:
    return flite_say_blocking(text, "slt", cache)


async def test_live_spotter_hears_the_phrase_in_a_spoken_greeting(tmp_path: Path) -> None:
    pcm = await asyncio.to_thread(_spoken, GREETING, tmp_path)
    texts = await _spot(pcm, utterances=2)
    assert len(texts) == 2, texts
    # the first utterance of a fresh decoder is where phrase waits usually look: it must be primed
    assert phrase_heard("thank you for calling", texts[0]), texts
    assert phrase_heard("thank you for calling", texts[1]), texts
    assert not phrase_heard("please hold while I transfer you", texts[0]), texts


async def test_live_spotter_publishes_partials_during_long_speech(tmp_path: Path) -> None:
    pcm = await asyncio.to_thread(_spoken, GREETING, tmp_path)
    seen: list[str] = []
    loop = asyncio.get_running_loop()
    spotter: LiveSpotter | None = None

    def on_update() -> None:
        assert spotter is not None
        seen.append(spotter.texts[0])

    spotter = LiveSpotter(16_000, loop, on_update)
    for i in range(0, len(pcm), FRAME):
        spotter.feed(pcm[i : i + FRAME], frame_is_voiced(pcm[i : i + FRAME]))
    spotter.close()
    async with asyncio.timeout(90):
        while spotter._thread.is_alive():
            await asyncio.to_thread(spotter._thread.join, 0.2)
    await asyncio.sleep(0)
    # several growing partial hypotheses, so a phrase matches while the agent is still talking
    assert len(seen) >= 5, seen
    assert any(phrase_heard("thank you for calling", s) for s in seen[: len(seen) // 2]), seen


async def test_end_of_call_transcriber_reuses_its_decoder() -> None:
    pcm = await asyncio.to_thread(_espeak, "We are open from nine to five, Monday to Friday.")
    transcriber = AgentTranscriber()
    assert transcriber.decoders_built == 0  # built lazily: calls without transcripts pay nothing
    spans = [(0, len(pcm))]
    first, second, third = await asyncio.gather(
        *(asyncio.to_thread(transcriber.transcribe, pcm, 16_000, spans) for _ in range(3))
    )
    assert transcriber.decoders_built == 1
    assert first == second == third
    assert "we are open" in first[0], first  # espeak decodes poorly past the first words
    assert await asyncio.to_thread(transcriber.transcribe, pcm, 16_000, []) == []
    assert transcriber.decoders_built == 1


async def test_a_pause_in_played_audio_ends_the_utterance() -> None:
    # The media link feeds only played frames: when the server sends nothing, nothing is fed, and
    # that gap must still split the greeting from the next reply.
    greeting = await asyncio.to_thread(_espeak, "Thank you for calling Contoso Insurance.")
    reply = await asyncio.to_thread(_espeak, "Please say or key in your policy number.")
    split = asyncio.Event()
    spotter: LiveSpotter | None = None

    def on_update() -> None:
        assert spotter is not None
        if len(spotter.texts) >= 2:
            split.set()

    spotter = LiveSpotter(16_000, asyncio.get_running_loop(), on_update)
    try:
        for i in range(0, len(greeting), FRAME):
            spotter.feed(greeting[i : i + FRAME], frame_is_voiced(greeting[i : i + FRAME]))
        await asyncio.sleep(1.5)  # dry: no frames at all
        for i in range(0, len(reply), FRAME):
            spotter.feed(reply[i : i + FRAME], frame_is_voiced(reply[i : i + FRAME]))
        async with asyncio.timeout(60):
            await split.wait()
        first = spotter.texts[0]
        # the greeting was final before the reply began, so the reply's words are not in it
        assert 0 < len(first.split()) <= 10, spotter.texts
    finally:
        spotter.close()
