"""Where per-call session state lives: Redis in production, memory by default.

One call = one key (``<prefix>:session:<callConnectionId>``) holding a JSON document, with a TTL so
abandoned calls do not accumulate. Every document carries a ``version``; :meth:`SessionStore.save` with
``expected_version`` is a compare-and-set (a small Lua script on Redis), so a writer that has not seen the
stored document can never overwrite it (see MemoManager). Recent calls (the API's list) are kept in a
bounded sorted set + hash with the same TTL, so they survive a restart.
"""

from __future__ import annotations

import json
import logging
import time
from collections import OrderedDict
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger("callwright.sessions")


class StoreUnavailable(RuntimeError):
    """The backing store could not be reached; the caller keeps its state and retries later."""


class VersionConflict(RuntimeError):
    """The stored document's version is not the one the writer based its changes on."""

    def __init__(self, call_id: str, expected: int, current: int) -> None:
        super().__init__(f"session {call_id}: stored version {current}, expected {expected}")
        self.expected = expected
        self.current = current


def encode(document: dict[str, Any]) -> str:
    """JSON with ``version`` first, so the Redis script reads it without decoding the whole document."""
    ordered = {"version": int(document.get("version") or 0), **{k: v for k, v in document.items() if k != "version"}}
    return json.dumps(ordered, default=str)


def version_of(document: dict[str, Any] | None) -> int:
    """0 = nothing stored; -1 = a document without a version (written before versioning); else ≥ 1."""
    if document is None:
        return 0
    try:
        return int(document["version"])
    except (KeyError, TypeError, ValueError):
        return -1


class SessionStore(Protocol):
    kind: str

    async def load(self, call_id: str) -> dict[str, Any] | None: ...

    async def save(self, call_id: str, document: dict[str, Any], *, expected_version: int | None = None) -> None: ...

    async def delete(self, call_id: str) -> None: ...

    async def remember_call(self, call_id: str, summary: dict[str, Any], *, ended_at: float, limit: int) -> None: ...

    async def recent_calls(self, limit: int) -> list[dict[str, Any]]: ...

    async def ping(self) -> bool: ...

    def health(self) -> dict[str, Any]: ...

    async def close(self) -> None: ...


class InMemorySessionStore:
    """Process-local store with the same TTL and version semantics as Redis (expired keys vanish on read)."""

    kind = "memory"

    def __init__(self, ttl_seconds: int) -> None:
        self._ttl = ttl_seconds
        self._docs: dict[str, tuple[float, str]] = {}
        self._recent: OrderedDict[str, tuple[float, dict[str, Any]]] = OrderedDict()

    async def load(self, call_id: str) -> dict[str, Any] | None:
        item = self._docs.get(call_id)
        if item is None:
            return None
        expires, raw = item
        if expires < time.monotonic():
            self._docs.pop(call_id, None)
            return None
        return json.loads(raw)

    async def save(self, call_id: str, document: dict[str, Any], *, expected_version: int | None = None) -> None:
        if expected_version is not None:
            current = version_of(await self.load(call_id))
            if current != expected_version:
                raise VersionConflict(call_id, expected_version, current)
        # Serialise on save so callers cannot mutate what was "persisted" afterwards, as with Redis.
        self._docs[call_id] = (time.monotonic() + self._ttl, encode(document))

    async def delete(self, call_id: str) -> None:
        self._docs.pop(call_id, None)

    async def remember_call(self, call_id: str, summary: dict[str, Any], *, ended_at: float, limit: int) -> None:
        self._recent.pop(call_id, None)
        self._recent[call_id] = (ended_at, json.loads(json.dumps(summary, default=str)))
        while len(self._recent) > limit:
            self._recent.popitem(last=False)

    async def recent_calls(self, limit: int) -> list[dict[str, Any]]:
        items = sorted(self._recent.values(), key=lambda item: item[0], reverse=True)
        return [summary for _, summary in items[:limit]]

    async def ping(self) -> bool:
        return True

    def health(self) -> dict[str, Any]:
        return {"kind": self.kind, "reachable": True, "keys": len(self._docs)}

    async def close(self) -> None:
        self._docs.clear()


# Compare-and-set on the document's version. The version is the first field of every document this store
# writes (see encode), so a pattern match finds it without decoding kilobytes of history; documents from
# before versioning fall back to cjson (and count as version -1). Returns "ok" when written, else the
# stored version.
_CAS = """
local cur = redis.call('GET', KEYS[1])
local v = 0
if cur then
  v = -1
  local m = string.match(cur, '^{"version": ?(%-?%d+)')
  if m then
    v = tonumber(m)
  else
    local ok, doc = pcall(cjson.decode, cur)
    if ok and type(doc) == 'table' and tonumber(doc['version']) then v = tonumber(doc['version']) end
  end
end
if v ~= tonumber(ARGV[1]) then return v end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
return 'ok'
"""

