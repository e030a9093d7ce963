from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time

import pytest

from callwright.speech.pools import EnginePool, PoolClosed, PoolExhausted


class Engine:
    """A real (trivial) engine: counts resets and closes, optionally slow to build."""

    ids = itertools.count()

    def __init__(self, build_seconds: float = 0.0) -> None:
        time.sleep(build_seconds)
        self.id = next(self.ids)
        self.resets = 0
        self.closed = False
        self.thread = threading.current_thread().name

    def reset(self) -> None:
        self.resets += 1

    def close(self) -> None:
        self.closed = True


async def settle(pool: EnginePool[Engine], **expected: int) -> None:
    """Wait (event-driven, generously bounded) until the pool's stats show the expected values."""
    for _ in range(500):
        stats = pool.stats()
        if all(stats[k] == v for k, v in expected.items()):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"pool stats {pool.stats()} never matched {expected}")


async def test_warm_items_built_in_background_threads() -> None:
    pool = EnginePool("stt", Engine, max_size=4, warm=2)
    pool.start()
    await pool.wait_warm()
    assert pool.stats() == {
        "size": 2, "max_size": 4, "in_use": 0, "idle": 2, "waiting": 0, "created": 2, "exhausted_count": 0,
    }  # fmt: skip
    item = await pool.acquire()
    assert item.thread != threading.current_thread().name  # built off the event loop
    assert pool.stats()["created"] == 2  # a warm one, not a new one
    pool.release(item)
    await pool.close()


async def test_capacity_refusal_and_release_makes_room(caplog: pytest.LogCaptureFixture) -> None:
    pool = EnginePool("tts", Engine, max_size=2, acquire_timeout=0.2)
    a = await pool.acquire()
    b = await pool.acquire()
    assert a is not b
    with caplog.at_level(logging.WARNING, "callwright.speech.pools"), pytest.raises(PoolExhausted):
        await pool.acquire()
    assert "tts exhausted" in caplog.text
    assert pool.stats()["exhausted_count"] == 1
    with pytest.raises(PoolExhausted):
        await pool.acquire(timeout=0)
    # A waiter gets the instance released while it waits, after a reset.
    waiter = asyncio.create_task(pool.acquire(timeout=30))
    await settle(pool, waiting=1)
    pool.release(a)
    got = await waiter
    assert got is a and a.resets == 1
    assert pool.stats() == {
        "size": 2, "max_size": 2, "in_use": 2, "idle": 0, "waiting": 0, "created": 2, "exhausted_count": 2,
    }  # fmt: skip
    pool.release(got)
    pool.release(b)
    await settle(pool, idle=2, in_use=0)
    await pool.close()
    assert a.closed and b.closed


async def test_double_release_and_foreign_items_are_harmless() -> None:
    pool = EnginePool("stt", Engine, max_size=1, acquire_timeout=0.1)
    item = await pool.acquire()
    pool.release(item)
    pool.release(item)
    pool.release(Engine())  # never came from this pool
    await settle(pool, idle=1, in_use=0, size=1)
    assert item.resets == 1
    async with pool.lease() as again:
        assert again is item
        assert pool.stats()["in_use"] == 1
    await settle(pool, idle=1, in_use=0)
    await pool.close()


async def test_lease_releases_when_the_call_dies() -> None:
    pool = EnginePool("stt", Engine, max_size=1, acquire_timeout=0.1)

    async def call() -> None:
        async with pool.lease():
            await asyncio.sleep(3600)

    task = asyncio.create_task(call())
    await settle(pool, in_use=1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await settle(pool, in_use=0, idle=1)
    assert await pool.acquire() is not None
    await pool.close()


async def test_cancelled_waiter_does_not_leak() -> None:
    pool = EnginePool("stt", Engine, max_size=1, acquire_timeout=0.1)
    held = await pool.acquire()
    waiter = asyncio.create_task(pool.acquire(timeout=30))
    await settle(pool, waiting=1)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert pool.stats()["waiting"] == 0
    pool.release(held)
    await settle(pool, idle=1, in_use=0, size=1)
    await pool.close()


async def test_cancelled_while_building_keeps_the_instance() -> None:
    pool = EnginePool("stt", lambda: Engine(build_seconds=0.3), max_size=1, acquire_timeout=0.1)
    task = asyncio.create_task(pool.acquire())
    await asyncio.sleep(0.05)  # the build thread is running
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The instance finished building and went idle, so the slot is not lost.
    await settle(pool, idle=1, in_use=0, size=1, created=1)
    assert await pool.acquire(timeout=5) is not None
    await pool.close()


async def test_release_from_another_thread() -> None:
    pool = EnginePool("tts", Engine, max_size=1, acquire_timeout=0.1)
    item = await pool.acquire()
    await asyncio.to_thread(pool.release, item)
    await settle(pool, idle=1, in_use=0)
    await pool.close()


async def test_factory_failure_frees_the_slot(caplog: pytest.LogCaptureFixture) -> None:
    attempts = 0

    def flaky() -> Engine:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise OSError("model file missing")
        return Engine()

    pool = EnginePool("stt", flaky, max_size=1, acquire_timeout=0.1)
    with pytest.raises(OSError, match="model file missing"):
        await pool.acquire()
    assert pool.stats()["size"] == 0
    assert await pool.acquire() is not None
    await pool.close()


async def test_failed_warm_up_is_not_fatal() -> None:
    def broken() -> Engine:
        raise RuntimeError("no decoder")

    pool = EnginePool("stt", broken, max_size=2, warm=2)
    pool.start()
    await pool.wait_warm()
    assert pool.stats()["size"] == 0 and pool.stats()["idle"] == 0
    await pool.close()


async def test_close_refuses_acquires_and_closes_released_items() -> None:
    pool = EnginePool("tts", Engine, max_size=1, acquire_timeout=5)
    item = await pool.acquire()
    waiter = asyncio.create_task(pool.acquire())
    await settle(pool, waiting=1)
    await pool.close()
    with pytest.raises(PoolClosed):
        await waiter
    pool.release(item)
    for _ in range(500):
        if item.closed:
            break
        await asyncio.sleep(0.01)
    assert item.closed
    assert pool.stats()["size"] == 0


def test_bad_sizes_rejected() -> None:
    with pytest.raises(ValueError, match="max_size"):
        EnginePool("stt", Engine, max_size=0)
