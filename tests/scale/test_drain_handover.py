"""SIGTERM to a replica with calls in progress while another replica is alive: no call is dropped and none
is accepted by it after the signal.

Two real ``callwright serve`` replicas behind HAProxy on one Redis. The replica holding a call's media gets
SIGTERM while the agent answers: /ready turns 503 (HAProxy takes it out of rotation), an IncomingCall
delivered to it straight is rejected, a new call through the load balancer is answered by the other
replica, and when the grace period ends its calls are handed over instead of hung up — the other replica
restarts their media streaming, the agent apologises and repeats itself, and every script completes. The
draining replica exits cleanly.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from callwright.agents.runtime import RESUME_LINE
from support.cluster import cluster

pytestmark = pytest.mark.timeout(300)

ASKS_TWICE = """
name: asks twice across a hand-over
direction: inbound
from: "+15551230001"
to: "+15550001000"
timeout_s: 150
transcribe: false
steps:
  - wait: {agent_done: 700, timeout_s: 40}
  - say: "What are your opening hours?"
  - wait: {agent_done: 1500, timeout_s: 90}
  - say: "What are your opening hours?"
  - wait: {agent_done: 700, timeout_s: 40}
  - hangup
"""

ONE_QUESTION = """
name: a new call during the drain
direction: inbound
from: "+15551230009"
to: "+15550001000"
timeout_s: 90
transcribe: false
steps:
  - wait: {agent_done: 700, timeout_s: 40}
  - say: "What are your opening hours?"
  - wait: {agent_done: 700, timeout_s: 40}
  - hangup
"""


async def _until(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(0.05)


def _agent_answering(phone: Any) -> bool:
    said = [u.end_t for u in phone.utterances if u.end_t is not None]
    link = phone.link
    return bool(said) and link is not None and link.agent_playing and (link.last_agent_voiced_t or 0) > said[0]


# Two replica processes each: one such test at a time per worker (2 cores).
@pytest.mark.xdist_group("scale-cluster")
async def test_sigterm_hands_calls_over_and_accepts_none(tmp_path: Path) -> None:
    async with cluster(tmp_path, replicas=2, env={"SHUTDOWN_GRACE_SECONDS": "2"}) as c:
        placed = [await c.place(ASKS_TWICE.replace("+15551230001", f"+1555123000{n}")) for n in (1, 2)]
        runners = [asyncio.create_task(phone.run(call)) for phone, call in placed]
        r = aioredis.from_url(c.redis_url)
        try:
            owners: dict[str, str] = {}
            for _, call in placed:
                key = f"callwright:owner:{call.call_connection_id}"
                owners[call.call_connection_id] = (await _until(lambda k=key: r.get(k), 30, "media owners")).decode()
        finally:
            await r.aclose()
        first_phone, first_call = placed[0]
        target = owners[first_call.call_connection_id]
        other = next(x.name for x in c.replicas if x.name != target)
        await _until(lambda: _agent_answering(first_phone), 60, "the agent answering on the first call")

        c.kill(target, signal.SIGTERM)
        await asyncio.sleep(0.3)
        # An IncomingCall reaching the draining replica is handed to the replica that stays and answered
        # there (before the load balancer has taken the draining one out of rotation).
        webhook = c.emulator.webhook_url
        c.emulator.webhook_url = f"{c.replica(target).url}/api/v1/call-events?secret={c.secret}"
        try:
            handed_phone, handed_call = await c.place(ONE_QUESTION)
        finally:
            c.emulator.webhook_url = webhook
        handed = asyncio.create_task(handed_phone.run(handed_call))
        # Through the load balancer a new call lands on the replica that stays, and completes.
        await asyncio.to_thread(c.lb.wait_states, {target: "DOWN"}, 20)
        new_report = await c.call(ONE_QUESTION.replace("+15551230009", "+15551230008"), timeout_s=120)

        reports = await asyncio.wait_for(asyncio.gather(*runners), 200)
        handed_report = await asyncio.wait_for(handed, 120)
        code = await c.wait_exit(target, 60)
        target_log = c.replica(target).log_text()
        async with httpx.AsyncClient(timeout=10, headers=c.operator_headers) as http:
            docs = {
                cid: (await http.get(f"{c.replica(other).url}/api/v1/calls/{cid}")).json()
                for cid in (call.call_connection_id for _, call in placed)
            }

    assert code in (0, -signal.SIGTERM), target_log[-3000:]  # uvicorn re-raises the signal after a clean exit
    assert new_report["ok"], new_report.get("error")
    answered_after = target_log.split("draining calls before shutting down", 1)[1]
    assert "answered call" not in answered_after, answered_after[-3000:]
    assert "IncomingCall handed to replica" in answered_after, answered_after[-3000:]
    assert handed_report["ok"], handed_report.get("error")
    assert "call handed over" in target_log, target_log[-3000:]
    assert "for the shutdown" not in answered_after, answered_after[-3000:]  # nothing hung up by the drain
    for (_, call), report in zip(placed, reports, strict=True):
        cid = call.call_connection_id
        assert report["ok"], (cid, report.get("error"))
        replies = [m["content"] for m in docs[cid]["transcript"] if m["role"] == "assistant"]
        assert sum(x.startswith("Thank you for calling Contoso") for x in replies) == 1, replies
        if owners[cid] == target:
            # Handed over: a second socket, the agent heard again after the gap, apologising once.
            assert report["media_session_count"] == 2, report["media_sessions"]
            (gap,) = report["media_gaps"]
            assert gap["resumed_at_ms"] is not None, gap
            assert sum(x.startswith(RESUME_LINE) for x in replies) == 1, replies
        else:
            assert report["media_session_count"] == 1, report["media_sessions"]
        assert "CallDisconnected" in report["events"]
        assert report["events"].count("CallDisconnected") == 1
