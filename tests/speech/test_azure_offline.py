"""Azure Speech adapters, offline: construction, the SDK's push stream and callbacks, error paths.

Azure cannot be reached from here, so real recognition and synthesis are not exercised; a connection
attempt fails inside the SDK and must come back as a clear error through the adapter's callback queue.
"""

from __future__ import annotations

import time

import pytest

pytest.importorskip("azure.cognitiveservices.speech")

from callwright.config import load_settings
from callwright.speech.azure import (
    AzureRecognizer,
    AzureSpeechOptions,
    AzureSpeechUnavailable,
    AzureSynthesizer,
)
from callwright.speech.base import Recognition, Recognizer, Synthesizer
from callwright.speech.factory import build_engines

FAKE = AzureSpeechOptions(key="0" * 32, region="westeurope")


def test_options_name_missing_settings() -> None:
    with pytest.raises(AzureSpeechUnavailable, match="AZURE_SPEECH_KEY"):
        AzureSpeechOptions(key=None, region="westeurope").speech_config()
    with pytest.raises(AzureSpeechUnavailable, match="AZURE_SPEECH_REGION"):
        AzureSpeechOptions(key="k").speech_config()
    config = AzureSpeechOptions(key="k", endpoint="wss://127.0.0.1:9/stt", language="fr-FR").speech_config()
    assert config.speech_recognition_language == "fr-FR"


def test_factory_refuses_azure_without_key() -> None:
    with pytest.raises(AzureSpeechUnavailable, match="AZURE_SPEECH_KEY"):
        build_engines(load_settings(stt_engine="azure"))
    engines = build_engines(
        load_settings(stt_engine="azure", tts_engine="azure", azure_speech_key="k", azure_speech_region="westeurope")
    )
    assert engines.stats()["engines"]["stt"] == "azure"


def test_recognizer_connection_failure_arrives_via_callback() -> None:
    rec = AzureRecognizer(FAKE, final_timeout=1.0)
    assert isinstance(rec, Recognizer)
    rec.configure(["what are your opening hours", "claim status"])
    rec.start_utterance()
    assert rec._stream is not None and rec._recognizer is not None
    deadline = time.monotonic() + 30
    result = None
    while rec.last_error is None and time.monotonic() < deadline:
        result = rec.push(bytes(640)) or result  # written into the SDK's PushAudioInputStream
        time.sleep(0.02)
    assert rec.last_error is not None and "canceled" in rec.last_error
    assert result is None  # no made-up text
    assert rec._recognizer is None  # the failed session was torn down
    assert rec.push(bytes(640)) is None  # no reconnect storm, no exception mid-utterance
    assert rec.end_utterance() is None
    rec.reset()
    assert rec.last_error is None
    rec.close()


def test_recognizer_queue_contract() -> None:
    """What the SDK callbacks enqueue (from their threads) is what the lane gets back, in order:
    partials collapse to the newest, finals are never dropped."""
    rec = AzureRecognizer(FAKE)
    for item in (Recognition("what", False), Recognition("what are", False)):
        rec._events.put(item)
    assert rec._drain() == Recognition("what are", False)
    final = Recognition("what are your hours", True, None, 1.0)
    rec._events.put(Recognition("what are your", False))
    rec._events.put(final)
    rec._events.put(Recognition("and", False))
    assert rec._drain() == final
    assert rec.end_utterance() is None  # a partial with no session behind it never becomes a final
    rec.close()


def test_synthesizer_error_is_clear() -> None:
    synth = AzureSynthesizer(FAKE, timeout=30)
    assert isinstance(synth, Synthesizer)
    chunks: list[bytes] = []
    with pytest.raises((RuntimeError, TimeoutError), match="Azure synthesis"):
        synth.synthesize("Hello & welcome <caller>", chunks.append)  # type: ignore[arg-type]
    assert chunks == []
    assert synth.synthesize("  ", lambda c: True) is True
    assert "&amp;" in synth._ssml("a & b", "en-US-AvaMultilingualNeural")
    synth.close()
