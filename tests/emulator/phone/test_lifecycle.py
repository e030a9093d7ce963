"""The phone's PhoneSide behaviour around the script: prompts, disconnects, failures, outbound busy."""

from __future__ import annotations

import asyncio

import numpy as np

from callwright.emulator.phone import PhoneBook, build_phone_from_script

from .conftest import FakeApp, FakeCall, tone_pcm


async def _start(phone, app: FakeApp) -> FakeCall:  # type: ignore[no-untyped-def]
    call = FakeCall(phone)
    await phone.start_media(call, transport_url=app.url, headers={}, sample_rate=16_000, bidirectional=True)
    return call


async def test_rest_prompts_play_into_the_agent_channel_and_cancel() -> None:
    phone = build_phone_from_script("name: p\nsteps: [{silence: 1.2}, hangup]", transcribe=False)
    async with FakeApp() as app:
        call = await _start(phone, app)
        runner = asyncio.create_task(phone.run(call))
        assert await phone.play_prompt(tone_pcm(300)) is True
        pending = asyncio.create_task(phone.play_prompt(tone_pcm(3000)))
        await asyncio.sleep(0.2)
        phone.cancel_prompts()
        assert await pending is False
        report = await runner
    assert report["ok"], report["error"]
    assert phone.link is not None
    agent = np.frombuffer(bytes(phone.link.timeline.agent_pcm), dtype="<i2").astype(np.float32)
    frames = agent[: len(agent) // 320 * 320].reshape(-1, 320)
    voiced = int((np.sqrt((frames**2).mean(axis=1)) > 60).sum())
    assert 20 <= voiced <= 35, voiced  # 300 ms + ~200 ms before the cancel, not 3.3 s


async def test_disconnect_mid_script_fails_the_step_clearly() -> None:
    phone = build_phone_from_script("name: d\nsteps: [{wait: agent_done}, {say: hello}]", transcribe=False)
    async with FakeApp() as app:
        call = await _start(phone, app)
        runner = asyncio.create_task(phone.run(call))
        await asyncio.sleep(0.3)
        phone.on_callback_event("Microsoft.Communication.CallDisconnected", {})
        await phone.on_disconnected("the app hung up")
        report = await asyncio.wait_for(runner, 10)
    assert not report["ok"]
    assert "step 1 (wait)" in report["error"] and "the app hung up" in report["error"]
    assert report["events"] == ["CallDisconnected"]
    assert not call.hung_up  # the call was already over; the phone does not hang up twice


async def test_agent_silence_times_out_with_a_clear_error() -> None:
    phone = build_phone_from_script("name: t\nsteps: [{wait: {agent_done: 300, timeout_s: 0.5}}]", transcribe=False)
    async with FakeApp() as app:
        call = await _start(phone, app)
        report = await phone.run(call)
    assert not report["ok"]
    assert report["error"] == "step 1 (wait): the agent did not speak within 0.5 s"
    assert call.hung_up


async def test_media_connect_failure_raises() -> None:
    phone = build_phone_from_script("name: f\nsteps: [hangup]", transcribe=False)
    async with FakeApp() as app:
        url = app.url
    call = FakeCall(phone)
    try:
        await phone.start_media(call, transport_url=url, headers={}, sample_rate=16_000, bidirectional=True)
    except OSError:
        pass
    else:
        raise AssertionError("start_media should raise when nothing listens")


async def test_outbound_busy_phone_ends_ok_without_media_and_directory_finds_it() -> None:
    phone = build_phone_from_script(
        "name: b\ndirection: outbound\nto: '+15557770009'\noutbound: {outcome: busy, answer_after_s: 0}\nsteps: [hangup]",
        transcribe=False,
    )
    book = PhoneBook()
    book.add(phone)
    found = book.phone_for_number("4:+15557770009")
    assert found is not None and found[0] is phone and found[1].outcome == "busy"
    assert book.phone_for_number("4:+15550000000") is None
    call = FakeCall(phone)
    runner = asyncio.create_task(phone.run(call))
    await asyncio.sleep(0.1)
    await phone.on_disconnected("busy")
    report = await asyncio.wait_for(runner, 5)
    assert report["ok"] and report["turns"] == [] and report["disconnect_reason"] == "busy"
