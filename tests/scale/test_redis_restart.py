"""Redis restarted mid-call with two replicas: the calls continue.

Two real ``callwright serve`` replicas behind HAProxy share a real redis-server, which is stopped for longer
than a replica's heartbeat TTL while two calls are mid-conversation, then started again — empty, or from its
append-only file (the replica list back, every heartbeat key expired). The calls' media sockets never
depended on Redis: both scripts complete on their first socket — no replica mistook the other for dead when
the heartbeats vanished (no take-over, no media restart) — and the conversations go on being answered during
the outage and after it.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from callwright.localredis import LocalRedis
from support.cluster import cluster

pytestmark = pytest.mark.timeout(300)

THREE_QUESTIONS = """
name: three questions across a redis restart
direction: inbound
from: "+15551230001"
to: "+15550001000"
timeout_s: 150
transcribe: false
steps:
  - wait: {agent_done: 700, timeout_s: 40}
  - say: "What are your opening hours?"
  - wait: {agent_done: 900, timeout_s: 60}
  - say: "What are your opening hours?"
  - wait: {agent_done: 900, timeout_s: 60}
  - say: "What are your opening hours?"
  - wait: {agent_done: 700, timeout_s: 60}
  - hangup
"""


async def _until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(0.05)


# Two replica processes each: one such test at a time per worker (2 cores).
@pytest.mark.xdist_group("scale-cluster")
@pytest.mark.parametrize("persisted", [False, True], ids=["restarted-empty", "restarted-from-its-file"])
async def test_calls_continue_across_a_redis_restart(tmp_path: Path, redis_server: Any, persisted: bool) -> None:
    if persisted:
        # Restarted from its append-only file: the replica list survives, every heartbeat key has expired —
        # the case where a replica judging too early would take the other's calls over.
        redis_server.stop()
        (tmp_path / "redis-aof").mkdir()
        redis_server = LocalRedis(tmp_path / "redis-aof", persistent=True)
        await asyncio.to_thread(redis_server.start)
    try:
        await _run(tmp_path, redis_server)
    finally:
        if persisted:
            await asyncio.to_thread(redis_server.stop)


async def _run(tmp_path: Path, redis_server: Any) -> None:
    async with cluster(tmp_path / "cluster", replicas=2, redis_url=redis_server.url) as c:
        placed = [await c.place(THREE_QUESTIONS.replace("+15551230001", f"+1555123000{n}")) for n in (1, 2)]
        runners = [asyncio.create_task(phone.run(call)) for phone, call in placed]
        # Both calls past their greeting and first question: mid-conversation.
        await _until(lambda: all(len(p.utterances) >= 1 for p, _ in placed), 90, "both callers' first question")
        await asyncio.to_thread(redis_server.stop)
        await asyncio.sleep(5.0)  # past REPLICA_DEAD_AFTER_SECONDS (3 s): every heartbeat key would be gone
        await asyncio.to_thread(redis_server.start)  # same port, empty
        reports = await asyncio.wait_for(asyncio.gather(*runners), 200)
        await asyncio.sleep(2 * 1.0 + 3.0)  # a few heartbeat rounds after the restart: a late verdict shows now
        logs = c.logs()

    for (_, call), report in zip(placed, reports, strict=True):
        assert report["ok"], (call.call_connection_id, report.get("error"))
        # One socket for the whole call: Redis going away cost no media restart.
        assert report["media_session_count"] == 1, report["media_sessions"]
        answers = [t for t in report["turns"] if t.get("agent_start_ms") is not None]
        assert len(answers) >= 3, report["turns"]  # every question answered, during the outage and after
    for name, text in logs.items():
        assert "is dead (no heartbeat" not in text, (name, text[-3000:])
        assert "asking ACS to restart" not in text, (name, text[-3000:])
