"""Engine pools shrink back to their warm size once a burst is over."""

from __future__ import annotations

import asyncio
import time

from callwright.speech.pools import EnginePool


class Engine:
    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


async def _until(pool: EnginePool[Engine], size: int, timeout: float = 10.0, key: str = "size") -> None:
    deadline = time.monotonic() + timeout
    while pool.stats()[key] != size:
        assert time.monotonic() < deadline, pool.stats()
        await asyncio.sleep(0.02)


async def test_instances_above_warm_close_after_idle_seconds() -> None:
    pool: EnginePool[Engine] = EnginePool("stt", Engine, max_size=8, warm=2, idle_seconds=1.0)
    pool.start()
    await pool.wait_warm()
    burst = [await pool.acquire() for _ in range(6)]
    for engine in burst:
        pool.release(engine)
    await _until(pool, 6, key="idle")  # released (reset in a thread, then idle)
    await _until(pool, 2)  # back to the warm two, not below
    # The size drops when the victims are taken; they are closed (and counted) in threads just after.
    deadline = time.monotonic() + 10
    while pool.trimmed < 4:
        assert time.monotonic() < deadline, pool.trimmed
        await asyncio.sleep(0.02)
    assert pool.trimmed == 4
    assert sum(e.closed for e in burst) == 4
    await asyncio.sleep(2.5)
    assert pool.stats()["size"] == 2  # warm instances are never trimmed
    # Capacity is back: a new burst can build up to max_size again.
    again = [await pool.acquire() for _ in range(8)]
    assert pool.stats()["in_use"] == 8
    for engine in again:
        pool.release(engine)
    await pool.close()


async def test_busy_instances_are_not_trimmed() -> None:
    pool: EnginePool[Engine] = EnginePool("tts", Engine, max_size=4, warm=0, idle_seconds=0.2)
    pool.start()
    held = [await pool.acquire() for _ in range(3)]
    await asyncio.sleep(0.8)
    assert pool.stats()["size"] == 3 and not any(e.closed for e in held)
    for engine in held:
        pool.release(engine)
    await _until(pool, 3, key="idle")
    await _until(pool, 0)
    await pool.close()
