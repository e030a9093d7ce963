"""``callwright demo``: the emulator and the server (embedded engines, no cloud, no Redis), one call.

The server runs in a child process (see :mod:`callwright.bench.stack`) so the virtual phone's clock —
which measures every latency shown — does not share an interpreter with the server's speech threads.
While the call runs, the terminal shows the server's transcript as it grows (``GET /api/v1/calls/{id}``);
afterwards the phone's report (per-turn latencies, barge-ins, the recording's paths) and the closing
transcript (:mod:`callwright.demo.report`): the agent's words as the server has them beside what the
caller's ear decoded, the caller's script beside what the server recognized — each cell labelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.markup import escape

from callwright.bench.stack import SplitStack, StackError, split_stack
from callwright.demo.interactive import keyboard_caller, stdin_lines
from callwright.demo.report import as_json, conversation, render_conversation
from callwright.emulator.phone import build_phone_from_script
from callwright.emulator.phone.script import ScriptError, load_script
from callwright.emulator.phone.summary import render_report

DEMO_SCRIPT = Path(__file__).with_name("call.yaml")
_POLL_S = 0.5

# A script that only waits: in interactive mode the person at the keyboard speaks for the phone.
_INTERACTIVE = """\
name: interactive
direction: inbound
timeout_s: 86400
steps:
  - wait: {disconnected: true}
"""


class _Transcript:
    """The server's record of the call (what it heard and said), printed as it grows."""

    def __init__(self, stack: SplitStack, call_id: str, console: Console) -> None:
        self.stack, self.call_id, self.console = stack, call_id, console
        self.entries: list[dict[str, Any]] = []

    async def poll(self) -> None:
        view = await self.stack.server_call(self.call_id)
        entries = list((view or {}).get("transcript") or [])
        for e in entries[len(self.entries) :]:
            if e.get("role") == "user":
                who = "[cyan]caller (keypad)[/]" if e.get("kind") == "dtmf" else "[cyan]caller[/]"
            else:
                who = f"[magenta]{escape(str(e.get('agent') or 'agent'))}[/]"
            cut = " [yellow](interrupted)[/]" if e.get("interrupted") else ""
            self.console.print(f"  {who}: {escape(str(e.get('content', '')))}{cut}")
        if len(entries) > len(self.entries):
            self.entries = entries

    async def follow(self) -> None:
        while True:
            # The server may be busy or between states; the next poll catches up.
            with contextlib.suppress(httpx.HTTPError, ValueError):
                await self.poll()
            await asyncio.sleep(_POLL_S)


def _engines() -> str:
    # The server child inherits this environment (split_stack), so these are the engines it runs.
    stt = os.environ.get("STT_ENGINE") or "pocketsphinx"
    return f"speech recognition: {stt}, synthesis: {os.environ.get('TTS_ENGINE') or 'espeak'}"


async def place_call(
    stack: SplitStack, script_text: str, *, record_dir: Path, base_dir: Path | None
) -> tuple[Any, Any]:
    """Dial the server with the scripted phone, its relative ``say: {file: …}`` paths read against
    ``base_dir`` (the script's folder, as ``callwright call`` does) rather than the current directory."""
    phone = build_phone_from_script(script_text, record_dir=record_dir, base_dir=base_dir)
    spec = phone.script
    call = await stack.emulator.place_inbound_call(phone, from_number=spec.from_number, to_number=spec.to_number)
    return phone, call


def _t0_wall(phone: Any) -> float | None:
    """The wall-clock time of the phone's first tick (its report counts from there, the server stamps
    transcript lines with wall-clock time)."""
    link = getattr(phone, "link", None)
    t0 = getattr(getattr(link, "timeline", None), "t0", None)
    if not isinstance(t0, float) or t0 <= 0:
        return None
    return time.time() - (time.monotonic() - t0)


