"""Whole turns through the unmodified SDKs: azure-ai-voicelive and openai (GA and beta) against the server."""

from __future__ import annotations

import base64
import time
from typing import Any

import numpy as np
import openai
import pytest
from azure.ai.voicelive.aio import connect
from azure.core.credentials import AzureKeyCredential
from rt_support import CLIENTS, SERVER_VAD, Client, Events, silence, stream_audio, transcribe_reply, wav16

from callwright.emulator.phone.transcribe import phrase_heard
from callwright.speech.resample import resample

HOURS_ANSWER = "We're open Monday to Friday"


async def test_voicelive_sdk_turn_with_natural_speech(rt: tuple[str, Any]) -> None:
    url, _ = rt
    async with connect(
        endpoint=url, credential=AzureKeyCredential("any"), model="callwright-scenario:insurance"
    ) as conn:
        events = Events(conn)
        await conn.send(
            {
                "type": "session.update",
                "session": {
                    "input_audio_sampling_rate": 16000,
                    "output_audio_format": "pcm16_16000hz",
                    "input_audio_transcription": {"model": "azure-speech"},
                    "turn_detection": {"type": "server_vad", "silence_duration_ms": 500},
                },
            }
        )
        updated = (await events.wait("session.updated"))[0]
        assert updated.session["input_audio_sampling_rate"] == 16000
        assert updated.session["output_audio_format"] == "pcm16_16000hz"
        speech = wav16("hours")
        streamed_at = time.monotonic()
        await stream_audio(conn.send, speech + silence(1200))
        done = (await events.wait("response.done"))[0]
        finished_at = time.monotonic()

        started = events.of("input_audio_buffer.speech_started")[0]
        stopped = events.of("input_audio_buffer.speech_stopped")[0]
        # appended-audio milliseconds: speech begins within the first second of the 2.45 s recording
        assert 0 <= started.audio_start_ms < 1000
        assert 1800 <= stopped.audio_end_ms <= len(speech) // 32 + 1200
        assert stopped.item_id == started.item_id
        transcript = (await events.wait("conversation.item.input_audio_transcription.completed"))[0]
        assert "opening hours" in transcript.transcript
        assert transcript.item_id == started.item_id

        assert done.response.status == "completed"
        spoken = events.of("response.audio_transcript.done")[0].transcript
        assert spoken.startswith(HOURS_ANSWER)
        deltas = events.of("response.audio.delta")
        assert deltas and all(isinstance(d.delta, bytes) for d in deltas)  # the SDK decodes base64
        audio = b"".join(d.delta for d in deltas)
        audio_s = len(audio) / 2 / 16_000
        assert audio_s > 4.0  # a long sentence, at 16 kHz as asked
        # faster than real time: the reply's audio took less wall time to arrive than it lasts
        first_delta = events.items.index(deltas[0])
        assert finished_at - streamed_at < audio_s + 5.0
        assert first_delta > events.items.index(stopped)
        heard = transcribe_reply(audio, 16_000)
        assert any(phrase_heard(w, heard) for w in ("monday", "friday", "saturday", "morning", "evening")), heard
        order = events.types()
        chain = [
            "input_audio_buffer.speech_started",
            "input_audio_buffer.speech_stopped",
            "input_audio_buffer.committed",
            "response.created",
            "response.output_item.added",
            "response.content_part.added",
            "response.audio_transcript.delta",
            "response.audio.delta",
            "response.audio.done",
            "response.audio_transcript.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.done",
        ]
        positions = [order.index(kind) for kind in chain]
        assert positions == sorted(positions), order
        await events.close()