# Recent calls: a sorted set (score = end time) and a hash of summaries, trimmed to the newest ARGV[4],
# both with the session TTL so an idle deployment forgets them like it forgets sessions.
_REMEMBER = """
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
local extra = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[4])
if extra > 0 then
  local old = redis.call('ZRANGE', KEYS[1], 0, extra - 1)
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, extra - 1)
  for _, id in ipairs(old) do redis.call('HDEL', KEYS[2], id) end
end
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('EXPIRE', KEYS[2], ARGV[5])
return 1
"""


class RedisSessionStore:
    kind = "redis"

    def __init__(
        self,
        url: str,
        *,
        prefix: str,
        ttl_seconds: int,
        op_timeout: float = 1.0,
        max_connections: int = 50,
        pool_timeout: float = 2.0,
    ) -> None:
        # A blocking pool: when every connection is busy a caller waits up to pool_timeout for one instead
        # of failing at once ("Too many connections") — a burst of saves queues rather than erroring.
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=pool_timeout,
            socket_connect_timeout=op_timeout,
            socket_timeout=op_timeout,
            health_check_interval=15,
        )
        self._client = aioredis.Redis.from_pool(pool)
        self._cas = self._client.register_script(_CAS)
        self._remember = self._client.register_script(_REMEMBER)
        self._prefix = prefix
        self._ttl = ttl_seconds
        self._last_error: str | None = None
        self._last_error_at: float | None = None
        self._reachable = True

    def key(self, call_id: str) -> str:
        return f"{self._prefix}:session:{call_id}"

    def _failed(self, op: str, exc: Exception) -> StoreUnavailable:
        msg = f"redis {op} failed: {type(exc).__name__}: {exc}"
        if self._reachable:
            log.error("%s", msg)
        self._reachable = False
        self._last_error = msg
        self._last_error_at = time.time()
        return StoreUnavailable(msg)

    def _ok(self) -> None:
        if not self._reachable:
            log.warning("redis reachable again")
        self._reachable = True

    async def load(self, call_id: str) -> dict[str, Any] | None:
        try:
            raw = await self._client.get(self.key(call_id))
        except (TimeoutError, RedisError, OSError) as exc:
            raise self._failed("GET", exc) from exc
        self._ok()
        return json.loads(raw) if raw else None

    async def save(self, call_id: str, document: dict[str, Any], *, expected_version: int | None = None) -> None:
        payload = encode(document)
        try:
            if expected_version is None:
                await self._client.set(self.key(call_id), payload, ex=self._ttl)
                result: Any = b"ok"
            else:
                result = await self._cas(keys=[self.key(call_id)], args=[expected_version, payload, self._ttl])
        except (TimeoutError, RedisError, OSError) as exc:
            raise self._failed("SET", exc) from exc
        self._ok()
        if result not in (b"ok", "ok"):
            raise VersionConflict(call_id, expected_version or 0, int(result))

    async def delete(self, call_id: str) -> None:
        try:
            await self._client.delete(self.key(call_id))
        except (TimeoutError, RedisError, OSError) as exc:
            raise self._failed("DEL", exc) from exc
        self._ok()

    async def remember_call(self, call_id: str, summary: dict[str, Any], *, ended_at: float, limit: int) -> None:
        keys = [f"{self._prefix}:recent", f"{self._prefix}:recent:calls"]
        args = [ended_at, call_id, json.dumps(summary, default=str), limit, self._ttl]
        try:
            await self._remember(keys=keys, args=args)
        except (TimeoutError, RedisError, OSError) as exc:
            raise self._failed("recent ZADD", exc) from exc
        self._ok()

    async def recent_calls(self, limit: int) -> list[dict[str, Any]]:
        try:
            ids = await self._client.zrevrange(f"{self._prefix}:recent", 0, limit - 1)
            raws = await self._client.hmget(f"{self._prefix}:recent:calls", ids) if ids else []
        except (TimeoutError, RedisError, OSError) as exc:
            raise self._failed("recent ZRANGE", exc) from exc
        self._ok()
        out: list[dict[str, Any]] = []
        for raw in raws:
            if raw:
                try:
                    out.append(json.loads(raw))
                except ValueError:
                    log.warning("recent-calls entry is not JSON; skipped")
        return out

    async def ping(self) -> bool:
        try:
            await self._client.ping()
        except (TimeoutError, RedisError, OSError) as exc:
            self._failed("PING", exc)
            return False
        self._ok()
        return True

    def health(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "reachable": self._reachable,
            "last_error": self._last_error,
            "last_error_at": self._last_error_at,
        }

    async def close(self) -> None:
        await self._client.aclose()


def build_store(
    redis_url: str | None,
    *,
    prefix: str,
    ttl_seconds: int,
    max_connections: int = 50,
    pool_timeout: float = 2.0,
) -> SessionStore:
    if redis_url:
        return RedisSessionStore(
            redis_url,
            prefix=prefix,
            ttl_seconds=ttl_seconds,
            max_connections=max_connections,
            pool_timeout=pool_timeout,
        )
    return InMemorySessionStore(ttl_seconds)
