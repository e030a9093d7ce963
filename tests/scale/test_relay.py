"""The event relay on a real redis-server: order, resumption, a dead replica's stream, bad and stale entries."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import statistics
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from callwright.acs.events import CallEvent, parse_delivery
from callwright.scale.relay import STALE_SECONDS, EventRelay
from callwright.sessions.directory import RedisDirectory

log = logging.getLogger("tests.scale.relay")

CALL = "411f0b00-360b-49d4-8323-c08b3b9d4043"


def dtmf_event(seq: int, call_id: str = CALL) -> CallEvent:
    body = {
        "id": str(uuid.uuid4()),
        "source": f"calling/callConnections/{call_id}",
        "type": "Microsoft.Communication.ContinuousDtmfRecognitionToneReceived",
        "data": {"callConnectionId": call_id, "sequenceId": seq, "tone": "five"},
        "time": "2024-04-10T19:10:42.4046861+00:00",
        "specversion": "1.0",
    }
    [event] = parse_delivery(json.dumps(body).encode()).events
    return event


class Sink:
    """Stands in for a replica's processor: what the relay handed over, in order, and when."""

    def __init__(self) -> None:
        self.events: list[CallEvent] = []
        self.at: list[float] = []
        self.released: list[tuple[str, str]] = []
        self.arrived = asyncio.Event()

    async def on_events(self, events: list[CallEvent]) -> None:
        now = time.perf_counter()
        self.events.extend(events)
        self.at.extend([now] * len(events))
        self.arrived.set()

    def on_release(self, call_id: str, owner: str) -> None:
        self.released.append((call_id, owner))
        self.arrived.set()

    async def wait_for(self, n: int, timeout: float = 20.0) -> None:
        async with asyncio.timeout(timeout):
            while len(self.events) < n:
                self.arrived.clear()
                await self.arrived.wait()


@contextlib.asynccontextmanager
async def relay_for(directory: RedisDirectory, sink: Sink, *, start: bool = True) -> AsyncIterator[EventRelay]:
    relay = EventRelay(
        client=directory.client,
        url=directory.url,
        key=directory.key,
        replica_id=directory.replica_id,
        on_events=sink.on_events,
        on_release=sink.on_release,
    )
    if start:
        relay.start()
    try:
        yield relay
    finally:
        await relay.close()


@contextlib.asynccontextmanager
async def directories(url: str, *names: str) -> AsyncIterator[list[RedisDirectory]]:
    prefix = f"cw-test-{uuid.uuid4().hex[:8]}"
    dirs = [RedisDirectory(url, replica_id=n, prefix=prefix, ttl_seconds=600) for n in names]
    try:
        yield dirs
    finally:
        for d in dirs:
            await d.close()


async def test_events_arrive_in_order_within_a_few_ms(redis_server: Any) -> None:
    async with directories(redis_server.url, "r0", "r1") as (d0, d1):
        sink0, sink1 = Sink(), Sink()
        async with relay_for(d0, sink0) as r0, relay_for(d1, sink1) as r1:
            await asyncio.sleep(0.2)  # r1's first XREAD is blocking
            sent = [dtmf_event(i) for i in range(60)]
            latencies: list[float] = []
            for n, event in enumerate(sent):
                t0 = time.perf_counter()
                await r0.forward("r1", [event])
                await sink1.wait_for(n + 1)
                latencies.append(sink1.at[n] - t0)
            # and a burst of 5 batches of 20 without waiting: still in order
            burst = [dtmf_event(1000 + i) for i in range(100)]
            for i in range(0, 100, 20):
                await r0.forward("r1", burst[i : i + 20])
            await sink1.wait_for(160)
            assert [e.id for e in sink1.events] == [e.id for e in sent + burst]
            assert sink1.events[5].raw == sent[5].raw  # the original JSON object went across
            assert sink0.events == []  # nothing went to the sender's own stream
            assert r0.sent == 160 and r1.received == 160
            p50 = statistics.median(latencies) * 1000
            p95 = sorted(latencies)[int(len(latencies) * 0.95) - 1] * 1000
            log.warning("relay forward latency (XADD → handed over): p50 %.2f ms, p95 %.2f ms", p50, p95)
            print(f"relay forward latency (XADD → handed over): p50 {p50:.2f} ms, p95 {p95:.2f} ms")
            assert p50 < 500  # a loose bound for a busy 2-core machine; the log line has the figure
            assert len(r1.latencies) == 65  # one sample per stream entry (60 single events, 5 batches)
            # Handled entries are deleted: the stream holds nothing the replica has taken.
            assert await d0.client.xlen(r1.stream) == 0
            assert await d0.client.ttl(r1.stream) > 0


