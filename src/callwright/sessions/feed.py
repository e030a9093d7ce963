"""The change feed: "call X changed" notices pushed to the operator page's live stream (``/api/v1/live``).

Whatever changes a call (an event, a transcript line, the end) calls :meth:`CallFeed.notify`; every open
live stream holds a :class:`Subscription` and wakes at once. In one process this is an asyncio fan-out
(one bounded queue per subscriber). With ``REDIS_URL`` set the notice is also published on the Redis
channel ``<SESSION_KEY_PREFIX>:feed`` and every replica re-fans the notices of the others, so a page
served by replica A sees a call held by replica B change.

Nothing here can block or fail a call: :meth:`notify` is synchronous and never raises, publishing happens
on a background task through a bounded queue, and a Redis outage only costs the cross-replica notices
(logged once, retried with back-off) — the live stream's own periodic check still sees local changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

log = logging.getLogger("callwright.feed")

#: A notice meaning "anything may have changed" (a subscriber fell behind, or a replica's stream restarted).
EVERYTHING = "*"
_SUBSCRIBER_QUEUE = 256
_PUBLISH_QUEUE = 1024
_RECONNECT_MAX_S = 10.0


class Subscription:
    """One live stream's view of the feed: changed call ids, coalesced while nobody reads them."""

    def __init__(self, feed: CallFeed) -> None:
        self._feed = feed
        self._queue: asyncio.Queue[str] = asyncio.Queue(maxsize=_SUBSCRIBER_QUEUE)

    def _put(self, call_id: str) -> None:
        try:
            self._queue.put_nowait(call_id)
        except asyncio.QueueFull:
            # A slow reader loses the detail, never the fact that something changed.
            while not self._queue.empty():
                self._queue.get_nowait()
            self._queue.put_nowait(EVERYTHING)

    async def wait(self, timeout: float) -> set[str]:
        """The ids changed since the last call (waits up to ``timeout`` s for the first); empty on timeout."""
        out: set[str] = set()
        try:
            out.add(await asyncio.wait_for(self._queue.get(), timeout))
        except TimeoutError:
            return out
        while not self._queue.empty():
            out.add(self._queue.get_nowait())
        return out

    def close(self) -> None:
        self._feed._subscribers.discard(self)


class CallFeed:
    """Built once per app in the lifespan (``app.state.feed``); ``start()`` before use, ``close()`` at exit."""

    def __init__(self, redis_url: str | None = None, *, prefix: str = "callwright") -> None:
        self.redis_url = redis_url
        self.channel = f"{prefix}:feed"
        # Notices this process published come back from Redis too; the origin tag lets it skip them.
        self.origin = uuid.uuid4().hex
        self._subscribers: set[Subscription] = set()
        self._outbox: asyncio.Queue[str] = asyncio.Queue(maxsize=_PUBLISH_QUEUE)
        self._tasks: list[asyncio.Task[None]] = []
        self._client: Any = None
        self._closed = False
        #: True while the Redis channel is subscribed (tests and /ready-style diagnostics read it).
        self.listening = asyncio.Event()
        self.published = 0
        self.received = 0

    @property
    def shared(self) -> bool:
        return self.redis_url is not None

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    async def start(self) -> None:
        if self.redis_url is None or self._tasks:
            return
        import redis.asyncio as aioredis

        self._client = aioredis.Redis.from_url(self.redis_url, socket_connect_timeout=2.0, socket_timeout=None)
        self._tasks = [
            asyncio.create_task(self._publisher(), name="callfeed-publish"),
            asyncio.create_task(self._listener(), name="callfeed-listen"),
        ]

    async def close(self) -> None:
        self._closed = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.aclose()
            self._client = None
        # Open streams see EVERYTHING once more and then the closed feed; they end on their own.
        self._fan_out(EVERYTHING)

    @property
    def closed(self) -> bool:
        return self._closed

    @contextlib.contextmanager
    def subscribe(self) -> Any:
        sub = Subscription(self)
        self._subscribers.add(sub)
        try:
            yield sub
        finally:
            sub.close()

    def notify(self, call_id: str) -> None:
        """Call ``call_id`` changed. Synchronous, never raises, never waits (safe on any hot path)."""
        if not isinstance(call_id, str) or not call_id:
            return
        self._fan_out(call_id)
        if self._client is not None and not self._closed:
            # A full outbox means Redis is slow or down: other replicas' streams still run their own check.
            with contextlib.suppress(asyncio.QueueFull):
                self._outbox.put_nowait(call_id)

    def _fan_out(self, call_id: str) -> None:
        for sub in list(self._subscribers):
            sub._put(call_id)

    async def _publisher(self) -> None:
        failing = False
        while True:
            call_id = await self._outbox.get()
            message = json.dumps({"origin": self.origin, "call_id": call_id})
            try:
                await asyncio.wait_for(self._client.publish(self.channel, message), 2.0)
                self.published += 1
                if failing:
                    log.info("call feed: publishing on %s again", self.channel)
                failing = False
            except Exception as exc:  # RedisError, TimeoutError, OSError: the notice is dropped
                if not failing:
                    log.warning("call feed: publish on %s failed (%s); notices stay local", self.channel, exc)
                failing = True

    async def _listener(self) -> None:
        delay = 0.5
        while not self._closed:
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                await asyncio.wait_for(pubsub.subscribe(self.channel), 5.0)
                self.listening.set()
                if delay > 0.5:
                    log.info("call feed: listening on %s again", self.channel)
                    self._fan_out(EVERYTHING)  # notices were missed while the channel was down
                delay = 0.5
                async for message in _messages(pubsub):
                    self._receive(message)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # connection lost or refused: back off and subscribe again
                if self.listening.is_set() or delay == 0.5:
                    log.warning("call feed: channel %s unavailable (%s); retrying", self.channel, exc)
                self.listening.clear()
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RECONNECT_MAX_S)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    def _receive(self, message: dict[str, Any]) -> None:
        try:
            data = json.loads(message.get("data") or b"")
            origin, call_id = data["origin"], data["call_id"]
        except (ValueError, TypeError, KeyError):
            log.warning("call feed: ignored a malformed notice on %s", self.channel)
            return
        if origin == self.origin or not isinstance(call_id, str) or not call_id or len(call_id) > 200:
            return
        self.received += 1
        self._fan_out(call_id)


async def _messages(pubsub: Any) -> AsyncIterator[dict[str, Any]]:
    while True:
        message = await pubsub.get_message(timeout=5.0)
        if message is not None:
            yield message
