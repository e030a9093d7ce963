"""MemoManager: one call's conversation state (context, history, metrics), synced to a SessionStore.

Writes are snapshots of the whole document, each carrying the stored ``version`` it was based on plus
one, and land only through a compare-and-set on that version. A memo therefore never overwrites a
stored session it has not seen: one whose load failed (Redis stalled when this replica first saw the
call) re-loads and merges before its first write, and one that meets a newer stored version (another
replica wrote) merges too — stored history + the messages added here, stored context + the keys set
here. A store that lost the document (restarted without persistence, TTL) gets the full state back.
A failed write keeps the state in memory and retries with back-off until it lands; a call's final save
that cannot land is handed to the app's SessionSaver (see CallRegistry.finish), which outlives the call.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import time
from typing import Any

from callwright.sessions.store import SessionStore, StoreUnavailable, VersionConflict, version_of

log = logging.getLogger("callwright.sessions")

# Conflicts in a row before a write gives up for now (and retries later): another writer keeps winning.
MAX_MERGES_PER_WRITE = 5


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
        self._changes = 0  # local mutations so far
        self._saved_changes = 0  # ... of which the store has all up to this count
        # The stored version our state is based on; None = unknown (the load failed), so the first write
        # must load and merge first. 0 = nothing stored.
        self._base_version: int | None = 0
        self._base_history = 0  # history[:n] is in the stored document; later entries are ours alone
        self._base_metrics = 0
        self._dirty_keys: dict[str, int] = {}  # context keys set here → change count when set
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
            memo._base_version = None
            log.warning(
                "session store unreachable at load; the session will be merged with the stored one "
                "before its first write [call=%s]",
                call_connection_id,
            )
            # Re-load as soon as the store is back, so the agent sees the earlier history quickly.
            with contextlib.suppress(RuntimeError):
                memo.persist_background(0)
            return memo
        memo._adopt_document(doc)
        return memo

    @classmethod
    def from_document(cls, call_connection_id: str, store: SessionStore, doc: dict[str, Any]) -> MemoManager:
        """A memo holding a stored document as it is (API reads of calls from before a restart)."""
        memo = cls(call_connection_id, store)
        memo._adopt_document(doc)
        return memo

    def _adopt_document(self, doc: dict[str, Any] | None) -> None:
        if doc is None:
            return
        self.context = dict(doc.get("context") or {})
        self.history = list(doc.get("history") or [])
        self.metrics = list(doc.get("metrics") or [])
        self._base_version = version_of(doc)
        self._base_history = len(self.history)
        self._base_metrics = len(self.metrics)

    # -- the seed's API ----------------------------------------------------------------------------
    def set_context(self, key: str, value: Any) -> None:
        self.context[key] = value
        self._touch(key)

    def update_context(self, values: dict[str, Any]) -> None:
        self.context.update(values)
        for key in values:
            self._touch(key)

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
            "version": max(self._base_version or 0, 0) + 1,
            "call_connection_id": self.call_connection_id,
            "context": copy.deepcopy(self.context),
            "history": copy.deepcopy(self.history),
            "metrics": copy.deepcopy(self.metrics),
        }

    @property
    def dirty(self) -> bool:
        """Something here is not in the store yet (or the stored document has not been seen yet)."""
        return self._changes != self._saved_changes or self._base_version is None

    @property
    def stored_version(self) -> int | None:
        return self._base_version

    # -- spilling to disk and back -----------------------------------------------------------------
    def spill_state(self) -> dict[str, Any]:
        """Everything needed to land this memo later from another process (see SessionSaver)."""
        return {
            "call_connection_id": self.call_connection_id,
            "document": self.snapshot(),
            "base_version": self._base_version,
            "base_history": self._base_history,
            "base_metrics": self._base_metrics,
            "dirty_keys": sorted(self._dirty_keys),
        }

    @classmethod
    def from_spill(cls, state: dict[str, Any], store: SessionStore) -> MemoManager:
        doc = state["document"]
        memo = cls(str(state["call_connection_id"]), store)
        memo.context = dict(doc.get("context") or {})
        memo.history = list(doc.get("history") or [])
        memo.metrics = list(doc.get("metrics") or [])
        base = state.get("base_version")
        memo._base_version = None if base is None else int(base)
        memo._base_history = min(int(state.get("base_history") or 0), len(memo.history))
        memo._base_metrics = min(int(state.get("base_metrics") or 0), len(memo.metrics))
        memo._changes = 1  # spilled because unsaved
        memo._dirty_keys = {str(k): 1 for k in state.get("dirty_keys") or [] if k in memo.context}
        memo._closed = True
        return memo

    # -- persistence -------------------------------------------------------------------------------
    def _touch(self, key: str | None = None) -> None:
        self._changes += 1
        if key is not None:
            self._dirty_keys[key] = self._changes

    def _rebase(self, doc: dict[str, Any] | None) -> None:
        """Put what was changed here on top of the stored document ``doc``."""
        if doc is None:
            # Nothing stored: a new call, or the store lost the document. All we hold must be written.
            had_base = self._base_history or self._base_metrics or (self._base_version or 0) > 0
            self._base_version, self._base_history, self._base_metrics = 0, 0, 0
            if had_base or self.context or self.history or self.metrics:
                self._dirty_keys.update({k: self._changes + 1 for k in self.context})
                self._touch()
            return
        ours_history = self.history[self._base_history :]
        ours_metrics = self.metrics[self._base_metrics :]
        stored_history = list(doc.get("history") or [])
        stored_metrics = list(doc.get("metrics") or [])
        context = dict(doc.get("context") or {})
        for key in self._dirty_keys:
            if key in self.context:
                context[key] = self.context[key]
        if ours_history or ours_metrics or self._dirty_keys:
            log.info(
                "session merged with stored version %d (%d stored + %d new messages) [call=%s]",
                version_of(doc), len(stored_history), len(ours_history), self.call_connection_id,
            )  # fmt: skip
        self.history = stored_history + ours_history
        self.metrics = stored_metrics + ours_metrics
        self.context = context
        self._base_version = version_of(doc)
        self._base_history = len(stored_history)
        self._base_metrics = len(stored_metrics)

    async def persist_to_redis_async(self, store: SessionStore | None = None) -> bool:
        """Write the current state now. Returns False (and keeps the state) if the store is down."""
        target = store or self._store
        async with self._write_lock:
            for _ in range(MAX_MERGES_PER_WRITE):
                if self._base_version is None:
                    try:
                        doc = await target.load(self.call_connection_id)
                    except StoreUnavailable:
                        return False
                    self._rebase(doc)
                if self._changes == self._saved_changes:
                    return True
                changes = self._changes
                doc = self.snapshot()
                try:
                    await target.save(self.call_connection_id, doc, expected_version=self._base_version)
                except StoreUnavailable:
                    return False
                except VersionConflict as exc:
                    # Someone else wrote (another replica), or the store lost the document: merge, retry.
                    log.info("%s; merging [call=%s]", exc, self.call_connection_id)
                    self._base_version = None
                    continue
                self._base_version = doc["version"]
                self._base_history = len(doc["history"])
                self._base_metrics = len(doc["metrics"])
                self._saved_changes = changes
                self._dirty_keys = {k: c for k, c in self._dirty_keys.items() if c > changes}
                return True
            log.warning("session write lost %d merges in a row; retrying later [call=%s]", MAX_MERGES_PER_WRITE,
                        self.call_connection_id)  # fmt: skip
            return False

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

    async def final_persist(self, *, give_up_after: float = 2.0) -> bool:
        """Cancel the debounced write and try to land the final state for up to ``give_up_after``.

        Returns False if it could not land yet: the state stays here, and CallRegistry.finish hands the
        memo to the app's SessionSaver, which keeps retrying after the call has ended (and spills it to
        disk if the process stops first).
        """
        self.cancel_pending_persist()
        self._closed = True
        deadline = time.monotonic() + give_up_after
        backoff = 0.1
        while True:
            if await self.persist_to_redis_async():
                return True
            if time.monotonic() + backoff > deadline:
                log.warning(
                    "final save did not land within %.1fs; handed to the background saver [call=%s]",
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
