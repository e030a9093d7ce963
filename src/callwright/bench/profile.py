"""Profile the server under load: one density level with the server running under py-spy.

``python -m callwright.bench.profile --engines instant --calls 50 --out bench/profiles`` writes the raw
collapsed stacks (``*.txt``, for flamegraph tools) and prints where the samples fall: the functions that
were on CPU themselves (self) and the ones most often on the stack (inclusive), per thread kind. py-spy
samples every thread, including the recognition lanes, which cProfile would not see.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from callwright.bench.runner import BenchPlan, _engine_env, density_step
from callwright.bench.stack import split_stack


def summarize(collapsed: str, top: int = 15) -> dict[str, Any]:
    """Self and inclusive sample shares from py-spy's raw (collapsed) output."""
    self_counts: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        count = int(n)
        total += count
        frames = stack.split(";")
        # py-spy puts the thread first ("thread (0x…)" or the thread's name) when --threads is given.
        head = frames[0].split(" ")[0].strip('"')
        threads[head.split(":")[0]] += count
        self_counts[frames[-1]] += count
        for f in set(frames[1:]):
            incl[f] += count

    def pct(c: collections.Counter[str]) -> list[tuple[str, float]]:
        return [(k, round(v / total * 100, 1)) for k, v in c.most_common(top)] if total else []

    return {"samples": total, "threads": pct(threads), "self": pct(self_counts), "inclusive": pct(incl)}


def _py_spy() -> str:
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        raise SystemExit("py-spy is not installed: pip install py-spy (it samples the server process)")
    return spy


async def _run(spy: str, engines: str, calls: int, out: Path) -> dict[str, Any]:
    raw = out / f"{engines}-{calls}.txt"
    # --gil: only samples where a thread holds the GIL, i.e. what competes for the one interpreter.
    wrap = [
        spy,
        "record",
        "--format",
        "raw",
        "--threads",
        "--gil",
        "--rate",
        "200",
        "--nonblocking",
        "-o",
        str(raw),
        "--",
    ]
    plan = BenchPlan.quick()
    env = _engine_env(engines, BenchPlan(**{**plan.__dict__, "embedded_steps": (calls,), "instant_steps": (calls,)}))
    async with split_stack(env, log_dir=out, wrap=wrap) as stack:
        await density_step(stack, 2)  # warm-up: first-call costs out of the profile
        step = await density_step(stack, calls)
    return {"step": step, "raw": str(raw)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engines", choices=("embedded", "instant"), default="instant")
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--out", type=Path, default=Path("bench/profiles"))
    args = parser.parse_args()
    spy = _py_spy()
    args.out.mkdir(parents=True, exist_ok=True)
    result = asyncio.run(_run(spy, args.engines, args.calls, args.out))
    raw = Path(result["raw"])
    for _ in range(100):  # py-spy writes its file when the server has exited
        if raw.exists() and raw.stat().st_size:
            break
        time.sleep(0.1)
    result["profile"] = summarize(raw.read_text(encoding="utf-8")) if raw.exists() else None
    sys.stdout.write(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
