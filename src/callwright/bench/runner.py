"""The benchmark phases: latency, barge-in and probes on the embedded engines, the same with instant
engines (server overhead), a density ramp on each, and a soak of short calls looking for leaks."""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from callwright.bench import scripts
from callwright.bench.calibrate import calibrate
from callwright.bench.lag import LagMonitor
from callwright.bench.stack import SplitStack, split_stack
from callwright.bench.stats import (
    barge_in_figures,
    gap_figures,
    p50_p95,
    probe_figures,
    probes_taken_as_turns,
    response_latencies,
    with_turns_taken,
)
from callwright.config import Settings
from callwright.emulator.phone.script import PhoneScript

Note = Callable[[str], None]

# What the instant recognizer "hears" for every utterance: the benchmark's callers only ask questions
# the front desk answers at length, so one fixed transcript keeps every turn a real, long reply.
INSTANT_TRANSCRIPT = "what are your opening hours"
RESPONSE_P95_LIMIT_MS = 1000.0
DEFAULT_VOICE = PhoneScript.__dataclass_fields__["voice"].default  # the bench scripts' flite voice


@dataclass(frozen=True)
class BenchPlan:
    latency_calls: int
    probe_calls: int
    overhead_calls: int
    embedded_steps: tuple[int, ...]
    instant_steps: tuple[int, ...]
    soak_calls: int
    soak_workers: int
    turns_per_call: int = 5
    probe_replies: int = 2
    probes_per_reply: int = 4

    @classmethod
    def full(cls) -> BenchPlan:
        return cls(latency_calls=7, probe_calls=5, overhead_calls=6, embedded_steps=(5, 10, 20, 30, 40, 50),
                   instant_steps=(10, 25, 50, 100, 200, 300, 400), soak_calls=1000, soak_workers=10)  # fmt: skip

    @classmethod
    def quick(cls) -> BenchPlan:
        return cls(latency_calls=1, probe_calls=1, overhead_calls=1, embedded_steps=(4,), instant_steps=(10,),
                   soak_calls=40, soak_workers=10)  # fmt: skip

    @classmethod
    def tiny(cls) -> BenchPlan:
        """For the smoke test: every phase runs, each as small as still yields a figure."""
        return cls(latency_calls=1, probe_calls=1, overhead_calls=1, embedded_steps=(2,), instant_steps=(3,),
                   soak_calls=12, soak_workers=4, turns_per_call=3, probe_replies=1)  # fmt: skip


def _engine_env(kind: str, plan: BenchPlan) -> dict[str, str]:
    steps = plan.instant_steps if kind == "instant" else plan.embedded_steps
    size = str(max((*steps, plan.soak_workers, 2)) + 10)
    env = {"STT_POOL_SIZE": size, "TTS_POOL_SIZE": size, "POOL_ACQUIRE_TIMEOUT": "10"}
    if kind == "instant":
        env.update({"STT_ENGINE": "instant", "TTS_ENGINE": "instant", "INSTANT_STT_TRANSCRIPT": INSTANT_TRANSCRIPT})
    return env


async def _sequential(
    stack: SplitStack, texts: list[str], note: Note, what: str, record_dir: Path | None
) -> list[dict[str, Any]]:
    """Calls one after another (each phase's figures are best-case, not under load); each call's stereo
    WAV and report are kept in ``record_dir`` as evidence."""
    reports = []
    for i, text in enumerate(texts):
        r = await stack.call(text, record_dir=record_dir)
        if record_dir is not None and r.get("call_id"):
            # What the server heard and said (its history), next to what the caller heard.
            with contextlib.suppress(Exception):
                view = await stack.server_call(str(r["call_id"]))
                path = record_dir / f"{r['call_id']}.server.json"
                await asyncio.to_thread(path.write_text, json.dumps(view, indent=2), "utf-8")
                r["server_view"] = view
        reports.append(r)
        status = "ok" if r.get("ok") else f"FAILED: {r.get('error')}"
        note(f"{what}: call {i + 1}/{len(texts)} {status}")
    return reports


def server_timings(metrics_text: str) -> dict[str, float]:
    """Mean of each per-turn/barge-in histogram the server exports, in ms (where the time goes)."""
    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(metrics_text):
        if fam.type != "histogram" or not fam.name.startswith(("callwright_turn", "callwright_barge_in")):
            continue
        total = sum(s.value for s in fam.samples if s.name.endswith("_sum"))
        count = sum(s.value for s in fam.samples if s.name.endswith("_count"))
        if count:
            out[fam.name.removeprefix("callwright_").removesuffix("_seconds") + "_mean_ms"] = round(
                total / count * 1000, 1
            )
    return out


