"""Whole emulated calls with recording on: the server's stereo WAV checked against the phone's own
recording of the same call, the post-call record against the phone's report, the API's credentials,
and ACS Call Recording through the official SDK against the emulator."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from callwright.api import recordings
from callwright.localstack import LocalStack, local_stack

from .audio_check import RATE, best_lag, envelope, last_voiced_end_ms, read_stereo, voiced_frames

BASE = {"stt_pool_warm": 1, "tts_pool_warm": 1, "stt_pool_size": 4, "tts_pool_size": 4}

# A barge-in, then DTMF keyed in when the agent asks for it, then the caller hangs up.
BARGE_AND_KEYS = """
name: recorded call
direction: inbound
from: "+15551230001"
to: "+15550001000"
timeout_s: 120
steps:
  - wait: {agent_done: 700, timeout_s: 30}
  - say: "What are your opening hours?"
  - barge_in: {at_ms: 1000, of: next, timeout_s: 30, say: "Sorry, where is your office?"}
  - wait: {agent_done: 700, timeout_s: 30}
  - say: "I want to check my claim status."
  - wait: {agent_done: 700, timeout_s: 30}
  - dtmf: {digits: "1234#", gap_ms: 150}
  - wait: {agent_done: 900, timeout_s: 40}
  - hangup
"""

VL_BARGE_IN = """
name: voice_live barge-in
direction: inbound
from: "+15551230002"
to: "+15550001000"
timeout_s: 120
steps:
  - wait: {agent_done: 900, timeout_s: 40}
  - say: "What are your opening hours?"
  - barge_in: {at_ms: 1000, of: next, timeout_s: 40, say: "Sorry, where is your office?"}
  - wait: {agent_done: 900, timeout_s: 40}
  - hangup
"""

TWO_TURNS = """
name: two turns
direction: inbound
from: "+15551230001"
to: "+15550001000"
timeout_s: 90
steps:
  - wait: {agent_done: 700, timeout_s: 30}
  - say: "What are your opening hours?"
  - wait: {agent_done: 700, timeout_s: 30}
  - hangup
"""


@contextlib.asynccontextmanager
async def recording_stack(rec_dir: Path, **overrides: Any) -> AsyncIterator[LocalStack]:
    values = {**BASE, "recording_enabled": True, "recording_dir": rec_dir, **overrides}
    async with local_stack(**values) as stack:
        # The router as the app includes it (its lifespan = install/uninstall); included here in case
        # the app under test was built without it.
        if not any(getattr(r, "path", "") == "/api/v1/calls/{call_id}/recording" for r in stack.app.routes):
            stack.app.include_router(recordings.router)
        recordings.install(stack.state)
        try:
            yield stack
        finally:
            await recordings.uninstall(stack.state)


async def wait_for(predicate: Any, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.05)


def server_wav(rec_dir: Path, call_id: str) -> Path:
    return rec_dir / f"{call_id}.wav"


def check_against_the_phone(report: dict[str, Any], server: Path, phone: Path) -> float:
    """The server's recording against the phone's own: returns the recording's length in seconds."""
    # --- the WAV: stereo 16 kHz, as long as the call ------------------------------------------------
    left, right, channels, rate = read_stereo(server)
    assert (channels, rate) == (2, RATE)
    p_left, p_right, _, p_rate = read_stereo(phone)
    assert p_rate == RATE
    seconds = len(left) / RATE
    assert seconds == pytest.approx(report["duration_ms"] / 1000, abs=1.5)

    # --- the caller channel is what the phone sent --------------------------------------------------
    lag, corr = best_lag(left, p_left, max_lag=RATE)  # phone index = server index + lag
    assert corr > 0.9, f"caller channel correlation {corr:.2f}"
    assert abs(lag) <= 0.06 * RATE  # sample-exact in practice: both sides count frames on one clock

    # --- the agent channel is what the phone heard, on the same clock ---------------------------------
    agent_lag, _ = best_lag(envelope(right), envelope(p_right), max_lag=50)
    assert abs(agent_lag * 320 - lag) <= 0.12 * RATE, (agent_lag * 320, lag)
    shifted = np.roll(voiced_frames(p_right), -round(lag / 320))[: len(voiced_frames(right))]
    mine = voiced_frames(right)[: len(shifted)]
    agree = float((mine == shifted).mean())
    assert agree > 0.9, f"agent voiced frames agree on {agree:.0%} of the call"
    assert mine.sum() > 100  # the agent spoke (greeting + replies: seconds of voice)

    # --- each barge-in's cut: where the phone stopped hearing the agent --------------------------------
    lag_ms = lag / RATE * 1000
    for barge in report["barge_ins"]:
        assert barge["stopped"]
        phone_stop_ms = barge["onset_ms"] + barge["silenced_ms"]
        onset_server_ms = barge["onset_ms"] - lag_ms
        cut_ms = last_voiced_end_ms(right, onset_server_ms - 500, onset_server_ms + 1500)
        assert cut_ms is not None
        assert abs((cut_ms + lag_ms) - phone_stop_ms) <= 120, (cut_ms + lag_ms, phone_stop_ms)
        print(f"barge-in cut: server {cut_ms + lag_ms:.0f} ms, phone {phone_stop_ms:.0f} ms")
    print(f"caller lag {lag_ms:.1f} ms corr {corr:.3f}; agent lag {agent_lag * 20} ms; voiced agree {agree:.1%}")
    return seconds


