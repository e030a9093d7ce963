"""Bounded async pools of engine instances (STT recognizers, TTS synthesizers).

The original's pools had no upper bound and ignored their timeout (reference-art-accelerator.md §7);
here ``max_size`` is a hard cap on instances in existence, ``acquire`` waits at most ``timeout`` and then
raises :class:`PoolExhausted`, and ``release`` is synchronous, idempotent and callable from any task or
thread, so a ``finally`` in a dying call can always return its engines.

Engine construction and reset block (a pocketsphinx decoder takes 10-400 ms to build), so both run in
worker threads, never on the event loop.

Pools shrink when idle: after a burst of calls, instances above ``warm`` that sat unused for
``idle_seconds`` are closed (each holds a decoder or a synthesiser: tens of MB).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")

log = logging.getLogger("callwright.speech.pools")


class PoolExhausted(RuntimeError):
    """Every instance is in use and none came free within the acquire timeout."""


class PoolClosed(RuntimeError):
    """The pool was closed (server shutting down)."""


def _call_method(name: str) -> Callable[[Any], None]:
    def call(item: Any) -> None:
        method = getattr(item, name, None)
        if callable(method):
            method()

    return call


class EnginePool(Generic[T]):
    """At most ``max_size`` instances; ``warm`` of them are built in the background by :meth:`start`.

    Create and use it on one event loop. ``reset`` (default: the item's ``reset()``, if any) runs on
    release before an instance is reused; an instance whose reset fails is closed and dropped.
    """

    def __init__(
        self,
        name: str,
        factory: Callable[[], T],
        max_size: int,
        warm: int = 0,
        acquire_timeout: float = 2.0,
        reset: Callable[[T], None] | None = None,
        close: Callable[[T], None] | None = None,
        idle_seconds: float | None = 300.0,
    ) -> None:
        if max_size < 1:
            raise ValueError(f"pool {name!r}: max_size must be at least 1, got {max_size}")
        if idle_seconds is not None and idle_seconds <= 0:
            raise ValueError(f"pool {name!r}: idle_seconds must be positive, got {idle_seconds}")
        if warm < 0 or acquire_timeout < 0:
            raise ValueError(f"pool {name!r}: warm and acquire_timeout must not be negative")
        self.name = name
        self.max_size = max_size
        self.warm = min(warm, max_size)
        self.acquire_timeout = acquire_timeout
        self._factory = factory
        self._reset = reset or _call_method("reset")
        self._close_item = close or _call_method("close")
        self._cond = asyncio.Condition()
        self._idle: list[T] = []  # oldest first; acquire takes the most recently used
        self._idle_since: dict[int, float] = {}
        self.idle_seconds = idle_seconds
        self._trimmer: asyncio.Task[None] | None = None
        self._trimmed = 0
        self._in_use: dict[int, T] = {}
        self._size = 0  # instances in existence or being built; never above max_size
        self._waiting = 0
        self._created = 0
        self._exhausted = 0
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Future[Any]] = set()

    # --- lifecycle --------------------------------------------------------------------------------
    def start(self) -> None:
        """Begin building the warm instances in the background (failures are logged, not fatal)."""
        self._loop = asyncio.get_running_loop()
        if self.warm:
            self._spawn(self._warm_up())
        if self.idle_seconds is not None and self._trimmer is None:
            self._trimmer = self._loop.create_task(self._trim_loop(), name=f"pool-trim:{self.name}")

    async def wait_warm(self) -> None:
        """Wait until the background warm-up has finished (for tests and /ready)."""
        while any(not t.done() for t in list(self._tasks)):
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        """Refuse new acquires, close idle instances; in-use ones are closed as they are released."""
        if self._closed:
            return
        self._closed = True
        if self._trimmer is not None:
            self._trimmer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._trimmer
            self._trimmer = None
        async with self._cond:
            self._cond.notify_all()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
        idle, self._idle = self._idle, []
        self._idle_since.clear()
        self._size -= len(idle)
        for item in idle:
            await asyncio.to_thread(self._safe_close, item)

    async def __aenter__(self) -> EnginePool[T]:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- acquire / release ------------------------------------------------------------------------
    async def acquire(self, timeout: float | None = None) -> T:
        """An idle instance, or a new one while below ``max_size``; otherwise wait up to ``timeout``
        seconds (default: the pool's ``acquire_timeout``) and raise :class:`PoolExhausted`."""
        self._loop = self._loop or asyncio.get_running_loop()
        timeout = self.acquire_timeout if timeout is None else timeout
        async with self._cond:
            ready = lambda: self._closed or bool(self._idle) or self._size < self.max_size  # noqa: E731
            self._waiting += 1
            try:
                if not ready():  # wait_for(timeout=0) would time out even with an instance free
                    await asyncio.wait_for(self._cond.wait_for(ready), timeout)
            except TimeoutError:
                self._exhausted += 1
                log.warning(
                    "pool %s exhausted: %d of %d in use, no instance free within %.1f s",
                    self.name, len(self._in_use), self.max_size, timeout,
                )  # fmt: skip
                raise PoolExhausted(f"{self.name} pool at capacity ({self.max_size} in use)") from None
            finally:
                self._waiting -= 1
            if self._closed:
                raise PoolClosed(f"{self.name} pool is closed")
            if self._idle:
                item = self._idle.pop()
                self._idle_since.pop(id(item), None)
                self._in_use[id(item)] = item
                return item
            self._size += 1  # reserve the slot before building outside the lock
        return await self._build_for_caller()

    def release(self, item: T) -> None:
        """Return an instance. Idempotent (a second release is ignored) and safe from any thread."""
        loop = self._loop
        if loop is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._release_now(item)
        elif not loop.is_closed():
            loop.call_soon_threadsafe(self._release_now, item)

    @contextlib.asynccontextmanager
    async def lease(self, timeout: float | None = None) -> AsyncIterator[T]:
        """``async with pool.lease() as engine:`` — released however the block exits."""
        item = await self.acquire(timeout)
        try:
            yield item
        finally:
            self.release(item)

    def stats(self) -> dict[str, int]:
        return {
            "size": self._size,
            "max_size": self.max_size,
            "in_use": len(self._in_use),
            "idle": len(self._idle),
            "waiting": self._waiting,
            "created": self._created,
            "exhausted_count": self._exhausted,
        }

    @property
    def trimmed(self) -> int:
        """Instances closed for having been idle too long."""
        return self._trimmed

    # --- internals --------------------------------------------------------------------------------
    async def _build_for_caller(self) -> T:
        build = asyncio.ensure_future(asyncio.to_thread(self._factory))
        try:
            item = await asyncio.shield(build)
        except asyncio.CancelledError:
            # The caller gave up; the thread still finishes, and its instance goes to the idle list.
            build.add_done_callback(self._adopt_orphan)
            self._tasks.add(build)
            build.add_done_callback(self._tasks.discard)
            raise
        except BaseException:
            log.exception("pool %s: building an instance failed", self.name)
            await self._give_back_slot()
            raise
        self._created += 1
        self._in_use[id(item)] = item
        return item

    def _adopt_orphan(self, build: asyncio.Future[Any]) -> None:
        if build.cancelled() or build.exception() is not None:
            self._spawn(self._give_back_slot())
            return
        self._created += 1
        self._spawn(self._to_idle(build.result()))

    async def _give_back_slot(self) -> None:
        async with self._cond:
            self._size -= 1
            self._cond.notify()

    async def _to_idle(self, item: T) -> None:
        if self._closed:
            self._size -= 1
            await asyncio.to_thread(self._safe_close, item)
            return
        async with self._cond:
            self._idle.append(item)
            self._idle_since[id(item)] = time.monotonic()
            self._cond.notify()

    async def trim_idle(self, now: float | None = None) -> int:
        """Close instances above ``warm`` idle for ``idle_seconds`` or more; returns how many."""
        if self.idle_seconds is None or self._closed:
            return 0
        now = time.monotonic() if now is None else now
        victims: list[T] = []
        async with self._cond:
            keep: list[T] = []
            for item in self._idle:  # oldest first
                since = self._idle_since.get(id(item), now)
                if self._size - len(victims) > self.warm and now - since >= self.idle_seconds:
                    victims.append(item)
                    self._idle_since.pop(id(item), None)
                else:
                    keep.append(item)
            self._idle = keep
            self._size -= len(victims)
            if victims:
                self._cond.notify(len(victims))  # room to build again for any waiter
        for item in victims:
            await asyncio.to_thread(self._safe_close, item)
        if victims:
            self._trimmed += len(victims)
            log.info("pool %s: closed %d idle instance(s); %d left", self.name, len(victims), self._size)
        return len(victims)

    async def _trim_loop(self) -> None:
        assert self.idle_seconds is not None
        period = min(max(self.idle_seconds / 2, 0.05), 30.0)
        while not self._closed:
            await asyncio.sleep(period)
            try:
                await self.trim_idle()
            except Exception:
                log.exception("pool %s: trimming idle instances failed", self.name)

    async def _warm_up(self) -> None:
        while not self._closed and self._size < self.warm:
            async with self._cond:
                if self._size >= self.max_size:
                    return
                self._size += 1
            try:
                item = await asyncio.to_thread(self._factory)
            except Exception:
                log.exception("pool %s: warm-up instance failed; instances will be built on demand", self.name)
                await self._give_back_slot()
                return
            self._created += 1
            await self._to_idle(item)

    def _release_now(self, item: T) -> None:
        if self._in_use.pop(id(item), None) is None:
            return  # not ours or already released: harmless
        self._spawn(self._recycle(item))

    async def _recycle(self, item: T) -> None:
        try:
            if not self._closed:
                await asyncio.to_thread(self._reset, item)
        except Exception:
            log.exception("pool %s: reset failed; dropping the instance", self.name)
            self._close_in_background(item)
            await self._give_back_slot()
            return
        if self._closed:
            self._close_in_background(item)
            self._size -= 1
            return
        await self._to_idle(item)

    def _close_in_background(self, item: T) -> None:
        # Closing is quick for every engine here, and release paths must not be cancelled midway.
        threading.Thread(target=self._safe_close, args=(item,), name=f"{self.name}-close", daemon=True).start()

    def _safe_close(self, item: T) -> None:
        try:
            self._close_item(item)
        except Exception:
            log.exception("pool %s: closing an instance failed", self.name)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