async def test_openai_ga_turn_16k(rt: tuple[str, Any]) -> None:
    url, _ = rt
    client = openai.AsyncOpenAI(api_key="sk-local", base_url=f"{url}/v1")
    async with client.realtime.connect(model="callwright-scenario:insurance") as conn:
        events = Events(conn)
        await conn.send(
            {
                "type": "session.update",
                "session": {
                    "type": "realtime",
                    "output_modalities": ["audio"],
                    "audio": {
                        "input": {
                            "format": {"type": "audio/pcm", "rate": 16000},
                            "transcription": {"model": "gpt-4o-mini-transcribe"},
                            "turn_detection": {"type": "server_vad", "silence_duration_ms": 500},
                        },
                        "output": {"format": {"type": "audio/pcm", "rate": 16000}, "voice": "marin"},
                    },
                },
            }
        )
        updated = (await events.wait("session.updated"))[0]
        assert updated.session.audio.input.format.rate == 16000
        await stream_audio(conn.send, wav16("office") + silence(1200))
        done = (await events.wait("response.done"))[0]
        assert done.response.status == "completed"
        assert events.of("conversation.item.added") and events.of("conversation.item.done")
        assert not events.of("conversation.item.created")  # GA names only
        completed = events.of("conversation.item.input_audio_transcription.completed")
        assert completed and "office" in completed[0].transcript
        assert completed[0].usage is not None
        deltas = events.of("response.output_audio.delta")
        assert deltas and isinstance(deltas[0].delta, str)  # base64 in the openai SDK
        spoken = events.of("response.output_audio_transcript.done")[0].transcript
        assert "100 Harbor Street" in spoken
        assert events.of("response.output_item.done")[0].item.content[0].type == "output_audio"
        await events.close()


@pytest.mark.parametrize("client", CLIENTS, ids=lambda c: c.dialect)
async def test_speech_turn_every_client(rt: tuple[str, Any], client: Client) -> None:
    """The same natural-speech turn through each SDK and dialect: VAD events, the caller's transcription,
    and a spoken reply whose transcript is the scenario's answer and whose audio says it."""
    url, _ = rt
    async with client.connect(url) as conn:
        events = Events(conn)
        await conn.send({"type": "session.update", "session": client.session(vad=SERVER_VAD, transcription=True)})
        await events.wait("session.updated")
        speech = client.speech("hours")
        await client.stream(conn, speech + client.silence(1200))
        done = (await events.wait("response.done"))[0]
        assert done.response.status == "completed"
        started = events.of("input_audio_buffer.speech_started")[0]
        stopped = events.of("input_audio_buffer.speech_stopped")[0]
        assert stopped.item_id == started.item_id
        assert 0 <= started.audio_start_ms < stopped.audio_end_ms
        transcript = (await events.wait("conversation.item.input_audio_transcription.completed"))[0]
        assert "opening hours" in transcript.transcript
        assert transcript.item_id == started.item_id
        spoken = events.of(client.ev("response.audio_transcript.done"))[0].transcript
        assert spoken.startswith(HOURS_ANSWER)
        deltas = events.of(client.ev("response.audio.delta"))
        assert events.items.index(deltas[0]) > events.items.index(stopped)
        audio = client.audio(deltas)
        assert len(audio) / 2 / client.out_rate > 4.0  # a long sentence at the rate the dialect asked for
        heard = transcribe_reply(audio, client.out_rate)
        assert any(phrase_heard(w, heard) for w in ("monday", "friday", "saturday", "morning", "evening")), heard
        assert not events.of("error")
        await events.close()


def _spectrum_centroid(pcm: bytes, rate: int) -> tuple[float, float]:
    """(spectral centroid in Hz, share of energy above 8.2 kHz)."""
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    power = np.abs(np.fft.rfft(x * np.hanning(x.size))) ** 2
    freqs = np.fft.rfftfreq(x.size, 1 / rate)
    centroid = float((freqs * power).sum() / power.sum())
    return centroid, float(power[freqs > 8200].sum() / power.sum())


async def _reply_audio(url: str, rate: int, beta: bool) -> bytes:
    client = openai.AsyncOpenAI(
        api_key="sk-local", base_url=f"{url}/v1", websocket_base_url=f"{url.replace('http', 'ws')}/v1"
    )
    realtime = client.beta.realtime if beta else client.realtime
    async with realtime.connect(model="callwright-scenario:insurance") as conn:
        events = Events(conn)
        if beta:
            await conn.send({"type": "session.update", "session": {"turn_detection": None}})
        else:
            await conn.send(
                {
                    "type": "session.update",
                    "session": {
                        "type": "realtime",
                        "audio": {
                            "input": {"turn_detection": None},
                            "output": {"format": {"type": "audio/pcm", "rate": rate}},
                        },
                    },
                }
            )
        await events.wait("session.updated")
        # manual turn: 24 kHz input (the beta protocol's only rate), commit, response.create
        speech = resample(wav16("hours"), 16_000, 24_000)
        await conn.send({"type": "input_audio_buffer.append", "audio": base64.b64encode(speech).decode()})
        await conn.send({"type": "input_audio_buffer.commit"})
        await events.wait("input_audio_buffer.committed")
        await conn.send({"type": "response.create"})
        done = (await events.wait("response.done"))[0]
        assert done.response.status == "completed"
        name = "response.audio.delta" if beta else "response.output_audio.delta"
        assert not events.of("input_audio_buffer.speech_started")  # turn_detection null: no VAD events
        audio = b"".join(base64.b64decode(d.delta) for d in events.of(name))
        await events.close()
        return audio


