"""The server as the benchmark runs it: its own process, so the phones' timing is not shared with it.

``python -m callwright.bench.child --port N`` builds the normal app from the environment's settings and
adds one read-only route, ``GET /bench/introspect`` (live asyncio tasks and threads), so a soak can look
for leaks inside the server without attaching a debugger.
"""

from __future__ import annotations

import argparse
import asyncio
import threading
from typing import Any

import uvicorn

from callwright.app import create_app
from callwright.config import load_settings


def build_app() -> Any:
    app = create_app(load_settings())

    async def introspect() -> dict[str, Any]:
        tasks = [t for t in asyncio.all_tasks() if not t.done()]
        return {
            "tasks": len(tasks),
            "threads": threading.active_count(),
            "thread_names": sorted(t.name for t in threading.enumerate()),
            "calls_active": len(app.state.calls),
            "pools": app.state.pool_stats(),
        }

    app.add_api_route("/bench/introspect", introspect, methods=["GET"])
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(build_app(), host="127.0.0.1", port=args.port, log_config=None, ws="websockets-sansio")


if __name__ == "__main__":
    main()
