"""The call directory: what every replica must agree on about the calls, kept where they all see it.

One replica alone (no ``REDIS_URL``) keeps it in memory (:class:`LocalDirectory`); with Redis every replica
reads and writes the same keys (:class:`RedisDirectory`), so a deployment grows by adding replicas:

- **call entries** — id → direction, mode, state, caller/target, context, timestamps (``CallRecord``'s
  fields, without its live objects), plus the set of calls still active. Any replica can answer
  ``GET /api/v1/calls`` and open the media handler of a call it never saw an event for (the mode comes
  from here).
- **media owner** — the replica holding a call's media WebSocket. Events for the call are relayed there
  (``scale/relay.py``); a replica lists the calls it owns, so survivors can take them over when it dies.
- **heartbeats** — a key per replica with a short TTL, refreshed every ``REPLICA_HEARTBEAT_SECONDS``; a
  replica whose key expired is dead (``REPLICA_DEAD_AFTER_SECONDS``). One survivor wins the take-over.
- **deliveries seen** — event ids (and IncomingCall's server call id) with a TTL, so an event Event Grid
  delivers to two replicas runs once, and an incoming call is answered once.
- **pending outbound calls** — operation context → mode, target, context, for the seconds between
  ``create_call`` and the call's first event, which may reach another replica.

Keys are namespaced by ``SESSION_KEY_PREFIX`` and all carry TTLs; sets and lists are trimmed, so nothing
grows without bound. Every Redis error surfaces as :class:`StoreUnavailable` (the caller degrades).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections import OrderedDict
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from callwright.sessions.store import StoreUnavailable

log = logging.getLogger("callwright.sessions")

DELIVERY_TTL_SECONDS = 3600  # Event Grid retries for up to a day, but a call's events within the hour
PENDING_TTL_SECONDS = 120  # create_call → first event; ACS gives up ringing well before
FAIL_FAST_SECONDS = 1.0
ACTIVE_LIMIT = 10_000  # active entries listed at most (the set itself is trimmed by TTL sweeps)


def default_replica_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class CallDirectory(Protocol):
    kind: str
    replica_id: str
    #: True when other replicas may share it (Redis): routing, heartbeats and take-over are meaningful.
    shared: bool

    # -- call entries --------------------------------------------------------------------------------
    async def put(self, call_id: str, entry: dict[str, Any]) -> None: ...

    async def get(self, call_id: str) -> dict[str, Any] | None: ...

    async def active(self, limit: int = ACTIVE_LIMIT) -> list[dict[str, Any]]: ...

    async def end(self, call_id: str) -> None: ...

    # -- media owner ---------------------------------------------------------------------------------
    async def claim(self, call_id: str) -> str | None:
        """This replica now holds the call's media socket. Returns the previous owner (None if none)."""
        ...

    async def release(self, call_id: str) -> bool:
        """Drop the ownership if it is still this replica's (True when it was)."""
        ...

    async def owners(self, call_ids: list[str]) -> dict[str, str]:
        """call id → owning replica, for the calls that have one."""
        ...

    async def owned_by(self, replica_id: str) -> list[str]: ...

    # -- deliveries ----------------------------------------------------------------------------------
    async def first_deliveries(self, keys: list[str]) -> list[bool]:
        """Marks every key seen; for each, True when nobody had seen it before (this call or earlier)."""
        ...

    # -- pending outbound calls ------------------------------------------------------------------------
    async def put_pending(self, operation_context: str, data: dict[str, Any]) -> None: ...

    async def take_pending(self, operation_context: str) -> dict[str, Any] | None: ...

    async def has_pending(self, operation_context: str) -> bool: ...

    async def drop_pending(self, operation_context: str) -> None: ...

    async def pending_count(self) -> int: ...

    # -- liveness ------------------------------------------------------------------------------------
    async def beat(self, *, draining: bool = False) -> None: ...

    async def alive(self) -> dict[str, dict[str, Any]]:
        """Live replicas → what their last heartbeat said (``draining``, ``at``)."""
        ...

    async def known(self) -> set[str]:
        """Replicas that ever beat within the session TTL (alive or not)."""
        ...

    async def forget(self, replica_id: str) -> None: ...

    async def claim_takeover(self, dead_replica: str, ttl_seconds: float) -> bool:
        """Exactly one caller wins for ``ttl_seconds``."""
        ...

    async def close(self) -> None: ...


