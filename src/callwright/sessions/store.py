"""Where per-call session state lives: Redis in production, memory by default.

One call = one key (``<prefix>:session:<callConnectionId>``) holding a JSON document, with a TTL so
abandoned calls do not accumulate.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger("callwright.sessions")


class StoreUnavailable(RuntimeError):
    """The backing store could not be reached; the caller keeps its state and retries later."""


class SessionStore(Protocol):
    kind: str

    async def load(self, call_id: str) -> dict[str, Any] | None: ...

    async def save(self, call_id: str, document: dict[str, Any]) -> None: ...

    async def delete(self, call_id: str) -> None: ...

    async def ping(self) -> bool: ...

    def health(self) -> dict[str, Any]: ...

    async def close(self) -> None: ...


class InMemorySessionStore:
    """Process-local store with the same TTL semantics as Redis (expired keys vanish on read)."""

    kind = "memory"

    def __init__(self, ttl_seconds: int) -> None:
        self._ttl = ttl_seconds
        self._docs: dict[str, tuple[float, str]] = {}

    async def load(self, call_id: str) -> dict[str, Any] | None:
        item = self._docs.get(call_id)
        if item is None:
            return None
        expires, raw = item
        if expires < time.monotonic():
            self._docs.pop(call_id, None)
            return None
        return json.loads(raw)

    async def save(self, call_id: str, document: dict[str, Any]) -> None:
        # Serialise on save so callers cannot mutate what was "persisted" afterwards, as with Redis.
        self._docs[call_id] = (time.monotonic() + self._ttl, json.dumps(document, default=str))

    async def delete(self, call_id: str) -> None:
        self._docs.pop(call_id, None)

    async def ping(self) -> bool:
        return True

    def health(self) -> dict[str, Any]:
        return {"kind": self.kind, "reachable": True, "keys": len(self._docs)}

    async def close(self) -> None:
        self._docs.clear()


class RedisSessionStore:
    kind = "redis"

    def __init__(self, url: str, *, prefix: str, ttl_seconds: int, op_timeout: float = 1.0) -> None:
        self._client = aioredis.from_url(
            url,
            socket_connect_timeout=op_timeout,
            socket_timeout=op_timeout,
            health_check_interval=15,
        )
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

    async def save(self, call_id: str, document: dict[str, Any]) -> None:
        payload = json.dumps(document, default=str)
        try:
            await self._client.set(self.key(call_id), payload, ex=self._ttl)
        except (TimeoutError, RedisError, OSError) as exc:
            raise self._failed("SET", exc) from exc
        self._ok()

    async def delete(self, call_id: str) -> None:
        try:
            await self._client.delete(self.key(call_id))
        except (TimeoutError, RedisError, OSError) as exc:
            raise self._failed("DEL", exc) from exc
        self._ok()

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


def build_store(redis_url: str | None, *, prefix: str, ttl_seconds: int) -> SessionStore:
    if redis_url:
        return RedisSessionStore(redis_url, prefix=prefix, ttl_seconds=ttl_seconds)
    return InMemorySessionStore(ttl_seconds)
