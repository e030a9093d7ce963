"""Session state against a real redis-server (started by the test), including an outage mid-call."""

from __future__ import annotations

import asyncio
import copy
import json
from pathlib import Path

import httpx
import redis.asyncio as aioredis

from callwright.sessions.memo import MemoManager
from callwright.sessions.store import InMemorySessionStore, RedisSessionStore

from .conftest import edge_server

RECORDED = json.loads((Path(__file__).parents[1] / "data" / "events" / "recorded.json").read_text())


async def test_memo_round_trip_in_memory():
    store = InMemorySessionStore(ttl_seconds=60)
    memo = MemoManager("c1", store, debounce_seconds=0)
    memo.set_context("caller", "+15551230001")
    memo.append_history("user", "hello")
    memo.append_history("assistant", "Thank you for", interrupted=True, agent="front_desk")
    assert await memo.persist_to_redis_async()
    loaded = await MemoManager.load("c1", store)
    assert loaded.get_context("caller") == "+15551230001"
    assert loaded.history[1]["interrupted"] is True and loaded.history[1]["agent"] == "front_desk"
    assert not loaded.dirty


async def test_redis_store_one_key_per_call_with_ttl(redis_server):
    store = RedisSessionStore(redis_server.url, prefix="cwtest", ttl_seconds=120)
    memo = MemoManager("call-9", store, debounce_seconds=0.01)
    for i in range(20):
        memo.set_context(f"k{i}", i)
        memo.persist_background()  # debounced: many changes, few writes
    await asyncio.sleep(0.3)
    client = aioredis.from_url(redis_server.url)
    try:
        keys = await client.keys("cwtest:*")
        assert keys == [b"cwtest:session:call-9"]
        ttl = await client.ttl("cwtest:session:call-9")
        assert 100 < ttl <= 120
        doc = json.loads(await client.get("cwtest:session:call-9"))
        assert doc["context"]["k19"] == 19
    finally:
        await client.aclose()
        await store.close()


async def test_redis_outage_mid_call_loses_nothing(redis_server):
    store = RedisSessionStore(redis_server.url, prefix="cwtest", ttl_seconds=600, op_timeout=0.3)
    memo = MemoManager("call-outage", store, debounce_seconds=0.01, retry_max_seconds=0.3)
    memo.append_history("user", "before the outage")
    assert await memo.persist_to_redis_async()

    redis_server.stop()
    memo.append_history("assistant", "said during the outage")
    memo.set_context("slot", "1234")
    memo.persist_background()
    await asyncio.sleep(0.5)
    assert memo.dirty  # not landed, still held
    assert store.health()["reachable"] is False

    redis_server.start()  # same port, empty (no persistence): everything must be rewritten
    for _ in range(100):
        if not memo.dirty:
            break
        await asyncio.sleep(0.05)
    assert not memo.dirty
    doc = await store.load("call-outage")
    assert [m["content"] for m in doc["history"]] == ["before the outage", "said during the outage"]
    assert doc["context"]["slot"] == "1234"
    await memo.aclose()
    await store.close()


async def test_server_keeps_the_call_through_a_redis_outage(redis_server):
    async with edge_server(redis_url=redis_server.url) as edge:
        connected = copy.deepcopy(RECORDED["CallConnected"])
        cid = connected[0]["data"]["callConnectionId"]
        async with httpx.AsyncClient() as http:
            assert (await http.post(edge.webhook(secret=False), json=connected, headers=edge.auth())).status_code == 200
            await edge.state.processor.drain()
            assert (await http.get(f"{edge.url}/ready")).status_code == 200

            redis_server.stop()
            parts = copy.deepcopy(RECORDED["ParticipantsUpdated"])
            resp = await http.post(edge.webhook(secret=False), json=parts, headers=edge.auth())
            assert resp.status_code == 200  # the webhook still accepts events for the call
            await edge.state.processor.drain()
            ready = await http.get(f"{edge.url}/ready")
            assert ready.status_code == 503
            assert ready.json()["checks"]["store"]["reachable"] is False

            redis_server.start()
            call = edge.state.calls.get(cid)
            for _ in range(200):
                if not call.memo.dirty:
                    break
                await asyncio.sleep(0.05)
            doc = await edge.state.store.load(cid)
            assert doc["context"]["participants"][0] == "4:+18447649276"
            assert (await http.get(f"{edge.url}/ready")).status_code == 200


async def test_version_check_reads_documents_written_before_versioning(redis_server):
    """A document from the previous layout (no version, other key order) is merged, never overwritten."""
    client = aioredis.from_url(redis_server.url)
    store = RedisSessionStore(redis_server.url, prefix="cwtest", ttl_seconds=600)
    try:
        legacy = {"call_connection_id": "old", "context": {"a": 1}, "history": [{"role": "user", "content": "x"}]}
        await client.set("cwtest:session:old", json.dumps(legacy))
        memo = MemoManager("old", store)  # believes nothing is stored (version 0)
        memo.append_history("assistant", "y")
        assert await memo.persist_to_redis_async()
        doc = json.loads(await client.get("cwtest:session:old"))
        assert [m["content"] for m in doc["history"]] == ["x", "y"]
        assert doc["context"] == {"a": 1} and doc["version"] == 1
        raw = await client.get("cwtest:session:old")
        assert raw.startswith(b'{"version": 1')  # version first: the Lua check reads it without decoding
    finally:
        await client.aclose()
        await store.close()


async def test_a_small_redis_pool_makes_writers_wait_instead_of_failing(redis_server):
    store = RedisSessionStore(redis_server.url, prefix="cwtest", ttl_seconds=600, max_connections=2, pool_timeout=10)
    try:
        memos = [MemoManager(f"pool-{i}", store) for i in range(40)]
        for memo in memos:
            memo.append_history("user", memo.call_connection_id)
        results = await asyncio.gather(*(m.persist_to_redis_async() for m in memos))
        assert all(results)  # 40 writers through 2 connections: queued, none refused
        assert store.health()["reachable"] is True
        for memo in memos:
            assert (await store.load(memo.call_connection_id))["history"][0]["content"] == memo.call_connection_id
    finally:
        await store.close()