async def _demo(script_text: str, *, scenario: str | None, interactive: bool, record_dir: Path,
                console: Console, base_dir: Path | None = None) -> dict[str, Any]:  # fmt: skip
    env = {"SCENARIO": scenario} if scenario else {}
    # SIGTERM unwinds like Ctrl-C, so the server child is stopped too rather than left running.
    main = asyncio.current_task()
    if main is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main.cancel)
    # Read the keyboard from the start: lines typed while the stack starts are queued, not lost.
    lines = stdin_lines() if interactive else None
    status = console.status("starting the emulator and the server (embedded engines)…")
    status.start()
    try:
        async with split_stack(env, log_dir=record_dir / "logs") as stack:
            status.stop()
            console.print(f"[green]✓[/] server {stack.url} (pid {stack.pid}), emulator {stack.emulator.endpoint}")
            console.print(f"[dim]{_engines()}[/]")
            try:
                phone, call = await place_call(stack, script_text, record_dir=record_dir, base_dir=base_dir)
            except Exception as exc:  # refused or unanswered: show why, with the server's last words
                console.print(f"[red]the call could not be placed:[/] {exc}")
                console.print(f"[dim]server log ({stack.log_path}):[/]\n{stack.log_tail()}", highlight=False)
                return {"ok": False, "error": f"{type(exc).__name__}: {exc}", "events": []}
            console.print(f"[green]✓[/] call {call.call_connection_id} connected — live transcript:")
            transcript = _Transcript(stack, call.call_connection_id, console)
            watcher = asyncio.create_task(transcript.follow())
            typing = asyncio.create_task(keyboard_caller(phone, call, lines, console)) if lines is not None else None
            try:
                report = dict(await phone.run(call))
            finally:
                for t in (watcher, typing):
                    if t is not None:
                        t.cancel()
            # The last turns may have landed after the watcher's last poll; the report carries the server's
            # record too (it is what the server heard: keyed digits, recognized words).
            with contextlib.suppress(httpx.HTTPError, ValueError):
                await transcript.poll()
            report["server_transcript"] = transcript.entries
            report["conversation"] = as_json(
                conversation(transcript.entries, list(report.get("transcript") or []), _t0_wall(phone))
            )
            return report
    finally:
        status.stop()


def render_closing(console: Console, report: dict[str, Any]) -> None:
    """The phone's report, with its transcript replaced by the labelled comparison: the phone's own table
    shows the ear's pocketsphinx reading under "agent", which is not what the agent said."""
    render_report(console, {**report, "transcript": []})
    lines = report.get("conversation")
    if lines:
        from callwright.demo.report import Line

        render_conversation(console, [Line(**line) for line in lines])


def run_demo(*, script: Path | None, scenario: str | None, interactive: bool, as_json: bool,
             record_dir: Path) -> int:  # fmt: skip
    """0 when the call completed as scripted, 1 when it failed, 2 on a bad script."""
    console = Console(stderr=True) if as_json else Console()
    base_dir: Path | None = None
    if interactive:
        text = _INTERACTIVE
    else:
        path = script or DEMO_SCRIPT
        try:
            load_script(path)  # validate with the file's own folder for relative audio paths
            text = path.read_text(encoding="utf-8")
            base_dir = path.resolve().parent
        except (ScriptError, OSError) as exc:
            console.print(f"[red]error:[/] {exc}")
            return 2
    record_dir = record_dir.resolve()
    try:
        report = asyncio.run(
            _demo(
                text,
                scenario=scenario,
                interactive=interactive,
                record_dir=record_dir,
                console=console,
                base_dir=base_dir,
            )
        )
    except StackError as exc:
        console.print(f"[red]error:[/] {exc}")
        return 1
    except (KeyboardInterrupt, asyncio.CancelledError):  # Ctrl-C or SIGTERM: the stack is already down
        console.print("[yellow]stopped[/]")
        return 130
    if as_json:
        sys.stdout.write(json.dumps(report) + "\n")
    else:
        render_closing(console, report)
    return 0 if report.get("ok") else 1
