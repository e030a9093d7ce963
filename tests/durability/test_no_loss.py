"""Nothing lost: version-checked session writes, final saves that outlive the call, spill to disk and
replay, and a restarted server that still serves earlier calls — against a real redis-server."""

from __future__ import annotations

import asyncio
import copy
import json
import os
import stat
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as aioredis
from hypothesis import given, settings
from hypothesis import strategies as st

from callwright.sessions.memo import MemoManager
from callwright.sessions.store import InMemorySessionStore, RedisSessionStore
from server.conftest import edge_server

RECORDED = json.loads((Path(__file__).parents[1] / "data" / "events" / "recorded.json").read_text())
CID = RECORDED["CallConnected"][0]["data"]["callConnectionId"]


def _event(name: str, call_id: str = CID) -> list[dict[str, Any]]:
    events = copy.deepcopy(RECORDED[name])
    for ev in events:
        ev["data"]["callConnectionId"] = call_id
        ev["id"] = f"{ev['id']}-{call_id}"  # the processor de-duplicates by event id
    return events


async def _post(edge: Any, events: list[dict[str, Any]]) -> None:
    async with httpx.AsyncClient() as http:
        resp = await http.post(edge.webhook(secret=False), json=events, headers=edge.auth())
    assert resp.status_code == 200, resp.text
    await edge.state.processor.drain()


async def _wait(predicate: Any, timeout: float, what: str) -> None:
    for _ in range(int(timeout / 0.05)):
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def _stored(url: str, key: str) -> dict[str, Any] | None:
    client = aioredis.from_url(url)
    try:
        raw = await client.get(key)
    finally:
        await client.aclose()
    return json.loads(raw) if raw else None


# --- version check ----------------------------------------------------------------------------------


async def test_a_stall_at_first_sight_does_not_overwrite_the_stored_history(redis_server):
    """Another replica stored 3 messages; this one first sees the call while Redis is stalled."""
    other = RedisSessionStore(redis_server.url, prefix="callwright", ttl_seconds=600)
    earlier = MemoManager(CID, other)
    for text in ("hello", "I need help with my claim", "sure, what is the claim number"):
        earlier.append_history("user", text)
    earlier.set_context("caller", "+15551230001")
    assert await earlier.persist_to_redis_async()
    await other.close()

    async with edge_server(redis_url=redis_server.url) as edge:
        pauser = aioredis.from_url(redis_server.url)
        try:
            # CLIENT PAUSE holds every command (ours included) for 2.5 s: the load at first sight times out.
            await pauser.execute_command("CLIENT", "PAUSE", 2500, "ALL")
            await _post(edge, _event("CallConnected"))
            record = edge.state.calls.get(CID)
            assert record is not None and record.memo is not None
            assert record.memo.history == []  # started empty: the stored session was not readable
            record.memo.append_history("user", "it is 12345")
            record.memo.persist_background(0)

            async def merged() -> bool:
                doc = await _stored(redis_server.url, f"callwright:session:{CID}")
                return doc is not None and len(doc["history"]) == 4

            await _wait(merged, 20, "the merged session")
        finally:
            await pauser.aclose()
        doc = await _stored(redis_server.url, f"callwright:session:{CID}")
        assert [m["content"] for m in doc["history"]] == [
            "hello",
            "I need help with my claim",
            "sure, what is the claim number",
            "it is 12345",
        ]
        assert doc["context"]["caller"] == "+15551230001"  # the stored context survives
        assert doc["context"]["call_state"] == "connected"  # ... with this replica's keys on top
        # The live memo now holds the earlier history too (the agent sees it).
        assert len(edge.state.calls.get(CID).memo.history) == 4


async def test_two_writers_never_lose_each_others_messages(redis_server):
    store = RedisSessionStore(redis_server.url, prefix="cw", ttl_seconds=600)
    try:
        a = MemoManager("c-two", store)
        b = MemoManager("c-two", store)
        a.append_history("user", "a1")
        assert await a.persist_to_redis_async()
        b.append_history("user", "b1")  # b never loaded: its first write must merge, not overwrite
        assert await b.persist_to_redis_async()
        a.append_history("assistant", "a2")
        assert await a.persist_to_redis_async()
        doc = await store.load("c-two")
        assert [m["content"] for m in doc["history"]] == ["a1", "b1", "a2"]
        assert doc["version"] == 3
    finally:
        await store.close()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("ab"), st.sampled_from(["append", "save", "ctx"])), max_size=30))
def test_interleaved_writers_keep_every_message_once(ops: list[tuple[str, str]]) -> None:
    async def run() -> None:
        store = InMemorySessionStore(ttl_seconds=600)
        memos = {"a": MemoManager("c", store), "b": MemoManager("c", store)}
        sent: list[str] = []
        for i, (who, op) in enumerate(ops):
            memo = memos[who]
            if op == "append":
                memo.append_history("user", f"{who}{i}")
                sent.append(f"{who}{i}")
            elif op == "ctx":
                memo.set_context(who, i)
            else:
                assert await memo.persist_to_redis_async()
        for memo in memos.values():
            assert await memo.persist_to_redis_async()
        doc = await store.load("c") or {"history": [], "context": {}}
        stored = [m["content"] for m in doc["history"]]
        assert sorted(stored) == sorted(sent)  # every message, exactly once
        for who in "ab":  # each writer's messages keep their order
            assert [m for m in stored if m[0] == who] == [m for m in sent if m[0] == who]
        for who in "ab":
            last = [i for i, (w, op) in enumerate(ops) if w == who and op == "ctx"]
            if last:
                assert doc["context"][who] == last[-1]

    asyncio.run(run())


