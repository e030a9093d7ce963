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
    if result.get("modes"):
        lines += ["", "### Per streaming mode (caller's ear)", "", *modes_lines(result), ""]
    if result.get("realtime_server"):
        lines += ["", "### Local realtime server", "", *realtime_server_lines(result["realtime_server"]), ""]
    if result.get("robustness"):
        lines += [*robustness_lines(result["robustness"]), ""]
    return "\n".join(lines) + "\n"


# ---- robustness (``callwright bench --robustness``) ---------------------------------------------------

_ZERO_LABELS = {
    "media_http_5xx": "media: upgrade 5xx",
    "media_abnormal_closes": "media: sockets closed or dropped by the server mid-stream",
    "media_deaf_calls": "media: deaf calls (speech not heard after the attack)",
    "webhook_http_5xx": "webhook: 5xx",
    "webhook_dropped": "webhook: connections dropped without an answer",
    "token_http_5xx": "tokens: 5xx (webhook + media upgrade)",
    "forgeries_accepted": "tokens: forgeries accepted",
    "lost_transcripts": "lost transcripts",
}


def render_robustness(console: Console, r: dict[str, Any]) -> None:
    s = r["surfaces"]
    t = Table(title="callwright bench --robustness", title_justify="left")
    t.add_column("must be 0")
    t.add_column("measured", justify="right")
    t.add_column("met")
    for key, row in r["summary"]["zero_targets"].items():
        met = row["met"]
        t.add_row(_ZERO_LABELS.get(key, key), _fmt(row["value"]),
                  "–" if met is None else ("[green]yes[/]" if met else "[red]no[/]"))  # fmt: skip
    console.print(t)
    console.print(f"inputs: {s['media']['inputs']:,} media frames on {s['media']['sockets']} sockets, "
                  f"{s['webhook']['inputs']:,} webhook bodies, {s['tokens']['inputs']:,} forged tokens "
                  f"({s['tokens']['requests']:,} requests)", highlight=False)  # fmt: skip
    for f in r.get("faults", []):
        mark = "–" if f.get("ok") is None else ("[green]ok[/]" if f["ok"] else "[red]failed[/]")
        console.print(f"fault: {f['name']}: {mark} — {f['outcome']}", highlight=False)


