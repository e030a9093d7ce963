"""Handshake (dialect paths, keys, limits), fault injection, release on disconnect, /metrics, frame log."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import websockets
from azure.ai.voicelive.aio import ConnectionError as VoiceLiveConnectionError
from azure.ai.voicelive.aio import connect
from azure.core.credentials import AzureKeyCredential
from rt_support import Events, b64, read_jsonl, realtime_server, silence, wait_until, wav16

from callwright.realtime.server import frame_log_path


def _ws(url: str) -> str:
    return url.replace("http://", "ws://")


async def _status(uri: str, headers: dict[str, str] | None = None) -> int:
    """The HTTP status of a handshake (101 when it was accepted)."""
    try:
        async with websockets.connect(uri, additional_headers=headers or {}, open_timeout=20) as ws:
            await ws.recv()  # session.created
            return 101
    except websockets.exceptions.InvalidStatus as exc:
        return exc.response.status_code


async def test_handshake_auth_paths_and_dialects() -> None:
    async with realtime_server(realtime_api_key="s3cret") as (url, _):
        ws = _ws(url)
        assert await _status(f"{ws}/v1/realtime") == 401
        assert await _status(f"{ws}/v1/realtime", {"api-key": "wrong"}) == 401
        assert await _status(f"{ws}/v1/realtime", {"api-key": "s3cret"}) == 101
        assert await _status(f"{ws}/v1/realtime?api-key=s3cret") == 101
        assert await _status(f"{ws}/openai/realtime?api-version=2025-04-01-preview&deployment=x",
                             {"Authorization": "Bearer s3cret"}) == 101  # fmt: skip
        assert await _status(f"{ws}/not/realtime/at/all", {"api-key": "s3cret"}) == 404
        # the SDKs themselves: VoiceLive under an endpoint prefix, openai GA with its bearer key
        async with connect(endpoint=f"{url}/some/prefix/", credential=AzureKeyCredential("s3cret"), model="m") as conn:
            created = await conn.recv()
            assert created.type == "session.created"
            assert created.session["input_audio_sampling_rate"] == 24000  # VoiceLive's documented default
        with pytest.raises(VoiceLiveConnectionError):
            async with connect(endpoint=url, credential=AzureKeyCredential("nope"), model="m"):
                pass
        client = openai.AsyncOpenAI(api_key="s3cret", base_url=f"{url}/v1")
        async with client.realtime.connect(model="gpt-realtime") as conn:
            created = await conn.recv()
            assert created.type == "session.created" and created.session.type == "realtime"
        beta = openai.AsyncOpenAI(api_key="s3cret", base_url=f"{url}/v1", websocket_base_url=f"{ws}/v1")
        async with beta.beta.realtime.connect(model="gpt-realtime") as conn:
            created = await conn.recv()
            assert created.session.object == "realtime.session"
            assert created.session.input_audio_format == "pcm16"  # the flat beta shape


async def test_session_limit_refuses_cleanly_then_admits() -> None:
    async with realtime_server(realtime_max_sessions=1) as (url, app):
        ws = _ws(url)
        async with websockets.connect(f"{ws}/v1/realtime") as first:
            await first.recv()
            assert await _status(f"{ws}/v1/realtime") == 503
        await wait_until(lambda: not app.state.realtime.sessions)
        assert await _status(f"{ws}/v1/realtime") == 101
        async with httpx.AsyncClient() as http:
            text = (await http.get(f"{url}/metrics")).text
        assert 'callwright_realtime_handshakes_refused_total{reason="full"} 1.0' in text


async def test_disconnect_mid_response_releases_engines_within_a_second() -> None:
    async with realtime_server(realtime_audio_pace=1.0, realtime_audio_burst_ms=0) as (url, app):
        server = app.state.realtime
        client = openai.AsyncOpenAI(api_key="sk-local", base_url=f"{url}/v1")
        async with client.realtime.connect(model="m") as conn:
            events = Events(conn)
            await conn.send({"type": "response.create"})  # the greeting: several seconds of audio
            await events.wait("response.output_audio.delta")
            assert server.engines.stt_pool.stats()["in_use"] == 1
            assert server.engines.tts_pool.stats()["in_use"] == 1
            await events.close()
        await wait_until(
            lambda: server.engines.stt_pool.stats()["in_use"] == 0 and server.engines.tts_pool.stats()["in_use"] == 0
            and not server.sessions,
            timeout=10,
        )  # fmt: skip
        # measured by the server from the socket's close to the engines being handed back
        assert len(server.release_seconds) == 1 and server.release_seconds[0] < 1.0
        async with httpx.AsyncClient() as http:
            text = (await http.get(f"{url}/metrics")).text
        assert "callwright_realtime_sessions_active 0.0" in text
        assert 'callwright_realtime_sessions_total{dialect="ga"} 1.0' in text
        assert 'callwright_realtime_pool{field="in_use",pool="stt"} 0.0' in text


async def test_fault_injection_close_refuse_delay_error() -> None:
    async with realtime_server(realtime_fault_injection=True) as (url, _):
        ws = _ws(url)
        assert await _status(f"{ws}/v1/realtime?fault=refuse") == 503
        client = openai.AsyncOpenAI(api_key="sk-local", base_url=f"{url}/v1")
        # close 1011 mid-response: the openai SDK raises, as against the real service
        with pytest.raises(websockets.exceptions.ConnectionClosedError) as closed:
            async with client.realtime.connect(model="m", extra_query={"fault": "close_mid_response"}) as conn:
                await conn.send({"type": "response.create"})
                async for _event in conn:
                    pass
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011
        # the VoiceLive SDK ends its iteration silently on 1011 (realtime-protocol.md §0.12)
        async with connect(endpoint=url, credential=AzureKeyCredential("k"), model="m",
                           query={"fault": "close_mid_response"}) as vl:  # fmt: skip
            await vl.send({"type": "response.create"})
            seen = [event.type async for event in vl]
            assert "response.audio.delta" in seen and "response.done" not in seen
        # delayed response.done and an injected error, by control event
        async with client.realtime.connect(model="m") as conn:
            events = Events(conn)
            await conn.send({"type": "callwright.fault", "fault": "delay_done", "delay_ms": 800})  # type: ignore[arg-type]
            await conn.send({"type": "callwright.fault", "fault": "error"})  # type: ignore[arg-type]
            error = (await events.wait("error"))[0]
            assert error.error.type == "server_error" and error.error.code == "injected_fault"
            await conn.send({"type": "response.create", "response": {"output_modalities": ["text"]}})
            await events.wait("response.output_text.done")
            text_done_at = time.monotonic()
            await events.wait("response.done")
            assert time.monotonic() - text_done_at >= 0.7
            await events.close()


async def test_faults_are_off_unless_enabled(rt: tuple[str, Any]) -> None:
    url, _ = rt
    assert await _status(f"{_ws(url)}/v1/realtime?fault=refuse") == 101
    client = openai.AsyncOpenAI(api_key="sk-local", base_url=f"{url}/v1")
    async with client.realtime.connect(model="m") as conn:
        events = Events(conn)
        await conn.send({"type": "callwright.fault", "fault": "close_mid_response"})  # type: ignore[arg-type]
        error = (await events.wait("error"))[0]
        assert error.error.code == "invalid_event"
        await events.close()


async def test_frame_log_records_frames_with_audio_elided(tmp_path: Path) -> None:
    async with realtime_server(realtime_frame_log_dir=tmp_path / "frames") as (url, app):
        client = openai.AsyncOpenAI(api_key="sk-local", base_url=f"{url}/v1")
        async with client.realtime.connect(model="m") as conn:
            events = Events(conn)
            created = (await events.wait("session.created"))[0]
            await conn.send({"type": "input_audio_buffer.append", "audio": b64(wav16("yes") + silence(100))})
            await conn.send({"type": "response.create"})
            await events.wait("response.done")
            await events.close()
        await wait_until(lambda: not app.state.realtime.sessions)
        path = frame_log_path(app, created.session.id)
        assert path is not None
        frames = await asyncio.to_thread(read_jsonl, path)
    kinds = [(f["dir"], f["msg"]["type"]) for f in frames]
    assert kinds[0] == ("handshake", "handshake")
    assert frames[0]["msg"]["query"] == {"model": "m"} and frames[0]["msg"]["dialect"] == "ga"
    assert "OpenAI/Python" in frames[0]["msg"]["user_agent"]
    assert kinds[1] == ("out", "session.created")
    assert ("in", "input_audio_buffer.append") in kinds and ("out", "response.done") in kinds
    append = next(f["msg"] for f in frames if f["msg"]["type"] == "input_audio_buffer.append")
    assert append["audio"].startswith("<") and append["audio"].endswith(" bytes>")
    deltas = [f["msg"] for f in frames if f["msg"]["type"] == "response.output_audio.delta"]
    assert deltas and all(d["delta"].endswith(" bytes>") for d in deltas)
