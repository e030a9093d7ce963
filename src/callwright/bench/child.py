"""The server as the benchmark runs it: its own process, so the phones' timing is not shared with it.

``python -m callwright.bench.child --port N`` builds the normal app from the environment's settings and
adds one read-only route, ``GET /bench/introspect`` (live asyncio tasks and threads; with
``?objects=true`` a full garbage collection and the most common live object types), so a soak can look
for leaks inside the server without attaching a debugger.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import ctypes
import gc
import os
import threading
import tracemalloc
from typing import Any

import uvicorn

from callwright.app import create_app
from callwright.bench.lag import LagMonitor
from callwright.config import load_settings

# Set to a traceback depth to trace Python allocations (leak hunts; it slows the server down).
TRACEMALLOC_ENV = "CALLWRIGHT_BENCH_TRACEMALLOC"


def build_app() -> Any:
    app = create_app(load_settings())
    lag = LagMonitor()

    async def introspect(objects: bool = False, trim: bool = False) -> dict[str, Any]:
        lag.start()  # the server's loop lag, measured from the first look on (each look starts a new window)
        tasks = [t for t in asyncio.all_tasks() if not t.done()]
        extra: dict[str, Any] = {}
        if trim:
            # Hand freed heap pages back to the OS: separates memory that is leaked from memory that is
            # free but still counted in RSS (fragmentation of glibc's heap).
            extra["malloc_trim"] = ctypes.CDLL("libc.so.6").malloc_trim(0)
        if objects:
            # Full collection first, so what is counted is what is really still referenced.
            extra["gc_collected"] = gc.collect()
            counts = collections.Counter(type(o).__qualname__ for o in gc.get_objects())
            extra["objects"] = dict(counts.most_common(40))
            if tracemalloc.is_tracing():
                top = tracemalloc.take_snapshot().statistics("lineno")[:15]
                extra["allocations"] = {str(st.traceback): st.size for st in top}
                extra["traced_mb"] = round(tracemalloc.get_traced_memory()[0] / 2**20, 1)
        return {
            **extra,
            "tasks": len(tasks),
            "threads": threading.active_count(),
            "thread_names": sorted(t.name for t in threading.enumerate()),
            "calls_active": len(app.state.calls),
            "loop_lag_ms": lag.take(),
            "pools": app.state.pool_stats(),
        }

    app.add_api_route("/bench/introspect", introspect, methods=["GET"])
    return app


def main() -> None:
    if os.environ.get(TRACEMALLOC_ENV):
        tracemalloc.start(int(os.environ[TRACEMALLOC_ENV]))
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default="auto", help="as uvicorn's --loop")
    args = parser.parse_args()
    uvicorn.run(
        build_app(),
        host="127.0.0.1",
        port=args.port,
        log_config=None,
        ws="websockets-sansio",
        loop=args.loop,
        ws_per_message_deflate=False,
    )


if __name__ == "__main__":
    main()
