"""The event relay: events that reached one replica for a call whose media socket another replica holds.

**Redis Streams, one stream per replica** (``<prefix>:relay:<replica id>``), not pub/sub. A pub/sub
message published while the subscriber is reconnecting (a Redis blip, the replica restarting) is gone;
a stream keeps it, and the consumer resumes after the last id it handled. A survivor can also read a
dead replica's stream (:meth:`EventRelay.take_stream_of`) and run what it never got to. Each stream is
capped (``XADD MAXLEN ~``) and carries a TTL refreshed by every write, so nothing grows without bound.

Events travel as the JSON objects ACS or Event Grid sent (``CallEvent.raw``) and are parsed again on the
owner exactly as the webhook parses them, then handed to the owner's processor: its per-call queue keeps
the call's order. Each replica reads its own stream with ``XREAD BLOCK`` on a connection of its own,
so the blocking read never holds one of the pool's connections that requests need. Handled entries are
deleted, so a stream holds only what its replica has not taken yet.

Control messages ride the same stream: ``release`` tells a replica that another one holds a call's media
now (it drops its live objects for the call, :meth:`CallRegistry.release_local`). The same notice is also
broadcast on the ``<prefix>:claims`` channel (:class:`ClaimNotices`) for every other replica that may
hold the call without owning it; that one is pub/sub because losing it only delays a clean-up that the
webhook also does the next time an event for the call passes through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from callwright.acs.events import CallEvent, EventParseError, parse_delivery
from callwright.logs import LogLimiter
from callwright.sessions.store import StoreUnavailable

log = logging.getLogger("callwright.scale")

RELAY_MAXLEN = 10_000  # entries per replica stream (approximate trim): minutes of events even at full load
RELAY_TTL_SECONDS = 3_600  # a stream nobody writes to for an hour (its replica is long gone) disappears
BLOCK_MS = 1_000  # one XREAD waits this long at most, so closing never waits on a read for long
BATCH = 200
# An entry older than this when read is not run: its replica restarted under the same id long after, or a
# take-over came late, and an hour-old PlayCompleted would only confuse the call that has moved on.
STALE_SECONDS = 120.0
LATENCY_SAMPLES = 2_000
RETRY_DEFERRED = 50  # attempts to hand a relayed batch to a full processor (0.1 s apart) before giving up

EventsHandler = Callable[[list[CallEvent]], Awaitable[Any]]
ReleaseHandler = Callable[[str, str], Any]

_REDIS_ERRORS = (TimeoutError, RedisError, OSError)


def _raise_if_cancelled() -> None:
    """redis-py's read timeout can turn a cancellation that lands during a read into a TimeoutError: a
    loop that catches it and reads again would never end. The task still knows it was cancelled."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _field(fields: dict[Any, Any], name: str) -> str | None:
    v = fields.get(name.encode(), fields.get(name))
    return None if v is None else _text(v)


def decode_events(payload: str | bytes) -> list[CallEvent]:
    """The events of one relay entry, parsed as the webhook parsed them (they were authenticated there)."""
    raw = payload.encode() if isinstance(payload, str) else payload
    try:
        delivery = parse_delivery(raw, callbacks_allowed=True)
    except EventParseError as exc:
        log.error("relayed events could not be parsed (%s); dropped", exc)
        return []
    for rejection in delivery.rejections:
        log.error("relayed event rejected: %s", rejection.reason)
    return delivery.events


def encode_events(events: list[CallEvent]) -> str:
    return json.dumps([e.raw for e in events], separators=(",", ":"))