# --- final saves outlive the call ----------------------------------------------------------------------


async def test_redis_down_past_the_calls_end_the_final_save_lands_when_it_returns(redis_server, tmp_path):
    async with edge_server(redis_url=redis_server.url, session_spill_dir=tmp_path / "spill") as edge:
        await _post(edge, _event("CallConnected"))
        record = edge.state.calls.get(CID)
        record.memo.append_history("user", "said before the outage")
        assert await record.memo.persist_to_redis_async()

        redis_server.stop()
        record.memo.append_history("assistant", "said while Redis was down")
        await _post(edge, _event("CallDisconnected"))
        assert edge.state.calls.get(CID).state == "disconnected"  # the call ended without waiting for Redis
        assert edge.state.saver.pending == 1

        await asyncio.sleep(3.0)  # well past the call's end and its 2 s final-save attempt
        redis_server.start()  # same port, empty: the whole session must be written again

        async def landed() -> bool:
            return edge.state.saver.pending == 0

        await _wait(landed, 30, "the deferred final save")
        doc = await _stored(redis_server.url, f"callwright:session:{CID}")
        assert [m["content"] for m in doc["history"]] == ["said before the outage", "said while Redis was down"]
        assert doc["context"]["call_state"] == "disconnected"
        assert not list((tmp_path / "spill").glob("*"))  # landed: nothing spilled


async def test_redis_down_at_shutdown_spills_every_call_and_the_next_start_replays_them(redis_server, tmp_path):
    spill = tmp_path / "spill"
    ids = [f"spill-call-{i:02d}" for i in range(20)]
    async with edge_server(redis_url=redis_server.url, session_spill_dir=spill, shutdown_save_seconds=0.5) as edge:
        for cid in ids:
            await _post(edge, _event("CallConnected", cid))
            edge.state.calls.get(cid).memo.append_history("user", f"words of {cid}")
        redis_server.stop()
        # The server stops with 20 live calls and no Redis: hung up through ACS, spilled to disk.
    files = sorted(spill.glob("*.session.json"))
    assert len(files) == 20
    assert all(stat.S_IMODE(os.stat(f).st_mode) == 0o600 for f in files)  # transcripts are personal data
    assert len(edge.acs.requests) >= 20  # each call was hung up (terminate) rather than left in dead air

    redis_server.start()  # empty
    async with edge_server(redis_url=redis_server.url, session_spill_dir=spill) as edge2:
        for cid in ids:
            doc = await _stored(redis_server.url, f"callwright:session:{cid}")
            assert doc is not None, cid
            assert [m["content"] for m in doc["history"]] == [f"words of {cid}"]
            assert doc["context"]["call_state"] == "disconnected"
        assert not list(spill.glob("*.session.json"))  # replayed files are removed
        recent = {r.call_connection_id for r in edge2.state.calls.recent()}
        assert set(ids) <= recent  # the recent-calls list came back too


async def test_a_restarted_server_serves_calls_from_before_the_restart(redis_server, tmp_path):
    async with edge_server(redis_url=redis_server.url, session_spill_dir=tmp_path) as edge:
        await _post(edge, _event("CallConnected"))
        edge.state.calls.get(CID).memo.append_history("user", "remember me")
        await _post(edge, _event("CallDisconnected"))
        await _wait(lambda: _true_if(edge.state.saver.pending == 0), 10, "the recent-calls entry")

    async with edge_server(redis_url=redis_server.url, session_spill_dir=tmp_path) as edge2:
        calls = edge2.state.calls
        assert CID in [r.call_connection_id for r in calls.recent()]  # the list survived the restart
        record = await calls.lookup(CID)
        assert record is not None
        detail = record.to_api(detail=True)
        assert [m["content"] for m in detail["transcript"]] == ["remember me"]
        assert detail["state"] == "disconnected"
        assert await calls.lookup("no-such-call") is None
        assert await calls.lookup("bad id\x00") is None  # not a call id: never reaches Redis

    # A call this server never listed (e.g. written by another replica) is found by its session alone.
    other = RedisSessionStore(redis_server.url, prefix="callwright", ttl_seconds=600)
    memo = MemoManager("other-replica-call", other)
    memo.update_context({"direction": "outbound", "callee": "+15551239999", "call_state": "connected"})
    memo.append_history("assistant", "hello from elsewhere")
    assert await memo.persist_to_redis_async()
    await other.close()
    async with edge_server(redis_url=redis_server.url, session_spill_dir=tmp_path) as edge3:
        record = await edge3.state.calls.lookup("other-replica-call")
        assert record is not None and record.direction == "outbound" and record.target == "+15551239999"
        assert record.to_api(detail=True)["transcript"][0]["content"] == "hello from elsewhere"


async def _true_if(value: bool) -> bool:
    return value