def counter_value(metrics_text: str, name: str, **labels: str) -> float:
    """One sample of a counter the server exports (0 when it has not been touched)."""
    for fam in text_string_to_metric_families(metrics_text):
        for sample in fam.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


async def _resumed_count(stack: SplitStack) -> float:
    resp = await stack.http.get(f"{stack.url}/metrics")
    return counter_value(resp.text, "callwright_barge_ins_total", outcome="resumed")


async def _metrics(stack: SplitStack) -> dict[str, float]:
    with contextlib.suppress(Exception):
        resp = await stack.http.get(f"{stack.url}/metrics")
        return server_timings(resp.text)
    return {}


async def density_step(stack: SplitStack, n: int, *, stagger_s: float = 3.0) -> dict[str, Any]:
    """N concurrent calls, starts spread over ``stagger_s``; pass when every call completed with
    response p95 ≤ 1 s and no gap in the agent's audio."""
    idle = stack.sample()
    peak = idle.rss_mb
    stop = asyncio.Event()

    async def sampler() -> None:
        nonlocal peak
        while not stop.is_set():
            with contextlib.suppress(OSError):
                peak = max(peak, stack.sample().rss_mb)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.25)

    async def one(i: int) -> dict[str, Any]:
        await asyncio.sleep(stagger_s * i / max(1, n))
        return await stack.call(scripts.density(1000 + i))

    watch = asyncio.create_task(sampler())
    await stack.introspect()  # opens a new server loop-lag window
    own_lag = LagMonitor()
    own_lag.start()
    t0, own0, cpu0 = time.monotonic(), time.process_time(), idle.cpu_s
    reports = await asyncio.gather(*(one(i) for i in range(n)))
    end = stack.sample()
    server_lag = (await stack.introspect()).get("loop_lag_ms")
    phones_lag = own_lag.take()
    await own_lag.stop()
    wall, own = end.at - t0, time.process_time() - own0
    stop.set()
    await watch
    lat = p50_p95(response_latencies(reports))
    gaps = gap_figures(reports)
    failed = [r.get("error") for r in reports if not r.get("ok")]
    passed = not failed and gaps["count"] == 0 and lat["p95"] is not None and lat["p95"] <= RESPONSE_P95_LIMIT_MS
    return {
        "calls": n,
        "passed": passed,
        "failed_calls": len(failed),
        "first_failure": failed[0] if failed else None,
        "response_latency_ms": lat,
        "gaps": gaps,
        "server_cpu_pct": round((end.cpu_s - cpu0) / wall * 100, 1),
        "server_cpu_pct_per_call": round((end.cpu_s - cpu0) / wall * 100 / n, 2),
        "server_rss_mb_idle": round(idle.rss_mb, 1),
        "server_rss_mb_peak": round(peak, 1),
        "rss_mb_per_call": round((peak - idle.rss_mb) / n, 2),
        "load_generator_cpu_pct": round(own / wall * 100, 1),
        "server_loop_lag_ms": server_lag,
        "phones_loop_lag_ms": phones_lag,
        "wall_s": round(wall, 1),
    }


async def density_ramp(stack: SplitStack, steps: tuple[int, ...], note: Note, what: str) -> dict[str, Any]:
    results = []
    best: dict[str, Any] | None = None
    for n in steps:
        step = await density_step(stack, n)
        results.append(step)
        note(f"density ({what}): {n} calls → {'pass' if step['passed'] else 'FAIL'} "
             f"(p95 {step['response_latency_ms']['p95']} ms, gaps {step['gaps']['count']}, "
             f"failed {step['failed_calls']}, server CPU {step['server_cpu_pct']} %)")  # fmt: skip
        if not step["passed"]:
            break
        best = step
        await asyncio.sleep(1.0)  # let the last calls' cleanup finish before the next level
    return {
        "max_concurrent_calls": best["calls"] if best else 0,
        "at_max": best,
        "limit_reached": bool(results) and not results[-1]["passed"],
        "steps": results,
    }


def _leak_view(info: dict[str, Any]) -> dict[str, Any]:
    pools = info.get("pools") or {}
    # A pool slot is leaked when it is counted in the pool's size but is neither idle nor in use.
    lost = {k: p.get("size", 0) - p.get("idle", 0) - p.get("in_use", 0) for k, p in pools.items()}
    in_use = {k: p.get("in_use", 0) for k, p in pools.items()}
    return {"tasks": info.get("tasks"), "threads": info.get("threads"), "calls_active": info.get("calls_active"),
            "pool_in_use": in_use, "pool_unaccounted": lost}  # fmt: skip


