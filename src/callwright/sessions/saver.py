"""SessionSaver: lands sessions whose final save failed, after their call has ended.

Owned by the app (built in the lifespan), not by a call: a call that ends while Redis is down hands its
MemoManager here (CallRegistry.finish) and is gone; the saver retries with back-off for up to
``retry_seconds`` and lands it when the store returns. Recent-call summaries ride along the same way.
When the process stops (or the retry window runs out) whatever is still unsaved is spilled to disk as
JSON, one file per call in ``spill_dir`` (mode 0600: transcripts are personal data), and the next server
to start replays those files into the store (merging like any other write, never overwriting newer data).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from callwright.sessions.memo import MemoManager
from callwright.sessions.store import SessionStore, StoreUnavailable

log = logging.getLogger("callwright.sessions")

SPILL_SUFFIX = ".session.json"


@dataclass
class _Pending:
    memo: MemoManager | None
    summary: dict[str, Any] | None
    ended_at: float
    deadline: float
    spill_file: Path | None = None  # replayed from this file: deleted once landed


class SessionSaver:
    def __init__(
        self,
        store: SessionStore,
        *,
        spill_dir: Path,
        retry_seconds: float = 600.0,
        recent_limit: int = 200,
        concurrency: int = 16,
        max_backoff: float = 5.0,
        metrics: Any = None,
    ) -> None:
        self._metrics = metrics
        self._store = store
        self.spill_dir = spill_dir
        self._retry_seconds = retry_seconds
        self._recent_limit = recent_limit
        self._sem = asyncio.Semaphore(concurrency)
        self._max_backoff = max_backoff
        self._pending: dict[str, _Pending] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.landed = 0
        self.spilled = 0

    # -- intake ------------------------------------------------------------------------------------
    def adopt(self, memo: MemoManager) -> None:
        """Keep retrying this memo's save in the background (the call may already be over)."""
        item = self._item(memo.call_connection_id)
        item.memo = memo
        self._kick()

    def remember(self, call_id: str, summary: dict[str, Any], ended_at: float) -> None:
        """Persist a finished call's summary to the recent-calls list (retried like a session)."""
        item = self._item(call_id)
        item.summary = summary
        item.ended_at = ended_at
        self._kick()

    def _item(self, call_id: str) -> _Pending:
        item = self._pending.get(call_id)
        if item is None:
            item = self._pending[call_id] = _Pending(None, None, time.time(), time.monotonic() + self._retry_seconds)
        return item

    def _kick(self) -> None:
        self._wake.set()
        if self._task is None or self._task.done():
            with contextlib.suppress(RuntimeError):  # no running loop: flush()/spill() will pick it up
                self._task = asyncio.get_running_loop().create_task(self._run(), name="session-saver")

    @property
    def pending(self) -> int:
        return len(self._pending)

    # -- the background loop -----------------------------------------------------------------------
    async def _run(self) -> None:
        backoff = 0.2
        while self._pending:
            remaining = await self._attempt_all()
            if remaining == 0:
                break
            self._expire()
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(backoff):  # not wait_for: 3.11's can swallow a racing cancel
                    await self._wake.wait()
            backoff = min(backoff * 2, self._max_backoff)

    async def _attempt_all(self) -> int:
        ids = list(self._pending)
        await asyncio.gather(*(self._attempt(call_id) for call_id in ids))
        return len(self._pending)

    async def _attempt(self, call_id: str) -> bool:
        item = self._pending.get(call_id)
        if item is None:
            return True
        async with self._sem:
            try:
                if item.memo is not None and item.memo.dirty and not await item.memo.persist_to_redis_async():
                    return False
                if item.summary is not None:
                    await self._store.remember_call(
                        call_id, item.summary, ended_at=item.ended_at, limit=self._recent_limit
                    )
            except StoreUnavailable:
                return False
            except Exception:
                log.exception("background save failed [call=%s]", call_id)
                return False
        if self._pending.get(call_id) is item and (item.memo is None or not item.memo.dirty):
            del self._pending[call_id]
            if item.spill_file is not None:
                with contextlib.suppress(OSError):
                    item.spill_file.unlink()
            if item.memo is not None:
                self.landed += 1
                if self._metrics is not None:
                    self._metrics.sessions_deferred_total.labels("landed").inc()
                log.info("session saved after the call ended [call=%s]", call_id)
        return True

    def _expire(self) -> None:
        now = time.monotonic()
        for call_id, item in list(self._pending.items()):
            if item.deadline <= now:
                log.error("session could not be saved within %.0fs; spilling to disk [call=%s]",
                          self._retry_seconds, call_id)  # fmt: skip
                self._spill_one(call_id, item)
                self._pending.pop(call_id, None)

    # -- shutdown ----------------------------------------------------------------------------------
    async def flush(self, timeout: float) -> int:
        """Try to land everything pending for up to ``timeout`` seconds; returns how many are left."""
        deadline = time.monotonic() + timeout
        backoff = 0.1
        while self._pending:
            try:
                await asyncio.wait_for(self._attempt_all(), max(0.05, deadline - time.monotonic()))
            except TimeoutError:
                break
            if not self._pending or time.monotonic() + backoff >= deadline:
                break
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 1.0)
        return len(self._pending)

    async def spill(self) -> int:
        """Write every unsaved session to disk (the process is stopping); returns how many."""
        items = list(self._pending.items())
        self._pending.clear()
        count = 0
        for call_id, item in items:
            if await asyncio.to_thread(self._spill_one, call_id, item):
                count += 1
        return count

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _spill_path(self, call_id: str) -> Path:
        # Call ids may hold '/' or ':'; a digest makes a safe, fixed-length file name.
        return self.spill_dir / (hashlib.sha256(call_id.encode()).hexdigest()[:32] + SPILL_SUFFIX)

    def _spill_one(self, call_id: str, item: _Pending) -> bool:
        record: dict[str, Any] = {"call_connection_id": call_id, "spilled_at": time.time()}
        if item.memo is not None and item.memo.dirty:
            record["session"] = item.memo.spill_state()
        if item.summary is not None:
            record["summary"] = item.summary
            record["ended_at"] = item.ended_at
        if len(record) == 2:
            return False
        try:
            self.spill_dir.mkdir(parents=True, exist_ok=True)
            path = self._spill_path(call_id)
            tmp = path.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(record, fh, default=str)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            log.error("could not spill the session to %s: %s; it is lost [call=%s]", self.spill_dir, exc, call_id)
            return False
        self.spilled += 1
        if self._metrics is not None:
            self._metrics.sessions_deferred_total.labels("spilled").inc()
        log.warning("session spilled to %s (replayed at the next start) [call=%s]", path, call_id)
        return True

    # -- start-up ----------------------------------------------------------------------------------
    async def replay(self, timeout: float = 2.0) -> int:
        """Queue spilled files for the store and try to land them for up to ``timeout`` (the start-up
        waits no longer; what has not landed is retried in the background). Returns how many landed.
        A file is deleted once its session lands, so a crash meanwhile loses nothing."""
        files = await asyncio.to_thread(self._spilled_files)
        if not files:
            return 0
        for path in files:
            try:
                record = json.loads(await asyncio.to_thread(path.read_text, encoding="utf-8"))
                call_id = str(record["call_connection_id"])
                memo = MemoManager.from_spill(record["session"], self._store) if "session" in record else None
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.error("spilled session %s is unreadable (%s); left in place", path.name, exc)
                continue
            item = self._item(call_id)
            item.memo = memo
            item.spill_file = path
            if "summary" in record:
                item.summary = record["summary"]
                item.ended_at = float(record.get("ended_at") or time.time())
        before = len(self._pending)
        left = await self.flush(timeout)
        log.info("replayed %d spilled session(s): %d landed, %d retrying in the background", len(files),
                 before - left, left)  # fmt: skip
        if self._pending:
            self._kick()
        return before - left

    def _spilled_files(self) -> list[Path]:
        if not self.spill_dir.is_dir():
            return []
        return sorted(self.spill_dir.glob("*" + SPILL_SUFFIX))