class LocalDirectory:
    """One process: the directory is its own memory (nothing to route, nobody to take over from)."""

    kind = "memory"
    shared = False

    def __init__(self, replica_id: str, *, seen_limit: int = 50_000) -> None:
        self.replica_id = replica_id
        self._entries: dict[str, dict[str, Any]] = {}
        self._active: dict[str, None] = {}
        self._owners: dict[str, str] = {}
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._seen_limit = seen_limit
        self._pending: dict[str, tuple[float, dict[str, Any]]] = {}

    async def put(self, call_id: str, entry: dict[str, Any]) -> None:
        self._entries[call_id] = json.loads(json.dumps(entry, default=str))
        if entry.get("ended_at") is None:
            self._active[call_id] = None
        else:
            self._active.pop(call_id, None)

    async def get(self, call_id: str) -> dict[str, Any] | None:
        entry = self._entries.get(call_id)
        if entry is None:
            return None
        return {**entry, "owner": self._owners.get(call_id)}

    async def active(self, limit: int = ACTIVE_LIMIT) -> list[dict[str, Any]]:
        return [e for cid in list(self._active)[:limit] if (e := await self.get(cid)) is not None]

    async def end(self, call_id: str) -> None:
        self._active.pop(call_id, None)
        self._owners.pop(call_id, None)
        self._entries.pop(call_id, None)  # the recent-calls list in the session store keeps finished calls

    async def claim(self, call_id: str) -> str | None:
        previous = self._owners.get(call_id)
        self._owners[call_id] = self.replica_id
        return previous if previous != self.replica_id else None

    async def release(self, call_id: str) -> bool:
        if self._owners.get(call_id) == self.replica_id:
            del self._owners[call_id]
            return True
        return False

    async def owners(self, call_ids: list[str]) -> dict[str, str]:
        return {cid: self._owners[cid] for cid in call_ids if cid in self._owners}

    async def owned_by(self, replica_id: str) -> list[str]:
        return [cid for cid, owner in self._owners.items() if owner == replica_id]

    async def first_deliveries(self, keys: list[str]) -> list[bool]:
        out = []
        for key in keys:
            new = key not in self._seen
            self._seen[key] = None
            self._seen.move_to_end(key)
            out.append(new)
        while len(self._seen) > self._seen_limit:
            self._seen.popitem(last=False)
        return out

    def _live_pending(self) -> dict[str, tuple[float, dict[str, Any]]]:
        now = time.monotonic()
        self._pending = {k: v for k, v in self._pending.items() if v[0] > now}
        return self._pending

    async def put_pending(self, operation_context: str, data: dict[str, Any]) -> None:
        self._live_pending()[operation_context] = (time.monotonic() + PENDING_TTL_SECONDS, dict(data))

    async def take_pending(self, operation_context: str) -> dict[str, Any] | None:
        item = self._live_pending().pop(operation_context, None)
        return item[1] if item else None

    async def has_pending(self, operation_context: str) -> bool:
        return operation_context in self._live_pending()

    async def drop_pending(self, operation_context: str) -> None:
        self._pending.pop(operation_context, None)

    async def pending_count(self) -> int:
        return len(self._live_pending())

    async def beat(self, *, draining: bool = False) -> None:
        return None

    async def alive(self) -> dict[str, dict[str, Any]]:
        return {self.replica_id: {"draining": False, "at": time.time()}}

    async def known(self) -> set[str]:
        return {self.replica_id}

    async def forget(self, replica_id: str) -> None:
        return None

    async def claim_takeover(self, dead_replica: str, ttl_seconds: float) -> bool:
        return False

    async def close(self) -> None:
        return None


# Claim a call's media: the owner key, the owner's call set (and out of the previous owner's set).
_CLAIM = """
local prev = redis.call('GET', KEYS[1])
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[2])
if prev and prev ~= ARGV[1] then
  redis.call('SREM', ARGV[4] .. prev .. ':calls', ARGV[3])
  return prev
end
return false
"""