async def soak(stack: SplitStack, calls: int, workers: int, note: Note) -> dict[str, Any]:
    """``calls`` short calls, ``workers`` at a time; memory baseline after the first 5 % (warm-up)."""
    warmup = max(workers * 2, calls // 20)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(calls):
        queue.put_nowait(i)
    done = 0
    failures: list[str] = []
    baseline: dict[str, Any] = {}
    lock = asyncio.Lock()

    async def worker() -> None:
        nonlocal done
        while True:
            try:
                i = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            r = await stack.call(scripts.soak(2000 + i % 5000))
            async with lock:
                done += 1
                if not r.get("ok"):
                    failures.append(str(r.get("error")))
                if done == warmup:
                    baseline["rss_mb"] = stack.sample().rss_mb
                if done % 100 == 0:
                    note(f"soak: {done}/{calls} calls")

    t0 = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(workers)))
    wall = time.monotonic() - t0
    await asyncio.sleep(2.0)  # calls end asynchronously on the server; give cleanup its 1 s and more
    end = stack.sample()
    info = await stack.introspect()
    base = baseline.get("rss_mb", end.rss_mb)
    return {
        "calls": calls,
        "workers": workers,
        "warmup_calls": warmup,
        "failed_calls": len(failures),
        "first_failure": failures[0] if failures else None,
        "rss_mb_after_warmup": round(base, 1),
        "rss_mb_end": round(end.rss_mb, 1),
        "rss_growth_pct": round((end.rss_mb - base) / base * 100, 2),
        "wall_s": round(wall, 1),
        "end": _leak_view(info),
    }


