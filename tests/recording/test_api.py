"""The recordings router as the app includes it: its lifespan (service, retention sweep at start, ACS
recording hook) and who may read recordings."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx

from callwright.acs.events import ACSEventTypes
from callwright.api import recordings
from callwright.app import create_app
from callwright.config import load_settings
from callwright.localstack import free_port, serve_asgi
from callwright.security.keys import hash_key, new_key
from callwright.voice.recording import wav_header


async def test_the_router_lifespan_sweeps_at_start_and_serves_recordings_to_viewers_only(tmp_path: Path):
    rec_dir = tmp_path / "rec"
    rec_dir.mkdir()
    old, kept = rec_dir / "old-call.wav", rec_dir / "call-1.wav"
    audio = wav_header(8) + b"\x01\x00\x02\x00\x03\x00\x04\x00"
    old.write_bytes(audio)
    kept.write_bytes(audio)
    long_ago = time.time() - 40 * 86_400
    os.utime(old, (long_ago, long_ago))
    viewer, operator = new_key(), new_key()
    settings = load_settings(
        stt_engine="instant",
        tts_engine="instant",
        recording_enabled=True,
        recording_dir=rec_dir,
        recording_retention_days=30,
        acs_recording_enabled=True,
        operator_api_keys=f"viewer:{hash_key(viewer)},operator:{hash_key(operator)}",
    )
    app = create_app(settings)
    app.include_router(recordings.router)
    async with serve_asgi(app, free_port()) as url:
        st = app.state
        assert st.recordings is not None and st.recordings.enabled
        assert st.acs_recorder.on_call_connected in st.processor.handlers_for(ACSEventTypes.CALL_CONNECTED)
        for _ in range(100):  # the first sweep runs as the server starts
            if not old.exists():
                break
            await _sleep()
        assert not old.exists() and kept.exists()
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            path = "/api/v1/calls/call-1/recording"
            assert (await http.get(path)).status_code == 401
            assert (await http.get(path, headers={"X-API-Key": "cw_wrong"})).status_code == 401
            got = await http.get(path, headers={"X-API-Key": viewer})
            assert got.status_code == 200 and got.content == audio and got.headers["accept-ranges"] == "bytes"
            tail = await http.get(path, headers={"X-API-Key": viewer, "Range": "bytes=44-"})
            assert tail.status_code == 206 and tail.content == audio[44:]
            assert (await http.get("/api/v1/calls/call-2/recording", headers={"X-API-Key": viewer})).status_code == 404
            bad = await http.get("/api/v1/calls/%2E%2E%2Fx/recording", headers={"X-API-Key": viewer})
            assert bad.status_code == 404
            assert (await http.get("/api/v1/calls/call-1/record", headers={"X-API-Key": viewer})).status_code == 404
            entries = (await http.get("/api/v1/audit", headers={"X-API-Key": operator})).json()["entries"]
            assert [e["actor"] for e in entries if e["action"] == "recording"] == [f"key:{hash_key(viewer)[:8]}"] * 2
    # Closed with the app: the service and the hook are gone.
    assert st.recordings is None and st.acs_recorder is None
    assert len(st.processor.handlers_for(ACSEventTypes.CALL_CONNECTED)) == 1  # the default handler only


async def _sleep() -> None:
    import asyncio

    await asyncio.sleep(0.05)