_RELEASE = """
redis.call('SREM', KEYS[2], ARGV[2])
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""


class RedisDirectory:
    """The directory in Redis, shared by every replica that uses the same URL and key prefix."""

    kind = "redis"
    shared = True

    def __init__(
        self,
        url: str,
        *,
        replica_id: str,
        prefix: str,
        ttl_seconds: int,
        dead_after_seconds: float = 3.0,
        op_timeout: float = 1.0,
        max_connections: int = 50,
        pool_timeout: float = 2.0,
    ) -> None:
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=pool_timeout,
            socket_connect_timeout=op_timeout,
            socket_timeout=op_timeout,
            health_check_interval=15,
        )
        self.client = aioredis.Redis.from_pool(pool)
        self.url = url
        self.replica_id = replica_id
        self.prefix = prefix
        self._ttl = ttl_seconds
        self._dead_after = dead_after_seconds
        self._claim = self.client.register_script(_CLAIM)
        self._release = self.client.register_script(_RELEASE)
        self._reachable = True
        self._failed_at = 0.0

    def key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def _failed(self, op: str, exc: Exception) -> StoreUnavailable:
        msg = f"redis {op} failed: {type(exc).__name__}: {exc}"
        if self._reachable:
            log.error("call directory: %s", msg)
        self._reachable = False
        self._failed_at = time.monotonic()
        return StoreUnavailable(msg)

    def _ok(self) -> None:
        if not self._reachable:
            log.warning("call directory: redis reachable again")
        self._reachable = True

    async def _run(self, op: str, coro: Any) -> Any:
        # While Redis is known to be down, fail at once and probe again after a second: an event touches
        # the directory several times, and each attempt waiting out the op timeout would stall its call.
        if not self._reachable and time.monotonic() - self._failed_at < FAIL_FAST_SECONDS:
            coro.close()
            raise StoreUnavailable(f"redis {op} skipped: unreachable in the last {FAIL_FAST_SECONDS:g} s")
        try:
            result = await coro
        except (TimeoutError, RedisError, OSError) as exc:
            raise self._failed(op, exc) from exc
        self._ok()
        return result

    # -- call entries --------------------------------------------------------------------------------
    async def put(self, call_id: str, entry: dict[str, Any]) -> None:
        pipe = self.client.pipeline(transaction=False)
        pipe.set(self.key("call", call_id), json.dumps(entry, default=str), ex=self._ttl)
        if entry.get("ended_at") is None:
            pipe.zadd(self.key("calls", "active"), {call_id: float(entry.get("created_at") or time.time())})
            pipe.expire(self.key("calls", "active"), self._ttl)
        else:
            pipe.zrem(self.key("calls", "active"), call_id)
        await self._run("call SET", pipe.execute())

    async def get(self, call_id: str) -> dict[str, Any] | None:
        raw, owner = await self._run(
            "call GET", self.client.mget([self.key("call", call_id), self.key("owner", call_id)])
        )
        if not raw:
            return None
        try:
            entry = json.loads(raw)
        except ValueError:
            log.warning("call directory entry is not JSON; ignored [call=%s]", call_id)
            return None
        entry["owner"] = owner.decode() if isinstance(owner, bytes) else owner
        return entry if isinstance(entry, dict) else None

    async def active(self, limit: int = ACTIVE_LIMIT) -> list[dict[str, Any]]:
        ids = await self._run("active ZRANGE", self.client.zrevrange(self.key("calls", "active"), 0, limit - 1))
        if not ids:
            return []
        cids = [i.decode() if isinstance(i, bytes) else str(i) for i in ids]
        keys = [self.key("call", c) for c in cids] + [self.key("owner", c) for c in cids]
        raws = await self._run("active MGET", self.client.mget(keys))
        out: list[dict[str, Any]] = []
        gone: list[str] = []
        for n, cid in enumerate(cids):
            raw, owner = raws[n], raws[n + len(cids)]
            if not raw:
                gone.append(cid)  # its entry expired: the call is long over
                continue
            try:
                entry = json.loads(raw)
            except ValueError:
                continue
            entry["owner"] = owner.decode() if isinstance(owner, bytes) else owner
            out.append(entry)
        if gone:
            await self._run("active ZREM", self.client.zrem(self.key("calls", "active"), *gone))
        return out

    async def end(self, call_id: str) -> None:
        owner = await self._run("owner GET", self.client.get(self.key("owner", call_id)))
        pipe = self.client.pipeline(transaction=False)
        pipe.zrem(self.key("calls", "active"), call_id)
        pipe.delete(self.key("owner", call_id), self.key("call", call_id))
        if owner:
            pipe.srem(self.key("replica", owner.decode() if isinstance(owner, bytes) else owner, "calls"), call_id)
        await self._run("call END", pipe.execute())

    # -- media owner ---------------------------------------------------------------------------------
    async def claim(self, call_id: str) -> str | None:
        prev = await self._run(
            "owner CLAIM",
            self._claim(
                keys=[self.key("owner", call_id), self.key("replica", self.replica_id, "calls")],
                args=[self.replica_id, self._ttl, call_id, self.key("replica", "")],
            ),
        )
        if not prev:
            return None
        return prev.decode() if isinstance(prev, bytes) else str(prev)

    async def release(self, call_id: str) -> bool:
        done = await self._run(
            "owner RELEASE",
            self._release(
                keys=[self.key("owner", call_id), self.key("replica", self.replica_id, "calls")],
                args=[self.replica_id, call_id],
            ),
        )
        return bool(done)

    async def owners(self, call_ids: list[str]) -> dict[str, str]:
        if not call_ids:
            return {}
        raws = await self._run("owner MGET", self.client.mget([self.key("owner", c) for c in call_ids]))
        return {
            cid: (raw.decode() if isinstance(raw, bytes) else str(raw))
            for cid, raw in zip(call_ids, raws, strict=True)
            if raw
        }

    async def owned_by(self, replica_id: str) -> list[str]:
        members = await self._run("owned SMEMBERS", self.client.smembers(self.key("replica", replica_id, "calls")))
        return sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)

    # -- deliveries ----------------------------------------------------------------------------------
    async def first_deliveries(self, keys: list[str]) -> list[bool]:
        if not keys:
            return []
        pipe = self.client.pipeline(transaction=False)
        for k in keys:
            pipe.set(self.key("seen", k), b"1", nx=True, ex=DELIVERY_TTL_SECONDS)
        results = await self._run("seen SETNX", pipe.execute())
        return [bool(r) for r in results]

    # -- pending outbound calls ------------------------------------------------------------------------
    async def put_pending(self, operation_context: str, data: dict[str, Any]) -> None:
        await self._run(
            "pending SET",
            self.client.set(
                self.key("pending", operation_context), json.dumps(data, default=str), ex=PENDING_TTL_SECONDS
            ),
        )

    async def take_pending(self, operation_context: str) -> dict[str, Any] | None:
        raw = await self._run("pending GETDEL", self.client.getdel(self.key("pending", operation_context)))
        if not raw:
            return None
        try:
            data = json.loads(raw)
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    async def has_pending(self, operation_context: str) -> bool:
        return bool(await self._run("pending EXISTS", self.client.exists(self.key("pending", operation_context))))

    async def drop_pending(self, operation_context: str) -> None:
        await self._run("pending DEL", self.client.delete(self.key("pending", operation_context)))

    async def pending_count(self) -> int:
        # SCAN over a namespaced pattern: pending entries live two minutes at most, so they stay few.
        async def scan() -> int:
            count = 0
            async for _ in self.client.scan_iter(match=self.key("pending", "*"), count=500):
                count += 1
                if count >= 100_000:
                    break
            return count

        return int(await self._run("pending SCAN", scan()))

    # -- liveness ------------------------------------------------------------------------------------
    async def beat(self, *, draining: bool = False) -> None:
        now = time.time()
        pipe = self.client.pipeline(transaction=False)
        pipe.set(
            self.key("replica", self.replica_id, "alive"),
            json.dumps({"draining": draining, "at": now}),
            px=int(self._dead_after * 1000),
        )
        pipe.zadd(self.key("replicas"), {self.replica_id: now})
        pipe.zremrangebyscore(self.key("replicas"), "-inf", now - self._ttl)
        pipe.expire(self.key("replicas"), self._ttl)
        await self._run("heartbeat", pipe.execute())

    async def known(self) -> set[str]:
        ids = await self._run("replicas ZRANGE", self.client.zrange(self.key("replicas"), 0, -1))
        return {i.decode() if isinstance(i, bytes) else str(i) for i in ids}

    async def alive(self) -> dict[str, dict[str, Any]]:
        known = sorted(await self.known())
        if not known:
            return {}
        raws = await self._run("alive MGET", self.client.mget([self.key("replica", r, "alive") for r in known]))
        out: dict[str, dict[str, Any]] = {}
        for rid, raw in zip(known, raws, strict=True):
            if not raw:
                continue
            try:
                info = json.loads(raw)
            except ValueError:
                info = {}
            out[rid] = info if isinstance(info, dict) else {}
        return out

    async def forget(self, replica_id: str) -> None:
        pipe = self.client.pipeline(transaction=False)
        pipe.zrem(self.key("replicas"), replica_id)
        pipe.delete(self.key("replica", replica_id, "calls"))
        await self._run("replica FORGET", pipe.execute())

    async def claim_takeover(self, dead_replica: str, ttl_seconds: float) -> bool:
        won = await self._run(
            "takeover SETNX",
            self.client.set(
                self.key("takeover", dead_replica), self.replica_id, nx=True, px=max(1, int(ttl_seconds * 1000))
            ),
        )
        return bool(won)

    async def close(self) -> None:
        await self.client.aclose()


def build_directory(settings: Any) -> CallDirectory:
    replica_id = settings.replica_id or default_replica_id()
    if settings.redis_url:
        return RedisDirectory(
            settings.redis_url,
            replica_id=replica_id,
            prefix=settings.session_key_prefix,
            ttl_seconds=settings.session_ttl_seconds,
            dead_after_seconds=settings.replica_dead_after_seconds,
            max_connections=settings.redis_max_connections,
            pool_timeout=settings.redis_pool_timeout,
        )
    return LocalDirectory(replica_id)
