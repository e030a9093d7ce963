"""``callwright bench``: run the plan, print the table (or the JSON), write the files asked for."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from rich.console import Console

from callwright.bench.report import markdown, render_table, stamp
from callwright.bench.runner import BenchPlan, run_bench

# Hidden knob for the smoke test: the smallest plan that still runs every phase.
SIZE_ENV = "CALLWRIGHT_BENCH_SIZE"


def run_bench_command(quick: bool, as_json: bool, out: Path | None, markdown_out: Path | None) -> int:
    err = Console(stderr=True)
    size = os.environ.get(SIZE_ENV, "quick" if quick else "full")
    plans = {"full": BenchPlan.full, "quick": BenchPlan.quick, "tiny": BenchPlan.tiny}
    if size not in plans:
        err.print(f"[red]error:[/] {SIZE_ENV} must be one of {', '.join(plans)}, got {size!r}")
        return 2

    def note(msg: str) -> None:
        err.print(f"[dim]·[/] {msg}", highlight=False)

    try:
        result = asyncio.run(run_bench(plans[size](), note))
    except Exception as exc:  # a stack that cannot start: say why, non-zero exit
        err.print(f"[red]error:[/] the benchmark could not run: {type(exc).__name__}: {exc}")
        return 1
    result = stamp({"quick": size != "full", "size": size, **result})
    text = json.dumps(result, indent=2)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n", encoding="utf-8")
    if markdown_out is not None:
        markdown_out.parent.mkdir(parents=True, exist_ok=True)
        markdown_out.write_text(markdown(result), encoding="utf-8")
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
    else:
        render_table(Console(), result)
    return 0
