"""``callwright bench``: run the plan, print the table (or the JSON), write the files asked for."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from rich.console import Console

from callwright.bench.modes import run_mode_comparison
from callwright.bench.realtime_bench import run_for_size as run_realtime_for_size
from callwright.bench.report import (
    markdown,
    realtime_server_lines,
    render_modes,
    render_robustness,
    render_table,
    robustness_markdown,
    stamp,
)
from callwright.bench.robustness import RobustnessPlan, run_robustness
from callwright.bench.runner import BenchPlan, run_bench

# Hidden knob for the smoke test: the smallest plan that still runs every phase.
SIZE_ENV = "CALLWRIGHT_BENCH_SIZE"


def run_bench_command(
    quick: bool, as_json: bool, out: Path | None, markdown_out: Path | None, robustness: bool = False
) -> int:
    """The whole bench; the full run ends with a reduced robustness pass. ``robustness`` runs only the
    robustness section, at full size (``--quick``: the reduced pass; CALLWRIGHT_BENCH_SIZE=tiny: tiny)."""
    err = Console(stderr=True)
    size = os.environ.get(SIZE_ENV, "quick" if quick else "full")
    plans = {"full": BenchPlan.full, "quick": BenchPlan.quick, "tiny": BenchPlan.tiny}
    if size not in plans:
        err.print(f"[red]error:[/] {SIZE_ENV} must be one of {', '.join(plans)}, got {size!r}")
        return 2

    def note(msg: str) -> None:
        err.print(f"[dim]·[/] {msg}", highlight=False)

    if robustness:
        return _robustness_only(size, as_json, out, markdown_out, note, err)
    try:
        plan = plans[size]()
        result = asyncio.run(run_bench(plan, note))
        # The same caller's-ear figures per streaming mode: media (above) beside voice_live.
        result["modes"] = asyncio.run(run_mode_comparison(plan, note, Path(result["artifacts_dir"]), result))
        note("local realtime server (VoiceLive protocol on the embedded engines)")
        result["realtime_server"] = asyncio.run(run_realtime_for_size(size))
        if size == "full":  # a tenth of --robustness (~1-2 min): every trigger, fewer inputs, one fault
            note("robustness (reduced pass; the full one: callwright bench --robustness)")
            result["robustness"] = asyncio.run(run_robustness(RobustnessPlan.reduced(), note))
            # 1, 2 and N workers of `callwright serve`, and the take-over after SIGKILL (alone:
            # python -m callwright.bench.scale [--quick|--tiny]).
            from callwright.bench.scale import ScalePlan, run_scale

            note("scale (workers on one machine, take-over after SIGKILL)")
            result["scale"] = asyncio.run(run_scale(ScalePlan.full(), note))
    except Exception as exc:  # a stack that cannot start: say why, non-zero exit
        err.print(f"[red]error:[/] the benchmark could not run: {type(exc).__name__}: {exc}")
        return 1
    from callwright.bench.scale import scale_lines

    result = stamp({"quick": size != "full", "size": size, **result})
    text = json.dumps(result, indent=2)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n", encoding="utf-8")
    if markdown_out is not None:
        markdown_out.parent.mkdir(parents=True, exist_ok=True)
        markdown_out.write_text(markdown(result) + "\n".join(scale_lines(result.get("scale"))), encoding="utf-8")
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
    else:
        render_table(Console(), result)
        render_modes(Console(), result)
        for line in realtime_server_lines(result.get("realtime_server")):
            Console().print(line, highlight=False)
        if result.get("robustness"):
            render_robustness(Console(), result["robustness"])
        for line in scale_lines(result.get("scale")):
            Console().print(line, highlight=False)
    return 0


def _robustness_only(size: str, as_json: bool, out: Path | None, markdown_out: Path | None, note: Any,
                     err: Console) -> int:  # fmt: skip
    plans = {"full": RobustnessPlan.full, "quick": RobustnessPlan.reduced, "tiny": RobustnessPlan.tiny}
    try:
        rob = asyncio.run(run_robustness(plans[size](), note))
    except Exception as exc:  # a stack that cannot start: say why, non-zero exit
        err.print(f"[red]error:[/] the robustness run could not run: {type(exc).__name__}: {exc}")
        return 1
    result = stamp({"size": size, "robustness": rob})
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    if markdown_out is not None:
        markdown_out.parent.mkdir(parents=True, exist_ok=True)
        markdown_out.write_text(robustness_markdown(result), encoding="utf-8")
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
    else:
        render_robustness(Console(), rob)
    return 0