async def test_a_recorded_call_matches_what_the_phone_sent_and_heard(tmp_path: Path):
    rec_dir, phone_dir = tmp_path / "rec", tmp_path / "phone"
    async with recording_stack(rec_dir, acs_recording_enabled=True) as stack:
        report = await stack.call(BARGE_AND_KEYS, record_dir=phone_dir, timeout_s=180)
        assert report["ok"], report.get("error")
        cid = report["call_id"]
        call = stack.state.calls.get(cid)
        await wait_for(lambda: call.ended_at is not None and call.memo.get_context("server_recording") is not None)

        seconds = check_against_the_phone(report, server_wav(rec_dir, cid), phone_dir / f"{cid}.wav")

        # --- the post-call record matches the phone's report ---------------------------------------
        async with httpx.AsyncClient(base_url=stack.url, timeout=30) as http:
            resp = await http.get(f"/api/v1/calls/{cid}/record", headers=stack.operator_headers)
            assert resp.status_code == 200, resp.text
            record = resp.json()
            # The phone counts the caller's turns (speech, and keyed input when its report lists it).
            phone_speech = [t for t in report["turns"] if t.get("kind") != "dtmf"]
            phone_keys = [t for t in report["turns"] if t.get("kind") == "dtmf"]
            assert record["caller_turns"] == len(phone_speech) == 3
            assert len([t for t in record["turns"] if t["kind"] == "dtmf"]) == (len(phone_keys) or 1)
            spoken_barge_ins = [b for b in report["barge_ins"] if b["stopped"]]
            assert record["barge_ins"] == len(spoken_barge_ins) == 1
            assert "".join(k["tone"] for k in record["dtmf"]) == "".join(d["tone"] for d in report["dtmf_sent"])
            assert record["dtmf_inputs"] == ["1234#"]
            # The keyed-in policy number went through the scenario's tools and handed over to claims.
            assert [h["to"] for h in record["handoffs"]] == ["claims"]
            calls = [c for t in record["turns"] for c in t["tool_calls"]]
            assert record["tool_calls"] == len(calls) >= 1 and all(c["name"] and "result" in c for c in calls)
            assert record["outcome"] == "hung_up_by_caller"
            assert record["duration_s"] == pytest.approx(report["duration_ms"] / 1000, abs=3)
            kinds = [t["kind"] for t in record["turns"]]
            assert kinds == ["greeting", "speech", "speech", "speech", "dtmf"]
            cut = record["turns"][1]
            assert cut["interrupted"] and cut["heard_of"].startswith("We're open Monday to Friday")
            assert all(t["response_ms"] and t["response_ms"] > 0 for t in record["turns"][2:4])
            assert record["recording"]["available"] and record["recording"]["seconds"] == pytest.approx(seconds, 0.05)
            # Saved in the session store when the call ended (what the page shows after a restart).
            await wait_for(lambda: call.memo.get_context("post_call_record") is not None)
            stored = await stack.state.store.load(cid)
            assert stored["context"]["post_call_record"]["outcome"] == "hung_up_by_caller"
            assert stored["context"]["post_call_record"]["caller_turns"] == record["caller_turns"]

            # --- the recording is served only with operator credentials ----------------------------
            url = record["recording"]["url"]
            assert (await http.get(url)).status_code == 401
            assert (await http.get(url, headers={"Authorization": "Bearer not-a-key"})).status_code == 401
            assert (await http.get(f"/api/v1/calls/{cid}/record")).status_code == 401
            full = await http.get(url, headers=stack.operator_headers)
            assert full.status_code == 200 and full.headers["content-type"] == "audio/wav"
            assert full.content == server_wav(rec_dir, cid).read_bytes()
            part = await http.get(url, headers={**stack.operator_headers, "Range": "bytes=0-43"})
            assert part.status_code == 206 and part.content[:4] == b"RIFF" and len(part.content) == 44
            missing = await http.get("/api/v1/calls/no-such-call/recording", headers=stack.operator_headers)
            assert missing.status_code == 404
            metrics = (await http.get("/metrics", headers=stack.operator_headers)).text
            assert "callwright_recordings_active 0.0" in metrics
            written = [ln for ln in metrics.splitlines() if ln.startswith("callwright_recording_seconds_total ")]
            assert written and float(written[0].split()[1]) == pytest.approx(seconds, abs=0.1)
            audit = await http.get("/api/v1/audit", headers=stack.operator_headers)
            assert any(e.get("action") == "recording" and e.get("call_id") == cid for e in audit.json()["entries"])

        # --- ACS recorded too, through the SDK (start_recording → RecordingStateChanged) -----------
        emulated = [r for r in stack.emulator.recordings.by_id.values() if r.call.call_connection_id == cid]
        assert len(emulated) == 1 and emulated[0].history[0] == "active"
        assert emulated[0].channel == "unmixed" and emulated[0].format == "wav"
        acs = call.memo.get_context("recording")
        assert acs == {"state": "active", "recording_id": emulated[0].recording_id}
        assert record["acs_recording"]["recording_id"] == emulated[0].recording_id
        assert emulated[0].properties()["recordingState"] == "inactive"  # the call is over