def robustness_lines(r: dict[str, Any]) -> list[str]:
    """The Markdown section (no document title): zero-targets, per-surface detail, triggers, faults."""
    s = r["surfaces"]
    m, w, k = s["media"], s["webhook"], s["tokens"]
    lines = [
        "## Robustness",
        "",
        f"Run: {r['wall_s']:g} s against a local stack (server + ACS emulator in one process, "
        f"{r['lost_transcripts']['store']} session store, instant STT/TTS behind the real VAD). Inputs: "
        f"{m['inputs']:,} media frames over {m['sockets']} sockets, {w['inputs']:,} webhook bodies, "
        f"{k['inputs']:,} forged tokens ({k['requests']:,} requests).",
        "",
        "| must be 0 | measured | met |",
        "|---|---:|---|",
    ]
    for key, row in r["summary"]["zero_targets"].items():
        lines.append(f"| {_ZERO_LABELS.get(key, key)} | {_fmt(row['value'])} | {_met(row['met'])} |")
    after = w["after"]
    wc = after.get("whole_call", {})
    lines += [
        "",
        f"- media: {m['speech_checks']} speech checks, {m['heard_calls']} heard, {_fmt(m['deaf_calls'])} deaf; "
        f"close codes of killed sockets {m['close_codes'] or '{}'}; kills followed "
        f"{m['kill_triggers'] or '{}'}; upgrade failures {m['handshake_failures'] or '{}'}",
        *_realtime_line(m.get("realtime_load")),
        f"- webhook: statuses {w['statuses']}; 5xx by kind {w['5xx_by_kind'] or '{}'}; accepted without a "
        f"valid secret {w['accepted_without_secret']}; event-loop lag during the attack p99/max "
        f"{_lag(w['loop_lag_ms'])} ms ({w['loop_lag_ms'].get('over_100ms')} stalls > 100 ms); slowest request "
        f"{w['slowest_request']['s']:g} s ({w['slowest_request']['kind']})",
        f"- after the webhook attack: /health {after.get('health', {}).get('status')}, GET /api/v1/calls "
        f"{after.get('calls_api', {}).get('status')}, /metrics {after.get('metrics', {}).get('status')} "
        f"({after.get('metrics', {}).get('bytes', 0):,} bytes in {after.get('metrics', {}).get('ms')} ms), a whole "
        f"call {'worked' if wc.get('ok') else '**failed**'} ({wc.get('user_turns', wc.get('error'))} user turns)",
        f"- tokens: forgeries accepted by kind {k['accepted_by_kind'] or '{}'}; webhook answers "
        f"{k['webhook_outcomes']}; "
        f"media upgrade outcomes {k['media_outcomes']}; genuine tokens accepted (positive control) "
        f"{k['genuine_controls_accepted']}",
        f"- lost transcripts: {r['lost_transcripts']['lost']} of {r['lost_transcripts']['calls_with_turns']} calls "
        f"with turns",
        "",
        "| media trigger (own socket) | outcome |",
        "|---|---|",
    ]
    for trig, outcome in m["triggers"].items():
        lines.append(f"| {trig} | {outcome if outcome == 'heard' else f'**{outcome}**'} |")
    lines += ["", "| fault | ok | outcome |", "|---|---|---|"]
    for f in r.get("faults", []):
        lines.append(f"| {f['name']} | {_met(f.get('ok'))} | {f['outcome']} |")
    errs = r.get("server_log", {}).get("errors") or {}
    if errs:
        lines += ["", "Server errors logged during the run (top):", ""]
        lines += [f"- {n} × `{msg}`" for msg, n in errs.items()]
    return lines


def _realtime_line(rt: dict[str, Any] | None) -> list[str]:
    if not rt or not rt.get("available"):
        return []
    if rt.get("error"):
        return [f"- media, real-time load (bench/media_load.py): did not run: {rt['error']}"]
    sockets = len(rt.get("per_call", []))
    return [f"- media, real-time load (bench/media_load.py, paced at 20 ms): {sockets} sockets, "
            f"{rt.get('frames_sent', 0):,} frames ({rt.get('hostile_frames_sent', 0)} hostile), "
            f"{rt.get('server_5xx')} 5xx, {rt.get('abnormal_closes')} abnormal closes, "
            f"{rt.get('deaf_calls')} deaf"]  # fmt: skip


def robustness_markdown(result: dict[str, Any]) -> str:
    """A standalone document for a ``--robustness`` run."""
    m = result["machine"]
    head = [
        "# Robustness results",
        "",
        f"- date: {result['date']}",
        f"- commit: `{result['commit']}`",
        f"- machine: {m['cpu']} · {m['cores']} cores · Python {m['python']} · {m['os']}",
        f"- run: `callwright bench --robustness` (size {result.get('size', 'full')})",
        "",
    ]
    return "\n".join(head + robustness_lines(result["robustness"])) + "\n"


def realtime_server_lines(rt: dict[str, Any] | None) -> list[str]:
    """The local realtime server's own figures (``callwright realtime``; bench/realtime_bench.py)."""
    if not rt:
        return []
    lat = rt.get("latency", {})

    def fig(name: str) -> str:
        s = lat.get(name) or {}
        return f"p50 {_fmt(s.get('p50_ms'))} / p95 {_fmt(s.get('p95_ms'))} ms (n={s.get('n', 0)})"

    sessions = rt.get("sessions", {})
    return [
        f"- local realtime server, end of speech → first response.audio.delta "
        f"(includes its {rt.get('silence_duration_ms')} ms server-VAD silence): " + fig("end_of_speech_to_first_audio"),
        "- local realtime server, caller's speech start → response.done (cancelled): "
        + fig("speech_start_to_cancelled_done"),
        f"- local realtime server, sessions sustained: {sessions.get('sustained')} ({sessions.get('criterion')})",
    ]


