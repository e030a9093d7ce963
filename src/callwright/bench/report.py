"""Rendering benchmark results: a terminal table (rich) and the Markdown of bench/RESULTS.md."""

from __future__ import annotations

import os
import platform
import subprocess
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.table import Table

_LABELS = {
    "response_p50_ms": "response latency p50 (embedded)",
    "response_p95_ms": "response latency p95 (embedded)",
    "server_overhead_p95_ms": "server overhead p95 (instant engines, after endpointing)",
    "barge_in_p50_ms": "barge-in → agent silent at the caller's ear p50",
    "barge_in_p95_ms": "barge-in → agent silent at the caller's ear p95",
    "barge_in_stop_audio_p95_ms": "barge-in → StopAudio p95 (sent once confirmed)",
    "leaked_ms": "agent audio after StopAudio (total)",
    "false_barge_in_pct": "false barge-ins: probes drawing StopAudio (%)",
    "concurrent_calls_embedded": "concurrent calls, embedded",
    "concurrent_calls_instant": "concurrent calls, instant",
    "rss_mb_per_call": "RSS MB per call (embedded, at max)",
    "soak_rss_growth_pct": "RSS growth over the soak (%)",
}


_DENSITY_HEAD = (
    "| calls | pass | failed | response p50/p95 ms | gaps | server CPU % | CPU %/call | RSS MB/call "
    "| load generator CPU % | loop lag p99/max ms: server · phones |"
)


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "os": platform.platform()}


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True, timeout=5).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def stamp(result: dict[str, Any]) -> dict[str, Any]:
    return {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "commit": commit(), "machine": machine(),
            **result}  # fmt: skip


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    return f"{v:g}" if isinstance(v, int | float) else str(v)


def _lag(lag: Any) -> str:
    return "–" if not lag else f"{_fmt(lag.get('p99'))}/{_fmt(lag.get('max'))}"


def _met(m: bool | None) -> str:
    return "–" if m is None else ("yes" if m else "**no**")


