"""MemoManager: one call's conversation state (context, history, metrics), synced to a SessionStore.

Writes are snapshots of the whole document, versioned, so a retry after an outage always lands the
newest state and an older write can never overwrite a newer one. A failed write keeps the state in
memory and retries with back-off until it lands: Redis going away mid-call never stops the call and
never loses what the call already accepted.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import time
from typing import Any

from callwright.sessions.store import SessionStore, StoreUnavailable

log = logging.getLogger("callwright.sessions")


class MemoManager:
    def __init__(
        self,
        call_connection_id: str,
        store: SessionStore,
        *,
        debounce_seconds: float = 0.25,
        retry_max_seconds: float = 5.0,
    ) -> None:
        self.call_connection_id = call_connection_id
        self._store = store
        self._debounce = debounce_seconds
        self._retry_max = retry_max_seconds
        self.context: dict[str, Any] = {}
        self.history: list[dict[str, Any]] = []
        self.metrics: list[dict[str, Any]] = []
        self._version = 0
        self._persisted_version = 0
        self._pending: asyncio.Task[None] | None = None
        self._write_lock = asyncio.Lock()
        self._closed = False

    # -- loading -----------------------------------------------------------------------------------
    @classmethod
    async def load(cls, call_connection_id: str, store: SessionStore, **kwargs: Any) -> MemoManager:
        memo = cls(call_connection_id, store, **kwargs)
        try:
            doc = await store.load(call_connection_id)
        except StoreUnavailable:
            doc = None
            log.warning("session store unreachable at load; starting an empty session [call=%s]", call_connection_id)
        if doc:
            memo.context = dict(doc.get("context") or {})
            memo.history = list(doc.get("history") or [])
            memo.metrics = list(doc.get("metrics") or [])
            memo._version = memo._persisted_version = int(doc.get("version") or 0)
        return memo

    # -- the seed's API ----------------------------------------------------------------------------
    def set_context(self, key: str, value: Any) -> None:
        self.context[key] = value
        self._touch()

    def update_context(self, values: dict[str, Any]) -> None:
        self.context.update(values)
        self._touch()

    def get_context(self, key: str, default: Any = None) -> Any:
        return self.context.get(key, default)

    def append_history(
        self,
        role: str,
        content: str,
        *,
        agent: str | None = None,
        interrupted: bool = False,
        **extra: Any,
    ) -> dict[str, Any]:
        """Add a message. An interrupted assistant reply is stored as heard, with ``interrupted=True``."""
        entry: dict[str, Any] = {"role": role, "content": content, "ts": time.time()}
        if agent:
            entry["agent"] = agent
        if interrupted:
            entry["interrupted"] = True
        entry.update(extra)
        self.history.append(entry)
        self._touch()
        return entry

    def get_history(self, agent: str | None = None) -> list[dict[str, Any]]:
        if agent is None:
            return list(self.history)
        return [m for m in self.history if m.get("agent") in (None, agent) or m["role"] == "user"]

    def record_metric(self, name: str, **values: Any) -> None:
        self.metrics.append({"name": name, "ts": time.time(), **values})
        self._touch()

    def snapshot(self) -> dict[str, Any]:
        return {
            "call_connection_id": self.call_connection_id,
            "version": self._version,
            "context": copy.deepcopy(self.context),
            "history": copy.deepcopy(self.history),
            "metrics": copy.deepcopy(self.metrics),
        }

    @property
    def dirty(self) -> bool:
        return self._version != self._persisted_version

    # -- persistence -------------------------------------------------------------------------------
    def _touch(self) -> None:
        self._version += 1

    async def persist_to_redis_async(self, store: SessionStore | None = None) -> bool:
        """Write the current snapshot now. Returns False (and keeps the state) if the store is down."""
        target = store or self._store
        async with self._write_lock:
            doc = self.snapshot()
            if doc["version"] <= self._persisted_version and self._persisted_version:
                return True
            try:
                await target.save(self.call_connection_id, doc)
            except StoreUnavailable:
                return False
            self._persisted_version = max(self._persisted_version, doc["version"])
            return True

    def persist_background(self, delay: float | None = None) -> None:
        """Debounced persist: many changes within ``delay`` become one write; retried until it lands."""
        if self._closed:
            return
        if self._pending is not None and not self._pending.done():
            return
        self._pending = asyncio.get_running_loop().create_task(
            self._persist_until_landed(self._debounce if delay is None else delay),
            name=f"persist:{self.call_connection_id}",
        )

    async def _persist_until_landed(self, delay: float) -> None:
        await asyncio.sleep(delay)
        backoff = 0.1
        while not await self.persist_to_redis_async():
            log.warning("session persist failed; retrying in %.1fs [call=%s]", backoff, self.call_connection_id)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self._retry_max)
        if self.dirty and not self._closed:
            # State changed while we were writing; keep the debounce semantics.
            self._pending = None
            self.persist_background()

    def cancel_pending_persist(self) -> None:
        if self._pending is not None and not self._pending.done():
            self._pending.cancel()
        self._pending = None

    async def final_persist(self, *, give_up_after: float = 30.0) -> bool:
        """Cancel the debounced write and land the final state, retrying for up to ``give_up_after``."""
        self.cancel_pending_persist()
        self._closed = True
        deadline = time.monotonic() + give_up_after
        backoff = 0.1
        while True:
            if await self.persist_to_redis_async():
                return True
            if time.monotonic() + backoff > deadline:
                log.error(
                    "final persist gave up after %.0fs; state kept only in memory [call=%s]",
                    give_up_after,
                    self.call_connection_id,
                )
                return False
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self._retry_max)

    async def aclose(self) -> None:
        self._closed = True
        task, self._pending = self._pending, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
