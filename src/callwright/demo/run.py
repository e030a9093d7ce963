"""``callwright demo``: the emulator and the server (embedded engines, no cloud, no Redis), one call.

The server runs in a child process (see :mod:`callwright.bench.stack`) so the virtual phone's clock —
which measures every latency shown — does not share an interpreter with the server's speech threads.
While the call runs, the terminal shows the server's transcript as it grows (``GET /api/v1/calls/{id}``);
afterwards the phone's report: transcript, per-turn latencies, barge-ins and the recording's paths.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import threading
from pathlib import Path
from typing import Any

from rich.console import Console

from callwright.bench.stack import SplitStack, StackError, split_stack
from callwright.emulator.phone.audio import default_tts_cache_dir, flite_say
from callwright.emulator.phone.media import CallerUtterance
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


async def _live_transcript(stack: SplitStack, call_id: str, console: Console) -> None:
    """Print each new history entry the server records for the call (what it heard and said)."""
    shown = 0
    while True:
        with contextlib.suppress(Exception):
            view = await stack.server_call(call_id)
            entries = (view or {}).get("transcript") or []
            for e in entries[shown:]:
                who = "[cyan]caller[/]" if e.get("role") == "user" else f"[magenta]{e.get('agent') or 'agent'}[/]"
                cut = " [yellow](interrupted)[/]" if e.get("interrupted") else ""
                console.print(f"  {who}: {e.get('content', '')}{cut}")
            shown = max(shown, len(entries))
        await asyncio.sleep(_POLL_S)


def _read_stdin(loop: asyncio.AbstractEventLoop, lines: asyncio.Queue[str | None]) -> None:
    """A daemon thread: a blocked ``readline`` must not keep the process alive after the call ends."""
    for line in sys.stdin:
        loop.call_soon_threadsafe(lines.put_nowait, line)
    loop.call_soon_threadsafe(lines.put_nowait, None)


async def _type_lines(phone: Any, call: Any, console: Console) -> None:
    """Each line typed is spoken by the phone (flite); an empty line or end of input hangs up."""
    console.print("[bold]Type what the caller says; an empty line hangs up.[/]")
    cache = default_tts_cache_dir()
    lines: asyncio.Queue[str | None] = asyncio.Queue()
    threading.Thread(target=_read_stdin, args=(asyncio.get_running_loop(), lines), daemon=True).start()
    while True:
        line = await lines.get()
        text = (line or "").strip()
        if not text:
            call.hang_up_by_phone()
            return
        try:
            pcm = await flite_say(text, phone.script.voice, cache)
        except Exception as exc:  # flite missing or failing: say so and keep the call up
            console.print(f"[red]cannot speak that line:[/] {exc}")
            continue
        # The call is connected but its media stream may still be opening; the phone has no public
        # event for that, and polling a 20 ms tick is what the phone itself does.
        while phone.link is None:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        utt = CallerUtterance(label=text, kind="speech")
        phone.utterances.append(utt)
        await phone.link.say(pcm, utt)


async def _demo(script_text: str, *, scenario: str | None, interactive: bool, record_dir: Path,
                console: Console) -> dict[str, Any]:  # fmt: skip
    env = {"SCENARIO": scenario} if scenario else {}
    status = console.status("starting the emulator and the server (embedded engines)…")
    status.start()
    try:
        async with split_stack(env, log_dir=record_dir / "logs") as stack:
            status.stop()
            console.print(f"[green]✓[/] server {stack.url} (pid {stack.pid}), emulator {stack.emulator.endpoint}")
            try:
                phone, call = await stack.place(script_text, record_dir=record_dir)
            except Exception as exc:  # refused or unanswered: show why, with the server's last words
                console.print(f"[red]the call could not be placed:[/] {exc}")
                console.print(f"[dim]server log ({stack.log_path}):[/]\n{stack.log_tail()}", highlight=False)
                return {"ok": False, "error": f"{type(exc).__name__}: {exc}", "events": []}
            console.print(f"[green]✓[/] call {call.call_connection_id} connected — live transcript:")
            watcher = asyncio.create_task(_live_transcript(stack, call.call_connection_id, console))
            typing = asyncio.create_task(_type_lines(phone, call, console)) if interactive else None
            try:
                return dict(await phone.run(call))
            finally:
                for t in (watcher, typing):
                    if t is not None:
                        t.cancel()
    finally:
        status.stop()


def run_demo(*, script: Path | None, scenario: str | None, interactive: bool, as_json: bool,
             record_dir: Path) -> int:  # fmt: skip
    """0 when the call completed as scripted, 1 when it failed, 2 on a bad script."""
    console = Console(stderr=True) if as_json else Console()
    if interactive:
        text = _INTERACTIVE
    else:
        path = script or DEMO_SCRIPT
        try:
            load_script(path)  # validate with the file's own folder for relative audio paths
            text = path.read_text(encoding="utf-8")
        except (ScriptError, OSError) as exc:
            console.print(f"[red]error:[/] {exc}")
            return 2
    record_dir = record_dir.resolve()
    try:
        report = asyncio.run(
            _demo(text, scenario=scenario, interactive=interactive, record_dir=record_dir, console=console)
        )
    except StackError as exc:
        console.print(f"[red]error:[/] {exc}")
        return 1
    if as_json:
        sys.stdout.write(json.dumps(report) + "\n")
    else:
        render_report(console, report)
    return 0 if report.get("ok") else 1