def overhead_figures(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Instant-engine latencies at the ear, and the same less the server's endpointing/onset decision
    wait on each utterance's own audio (see :mod:`callwright.bench.calibrate`): the server's overhead."""
    settings = Settings(_env_file=None, stt_engine="instant", tts_engine="instant")  # type: ignore[call-arg]
    texts = sorted({str(t["caller"]) for r in reports for t in r.get("turns") or [] if t.get("kind") == "speech"})
    lags = calibrate(texts, DEFAULT_VOICE, settings)
    raw, overhead, barge_raw, barge_overhead = [], [], [], []
    for r in reports:
        for t in r.get("turns") or []:
            if t.get("kind") != "speech" or t.get("agent_speaking_at_end") or t.get("response_latency_ms") is None:
                continue
            raw.append(float(t["response_latency_ms"]))
            lag = lags.get(str(t["caller"]))
            if lag is not None and lag.end_lag_ms is not None:
                overhead.append(float(t["response_latency_ms"]) - lag.end_lag_ms)
        for b in r.get("barge_ins") or []:
            # At the ear: StopAudio waits for the interruption to be confirmed; the audio does not.
            if not b.get("agent_playing_at_onset") or b.get("silenced_ms") is None:
                continue
            barge_raw.append(float(b["silenced_ms"]))
            lag = lags.get(str(b["caller"]))
            if lag is not None and lag.onset_lag_ms is not None:
                barge_overhead.append(float(b["silenced_ms"]) - lag.onset_lag_ms)
    return {
        "instant_response_latency_ms": p50_p95(raw),
        "instant_barge_in_latency_ms": p50_p95(barge_raw),
        "server_overhead_ms": p50_p95(overhead),
        "server_overhead_barge_in_ms": p50_p95(barge_overhead),
        "endpoint_silence_ms": settings.endpoint_silence_ms,
        "barge_in_min_speech_ms": settings.barge_in_min_speech_ms,
        "playback_lead_ms": settings.playback_lead_ms,
        "decision_lags_ms": {t: {"end": d.end_lag_ms, "onset": d.onset_lag_ms} for t, d in lags.items()},
    }


async def run_bench(plan: BenchPlan, note: Note, *, log_dir: Path | None = None) -> dict[str, Any]:
    """Run every phase; server logs and the sequential calls' recordings go under ``log_dir``."""
    log_dir = log_dir or Path(tempfile.mkdtemp(prefix="callwright-bench-"))
    out: dict[str, Any] = {"plan": plan.__dict__.copy(), "artifacts_dir": str(log_dir)}
    t0 = time.monotonic()

    note("embedded engines (pocketsphinx + espeak-ng): starting the server")
    async with split_stack(_engine_env("embedded", plan), log_dir=log_dir) as stack:
        before = _leak_view(await stack.introspect())
        convo = [scripts.conversation(plan.turns_per_call, offset=i) for i in range(plan.latency_calls)]
        reports = await _sequential(stack, convo, note, "latency", log_dir / "latency")
        out["latency_calls_failed"] = sum(1 for r in reports if not r.get("ok"))
        out["response_latency_ms"] = p50_p95(response_latencies(reports))
        barge = barge_in_figures(reports)
        probe_texts = [scripts.probes(plan.probe_replies, plan.probes_per_reply, offset=i * 3)
                       for i in range(plan.probe_calls)]  # fmt: skip
        resumed_before = await _resumed_count(stack)
        probe_reports = await _sequential(stack, probe_texts, note, "false barge-in probes", log_dir / "probes")
        resumed_by_probes = int(await _resumed_count(stack) - resumed_before)
        out["barge_in_latency_ms"] = barge["silenced"]
        out["barge_in_stop_audio_ms"] = barge["latency"]
        out["barge_in_stop_audio_mode"] = Settings(_env_file=None).barge_in_stop_audio  # type: ignore[call-arg]
        out["barge_in_missed"] = barge["missed"]
        out["leaked_ms"] = barge["leaked_ms_total"]
        out["leaked_ms_max"] = barge["leaked_ms_max"]
        taken = probes_taken_as_turns((r.get("server_view") for r in probe_reports), scripts.QUESTIONS)
        probes = with_turns_taken(probe_figures(probe_reports), taken)
        probes["paused_and_resumed"] = resumed_by_probes
        out["false_barge_in_rate"] = probes["rate"]
        out["false_barge_in_not_resumed_rate"] = probes["not_resumed_rate"]
        out["false_barge_ins"] = probes
        out["server_timings_embedded"] = await _metrics(stack)
        out["density_embedded"] = await density_ramp(stack, plan.embedded_steps, note, "embedded")
        out["soak"] = await soak(stack, plan.soak_calls, plan.soak_workers, note)
        out["soak"]["start"] = before

    note("instant engines (server overhead): starting the server")
    async with split_stack(_engine_env("instant", plan), log_dir=log_dir) as stack:
        convo = [scripts.conversation(plan.turns_per_call, offset=i) for i in range(plan.overhead_calls)]
        reports = await _sequential(stack, convo, note, "overhead", log_dir / "overhead")
        out.update(await asyncio.to_thread(overhead_figures, reports))
        out["server_timings_instant"] = await _metrics(stack)
        out["density_instant"] = await density_ramp(stack, plan.instant_steps, note, "instant")

    emb, ins = out["density_embedded"], out["density_instant"]
    out["max_concurrent_calls"] = {"embedded": emb["max_concurrent_calls"], "instant": ins["max_concurrent_calls"]}
    out["rss_mb_per_call"] = {
        k: (d["at_max"] or {}).get("rss_mb_per_call") for k, d in (("embedded", emb), ("instant", ins))
    }
    out["cpu_pct_per_call"] = {
        k: (d["at_max"] or {}).get("server_cpu_pct_per_call") for k, d in (("embedded", emb), ("instant", ins))
    }
    out["soak_rss_growth_pct"] = out["soak"]["rss_growth_pct"]
    out["wall_s"] = round(time.monotonic() - t0, 1)
    out["targets"] = targets(out)
    return out


def targets(r: dict[str, Any]) -> dict[str, dict[str, Any]]:
    def row(value: Any, target: float, *, at_least: bool = False) -> dict[str, Any]:
        met = None if value is None else (value >= target if at_least else value <= target)
        return {"value": value, "target": target, "met": met}

    return {
        "response_p50_ms": row(r["response_latency_ms"]["p50"], 450),
        "response_p95_ms": row(r["response_latency_ms"]["p95"], 700),
        "server_overhead_p95_ms": row(r["server_overhead_ms"]["p95"], 20),
        "barge_in_p50_ms": row(r["barge_in_latency_ms"]["p50"], 100),
        "barge_in_p95_ms": row(r["barge_in_latency_ms"]["p95"], 150),
        "barge_in_stop_audio_p95_ms": row(r["barge_in_stop_audio_ms"]["p95"], 150),
        "leaked_ms": row(r["leaked_ms"], 0),
        "false_barge_in_pct": row(None if r["false_barge_in_rate"] is None else r["false_barge_in_rate"] * 100, 2),
        # A ramp that never failed (the quick plan stops early) shows a lower bound, not a limit.
        "concurrent_calls_embedded": {
            **row(r["max_concurrent_calls"]["embedded"], 40, at_least=True),
            "lower_bound": not r["density_embedded"]["limit_reached"],
        },
        "concurrent_calls_instant": {
            **row(r["max_concurrent_calls"]["instant"], 400, at_least=True),
            "lower_bound": not r["density_instant"]["limit_reached"],
        },
        "rss_mb_per_call": row(r["rss_mb_per_call"]["embedded"], 15),
        "soak_rss_growth_pct": row(r["soak_rss_growth_pct"], 5),
    }
