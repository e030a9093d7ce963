"""A readable terminal rendering of a phone report (rich): what the caller heard, with timings."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def _ms(v: Any) -> str:
    return "–" if v is None else f"{v:.0f} ms"


def render_report(console: Console, report: dict[str, Any]) -> None:
    ok = bool(report.get("ok"))
    status = "[green]completed[/]" if ok else f"[red]failed[/]: {report.get('error') or 'unknown error'}"
    console.rule(f"call {report.get('call_id', '?')} · script {report.get('script', '?')}")
    console.print(f"Result: {status}")
    if report.get("outcome"):
        console.print(f"Outcome: {report['outcome']}")
    events = report.get("events") or []
    if events:
        console.print("Events: " + " → ".join(events), highlight=False)

    transcript = report.get("transcript") or []
    if transcript:
        t = Table(title="Transcript", title_justify="left", expand=False)
        t.add_column("at", justify="right")
        t.add_column("who")
        t.add_column("text", overflow="fold")
        for e in transcript:
            who = "[cyan]caller[/]" if e["speaker"] == "caller" else "[magenta]agent[/]"
            t.add_row(f"{e['start_ms'] / 1000:.2f} s", who, e.get("text") or "[dim](not transcribed)[/]")
        console.print(t)

    turns = report.get("turns") or []
    if turns:
        t = Table(title="Turns", title_justify="left")
        t.add_column("#", justify="right")
        t.add_column("caller", overflow="fold")
        t.add_column("response latency", justify="right")
        for turn in turns:
            t.add_row(str(turn["index"] + 1), turn.get("caller", ""), _ms(turn.get("response_latency_ms")))
        console.print(t)

    barge = report.get("barge_ins") or []
    if barge:
        t = Table(title="Barge-ins", title_justify="left")
        t.add_column("caller", overflow="fold")
        t.add_column("agent silent after", justify="right")
        t.add_column("StopAudio after", justify="right")
        t.add_column("leaked", justify="right")
        for b in barge:
            t.add_row(b.get("caller", ""), _ms(b.get("silenced_ms")),
                      _ms(b.get("latency_ms")) if b.get("stopped") else "[red]never[/]",
                      _ms(b.get("leaked_ms")))  # fmt: skip
        console.print(t)

    probes = report.get("false_barge_in_probes") or []
    if probes:
        t = Table(title="False barge-in probes", title_justify="left")
        t.add_column("probe")
        t.add_column("during agent speech")
        t.add_column("StopAudio")
        for p in probes:
            stopped = f"[red]yes[/] ({_ms(p.get('stop_latency_ms'))})" if p.get("stopped") else "[green]no[/]"
            t.add_row(p.get("caller", p.get("kind", "")), "yes" if p.get("during_agent_speech") else "no", stopped)
        console.print(t)

    gaps = report.get("gaps") or {}
    if gaps:
        console.print(f"Gaps in agent audio: {gaps.get('count', 0)} ({_ms(gaps.get('total_ms', 0))} total)")
    rec = report.get("recording") or {}
    if rec:
        console.print(f"Recording: {rec.get('wav')}  Report: {rec.get('json')}", highlight=False)
