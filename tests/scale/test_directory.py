"""The call directory on a real redis-server, and the in-memory one with the same semantics where they share them.

Two RedisDirectory objects with different replica ids stand for two replicas (two processes would talk to Redis
the same way: nothing here is process-local)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from callwright.sessions.directory import LocalDirectory, RedisDirectory
from callwright.sessions.registry import CallRecord, CallRegistry
from callwright.sessions.store import RedisSessionStore, StoreUnavailable

CID_A = "411f0b00-360b-49d4-8323-c08b3b9d4043"
CID_B = "421f0b00-360b-49d4-8323-c08b3b9d4043"


@pytest.fixture
async def pair(redis_server, request) -> AsyncIterator[tuple[RedisDirectory, RedisDirectory]]:
    prefix = f"t{abs(hash(request.node.name)) % 10**8}"
    a = RedisDirectory(redis_server.url, replica_id="r0", prefix=prefix, ttl_seconds=600, dead_after_seconds=0.5)
    b = RedisDirectory(redis_server.url, replica_id="r1", prefix=prefix, ttl_seconds=600, dead_after_seconds=0.5)
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


async def test_an_entry_published_by_one_replica_is_read_and_listed_by_the_other(pair) -> None:
    a, b = pair
    record = CallRecord(CID_A, direction="outbound", mode="voice_live", state="connected", target="4:+15551230001")
    record.context["order"] = "A-17"
    await a.put(CID_A, record.directory_entry())
    entry = await b.get(CID_A)
    assert entry is not None and entry["mode"] == "voice_live" and entry["context"] == {"order": "A-17"}
    rebuilt = CallRecord.from_directory(entry)
    assert (rebuilt.direction, rebuilt.mode, rebuilt.state, rebuilt.target) == (
        "outbound",
        "voice_live",
        "connected",
        "4:+15551230001",
    )
    assert [e["call_connection_id"] for e in await b.active()] == [CID_A]
    await b.end(CID_A)
    assert await a.active() == [] and await a.get(CID_A) is None


async def test_media_ownership_moves_with_the_socket_and_lists_per_replica(pair) -> None:
    a, b = pair
    assert await a.claim(CID_A) is None
    assert await a.owners([CID_A, CID_B]) == {CID_A: "r0"}
    assert await b.claim(CID_A) == "r0"  # the socket reconnected to r1: r0 hears who holds it now
    assert await a.owned_by("r0") == [] and await a.owned_by("r1") == [CID_A]
    assert not await a.release(CID_A)  # not r0's any more: nothing changes
    assert await b.owners([CID_A]) == {CID_A: "r1"}
    assert await b.release(CID_A)
    assert await a.owners([CID_A]) == {} and await a.owned_by("r1") == []


async def test_a_delivery_is_first_exactly_once_across_replicas(pair) -> None:
    a, b = pair
    keys = ["id:e1", "incoming:server-call-1"]
    results = await asyncio.gather(a.first_deliveries(keys), b.first_deliveries(keys))
    # Both keys were claimed by exactly one of the two concurrent deliveries.
    assert sorted(r[0] for r in results) == [False, True]
    assert sorted(r[1] for r in results) == [False, True]
    assert await a.first_deliveries(["id:e2"]) == [True]


async def test_a_pending_outbound_call_is_taken_once_by_whichever_replica_sees_its_first_event(pair) -> None:
    a, b = pair
    await a.put_pending("ctx-1", {"mode": "voice_live", "target": "4:+15551230001", "context": {}})
    assert await b.has_pending("ctx-1") and await b.pending_count() == 1
    taken = await asyncio.gather(a.take_pending("ctx-1"), b.take_pending("ctx-1"))
    assert [t for t in taken if t is not None] == [{"mode": "voice_live", "target": "4:+15551230001", "context": {}}]
    assert await a.pending_count() == 0


async def test_a_replica_that_stops_beating_is_dead_and_one_survivor_wins_its_takeover(pair) -> None:
    a, b = pair
    await a.beat()
    await b.beat(draining=True)
    alive = await a.alive()
    assert set(alive) == {"r0", "r1"} and alive["r1"]["draining"] is True
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # only a beats; b's key (0.5 s) runs out
        await a.beat()
        if "r1" not in await a.alive():
            break
        await asyncio.sleep(0.1)
    assert set(await a.alive()) == {"r0"} and await a.known() == {"r0", "r1"}
    wins = await asyncio.gather(a.claim_takeover("r1", 5), b.claim_takeover("r1", 5))
    assert sorted(wins) == [False, True]
    await a.forget("r1")
    assert await a.known() == {"r0"}


async def test_redis_down_fails_fast_and_recovers(redis_server) -> None:
    d = RedisDirectory(redis_server.url, replica_id="r0", prefix="down", ttl_seconds=600, op_timeout=0.5)
    try:
        redis_server.stop()
        with pytest.raises(StoreUnavailable):
            await d.get(CID_A)
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            await d.owners([CID_A])  # known down: no second wait for the timeout
        assert time.monotonic() - started < 0.4
        redis_server.start()
        await asyncio.sleep(1.1)
        assert await d.get(CID_A) is None
    finally:
        await d.close()


async def test_the_local_directory_keeps_the_same_semantics_in_one_process() -> None:
    d = LocalDirectory("solo")
    assert d.shared is False
    assert await d.first_deliveries(["id:1", "id:1"]) == [True, False]
    await d.put_pending("ctx", {"mode": "media"})
    assert await d.has_pending("ctx") and await d.take_pending("ctx") == {"mode": "media"}
    assert await d.take_pending("ctx") is None
    assert await d.claim(CID_A) is None and await d.owners([CID_A]) == {CID_A: "solo"}
    assert await d.release(CID_A) and await d.owned_by("solo") == []


async def test_registries_on_two_replicas_share_live_calls(pair, redis_server) -> None:
    """One replica answered the call; the other gets its media socket: it must open it with the call's mode."""
    a, b = pair
    store = RedisSessionStore(redis_server.url, prefix=a.prefix, ttl_seconds=600)
    try:
        first = CallRegistry(store=store, directory=a)
        second = CallRegistry(store=store, directory=b)
        record = first.add(CallRecord(CID_A, direction="outbound", mode="voice_live", target="4:+15551230001"))
        await first.publish(record)
        assert [c.call_connection_id for c in await second.everywhere()] == [CID_A]
        held = await second.resolve(CID_A)
        assert held is not None and held.mode == "voice_live" and held.direction == "outbound"
        assert second.get(CID_A) is held  # held there from now on
        # The first replica lets go when the socket is elsewhere; the call stays up in the directory.
        assert first.release_local(CID_A) is record and first.get(CID_A) is None
        assert await a.get(CID_A) is not None
        second.finish(CID_A, reason="caller hung up")
        await second.close()
        assert await a.active() == []
        assert await first.resolve(CID_A) is None  # ended: nobody opens it again
    finally:
        await store.close()


