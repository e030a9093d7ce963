"""The other backends and options: the LLM orchestrator (a local OpenAI-compatible server), whisper
finals, the Azure OpenAI SDK paths, VAD options (create_response / interrupt_response false)."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import openai
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from rt_support import Events, b64, realtime_server, silence, stream_audio, wav16

from support.servers import running_app


def _chunk(delta: dict[str, Any], finish: str | None = None) -> str:
    body = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}  # fmt: skip
    return f"data: {json.dumps(body)}\n\n"


def _llm_stand_in(requests: list[dict[str, Any]]) -> FastAPI:
    """Chat completions: first a verify_policy tool call, then (given the tool result) a spoken reply."""
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def complete(request: Request) -> StreamingResponse:
        body = await request.json()
        requests.append(body)

        async def stream() -> AsyncIterator[str]:
            yield _chunk({"role": "assistant", "content": ""})
            if not any(m.get("role") == "tool" for m in body["messages"]):
                head = {"index": 0, "id": "tc1", "type": "function",
                        "function": {"name": "verify_policy", "arguments": '{"policy_number": "1234"}'}}  # fmt: skip
                yield _chunk({"tool_calls": [head]})
                yield _chunk({}, "tool_calls")
            else:
                yield _chunk({"content": "Thanks Jordan, you are verified. "})
                yield _chunk({"content": "How can I help with your claim?"})
                yield _chunk({}, "stop")
            yield "data: [DONE]\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream")

    return app


async def test_llm_orchestrator_behind_the_realtime_protocol() -> None:
    requests: list[dict[str, Any]] = []
    stand_in = running_app(_llm_stand_in(requests))
    async with (
        stand_in as llm_url,
        realtime_server(agent_engine="llm", openai_api_key="sk-x", openai_base_url=f"{llm_url}/v1") as (url, _),
    ):
        client = openai.AsyncOpenAI(api_key="sk-local", base_url=f"{url}/v1")
        async with client.realtime.connect(model="callwright-scenario:insurance") as conn:
            events = Events(conn)
            tool = {"type": "function", "name": "verify_policy", "description": "verify",
                    "parameters": {"type": "object", "properties": {"policy_number": {"type": "string"}}}}  # fmt: skip
            await conn.send({"type": "session.update", "session": {"type": "realtime", "tools": [tool]}})
            await events.wait("session.updated")
            await conn.send({"type": "conversation.item.create", "item": {"type": "message", "role": "user",
                             "content": [{"type": "input_text", "text": "my policy is 1234"}]}})  # fmt: skip
            await conn.send({"type": "response.create"})
            done = (await events.wait("response.done"))[0]
            call = done.response.output[-1]
            assert call.type == "function_call" and call.name == "verify_policy"
            await conn.send({"type": "conversation.item.create", "item": {"type": "function_call_output",
                             "call_id": call.call_id, "output": '{"found": true, "first_name": "Jordan"}'}})  # fmt: skip
            await conn.send({"type": "response.create"})
            final = (await events.wait("response.done", 2))[-1]
            assert final.response.status == "completed"
            spoken = events.of("response.output_audio_transcript.done")[-1].transcript
            assert "you are verified" in spoken
            await events.close()
    # the model saw the client's output as the tool result
    tool_messages = [m for m in requests[-1]["messages"] if m.get("role") == "tool"]
    assert tool_messages and "Jordan" in tool_messages[0]["content"]


async def test_whisper_finals_when_configured() -> None:
    async with realtime_server(stt_engine="whisper") as (url, app):
        assert app.state.realtime.engines.transcriber is not None
        client = openai.AsyncOpenAI(api_key="sk-local", base_url=f"{url}/v1")
        async with client.realtime.connect(model="callwright-scenario:insurance") as conn:
            events = Events(conn)
            await conn.send({"type": "session.update", "session": {"type": "realtime", "audio": {"input": {
                "format": {"type": "audio/pcm", "rate": 16000}, "transcription": {"model": "whisper-1"}}}}})  # fmt: skip
            await events.wait("session.updated")
            await stream_audio(conn.send, wav16("person") + silence(1200))
            completed = (await events.wait("conversation.item.input_audio_transcription.completed", timeout=60))[0]
            assert "person" in completed.transcript.lower()
            await events.wait("response.done", timeout=60)
            assert "connecting you" in events.of("response.output_audio_transcript.done")[-1].transcript
            await events.close()


async def test_azure_openai_sdk_preview_path(rt: tuple[str, Any]) -> None:
    url, _ = rt
    client = openai.AsyncAzureOpenAI(
        azure_endpoint=url, api_version="2025-04-01-preview", api_key="k",
        websocket_base_url=url.replace("http://", "ws://") + "/openai",
    )  # fmt: skip
    async with client.beta.realtime.connect(model="my-deployment") as conn:
        events = Events(conn)
        created = (await events.wait("session.created"))[0]
        assert created.session.object == "realtime.session"  # the beta (preview) shape
        await conn.send({"type": "response.create", "response": {"modalities": ["text"]}})
        await events.wait("response.done")
        assert events.of("response.text.done")[0].text.startswith("Thank you for calling Contoso Insurance")
        await events.close()


async def test_vad_without_auto_response_or_interruption(rt: tuple[str, Any]) -> None:
    url, _ = rt
    client = openai.AsyncOpenAI(api_key="sk-local", base_url=f"{url}/v1")
    async with client.realtime.connect(model="callwright-scenario:insurance") as conn:
        events = Events(conn)
        vad = {"type": "server_vad", "create_response": False, "interrupt_response": False}
        await conn.send({"type": "session.update", "session": {"type": "realtime", "audio": {"input": {
            "format": {"type": "audio/pcm", "rate": 16000}, "turn_detection": vad}}}})  # fmt: skip
        await events.wait("session.updated")
        await stream_audio(conn.send, wav16("hours") + silence(1000))
        await events.wait("conversation.item.added")
        await asyncio.sleep(0.5)
        assert not events.of("response.created")  # create_response false: the client decides
        await conn.send({"type": "response.create"})
        await events.wait("response.output_audio.delta")
        await conn.send({"type": "input_audio_buffer.append", "audio": b64(wav16("office") + silence(800))})
        await events.wait("input_audio_buffer.speech_started", 2)
        done = (await events.wait("response.done"))[0]
        assert done.response.status == "completed"  # speech did not interrupt it
        await events.close()


async def test_scenario_chosen_by_instructions(rt: tuple[str, Any]) -> None:
    url, _ = rt
    client = openai.AsyncOpenAI(api_key="sk-local", base_url=f"{url}/v1")
    async with client.realtime.connect(model="gpt-realtime") as conn:
        events = Events(conn)
        await conn.send({"type": "session.update",
                         "session": {"type": "realtime", "instructions": "Use callwright-scenario:nowhere"}})  # fmt: skip
        error = (await events.wait("error"))[0]
        assert error.error.code == "invalid_value" and "nowhere" in error.error.message
        await conn.send({"type": "session.update", "session": {"type": "realtime",
                         "instructions": "You are the clinic. callwright-scenario:clinic", "output_modalities": ["text"]}})  # fmt: skip
        await events.wait("session.updated")
        await conn.send({"type": "response.create"})
        await events.wait("response.done")
        assert events.of("response.output_text.done")[0].text.startswith(
            "Thank you for calling Riverside Family Clinic"
        )
        await events.close()


async def _greeting_audio(url: str, voice: str) -> bytes:
    client = openai.AsyncOpenAI(api_key="sk-local", base_url=f"{url}/v1")
    async with client.realtime.connect(model="callwright-scenario:insurance") as conn:
        events = Events(conn)
        await conn.send({"type": "session.update", "session": {"type": "realtime", "audio": {"output": {
            "format": {"type": "audio/pcm", "rate": 16000}, "voice": voice}}}})  # fmt: skip
        await events.wait("session.updated")
        await conn.send({"type": "response.create"})
        await events.wait("response.done")
        audio = b"".join(base64.b64decode(d.delta) for d in events.of("response.output_audio.delta"))
        await events.close()
        return audio


async def test_session_voice_picks_the_engine_voice(rt: tuple[str, Any]) -> None:
    """An espeak-ng voice name in the session is used; an OpenAI voice name falls back to the default."""
    url, _ = rt
    default = await _greeting_audio(url, "marin")
    again = await _greeting_audio(url, "alloy")
    female = await _greeting_audio(url, "en-us+f3")

    def spectrum(pcm: bytes) -> np.ndarray:
        x = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
        frames = x[: len(x) // 512 * 512].reshape(-1, 512)
        mean = np.abs(np.fft.rfft(frames * np.hanning(512), axis=1)).mean(axis=0)
        return mean / mean.sum()

    def distance(a: bytes, b: bytes) -> float:
        return float(np.abs(spectrum(a) - spectrum(b)).sum())

    # both names are unknown to espeak-ng, so both use the configured voice; the female variant differs
    same = distance(default, again)
    other = distance(default, female)
    assert same < 0.15 and other > max(0.25, 2 * same), (same, other)


async def test_user_audio_item_is_transcribed_and_answered(rt: tuple[str, Any]) -> None:
    url, _ = rt
    client = openai.AsyncOpenAI(api_key="sk-local", base_url=f"{url}/v1")
    async with client.realtime.connect(model="callwright-scenario:insurance") as conn:
        events = Events(conn)
        await conn.send({"type": "session.update", "session": {"type": "realtime", "audio": {"input": {
            "format": {"type": "audio/pcm", "rate": 16000}, "transcription": {"model": "whisper-1"},
            "turn_detection": None}}}})  # fmt: skip
        await events.wait("session.updated")
        await conn.send({"type": "conversation.item.create", "item": {"type": "message", "role": "user",
                         "content": [{"type": "input_audio", "audio": b64(wav16("office"))}]}})  # fmt: skip
        added = (await events.wait("conversation.item.added"))[0]
        assert added.item.content[0].audio is None  # not echoed back
        await conn.send({"type": "response.create"})
        await events.wait("response.done")
        completed = events.of("conversation.item.input_audio_transcription.completed")
        assert completed and "office" in completed[0].transcript
        assert "100 Harbor Street" in events.of("response.output_audio_transcript.done")[0].transcript
        await events.close()
