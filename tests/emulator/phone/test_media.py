"""The phone's media client against a real WebSocket server standing in for the app (acs-protocol.md §4)."""

from __future__ import annotations

import asyncio
import base64
import json
import wave
from pathlib import Path

import numpy as np

from .conftest import STOP, FakeApp, audio_msg, run_phone, tone_pcm


def _voiced_frames(pcm: bytes, fb: int = 640) -> list[bool]:
    out = []
    for i in range(0, len(pcm), fb):
        s = np.frombuffer(pcm[i : i + fb], dtype="<i2").astype(np.float32)
        out.append(bool(np.sqrt(np.mean(s * s)) > 60))
    return out


async def test_metadata_cadence_silence_and_dtmf() -> None:
    script = """
name: cadence
steps:
  - silence: 0.5
  - say: {noise: white, ms: 300, probe: false}
  - silence: 0.3
  - dtmf: {digits: "12#", gap_ms: 60}
  - silence: 0.4
  - hangup
"""
    async with FakeApp() as app:
        _, call, report = await run_phone(script, app)

    assert report["ok"], report["error"]
    assert app.headers["authorization"] == "Bearer test.jwt"
    assert app.headers["x-ms-call-connection-id"] == "call-test-1"
    assert app.headers["x-ms-call-correlation-id"] == "corr-test-1"
    kinds = [m["kind"] for _, m in app.received]
    assert kinds[0] == "AudioMetadata"
    meta = app.received[0][1]["audioMetadata"]
    assert (meta["encoding"], meta["sampleRate"], meta["channels"], meta["length"]) == ("PCM", 16000, 1, 640)
    audio = [(t, m["audioData"]) for t, m in app.received if m["kind"] == "AudioData"]
    assert all(a["participantRawID"] == "4:+15551230001" for _, a in audio)
    assert all(len(base64.b64decode(a["data"])) == 640 for _, a in audio)
    # Cadence: frames arrive at 50/s against the clock (generous tolerance for a loaded machine).
    span = audio[-1][0] - audio[0][0]
    assert abs(len(audio) - (span / 0.02 + 1)) <= 5, (len(audio), span)
    # Silent flags: zeros while quiet, voiced frames for the noise only (300 ms = 15 frames).
    silent = [a["silent"] for _, a in audio]
    assert silent[:20] == [True] * 20
    assert 13 <= silent.count(False) <= 16
    for _, a in audio:
        if a["silent"]:
            assert base64.b64decode(a["data"]) == bytes(640)
    tones = [m["dtmfData"]["data"] for _, m in app.received if m["kind"] == "DtmfData"]
    assert tones == ["1", "2", "#"]
    assert call.dtmf == ["1", "2", "#"]
    assert [d["tone"] for d in report["dtmf_sent"]] == ["1", "2", "#"]
    assert report["frames"]["sent"] == len(audio)


async def test_outbound_audio_in_every_casing_is_played_and_stop_flushes(tmp_path: Path) -> None:
    stop_sent = asyncio.Event()

    async def app_side(app: FakeApp) -> None:
        await asyncio.sleep(0.1)
        for style in ("pascal", "camel", "dotnet"):
            await app.send(audio_msg(tone_pcm(200), style))
        await app.send("this is not json")  # ignored with a log line, socket stays up
        await app.send('{"Kind": "AudioData", "AudioData": {"Data": "%%%"}}')
        await asyncio.sleep(0.9)  # all 600 ms played out by now
        await app.send(audio_msg(tone_pcm(2000)))  # a long reply ...
        await asyncio.sleep(0.3)
        await app.send(STOP)  # ... interrupted after ~300 ms
        stop_sent.set()

    script = """
name: playout
steps:
  - silence: 2.2
  - hangup
"""
    async with FakeApp(app_side) as app:
        phone, _, report = await run_phone(script, app, record_dir=tmp_path)
    assert stop_sent.is_set()
    assert report["ok"], report["error"]
    assert report["frames"]["bad_messages"] == 2
    assert len(report["stop_audio_ms"]) == 1

    # The stereo recording: caller left, agent right, one timeline.
    with wave.open(report["recording"]["wav"], "rb") as w:
        assert (w.getnchannels(), w.getframerate()) == (2, 16000)
        st = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)
    right = st[:, 1].astype("<i2").tobytes()
    voiced = _voiced_frames(right)
    assert json.loads(Path(report["recording"]["json"]).read_text())["call_id"] == "call-test-1"  # noqa: ASYNC240
    # 3 × 200 ms in three casings, then ~300 ms of the long reply before StopAudio: about 900 ms, never 2.6 s.
    assert 40 <= sum(voiced) <= 52, sum(voiced)
    # Nothing is played after StopAudio (one tick of slack for the frame in flight).
    stop_ms = report["stop_audio_ms"][0]
    stop_tick = int(stop_ms // 20) + 2
    assert not any(voiced[stop_tick:]), stop_tick
    assert phone.link is not None and phone.link.closed.is_set()


async def test_underrun_in_agent_speech_is_reported_as_a_gap() -> None:
    async def app_side(app: FakeApp) -> None:
        await asyncio.sleep(0.1)
        await app.send(audio_msg(tone_pcm(300)))
        await asyncio.sleep(0.3 + 0.1)  # the FIFO runs dry for ~100 ms in mid-utterance
        await app.send(audio_msg(tone_pcm(300)))

    script = """
name: gaps
steps:
  - silence: 1.4
  - hangup
"""
    async with FakeApp(app_side) as app:
        _, _, report = await run_phone(script, app)
    gaps = report["gaps"]
    assert gaps["count"] == 1, gaps
    assert 60 <= gaps["total_ms"] <= 160, gaps


async def test_24khz_stream_uses_960_byte_frames_and_plays_agent_audio() -> None:
    from callwright.emulator.phone import build_phone_from_script

    from .conftest import FakeCall

    async def app_side(app: FakeApp) -> None:
        await asyncio.sleep(0.1)
        await app.send(audio_msg(tone_pcm(300, rate=24_000)))

    phone = build_phone_from_script(
        "name: wide\nsteps: [{say: {noise: white, ms: 200, probe: false}}, {silence: 0.6}, hangup]", transcribe=False
    )
    async with FakeApp(app_side) as app:
        call = FakeCall(phone)
        await phone.start_media(call, transport_url=app.url, headers={}, sample_rate=24_000, bidirectional=True)
        report = await phone.run(call)
    assert report["ok"], report["error"]
    meta = app.received[0][1]["audioMetadata"]
    assert (meta["sampleRate"], meta["length"]) == (24_000, 960)
    frames = [base64.b64decode(m["audioData"]["data"]) for _, m in app.received if m["kind"] == "AudioData"]
    assert {len(f) for f in frames} == {960}
    assert 8 <= sum(1 for _, m in app.received if m["kind"] == "AudioData" and not m["audioData"]["silent"]) <= 11
    assert 14 <= report["frames"]["agent_voiced_received"] <= 16  # 300 ms in 960-byte frames
