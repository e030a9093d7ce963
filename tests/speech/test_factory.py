from __future__ import annotations

import pytest

from callwright.config import load_settings
from callwright.speech.factory import build_engines
from callwright.speech.instant import InstantRecognizer, InstantSynthesizer
from callwright.speech.stt_pocketsphinx import PocketsphinxRecognizer
from callwright.speech.tts_espeak import EspeakSynthesizer, TtsUnavailable
from callwright.speech.tts_piper import piper_available
from callwright.speech.vad import SileroGatedVad, SpeechSegmenter

from .conftest import frames_of, read_wav


async def test_default_engines_from_settings() -> None:
    engines = build_engines(load_settings(stt_pool_size=2, tts_pool_size=3, stt_pool_warm=1, tts_pool_warm=1))
    engines.start()
    await engines.stt_pool.wait_warm()
    await engines.tts_pool.wait_warm()
    stats = engines.stats()
    assert stats["stt"]["idle"] == 1 and stats["stt"]["max_size"] == 2
    assert stats["tts"]["idle"] == 1 and stats["tts"]["max_size"] == 3
    async with engines.stt_pool.lease() as stt, engines.tts_pool.lease() as tts:
        assert isinstance(stt, PocketsphinxRecognizer)
        assert isinstance(tts, EspeakSynthesizer)
    assert isinstance(engines.new_vad(), SileroGatedVad)
    seg = engines.new_segmenter()
    assert isinstance(seg, SpeechSegmenter)
    kinds = [ev.kind for f in frames_of(read_wav("yes.wav")) if (ev := seg.feed(f)) is not None]
    assert kinds == ["onset", "end"]
    await engines.close()
    assert engines.stats()["stt"]["size"] == 0


async def test_instant_engines_from_settings() -> None:
    engines = build_engines(load_settings(stt_engine="instant", tts_engine="instant"), instant_transcript="yes")
    async with engines.stt_pool.lease() as stt, engines.tts_pool.lease() as tts:
        assert isinstance(stt, InstantRecognizer) and isinstance(tts, InstantSynthesizer)
        stt.start_utterance()
        final = stt.end_utterance()
        assert final is not None and final.text == "yes"
    await engines.close()


def test_unavailable_engines_fail_at_selection(monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as m:  # piper-tts is optional: simulate a machine without it
        import importlib.util

        real_find_spec = importlib.util.find_spec
        m.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "piper" else real_find_spec(name))
        assert not piper_available()
        with pytest.raises(TtsUnavailable, match="piper"):
            build_engines(load_settings(tts_engine="piper"))
    with pytest.raises(TtsUnavailable, match=r"not a Piper \.onnx voice"):
        build_engines(load_settings(tts_engine="piper", tts_voice="/nonexistent/voice.onnx"))
    with pytest.raises(TtsUnavailable, match="no voice"):
        build_engines(load_settings(tts_voice="xx-nothing"))
