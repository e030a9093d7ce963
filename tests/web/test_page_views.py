"""The operator page after a real call, at desktop (1280 px) and phone (390 px) width, in Chromium.

One scripted inbound call (greeting, a question talked over, a claim check keyed in, goodbye) runs through
the emulator; then the page shows it: duration and outcome in the list, per-turn latency, the barge-in,
tool calls and the handoff in the transcript, the recording playing, no horizontal overflow, screenshots.

The post-call record (GET /api/v1/calls/{id}/record) and the server's own recording (…/recording, with
RECORDING_ENABLED) are the real endpoints.
"""

from __future__ import annotations

import asyncio
import math
import struct
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import expect

from callwright.localstack import local_stack

from .conftest import Browser, sign_in

pytestmark = [pytest.mark.timeout(300)]

CLAIM_CALL = """
name: claim check
direction: inbound
from: "+15551230077"
to: "+15550001000"
timeout_s: 150
steps:
  - wait: {agent_done: 800, timeout_s: 30}
  - say: "What are your opening hours?"
  - barge_in: {at_ms: 1500, of: next, timeout_s: 20, say: "I want to check my claim status."}
  - wait: {agent_done: 800, timeout_s: 30}
  - dtmf: {digits: "1234#", gap_ms: 250}
  - wait: {agent_done: 1200, timeout_s: 40}
  - hangup
"""


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert len(data) > 5000, f"{path} is suspiciously small ({len(data)} bytes)"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


async def _no_horizontal_overflow(page: Any) -> None:
    widths = await page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], f"the page is {widths[0]} px wide in a {widths[1]} px window"


async def _audio_plays(page: Any) -> None:
    await page.wait_for_function(
        "() => { const a = document.getElementById('d-audio'); return a && a.readyState >= 1 && a.duration > 0; }",
        timeout=30_000,
    )
    await page.evaluate("document.getElementById('d-audio').play()")
    await page.wait_for_function("() => document.getElementById('d-audio').currentTime > 0.2", timeout=30_000)
    await page.evaluate("document.getElementById('d-audio').pause()")


@pytest.fixture
async def stack_with_call(tmp_path: Path):
    async with local_stack(
        stt_pool_warm=1,
        tts_pool_warm=1,
        stt_pool_size=2,
        tts_pool_size=2,
        recording_enabled=True,
        recording_dir=tmp_path / "recordings",
    ) as stack:
        report = await stack.call(CLAIM_CALL, record_dir=tmp_path / "rec")
        assert report["ok"], report
        call_id = report["call_id"]
        async with httpx.AsyncClient(base_url=stack.url, headers=stack.operator_headers, timeout=30) as http:
            for _ in range(100):  # the hang-up reaches the server a moment after the phone's report
                detail = (await http.get(f"/api/v1/calls/{call_id}")).json()
                if detail["state"] in ("disconnected", "failed"):
                    break
                await asyncio.sleep(0.2)
        yield stack, report, detail