async def test_recording_operations_through_the_sdk_against_the_emulator(tmp_path: Path):
    from azure.communication.callautomation.aio import CallAutomationClient
    from azure.core.credentials import AzureKeyCredential
    from azure.core.exceptions import HttpResponseError

    from callwright.emulator.phone import build_phone_from_script

    script = TWO_TURNS.replace("  - hangup", "  - silence: 4.0\n  - hangup")
    async with recording_stack(tmp_path / "rec") as stack:
        phone = build_phone_from_script(script, transcriber=stack.transcriber)
        call = await stack.emulator.place_inbound_call(phone, from_number="+15551230001", to_number="+15550001000")
        run = asyncio.create_task(phone.run(call))
        try:
            await asyncio.wait_for(call.connected.wait(), 30)
            key = stack.emulator.connection_string.split("accesskey=")[1].rstrip(";")
            client = CallAutomationClient(stack.emulator.endpoint.rstrip("/"), AzureKeyCredential(key))
            async with client:
                started = await client.start_recording(server_call_id=call.server_call_id)
                rid = started.recording_id
                assert rid and started.recording_state == "active"
                assert (await client.get_recording_properties(rid)).recording_state == "active"
                await client.pause_recording(rid)
                assert (await client.get_recording_properties(rid)).recording_state == "inactive"
                await client.resume_recording(rid)
                with pytest.raises(HttpResponseError, match="already in progress"):
                    await client.start_recording(call_connection_id=call.call_connection_id)
                await client.stop_recording(rid)
                assert (await client.get_recording_properties(rid)).recording_state == "inactive"
                with pytest.raises(HttpResponseError, match="stopped"):
                    await client.pause_recording(rid)
                with pytest.raises(HttpResponseError, match="unmixed"):
                    await client.start_recording(
                        call_connection_id=call.call_connection_id,
                        recording_content_type="audio",
                        recording_channel_type="unmixed",
                        recording_format_type="mp3",
                    )
                with pytest.raises(Exception, match="not found"):
                    await client.get_recording_properties("nope")
            # Each change reached the app as RecordingStateChanged; the session keeps the last one.
            await wait_for(lambda: stack.state.calls.get(call.call_connection_id) is not None)
            record = stack.state.calls.get(call.call_connection_id)
            await wait_for(lambda: (record.memo.get_context("recording") or {}).get("state") == "inactive")
            states = [m["outcome"] for m in record.memo.metrics if m.get("name") == "operation"]
            assert states.count("RecordingStateChanged") == 4  # active, inactive, active, inactive
        finally:
            report = await asyncio.wait_for(run, 120)
        assert report["ok"], report.get("error")


async def test_a_voice_live_call_is_recorded_in_stereo_with_its_barge_in_cut(tmp_path: Path):
    rec_dir, phone_dir = tmp_path / "rec", tmp_path / "phone"
    async with recording_stack(rec_dir, acs_streaming_mode="voice_live") as stack:
        report = await stack.call(VL_BARGE_IN, record_dir=phone_dir, timeout_s=150)
        assert report["ok"], report.get("error")
        cid = report["call_id"]
        call = stack.state.calls.get(cid)
        await wait_for(lambda: call.ended_at is not None and call.memo.get_context("server_recording") is not None)
        assert len(report["barge_ins"]) == 1
        check_against_the_phone(report, server_wav(rec_dir, cid), phone_dir / f"{cid}.wav")
        assert call.memo.get_context("server_recording")["cuts"] >= 1  # StopAudio flushed unplayed audio
        async with httpx.AsyncClient(base_url=stack.url, timeout=30) as http:
            record = (await http.get(f"/api/v1/calls/{cid}/record", headers=stack.operator_headers)).json()
        assert record["mode"] == "voice_live" and record["recording"]["available"]
        assert record["caller_turns"] == len(report["turns"]) == 2
        assert record["barge_ins"] == 1 and [t["interrupted"] for t in record["turns"]][:2] == [False, True]


async def test_recording_off_by_default_writes_nothing(tmp_path: Path):
    async with local_stack(**BASE, recording_dir=tmp_path / "rec") as stack:
        report = await stack.call(TWO_TURNS)
        assert report["ok"], report.get("error")
        record = stack.state.calls.get(report["call_id"])
        assert record.memo.get_context("server_recording") is None
    assert not (tmp_path / "rec").exists()