class EventRelay:
    """This replica's end of the relay: sends to other replicas' streams, consumes its own."""

    def __init__(
        self,
        *,
        client: aioredis.Redis,
        url: str,
        key: Callable[..., str],
        replica_id: str,
        on_events: EventsHandler,
        on_release: ReleaseHandler,
        metrics: Any = None,
        maxlen: int = RELAY_MAXLEN,
        ttl_seconds: int = RELAY_TTL_SECONDS,
        block_ms: int = BLOCK_MS,
    ) -> None:
        self._client = client  # the directory's pooled client: short, non-blocking commands only
        self._url = url
        self._key = key
        self.replica_id = replica_id
        self._on_events = on_events
        self._on_release = on_release
        self._metrics = metrics
        self._maxlen = maxlen
        self._ttl = ttl_seconds
        self._block_ms = block_ms
        self._reader: aioredis.Redis | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._last_id = "0-0"  # from the start: what was left for this replica id (a restart) runs first
        self._limiter = LogLimiter(log)
        #: Seconds from XADD on the sender to the hand-off to this replica's processor (most recent last).
        self.latencies: deque[float] = deque(maxlen=LATENCY_SAMPLES)
        self.received = 0
        self.sent = 0

    def stream_key(self, replica_id: str) -> str:
        return self._key("relay", replica_id)

    @property
    def stream(self) -> str:
        return self.stream_key(self.replica_id)

    # -- sending -------------------------------------------------------------------------------------
    async def _add(self, replica_id: str, fields: dict[str, str]) -> None:
        key = self.stream_key(replica_id)
        pipe = self._client.pipeline(transaction=False)
        pipe.xadd(key, fields, maxlen=self._maxlen, approximate=True)  # type: ignore[arg-type]
        pipe.expire(key, self._ttl)
        try:
            await pipe.execute()
        except _REDIS_ERRORS as exc:
            raise StoreUnavailable(f"relay XADD failed: {type(exc).__name__}: {exc}") from exc

    async def forward(self, replica_id: str, events: list[CallEvent]) -> None:
        """Put ``events`` (one call's, in order — or several calls', each in order) on ``replica_id``'s
        stream. Raises StoreUnavailable (the caller runs them here instead)."""
        if not events:
            return
        fields = {
            "kind": "events",
            "from": self.replica_id,
            "at": repr(time.time()),
            "events": encode_events(events),
        }
        await self._add(replica_id, fields)
        self.sent += len(events)
        if (counter := getattr(self._metrics, "events_relayed_total", None)) is not None:
            counter.labels("sent").inc(len(events))

    async def send_release(self, replica_id: str, call_id: str, new_owner: str) -> None:
        """Tell ``replica_id`` that ``new_owner`` holds the call's media now. Raises StoreUnavailable."""
        await self._add(
            replica_id,
            {"kind": "release", "from": self.replica_id, "at": repr(time.time()), "call": call_id, "owner": new_owner},
        )

    # -- consuming -----------------------------------------------------------------------------------
    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._consume(), name=f"relay:{self.replica_id}")

    def _new_reader(self) -> aioredis.Redis:
        # A connection of its own: XREAD BLOCK holds it for up to BLOCK_MS each time.
        return aioredis.Redis.from_url(
            self._url,
            single_connection_client=True,
            socket_connect_timeout=1.0,
            socket_timeout=self._block_ms / 1000 + 5.0,
        )

    async def _consume(self) -> None:
        backoff = 0.1
        while not self._closing:
            if self._reader is None:
                self._reader = self._new_reader()
            try:
                reply = await self._reader.xread({self.stream: self._last_id}, count=BATCH, block=self._block_ms)
            except asyncio.CancelledError:
                raise
            except _REDIS_ERRORS as exc:
                _raise_if_cancelled()
                self._limiter.warning(
                    "read", "relay: reading %s failed (%s: %s); retrying", self.stream, type(exc).__name__, exc
                )
                reader, self._reader = self._reader, None
                with contextlib.suppress(Exception):
                    await reader.aclose()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            backoff = 0.1
            for _stream, entries in reply or []:
                try:
                    await self._handle(entries)
                except asyncio.CancelledError:
                    raise
                except Exception:  # one bad entry must not end the consumer: it is skipped
                    log.exception("relay: handling entries failed")

    async def _handle(self, entries: list[tuple[Any, dict[Any, Any]]]) -> None:
        done: list[str] = []
        for entry_id, fields in entries:
            eid = _text(entry_id)
            self._last_id = eid
            done.append(eid)
            await self._handle_one(fields)
        if done:
            try:
                await self._client.xdel(self.stream, *done)
            except _REDIS_ERRORS as exc:  # left behind: read past already, only a take-over would see them
                self._limiter.warning("xdel", "relay: handled entries not deleted (%s)", exc)

    async def _handle_one(self, fields: dict[Any, Any]) -> None:
        kind = _field(fields, "kind")
        try:
            sent_at = float(_field(fields, "at") or "nan")
        except ValueError:
            sent_at = float("nan")
        age = time.time() - sent_at
        if age > STALE_SECONDS:
            self._limiter.warning("stale", "relay: %s entry %.0f s old not run (stale)", kind, age)
            return
        if kind == "release":
            call_id, owner = _field(fields, "call"), _field(fields, "owner")
            if call_id:
                self._on_release(call_id, owner or "")
            return
        if kind != "events":
            self._limiter.warning("kind", "relay: entry of unknown kind %r skipped", kind)
            return
        events = decode_events(_field(fields, "events") or "[]")
        if not events:
            return
        result = await self._on_events(events)
        attempts = 0
        # A full processor defers without marking seen: retrying the batch runs only what it deferred.
        while getattr(result, "deferred", 0) and attempts < RETRY_DEFERRED:
            attempts += 1
            await asyncio.sleep(0.1)
            result = await self._on_events(events)
        if getattr(result, "deferred", 0):
            log.error("relay: %d relayed events dropped: the event queues stayed full", result.deferred)
        self.received += len(events)
        if age == age:  # not NaN
            self.latencies.append(max(age, 0.0))
            if (histogram := getattr(self._metrics, "event_relay_seconds", None)) is not None:
                histogram.observe(max(age, 0.0))
        if (counter := getattr(self._metrics, "events_relayed_total", None)) is not None:
            counter.labels("received").inc(len(events))

    # -- a dead replica's stream -------------------------------------------------------------------
    async def take_stream_of(self, replica_id: str, limit: int = RELAY_MAXLEN) -> list[CallEvent]:
        """The events left unhandled on ``replica_id``'s stream, oldest first, removed from it at once (one
        MULTI: two survivors never both get them). Stale entries and control messages are dropped.
        Raises StoreUnavailable."""
        key = self.stream_key(replica_id)
        pipe = self._client.pipeline(transaction=True)
        pipe.xrange(key, "-", "+", count=limit)
        pipe.delete(key)
        try:
            entries, _ = await pipe.execute()
        except _REDIS_ERRORS as exc:
            raise StoreUnavailable(f"relay XRANGE failed: {type(exc).__name__}: {exc}") from exc
        out: list[CallEvent] = []
        now = time.time()
        for _entry_id, fields in entries or []:
            if _field(fields, "kind") != "events":
                continue
            try:
                if now - float(_field(fields, "at") or "nan") > STALE_SECONDS:
                    continue
            except ValueError:
                continue
            out.extend(decode_events(_field(fields, "events") or "[]"))
        if out:
            log.info("relay: %d events taken from replica %s's stream", len(out), replica_id)
        return out

    # Named as H2b's brief asked for it.
    drain_stream_of = take_stream_of

    async def close(self) -> None:
        self._closing = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        reader, self._reader = self._reader, None
        if reader is not None:
            with contextlib.suppress(Exception):
                await reader.aclose()