def render_table(console: Console, result: dict[str, Any]) -> None:
    t = Table(title=f"callwright bench ({'quick' if result.get('quick') else 'full'})", title_justify="left")
    t.add_column("figure")
    t.add_column("measured", justify="right")
    t.add_column("target", justify="right")
    t.add_column("met")
    for key, row in result["targets"].items():
        met = row["met"]
        mark = "–" if met is None else ("[green]yes[/]" if met else "[red]no[/]")
        value = ("≥ " if row.get("lower_bound") else "") + _fmt(row["value"])
        t.add_row(_LABELS.get(key, key), value, _fmt(row["target"]), mark)
    console.print(t)
    fb = result["false_barge_ins"]
    console.print(f"probes: {fb['played']} played during agent speech, {fb['stopped']} drew StopAudio, "
                  f"{fb.get('paused_and_resumed', '–')} paused the agent, which re-spoke the sentence, "
                  f"{fb.get('taken_as_turns', '–')} were answered as caller turns", highlight=False)  # fmt: skip


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [
        "# Benchmark results",
        "",
        f"- date: {result['date']}",
        f"- commit: `{result['commit']}`",
        f"- machine: {m['cpu']} · {m['cores']} cores · Python {m['python']} · {m['os']}",
        f"- run: `callwright bench{' --quick' if result.get('quick') else ''}` ({result['wall_s']:g} s)",
        "",
        "| figure | measured | target | met |",
        "|---|---:|---:|---|",
    ]
    for key, row in result["targets"].items():
        value = ("≥ " if row.get("lower_bound") else "") + _fmt(row["value"])
        lines.append(f"| {_LABELS.get(key, key)} | {value} | {_fmt(row['target'])} | {_met(row['met'])} |")
    lines += ["", "## Details", ""]
    rl, bl, so = result["response_latency_ms"], result["barge_in_latency_ms"], result["server_overhead_ms"]
    bs = result.get("barge_in_stop_audio_ms") or {}
    ir, ib = result["instant_response_latency_ms"], result["instant_barge_in_latency_ms"]
    sb = result["server_overhead_barge_in_ms"]
    fb = result["false_barge_ins"]
    lines += [
        f"- response latency (embedded): p50 {_fmt(rl['p50'])} ms, p95 {_fmt(rl['p95'])} ms over {rl['n']} turns",
        f"- barge-in (embedded), voice onset → agent silent at the caller's ear: p50 {_fmt(bl['p50'])} ms, "
        f"p95 {_fmt(bl['p95'])} ms over {bl['n']} interruptions; → StopAudio received "
        f"(BARGE_IN_STOP_AUDIO={result.get('barge_in_stop_audio_mode', 'onset')}): p50 {_fmt(bs.get('p50'))} ms, "
        f"p95 {_fmt(bs.get('p95'))} ms ({result['barge_in_missed']} without StopAudio); leaked "
        f"{_fmt(result['leaked_ms'])} ms total, {_fmt(result['leaked_ms_max'])} ms worst",
        f"- instant engines at the ear: response p50 {_fmt(ir['p50'])} ms, p95 {_fmt(ir['p95'])} ms over {ir['n']} "
        f"turns; barge-in (agent silent at the ear) p50 {_fmt(ib['p50'])} ms, p95 {_fmt(ib['p95'])} ms",
        f"- server overhead (the above less the server's own decision wait on each utterance's audio — "
        f"ENDPOINT_SILENCE_MS {result['endpoint_silence_ms']:g}, BARGE_IN_MIN_SPEECH_MS "
        f"{result['barge_in_min_speech_ms']:g} — replayed offline): response p50 {_fmt(so['p50'])} ms, "
        f"p95 {_fmt(so['p95'])} ms; barge-in p50 {_fmt(sb['p50'])} ms, p95 {_fmt(sb['p95'])} ms (this one still "
        f"holds the {result.get('playback_lead_ms', 60):g} ms of audio already sent, which plays out)",
        f"- false barge-ins: {fb['stopped']} of {fb['played']} probes drew StopAudio; "
        f"{fb.get('paused_and_resumed', '–')} paused the agent, which then re-spoke the interrupted sentence; "
        f"{fb.get('taken_as_turns', '–')} were heard as words and answered as caller turns",
        "",
        "| probe | played | StopAudio | resumed after a StopAudio |",
        "|---|---:|---:|---:|",
    ]
    for name, k in fb["by_probe"].items():
        lines.append(f"| {name} | {k['played']} | {k['stopped']} | {k['resumed']} |")
    lines += ["", "Server-side means (from /metrics), ms:", ""]
    for which in ("embedded", "instant"):
        timings = result.get(f"server_timings_{which}") or {}
        lines.append(f"- {which}: " + ", ".join(f"{k.removesuffix('_mean_ms')} {v:g}" for k, v in timings.items()))
    for which in ("embedded", "instant"):
        d = result[f"density_{which}"]
        lines += [
            "",
            f"### Density, {which} engines",
            "",
            _DENSITY_HEAD,
            "|---:|---|---:|---|---:|---:|---:|---:|---:|---|",
        ]
        for s in d["steps"]:
            lat = s["response_latency_ms"]
            lines.append(f"| {s['calls']} | {'yes' if s['passed'] else '**no**'} | {s['failed_calls']} | "
                         f"{_fmt(lat['p50'])} / {_fmt(lat['p95'])} | {s['gaps']['count']} | {s['server_cpu_pct']:g} | "
                         f"{s['server_cpu_pct_per_call']:g} | {s['rss_mb_per_call']:g} | "
                         f"{s['load_generator_cpu_pct']:g} | {_lag(s.get('server_loop_lag_ms'))} · "
                         f"{_lag(s.get('phones_loop_lag_ms'))} |")  # fmt: skip
            if s["first_failure"]:
                lines.append(f"|  | first failure: {s['first_failure']} | | | | | | | | |")
    sk = result["soak"]
    lines += ["", "### Soak", "",
              f"{sk['calls']} short calls ({sk['workers']} at a time), {sk['failed_calls']} failed; RSS "
              f"{sk['rss_mb_after_warmup']:g} MB after {sk['warmup_calls']} warm-up calls → {sk['rss_mb_end']:g} MB at "
              f"the end ({sk['rss_growth_pct']:g} %). Start: {sk['start']}. End: {sk['end']}.", ""]  # fmt: skip
    return "\n".join(lines) + "\n"