async def test_events_sent_while_the_consumer_was_away_are_run_when_it_returns(redis_server: Any) -> None:
    async with directories(redis_server.url, "r0", "r1") as (d0, d1):
        sink = Sink()
        async with relay_for(d0, Sink()) as r0:
            # r1 is "restarting": nobody reads its stream. Pub/sub would lose these; the stream keeps them.
            sent = [dtmf_event(i) for i in range(5)]
            for event in sent:
                await r0.forward("r1", [event])
            async with relay_for(d1, sink):
                await sink.wait_for(5)
        assert [e.id for e in sink.events] == [e.id for e in sent]


async def test_consumer_survives_a_redis_restart(redis_server: Any) -> None:
    async with directories(redis_server.url, "r0", "r1") as (d0, d1):
        sink = Sink()
        async with relay_for(d0, Sink()) as r0, relay_for(d1, sink):
            await r0.forward("r1", [dtmf_event(0)])
            await sink.wait_for(1)
            redis_server.stop()
            await asyncio.sleep(0.5)  # the blocked XREAD fails; the consumer backs off and retries
            redis_server.start()
            after = dtmf_event(1)
            async with asyncio.timeout(20):
                while True:
                    with contextlib.suppress(Exception):
                        await r0.forward("r1", [after])
                        break
                    await asyncio.sleep(0.2)
            await sink.wait_for(2)
            assert sink.events[-1].id == after.id


async def test_a_dead_replicas_stream_is_taken_once_in_order(redis_server: Any) -> None:
    async with (
        directories(redis_server.url, "r0", "r1", "dead") as (d0, d1, _dead),
        relay_for(d0, Sink()) as r0,
        relay_for(d1, Sink()) as r1,
    ):
        sent = [dtmf_event(i) for i in range(7)]
        await r0.forward("dead", sent[:3])
        await r1.forward("dead", sent[3:])
        await r0.send_release("dead", CALL, "r1")  # control messages are not events: left out
        taken, again = await asyncio.gather(r1.take_stream_of("dead"), r0.take_stream_of("dead"))
        got = taken or again
        assert not (taken and again)  # exactly one survivor gets them
        assert [e.id for e in got] == [e.id for e in sent]
        assert await d0.client.exists(r0.stream_key("dead")) == 0


async def test_bad_and_stale_entries_are_skipped_and_release_notices_delivered(redis_server: Any) -> None:
    async with directories(redis_server.url, "r0", "r1") as (d0, d1):
        sink = Sink()
        async with relay_for(d0, Sink()) as r0, relay_for(d1, sink) as r1:
            await d0.client.xadd(r1.stream, {"kind": "events", "at": repr(time.time()), "events": "{not json"})
            await d0.client.xadd(r1.stream, {"kind": "mystery", "at": repr(time.time())})
            stale = dtmf_event(0)
            await d0.client.xadd(
                r1.stream,
                {"kind": "events", "at": repr(time.time() - STALE_SECONDS - 5), "events": json.dumps([stale.raw])},
            )
            await r0.send_release("r1", CALL, "r0")
            good = dtmf_event(1)
            await r0.forward("r1", [good])
            await sink.wait_for(1)
            assert [e.id for e in sink.events] == [good.id]
            assert sink.released == [(CALL, "r0")]


@pytest.mark.parametrize("down", ["forward", "take"])
async def test_redis_down_is_store_unavailable(redis_server: Any, down: str) -> None:
    from callwright.sessions.store import StoreUnavailable

    async with directories(redis_server.url, "r0") as (d0,), relay_for(d0, Sink(), start=False) as r0:
        redis_server.stop()
        with pytest.raises(StoreUnavailable):
            if down == "forward":
                await r0.forward("r1", [dtmf_event(0)])
            else:
                await r0.take_stream_of("r1")