def _pq(fig: dict[str, Any] | None) -> str:
    fig = fig or {}
    return f"{_fmt(fig.get('p50'))} / {_fmt(fig.get('p95'))} (n={fig.get('n', 0)})"


_MODE_ROWS: tuple[tuple[str, Any], ...] = (
    ("calls: latency + probes (latency calls failed)", lambda m: f"{_fmt(m.get('calls'))} "
                                                                  f"({_fmt(m.get('calls_failed'))})"),
    ("response latency p50 / p95 ms", lambda m: _pq(m.get("response_latency_ms"))),
    ("barge-in → agent silent at the ear p50 / p95 ms", lambda m: _pq(m.get("barge_in_latency_ms"))),
    ("barge-in → StopAudio p50 / p95 ms", lambda m: _pq(m.get("barge_in_stop_audio_ms"))),
    ("barge-ins without StopAudio", lambda m: _fmt(m.get("barge_in_missed"))),
    ("leaked audio after StopAudio, total / worst ms", lambda m: f"{_fmt(m.get('leaked_ms'))} / "
                                                                 f"{_fmt(m.get('leaked_ms_max'))}"),
    ("false barge-ins: probes drawing StopAudio", lambda m: _probes(m.get("false_barge_ins") or {},
                                                                   m.get("false_barge_in_rate"))),
    ("concurrent calls (density)", lambda m: _dens(m.get("density"), "max_concurrent_calls", bound=True)),
    ("RSS MB per call (at max)", lambda m: _dens(m.get("density"), "rss_mb_per_call")),
    ("server CPU % per call (at max)", lambda m: _dens(m.get("density"), "cpu_pct_per_call")),
)  # fmt: skip


def _probes(fb: dict[str, Any], rate: Any) -> str:
    pct = "–" if rate is None else f"{rate * 100:.1f} %"
    return f"{_fmt(fb.get('stopped'))} of {_fmt(fb.get('played'))} ({pct})"


def _dens(d: dict[str, Any] | None, key: str, *, bound: bool = False) -> str:
    if not d:
        return "–"
    return ("≥ " if bound and d.get("lower_bound") else "") + _fmt(d.get(key))


def _mode_rows(modes: dict[str, Any]) -> tuple[list[list[str]], list[str]]:
    """Rows (label, one cell per mode) and the notes below them (a mode that did not run, a failed call)."""
    rows = [[label, *("–" if m.get("error") else get(m) for m in modes.values())] for label, get in _MODE_ROWS]
    notes = []
    for n, m in modes.items():
        if m.get("error"):
            notes.append(f"`{n}` did not run: {m['error']}")
        elif m.get("first_failure"):
            notes.append(f"`{n}` first failed call: {m['first_failure']}")
    return rows, notes


def modes_lines(result: dict[str, Any]) -> list[str]:
    """The caller's-ear figures per streaming mode side by side (Markdown table; ``bench/modes.py``)."""
    modes = result.get("modes") or {}
    if not modes:
        return []
    rows, notes = _mode_rows(modes)
    lines = ["| figure | " + " | ".join(f"`{n}`" for n in modes) + " |", "|---|" + "---:|" * len(modes)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines + [f"\n{n}" for n in notes]


def render_modes(console: Console, result: dict[str, Any]) -> None:
    """The same side by side, as a terminal table."""
    modes = result.get("modes") or {}
    if not modes:
        return
    t = Table(title="per streaming mode (caller's ear)", title_justify="left")
    t.add_column("figure")
    for n in modes:
        t.add_column(n, justify="right")
    rows, notes = _mode_rows(modes)
    for r in rows:
        t.add_row(*r)
    console.print(t)
    for n in notes:
        console.print(n, highlight=False)