async def test_the_replica_holding_the_media_takes_in_what_another_replica_handled(pair, redis_server) -> None:
    """CallConnected ran on the replica that answered, just before the media socket reached the other one:
    the holder's next publish takes 'connected' (and fields it lacked) instead of writing 'connecting' back."""
    a, b = pair
    answered_here = CallRegistry(directory=a)
    holder = CallRegistry(directory=b)
    early = answered_here.add(CallRecord(CID_A, direction="inbound", mode="media", caller="4:+15551230001"))
    early.state, early.connected_at = "connected", 1000.0
    early.context["caller_profile"] = {"name": "Ada"}
    await answered_here.publish(early)
    held = holder.add(CallRecord(CID_A, direction="inbound", mode="media"))  # built before the entry landed
    assert held.state == "connecting"
    await holder.publish(held)
    assert (held.state, held.connected_at, held.caller) == ("connected", 1000.0, "4:+15551230001")
    assert held.context["caller_profile"] == {"name": "Ada"}
    assert (await b.get(CID_A))["state"] == "connected"
    held.state = "transferring"
    await holder.publish(held)
    held.state = "connected"  # the transfer failed: the state goes back, and stays back
    await holder.publish(held)
    assert held.state == "connected" and (await a.get(CID_A))["state"] == "connected"
