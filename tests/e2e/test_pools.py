"""Bounded engine pools through whole calls: a call over capacity hears an apology and is hung up."""

from __future__ import annotations

import asyncio

import httpx

from callwright.emulator.phone import build_phone_from_script
from callwright.localstack import local_stack

HOLD_THE_LINE = """
name: holds the only engines
direction: inbound
from: "+15551230010"
to: "+15550001000"
timeout_s: 60
steps:
  - wait: {agent_done: 700, timeout_s: 30}
  - silence: 20
"""

OVER_CAPACITY = """
name: one call too many
direction: inbound
from: "+15551230011"
to: "+15550001000"
timeout_s: 40
steps:
  - wait: {disconnected: true, timeout_s: 30}
"""


async def test_a_call_over_capacity_hears_an_apology_and_is_hung_up():
    async with local_stack(stt_pool_size=1, tts_pool_size=1, stt_pool_warm=1, tts_pool_warm=1,
                           pool_acquire_timeout=0.3) as stack:  # fmt: skip
        first = build_phone_from_script(HOLD_THE_LINE)
        call = await stack.emulator.place_inbound_call(first, from_number="+15551230010", to_number="+15550001000")
        holding = asyncio.ensure_future(first.run(call))
        for _ in range(200):
            if stack.state.speech.stt_pool.stats()["in_use"] == 1:
                break
            await asyncio.sleep(0.05)

        report = await stack.call(OVER_CAPACITY)
        assert report["ok"], report.get("error")
        assert report["events"][-1] == "CallDisconnected"
        heard = [t for t in report["transcript"] if t["speaker"] == "agent"]
        assert heard, "the refused caller heard nothing"
        assert sum(t["end_ms"] - t["start_ms"] for t in heard) > 1500  # a sentence, not a blip

        async with httpx.AsyncClient() as http:
            ready = (await http.get(f"{stack.url}/ready")).json()
            metrics = (await http.get(f"{stack.url}/metrics", headers=stack.operator_headers)).text
        assert ready["checks"]["pools"]["stt"]["in_use"] == 1
        assert ready["checks"]["pools"]["stt"]["exhausted_count"] >= 1
        assert 'callwright_pool_in_use{pool="stt"} 1.0' in metrics

        holding.cancel()
        await asyncio.gather(holding, return_exceptions=True)
        call.hang_up_by_phone()
        # The release follows CallDisconnected through the webhook, the handler's stop and the lane's join:
        # seconds on a loaded two-core machine running the suite in parallel, so wait up to 20 s for it.
        for _ in range(400):
            if stack.state.speech.stt_pool.stats()["in_use"] == 0:
                break
            await asyncio.sleep(0.05)
        assert stack.state.speech.stt_pool.stats()["in_use"] == 0