async def test_a_finished_call_at_desktop_and_phone_width(stack_with_call, browser: Browser, tmp_path: Path):
    stack, _report, detail = stack_with_call
    call_id = detail["call_connection_id"]
    async with httpx.AsyncClient(base_url=stack.url, headers=stack.operator_headers, timeout=30) as http:
        record = (await http.get(f"/api/v1/calls/{call_id}/record")).json()
    page = browser.page
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    await page.set_viewport_size({"width": 1280, "height": 900})
    await sign_in(browser, stack.url, stack.operator_key)

    row = page.locator(f'#recent-calls tr[data-call-id="{call_id}"]')
    await expect(row.locator(".outcome")).to_have_text(record.get("outcome") or "completed")
    await expect(row.locator(".duration")).to_contain_text(" s")
    await row.get_by_role("button").click()
    await expect(page.locator("#d-latency")).to_contain_text("median")
    measured = [t for t in record["turns"] if isinstance(t.get("response_ms"), (int, float))]
    assert measured, record
    badges = page.locator("#transcript .latency")
    await expect(badges.first).to_be_visible()
    assert await badges.count() == len(measured)
    shown_ms = math.floor(measured[0]["response_ms"] + 0.5)  # JavaScript's Math.round, not banker's rounding
    await expect(badges.first).to_contain_text(f"{shown_ms} ms")
    if record.get("barge_ins"):
        await expect(page.locator("#transcript .barge").first).to_be_visible()
        barge_ins = record["barge_ins"]  # the record's count (a list of events in older records)
        await expect(page.locator("#d-barge")).to_have_text(
            str(barge_ins if isinstance(barge_ins, int) else len(barge_ins))
        )
    if record.get("tool_calls"):
        await expect(page.locator("#transcript .tool-call").first).to_be_visible()
    if record.get("handoffs"):
        await expect(page.locator("#transcript .handoff").first).to_contain_text("Handed off")
    # No reply bubble is empty: a reply cut before its first word says so.
    contents = await page.locator("#transcript .role-assistant .content").all_text_contents()
    assert contents and all(c.strip() for c in contents), contents
    await expect(page.locator("#d-recording")).to_be_visible()
    await _audio_plays(page)
    await _no_horizontal_overflow(page)
    desktop = tmp_path / "desktop.png"
    await page.screenshot(path=str(desktop), full_page=True)
    assert _png_size(desktop)[0] == 1280

    # The page did not poll: nothing asked for the lists while the call sat still; the stream is open.
    requests.clear()
    await page.wait_for_timeout(3000)
    assert not [u for u in requests if u.endswith("/api/v1/calls")], requests
    await expect(page.locator("#live")).to_have_text("Live")

    await page.set_viewport_size({"width": 390, "height": 844})
    await page.wait_for_timeout(300)  # layout settles
    await _no_horizontal_overflow(page)
    await expect(page.locator("#d-latency")).to_be_visible()
    await expect(badges.first).to_be_visible()
    await expect(page.locator("#d-audio")).to_be_visible()
    box = await page.locator("#d-audio").bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390
    await expect(row.locator(".outcome")).to_be_visible()
    phone = tmp_path / "phone.png"
    await page.screenshot(path=str(phone), full_page=True)
    assert _png_size(phone)[0] == 390

    # Search and filters narrow the list; a filter with no match says so rather than showing nothing.
    await page.fill("#f-q", "1230077")
    await expect(row).to_be_visible()
    await page.fill("#f-q", "+1999")
    await expect(row).to_be_hidden()
    await expect(page.locator("#recent-empty")).to_have_text("No recent calls match the filter.")
    await page.fill("#f-q", "")
    await page.select_option("#f-mode", "voice_live")
    await expect(row).to_be_hidden()
    await page.select_option("#f-mode", "media")
    await page.select_option("#f-outcome", record.get("outcome") or "completed")
    await expect(row).to_be_visible()
    await page.select_option("#f-state", "live")
    await expect(row).to_be_hidden()
    await expect(page.locator("#filter-note")).to_contain_text("1 call hidden")
    await _no_horizontal_overflow(page)
    assert browser.errors == []


async def test_history_survives_a_restart_with_redis(redis_server, browser: Browser):
    script = """
name: busy
direction: outbound
to: "+15557770055"
outbound: {outcome: busy}
steps:
  - hangup
"""
    async with local_stack(redis_url=redis_server.url) as first:
        report = await first.call(script)
        assert report["ok"], report
        call_id = report["call_id"]
        for _ in range(100):
            if any(c.call_connection_id == call_id for c in first.state.calls.recent()):
                break
            await asyncio.sleep(0.1)
        assert await first.state.saver.flush(10) == 0
    async with local_stack(redis_url=redis_server.url) as second:
        page = browser.page
        await page.set_viewport_size({"width": 390, "height": 844})
        await sign_in(browser, second.url, second.operator_key)
        row = page.locator(f'#recent-calls tr[data-call-id="{call_id}"]')
        await expect(row).to_be_visible()
        await expect(row.locator(".outcome")).to_have_text("not connected")
        await _no_horizontal_overflow(page)
        assert [e for e in browser.errors if "status of 401" not in e] == []
