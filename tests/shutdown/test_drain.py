"""Graceful shutdown: SIGTERM mid-call → /ready 503, grace, goodbye, hang-up through ACS, saved, and the
process exits within a bound. In process (serve_asgi + the server's drain hook) and as a real
``callwright serve`` subprocess receiving a real SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from callwright.emulator.phone import build_phone_from_script
from callwright.emulator.service import Emulator
from callwright.localstack import free_port, local_stack

STAYS_ON_THE_LINE = """
name: stays on the line
direction: inbound
from: "+15551230001"
to: "+15550001000"
timeout_s: 120
transcribe: false
steps:
  - wait: {agent_done: 700, timeout_s: 40}
  - say: "What are your opening hours?"
  - wait: disconnected
"""


def _script() -> str:
    return STAYS_ON_THE_LINE


async def _stored(url: str, key: str) -> dict[str, Any] | None:
    client = aioredis.from_url(url)
    try:
        raw = await client.get(key)
    finally:
        await client.aclose()
    return json.loads(raw) if raw else None


async def _until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def _call_in_progress(state: Any) -> Any:
    async def ready() -> bool:
        return any(r.media_connected and r.memo and len(r.memo.history) >= 2 for r in state.calls.active())

    await _until(ready, 60, "a call with media and a first exchange")
    return state.calls.active()[0]


async def test_drain_mid_call_says_goodbye_hangs_up_saves_and_exits(redis_server, tmp_path: Path):
    async with local_stack(
        redis_url=redis_server.url,
        stt_engine="instant",
        instant_stt_transcript="what are your opening hours",
        stt_pool_warm=0,
        tts_pool_warm=1,
        shutdown_grace_seconds=1.0,
        session_spill_dir=tmp_path,
    ) as stack:
        call_task = asyncio.create_task(stack.call(_script(), timeout_s=110))
        record = await _call_in_progress(stack.state)
        cid = record.call_connection_id
        server = stack.state.http_server

        async def answer_played() -> bool:  # so every agent utterance after this one is the goodbye
            handler = record.media_handler
            replies = [m for m in record.memo.history if m["role"] == "assistant"]
            return len(replies) >= 2 and handler is not None and not handler.playback.audible

        await _until(answer_played, 60, "the agent's answer to finish playing")

        started = time.monotonic()
        assert server.begin_drain("test SIGTERM")  # what the SIGTERM handler does
        async with httpx.AsyncClient(timeout=5) as http:

            async def not_ready() -> bool:
                return (await http.get(f"{stack.url}/ready")).status_code == 503

            await _until(not_ready, 5, "/ready to answer 503")
            # The call is still served during the grace period (not cut at the signal).
            assert stack.state.calls.get(cid).state != "disconnected"

        report = await asyncio.wait_for(call_task, 60)
        assert report["ok"], report.get("error")  # the phone's `wait: disconnected` ended: the app hung up
        emulated = stack.emulator.get_call(cid)
        assert emulated is not None
        assert emulated.disconnect_reason == "app_hangup"
        assert "CallDisconnected" in report["events"]

        await asyncio.wait_for(server.drain_task, 30)
        assert server.should_exit
        elapsed = time.monotonic() - started
        s = stack.settings
        assert elapsed < s.shutdown_grace_seconds + s.shutdown_goodbye_seconds + s.acs_request_timeout_seconds + 10

        doc = await _stored(redis_server.url, f"callwright:session:{cid}")
        assert doc is not None
        assert doc["context"]["call_state"] == "disconnected"
        assert doc["context"]["end_reason"] == "server shutdown"
        assert any(m["role"] == "user" for m in doc["history"])
        # The goodbye is in the transcript and was heard: a third agent utterance (greeting, answer,
        # goodbye) of the goodbye's length (~4 s of speech) reached the phone before the hang-up.
        assert any(
            m.get("content") == s.shutdown_goodbye_text and m.get("reason") == "server shutdown" for m in doc["history"]
        ), doc["history"]
        heard = [t for t in report["transcript"] if t["speaker"] == "agent"]
        assert len(heard) >= 3, heard
        assert heard[-1]["end_ms"] - heard[-1]["start_ms"] > 1500, heard[-1]

        async def listener_closed() -> bool:
            try:
                async with httpx.AsyncClient(timeout=1) as http:
                    await http.get(f"{stack.url}/health")
            except httpx.TransportError:
                return True
            return False

        await _until(listener_closed, 30, "the server to stop listening")


@pytest.mark.parametrize("signals", [1, 2], ids=["sigterm", "sigterm-twice"])
async def test_sigterm_to_callwright_serve_drains_the_call_and_exits(redis_server, tmp_path: Path, signals: int):
    """One SIGTERM: the drain (grace 1 s here). Two: the second skips a long grace (60 s here); the call is
    still hung up and saved by the shutdown, and the process exits well before the grace would end."""
    grace = 1 if signals == 1 else 60
    secret = secrets.token_urlsafe(12)
    async with Emulator() as emulator:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            "ACS_CONNECTION_STRING": emulator.connection_string,
            "ACS_CALLBACK_URL": url,
            "ACS_JWT_AUDIENCE": emulator.resource_id,
            "ACS_OPENID_CONFIG_URL": emulator.openid_config_url,
            "EVENTGRID_SECRET": secret,
            "REDIS_URL": redis_server.url,
            "STT_ENGINE": "instant",
            "INSTANT_STT_TRANSCRIPT": "what are your opening hours",
            "STT_POOL_WARM": "0",
            "TTS_POOL_WARM": "1",
            "SHUTDOWN_GRACE_SECONDS": str(grace),
            "SESSION_SPILL_DIR": str(tmp_path / "spill"),
        }
        log_file = await asyncio.to_thread(open, tmp_path / "server.log", "wb")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "callwright.cli", "serve", "--workers", "1", "--port", str(port),
            env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=log_file,
        )  # fmt: skip
        try:

            async def up() -> bool:
                try:
                    async with httpx.AsyncClient(timeout=1) as http:
                        return (await http.get(f"{url}/health")).status_code == 200
                except httpx.TransportError:
                    return False

            await _until(up, 60, "callwright serve to start")
            emulator.webhook_url = f"{url}/api/v1/call-events?secret={secret}"
            phone = build_phone_from_script(_script())
            call = await emulator.place_inbound_call(phone, from_number="+15551230001", to_number="+15550001000")
            run = asyncio.create_task(phone.run(call))

            async def mid_call() -> bool:  # the greeting heard and the question asked: the last step
                assert not run.done(), run.result() if run.done() else None
                return phone._step_no >= 3

            await _until(mid_call, 60, "the phone to reach its last step")
            await asyncio.sleep(1.0)  # the question is on the wire

            proc.send_signal(signal.SIGTERM)
            signalled = time.monotonic()

            async def not_ready() -> bool:
                async with httpx.AsyncClient(timeout=2) as http:
                    return (await http.get(f"{url}/ready")).status_code == 503

            await _until(not_ready, 10, "/ready to answer 503 after SIGTERM")
            if signals == 2:
                await asyncio.sleep(1.0)
                assert not run.done()  # still in the grace period
                proc.send_signal(signal.SIGTERM)
            report = await asyncio.wait_for(run, 60)
            assert report["ok"], report.get("error")
            assert call.disconnect_reason == "app_hangup"  # hung up by the app, not left in dead air

            code = await asyncio.wait_for(proc.wait(), 60)
            exited = time.monotonic() - signalled
            assert exited < 1 + 5 + 10 + 10 + 5  # grace 1 + goodbye + ACS timeout + shutdown timeout + margin
            assert code in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after a clean shutdown

            doc = await _stored(redis_server.url, f"callwright:session:{call.call_connection_id}")
            assert doc is not None and doc["context"]["call_state"] == "disconnected"
            assert doc["context"]["end_reason"] == "server shutdown"
            log_text = (tmp_path / "server.log").read_text(errors="replace")
            assert "draining calls" in log_text
        finally:
            if proc.returncode is None:
                proc.kill()
                await asyncio.wait_for(proc.wait(), 10)
            log_file.close()
