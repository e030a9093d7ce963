"""Calls through HAProxy in front of two real ``callwright serve`` replicas on one Redis: an inbound call
completes, the webhook deliveries of that one call were spread over both replicas by the load balancer
(no stickiness), and every replica's API shows the finished call with its transcript; then an outbound
call placed through the load balancer's API completes with the right direction and mode; a hang-up asked
of the replica that does not hold a call's media ends it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from support.cluster import cluster

pytestmark = pytest.mark.timeout(240)

TWO_TURNS = """
name: two turns through the load balancer
direction: inbound
from: "+15551230001"
to: "+15550001000"
timeout_s: 90
steps:
  - wait: {agent_done: 700, timeout_s: 40}
  - say: "What are your opening hours?"
  - wait: {agent_done: 700, timeout_s: 40}
  - hangup
"""

WAITS_FOR_HANG_UP = """
name: waits for the operator to hang up
direction: inbound
from: "+15551230002"
to: "+15550001000"
timeout_s: 90
steps:
  - wait: {agent_done: 700, timeout_s: 40}
  - wait: {disconnected: true, timeout_s: 60}
"""

OUTBOUND = """
name: outbound through the load balancer
direction: outbound
from: "+15550001000"
to: "+15557770001"
outbound: {answer_after_s: 0.5, outcome: answer}
timeout_s: 60
steps:
  - wait: {agent_done: 700, timeout_s: 40}
  - say: "What are your opening hours?"
  - wait: {agent_done: 700, timeout_s: 40}
  - hangup
"""


# Replica processes + HAProxy + emulator: one such test at a time (tests/scale share this group).
@pytest.mark.xdist_group("scale-cluster")
async def test_an_inbound_call_through_the_load_balancer_with_two_replicas(tmp_path: Path) -> None:
    async with cluster(tmp_path, replicas=2) as c:
        report = await c.call(TWO_TURNS, timeout_s=120)
        assert report["ok"], report.get("error")
        events = report["events"]
        assert events[0] == "CallConnected" and "MediaStreamingStarted" in events, events
        heard = [t for t in report["transcript"] if t["speaker"] == "agent"]
        assert len(heard) >= 2, report["transcript"]  # the greeting and the answer reached the caller's ear
        call_id = report["call_id"]

        # No stickiness: the one call's webhook deliveries landed on both replicas.
        webhook_servers = c.lb.servers_for("/api/v1/call-events", "POST")
        assert len(webhook_servers) >= 3, webhook_servers
        assert set(webhook_servers) == {"r0", "r1"}, webhook_servers
        media_servers = c.lb.servers_for("/api/v1/media/stream")
        assert len(media_servers) == 1 and media_servers[0] in ("r0", "r1"), media_servers

        # Every replica answers for the call (from the shared store), with what was said.
        async with httpx.AsyncClient(timeout=10, headers=c.operator_headers) as http:
            for r in c.replicas:
                resp = await http.get(f"{r.url}/api/v1/calls/{call_id}")
                assert resp.status_code == 200, (r.name, resp.text)
                doc = resp.json()
                assert doc["direction"] == "inbound" and doc["mode"] == "media", doc
                said = " ".join(m["content"].lower() for m in doc["transcript"] if m["role"] == "user")
                assert "opening hours" in said, (r.name, doc["transcript"])
                replies = [m["content"] for m in doc["transcript"] if m["role"] == "assistant"]
                assert any("Monday to Friday" in m for m in replies), (r.name, replies)

        # Outbound: placed through the load balancer's API (one replica), answered and served wherever
        # the callbacks and the media socket land.
        before = len(c.lb.servers_for("/api/v1/call-events", "POST"))
        out = await c.call(OUTBOUND, timeout_s=120)
        assert out["ok"], out.get("error")
        assert out["events"][0] == "CallConnected", out["events"]
        assert set(c.lb.servers_for("/api/v1/call-events", "POST")[before:]) == {"r0", "r1"}
        async with httpx.AsyncClient(timeout=10, headers=c.operator_headers) as http:
            doc = (await http.get(f"{c.url}/api/v1/calls/{out['call_id']}")).json()
        assert doc["direction"] == "outbound" and doc["mode"] == "media", doc
        assert doc["target"] == "4:+15557770001", doc
        assert any("Monday to Friday" in m["content"] for m in doc["transcript"] if m["role"] == "assistant"), doc

        # A hang-up asked of the replica that does NOT hold the call's media: ACS hangs up, and the
        # CallDisconnected reaches the holder, which ends the call for every replica.
        phone, call = await c.place(WAITS_FOR_HANG_UP)
        running = asyncio.create_task(phone.run(call))
        cid = call.call_connection_id
        r = aioredis.from_url(c.redis_url)
        try:
            owner = None
            for _ in range(300):
                owner = await r.get(f"callwright:owner:{cid}")
                if owner:
                    break
                await asyncio.sleep(0.1)
        finally:
            await r.aclose()
        assert owner, "the call's media socket was never claimed"
        other = next(x for x in c.replicas if x.replica_id != owner.decode())
        async with httpx.AsyncClient(timeout=10, headers=c.operator_headers) as http:
            resp = await http.delete(f"{other.url}/api/v1/calls/{cid}")
            assert resp.status_code == 202, resp.text
            hung = await asyncio.wait_for(running, 60)
            assert hung["events"][-1] == "CallDisconnected", hung["events"]
            for _ in range(100):  # the holder finishes the call a moment after ACS's event
                states = [(await http.get(f"{x.url}/api/v1/calls/{cid}")).json()["state"] for x in c.replicas]
                if states == ["disconnected"] * len(states):
                    break
                await asyncio.sleep(0.1)
            assert states == ["disconnected"] * len(states), states

        # A replica killed outright leaves the rotation (requests keep being answered by the other) and
        # comes back under a new REPLICA_ID in the same load-balancer slot.
        c.kill("r1")
        assert await c.wait_exit("r1", 30) == -9
        await asyncio.to_thread(c.lb.wait_states, {"r1": "DOWN"}, 20)
        async with httpx.AsyncClient(timeout=10) as http:
            codes = [(await http.get(f"{c.url}/health")).status_code for _ in range(4)]
        assert codes == [200] * 4
        await c.restart("r1")
        assert c.replica("r1").replica_id == "r1-r1"
        assert "replica=r1-r1" in c.replica("r1").log_text()