async def test_24k_output_is_resampled_not_relabelled(rt: tuple[str, Any]) -> None:
    """The same reply at 16 kHz (GA session) and 24 kHz (beta default): same length in seconds and the
    same spectrum in Hz; a 16 kHz stream merely labelled 24 kHz would be 1.5× short and 1.5× higher."""
    url, _ = rt
    at16 = await _reply_audio(url, 16_000, beta=False)
    at24 = await _reply_audio(url, 24_000, beta=True)
    seconds16, seconds24 = len(at16) / 32_000, len(at24) / 48_000
    assert abs(seconds24 - seconds16) < 0.1, (seconds16, seconds24)
    c16, _ = _spectrum_centroid(at16, 16_000)
    c24, above = _spectrum_centroid(at24, 24_000)
    assert abs(c24 - c16) / c16 < 0.05, (c16, c24)
    assert above < 0.001  # no imaging above the 16 kHz source's band


async def test_azure_semantic_vad_uses_the_turn_detector(rt: tuple[str, Any]) -> None:
    """azure_semantic_vad: a short pause asks the project's end-of-turn detector how long to wait."""
    url, app = rt
    detector = app.state.realtime.engines.turn_detector
    assert detector is not None
    before = detector.evaluations
    async with connect(endpoint=url, credential=AzureKeyCredential("k"), model="callwright-scenario:insurance") as conn:
        events = Events(conn)
        await conn.send(
            {
                "type": "session.update",
                "session": {
                    "input_audio_sampling_rate": 16000,
                    "output_audio_format": "pcm16_16000hz",
                    "input_audio_transcription": {"model": "azure-speech"},
                    "turn_detection": {"type": "azure_semantic_vad", "silence_duration_ms": 500},
                },
            }
        )
        await events.wait("session.updated")
        await stream_audio(conn.send, wav16("claim") + silence(2500))
        done = (await events.wait("response.done"))[0]
        assert done.response.status == "completed"
        assert len(events.of("input_audio_buffer.speech_stopped")) == 1  # one turn, however it paused
        transcript = events.of("conversation.item.input_audio_transcription.completed")[0].transcript
        assert "claim" in transcript
        assert detector.evaluations > before
        await events.close()


async def test_voicelive_g711_ulaw_both_ways(rt: tuple[str, Any]) -> None:
    """μ-law 8 kHz in and out (a telephone codec): the turn is understood and the reply is speech."""
    from callwright.realtime.audio import g711_decode, g711_encode

    url, _ = rt
    async with connect(endpoint=url, credential=AzureKeyCredential("k"), model="callwright-scenario:insurance") as conn:
        events = Events(conn)
        await conn.send({"type": "session.update", "session": {"input_audio_format": "g711_ulaw",
                         "output_audio_format": "g711_ulaw", "input_audio_transcription": {"model": "azure-speech"}}})  # fmt: skip
        await events.wait("session.updated")
        ulaw = g711_encode(resample(wav16("office") + silence(1200), 16_000, 8_000), "ulaw")
        for i in range(0, len(ulaw), 160):  # 20 ms of 8 kHz μ-law
            await conn.send(
                {"type": "input_audio_buffer.append", "audio": base64.b64encode(ulaw[i : i + 160]).decode()}
            )
        await events.wait("response.done")
        # narrowband speech is recognised less well than 16 kHz: what matters here is that it was heard
        assert events.of("conversation.item.input_audio_transcription.completed")[0].transcript.strip()
        said = events.of("response.audio_transcript.done")[0].transcript
        audio = b"".join(d.delta for d in events.of("response.audio.delta"))
        seconds = len(audio) / 8000  # one byte a sample
        assert seconds > 0.2 * len(said.split())  # roughly the length of what was said
        heard = transcribe_reply(g711_decode(audio, "ulaw"), 8_000)
        assert len(heard.split()) >= len(said.split()) // 3, (said, heard)  # decodable speech, not noise
        await events.close()
