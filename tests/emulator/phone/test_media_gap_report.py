"""The phone's media path outlives a socket the app's side drops: the script waits, a new socket resumes
it, and the report shows each media gap at the caller's ear (real WebSocket server as the app)."""

from __future__ import annotations

import asyncio
import time

import pytest

from callwright.emulator.phone import build_phone_from_script

from .conftest import FakeApp, FakeCall, audio_msg, run_phone, tone_pcm

HEADERS = {"Authorization": "Bearer test.jwt"}


async def test_drop_then_reconnect_resumes_and_reports_the_gap() -> None:
    sends: list[tuple[int, float, int]] = []  # (socket number, send time, tone ms)
    seen = 0

    async def app_side(app: FakeApp) -> None:
        nonlocal seen
        seen += 1
        ws = app.ws
        assert ws is not None
        await asyncio.sleep(0.2)
        if seen == 1:
            sends.append((1, time.monotonic(), 600))
            await ws.send(audio_msg(tone_pcm(600)))
            await asyncio.sleep(0.2)
            ws.transport.abort()  # the replica dies mid-sentence
        else:
            await asyncio.sleep(0.2)
            sends.append((2, time.monotonic(), 300))
            await ws.send(audio_msg(tone_pcm(300)))

    script = """
name: gap
steps:
  - wait: {agent_done: 300, timeout_s: 30}
  - say: {noise: white, ms: 300, probe: false}
  - silence: 0.3
  - hangup
"""
    drops: list[str] = []
    phone = build_phone_from_script(script, transcribe=False)
    async with FakeApp(app_side) as app:
        call = FakeCall(phone)
        await phone.start_media(call, transport_url=app.url, headers=HEADERS, sample_rate=16_000, bidirectional=True)
        link = phone.link
        assert link is not None
        runner = asyncio.create_task(phone.run(call))
        async with asyncio.timeout(20):
            while not link.down:  # noqa: ASYNC110 - the link exposes a flag (the listener is set late on purpose)
                await asyncio.sleep(0.02)
        link.set_drop_listener(drops.append)  # set after the drop: still told, once
        assert not link.closed.is_set()
        await asyncio.sleep(0.8)
        assert not runner.done()  # the wait step neither failed nor ended while the media was gone
        n_before = len(app.received)
        await link.reconnect(app.url, HEADERS)
        assert not link.down
        report = await asyncio.wait_for(runner, 30)

    assert report["ok"], report["error"]
    assert len(drops) == 1 and "no close frame" in drops[0], drops
    after = [m for _, m in app.received[n_before:]]
    assert after[0]["kind"] == "AudioMetadata"
    assert sum(1 for m in after if m.get("kind") == "AudioData" and not m["audioData"]["silent"]) >= 10

    assert report["media_session_count"] == 2
    first, second = report["media_sessions"]
    assert first["dropped"] and "no close frame" in first["end"]
    assert not second["dropped"] and second["closed_at_ms"] is not None
    (gap,) = report["media_gaps"]
    assert gap["cause"] == "dropped"
    assert gap["socket_down_ms"] >= 700
    # Against the app's own send times: the first tone played out after the drop (it was already
    # delivered), the second was heard as soon as it arrived. Loose bounds: a loaded machine.
    (_, t1, ms1), (_, t2, _) = sends
    assert phone.link is link
    t0 = link.timeline.t0
    expected_last = (t1 + ms1 / 1000 - t0) * 1000
    expected_resume = (t2 - t0) * 1000
    assert abs(gap["last_agent_audio_ms"] - expected_last) <= 150, (gap, expected_last)
    assert abs(gap["resumed_at_ms"] - expected_resume) <= 150, (gap, expected_resume)
    assert abs(gap["agent_silence_ms"] - (expected_resume - expected_last)) <= 200, gap
    assert gap["dropped_at_ms"] < gap["last_agent_audio_ms"]  # buffered audio kept playing after the drop
    assert report["gaps"]["count"] == 0  # a media gap is not an underrun


@pytest.mark.parametrize("how", ["abort", "close"])
async def test_drop_without_restart_waits_out_the_step_timeout(how: str) -> None:
    async def app_side(app: FakeApp) -> None:
        ws = app.ws
        assert ws is not None
        await asyncio.sleep(0.2)
        await ws.send(audio_msg(tone_pcm(800)))
        await asyncio.sleep(0.2)
        if how == "abort":
            ws.transport.abort()
        else:
            await ws.close(1011, "replica going away")

    script = "name: lost\nsteps: [{wait: {agent_done: 300, timeout_s: 2}}, {say: never}]"
    async with FakeApp(app_side) as app:
        started = time.monotonic()
        _, call, report = await run_phone(script, app)
        took = time.monotonic() - started
    assert not report["ok"]
    assert report["error"] == "step 1 (wait): the agent did not finish speaking within 2 s"
    assert took >= 1.9  # not an instant failure when the socket went
    assert call.hung_up
    (gap,) = report["media_gaps"]
    assert gap["reconnected_at_ms"] is None and gap["resumed_at_ms"] is None and gap["agent_silence_ms"] is None
    assert gap["last_agent_audio_ms"] is not None
    (only,) = report["media_sessions"]
    assert only["dropped"]
    assert ("1011" in only["end"]) if how == "close" else ("no close frame" in only["end"])


async def test_reconnect_refused_unless_the_link_is_down() -> None:
    phone = build_phone_from_script("name: r\nsteps: [{silence: 0.3}, hangup]", transcribe=False)
    async with FakeApp() as app:
        call = FakeCall(phone)
        await phone.start_media(call, transport_url=app.url, headers={}, sample_rate=16_000, bidirectional=True)
        assert phone.link is not None
        with pytest.raises(RuntimeError, match="not waiting for a new socket"):
            await phone.link.reconnect(app.url, HEADERS)
        report = await phone.run(call)
    assert report["ok"], report["error"]
    assert report["media_session_count"] == 1 and report["media_gaps"] == []
    assert report["media_sessions"][0]["dropped"] is False