class ClaimNotices:
    """``<prefix>:claims`` pub/sub: "replica R holds call C's media now", to every replica at once."""

    def __init__(
        self, *, client: aioredis.Redis, url: str, channel: str, replica_id: str, on_claim: ReleaseHandler
    ) -> None:
        self._client = client
        self._url = url
        self.channel = channel
        self.replica_id = replica_id
        self._on_claim = on_claim
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._limiter = LogLimiter(log)
        self.subscribed = asyncio.Event()

    async def announce(self, call_id: str) -> None:
        try:
            await self._client.publish(self.channel, json.dumps({"call": call_id, "owner": self.replica_id}))
        except _REDIS_ERRORS as exc:
            self._limiter.warning("publish", "claim notice not published (%s)", exc)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._listen(), name=f"claims:{self.replica_id}")

    async def _listen(self) -> None:
        backoff = 0.1
        while not self._closing:
            client = aioredis.Redis.from_url(self._url, socket_connect_timeout=1.0, socket_timeout=None)
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                self.subscribed.set()
                backoff = 0.1
                while not self._closing:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None and message.get("type") == "message":
                        self._handle(message.get("data"))
            except asyncio.CancelledError:
                raise
            except _REDIS_ERRORS as exc:
                _raise_if_cancelled()
                self.subscribed.clear()
                self._limiter.warning("listen", "claim notices: %s (%s); resubscribing", type(exc).__name__, exc)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                with contextlib.suppress(Exception):
                    await client.aclose()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    def _handle(self, data: Any) -> None:
        try:
            notice = json.loads(data)
            call_id, owner = notice["call"], notice["owner"]
        except (ValueError, TypeError, KeyError):
            self._limiter.warning("bad", "claim notice that is not {call, owner} ignored")
            return
        if isinstance(call_id, str) and isinstance(owner, str) and owner != self.replica_id:
            self._on_claim(call_id, owner)

    async def close(self) -> None:
        self._closing = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
