"""The media attack: fuzzed frames over real ACS media WebSockets, one socket per trigger plus bulk
workers, each ending in a real-time speech check for deaf calls; and bench/media_load.py's real-time load."""

from __future__ import annotations

import asyncio
import random
import sys
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from callwright.bench.robustness_common import (
    HEARD_WAIT_S,
    SEED,
    Note,
    _acs_headers,
    _call_id,
    _MediaClient,
    _Speech,
    _user_turns,
    _ws_url,
)
from callwright.bench.robustness_inputs import MediaFuzz, media_fuzz

if TYPE_CHECKING:
    from callwright.bench.robustness import RobustnessPlan


@dataclass
class MediaTally:
    inputs: int = 0
    speech_frames: int = 0
    sockets: int = 0
    http_5xx: int = 0
    handshake_failures: Counter[str] = field(default_factory=Counter)
    abnormal_closes: int = 0
    close_codes: Counter[str] = field(default_factory=Counter)
    kill_triggers: Counter[str] = field(default_factory=Counter)
    speech_checks: int = 0
    deaf_calls: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)
    heard_calls: list[str] = field(default_factory=list)

    def killed(self, client: _MediaClient, trigger: str) -> None:
        self.abnormal_closes += 1
        self.close_codes[str(client.close_code)] += 1
        self.kill_triggers[trigger] += 1


async def _speech_check(stack: Any, client: _MediaClient, call_id: str, rate: int, speech: _Speech, tally: MediaTally,
                        *, say: list[str] | None = None, wait_s: float = HEARD_WAIT_S) -> str:  # fmt: skip
    """Stream the speech (or ``say``) in real time, then silence (as ACS does) until the call gains a
    user turn. Returns ``heard``, ``deaf`` or ``killed``."""
    loop = asyncio.get_running_loop()
    before = _user_turns(stack, call_id)
    t0 = loop.time()
    n = 0
    for msg in say if say is not None else speech.messages[rate]:
        if not await client.send(msg):
            return "killed"
        n += 1
        tally.speech_frames += 1
        await asyncio.sleep(max(0.0, t0 + n * 0.02 - loop.time()))
    deadline = loop.time() + wait_s
    tally.speech_checks += 1
    while loop.time() < deadline:
        if _user_turns(stack, call_id) > before:
            tally.heard_calls.append(call_id)
            return "heard"
        if not await client.send(speech.silence[rate]):
            return "killed"
        n += 1
        await asyncio.sleep(max(0.0, t0 + n * 0.02 - loop.time()))
    if client.server_closed:
        return "killed"
    tally.deaf_calls += 1
    return "deaf"


# Each trigger runs on its own socket: a few valid frames, the trigger three times among valid frames,
# more valid frames, then the speech check. "stream_24khz" negotiates 24 kHz and speaks at 24 kHz;
# "no_metadata" starts with audio; "speech_races_agent_audio" talks from the first frame, so caller
# audio lands as the greeting starts (the echo-guard race of issue 14).
SPECIAL_TRIGGERS = ("stream_24khz", "no_metadata", "speech_races_agent_audio")


def _all_triggers(fuzz: MediaFuzz) -> tuple[str, ...]:
    return (*SPECIAL_TRIGGERS, *(k for k in fuzz.pools if k not in ("valid", "metadata_repeat")))


async def _trigger_socket(stack: Any, trigger: str, fuzz16: MediaFuzz, fuzz24: MediaFuzz, speech: _Speech | None,
                          tally: MediaTally, rng: random.Random) -> str:  # fmt: skip
    fuzz = fuzz24 if trigger == "stream_24khz" else fuzz16
    call_id = _call_id(f"trigger-{trigger.replace('_', '-')}")
    client = _MediaClient(_ws_url(stack), _acs_headers(stack, call_id))
    failure = await client.open()
    if failure is not None:
        tally.handshake_failures[failure] += 1
        tally.http_5xx += failure == "http_5xx"
        return failure
    tally.sockets += 1
    try:
        plan: list[tuple[str, str | bytes]] = []
        if trigger != "no_metadata":
            plan.append(("metadata", fuzz.metadata()))
        plan += [("valid", fuzz.valid(rng)) for _ in range(20)]
        if trigger in fuzz.pools:
            for _ in range(3):
                plan += [(trigger, m) for m in fuzz.pools[trigger]]
                plan += [("valid", fuzz.valid(rng)) for _ in range(5)]
        plan += [("valid", fuzz.valid(rng)) for _ in range(20)]
        if trigger == "speech_races_agent_audio" and speech is not None:
            plan = [plan[0]] + [("speech", m) for m in speech.messages[16_000]] + plan[1:]
        last = "valid"
        for kind, msg in plan:
            if kind != "valid":
                last = kind
            if not await client.send(msg):
                tally.killed(client, trigger)
                return "killed"
            tally.inputs += 1
            tally.by_kind[kind] += 1
            if kind == "speech":
                await asyncio.sleep(0.02)  # real time: the race is about timing
        await asyncio.sleep(0.2)
        if client.server_closed:
            tally.killed(client, trigger)
            return "killed"
        if speech is None:
            return "sent (no speech check: flite missing)"
        outcome = await _speech_check(stack, client, call_id, fuzz.rate, speech, tally)
        if outcome == "killed":
            tally.killed(client, last)
        return outcome
    finally:
        await client.close()


async def _bulk_worker(stack: Any, wid: int, frames: int, sockets: int, fuzz: MediaFuzz, speech: _Speech | None,
                       tally: MediaTally, pace_fps: float) -> list[str]:  # fmt: skip
    rng = random.Random(SEED * 1000 + wid)
    outcomes: list[str] = []
    per_socket = max(1, frames // max(1, sockets))
    sent = 0
    failures_in_a_row = 0
    while sent < frames and failures_in_a_row < 20:
        call_id = _call_id(f"bulk{wid}")
        client = _MediaClient(_ws_url(stack), _acs_headers(stack, call_id))
        failure = await client.open()
        if failure is not None:
            tally.handshake_failures[failure] += 1
            tally.http_5xx += failure == "http_5xx"
            failures_in_a_row += 1
            await asyncio.sleep(0.2)
            continue
        failures_in_a_row = 0
        tally.sockets += 1
        try:
            target = min(frames, sent + per_socket)
            recent: deque[str] = deque(maxlen=4)
            killed = not await client.send(fuzz.metadata())
            batch_t0 = time.monotonic()
            batch = 0
            while not killed and sent < target:
                kind, msg = fuzz.draw(rng)
                recent.append(kind)
                if not await client.send(msg):
                    killed = True
                    break
                sent += 1
                batch += 1
                tally.inputs += 1
                tally.by_kind[kind] += 1
                if batch >= 30:  # pace: bursts of 30 frames, never faster than pace_fps on average
                    await asyncio.sleep(max(0.001, batch_t0 + batch / pace_fps - time.monotonic()))
                    if client.server_closed:
                        killed = True
                        break
                    if batch >= 300:
                        batch_t0, batch = time.monotonic(), 0
            if killed or client.server_closed:
                tally.killed(client, next((k for k in reversed(recent) if k != "valid"), "valid"))
                outcomes.append("killed")
                continue
            if speech is None:
                outcomes.append("sent")
                continue
            outcome = await _speech_check(stack, client, call_id, fuzz.rate, speech, tally)
            if outcome == "killed":
                tally.killed(client, "speech check")
            outcomes.append(outcome)
        finally:
            await client.close()
    return outcomes


async def media_surface(stack: Any, plan: RobustnessPlan, speech: _Speech | None, note: Note) -> dict[str, Any]:
    tally = MediaTally()
    fuzz16, fuzz24 = media_fuzz(16_000, SEED), media_fuzz(24_000, SEED + 1)
    rng = random.Random(SEED)
    triggers = plan.triggers if plan.triggers is not None else _all_triggers(fuzz16)
    sem = asyncio.Semaphore(6)
    results: dict[str, str] = {}

    async def one(trigger: str) -> None:
        async with sem:
            results[trigger] = await _trigger_socket(stack, trigger, fuzz16, fuzz24, speech, tally, rng)

    async def negative_control() -> str:
        """The deaf detector must be able to fail: a clean socket that says nothing is reported deaf."""
        if speech is None:
            return "not run (flite missing)"
        call_id = _call_id("control-silent")
        client = _MediaClient(_ws_url(stack), _acs_headers(stack, call_id))
        if (failure := await client.open()) is not None:
            return failure
        try:
            await client.send(fuzz16.metadata())
            silent = [speech.silence[16_000]] * len(speech.messages[16_000])
            return await _speech_check(stack, client, call_id, 16_000, speech, MediaTally(), say=silent, wait_s=5.0)
        finally:
            await client.close()

    note(f"media: {plan.media_frames:,} frames: {len(triggers)} triggers on a socket each, and mixed frames over "
         f"{plan.media_workers} sockets at a time")  # fmt: skip
    trigger_frames = len(triggers) * 50  # at least what each trigger socket sends
    per_worker = max(1, (plan.media_frames - trigger_frames) // plan.media_workers)
    # A quarter of the bulk sockets negotiate 24 kHz (ACS's other rate); the rest 16 kHz.
    workers = [
        _bulk_worker(
            stack,
            w,
            per_worker,
            plan.sockets_per_worker,
            fuzz24 if w % 4 == 3 else fuzz16,
            speech,
            tally,
            plan.pace_fps,
        )
        for w in range(plan.media_workers)
    ]
    control, *rest = await asyncio.gather(negative_control(), *(one(t) for t in triggers), *workers)
    bulk = [o for outs in rest[len(triggers) :] for o in outs]
    return {
        "inputs": tally.inputs,
        "speech_frames": tally.speech_frames,
        "sockets": tally.sockets,
        "http_5xx": tally.http_5xx,
        "handshake_failures": dict(tally.handshake_failures),
        "abnormal_closes": tally.abnormal_closes,
        "close_codes": dict(tally.close_codes),
        "kill_triggers": dict(tally.kill_triggers),
        "speech_checks": tally.speech_checks,
        "deaf_calls": tally.deaf_calls if speech is not None else None,
        "heard_calls": len(tally.heard_calls),
        "triggers": results,
        "deaf_detector_control": control,
        "bulk_outcomes": dict(Counter(bulk)),
        "inputs_by_kind": dict(tally.by_kind.most_common()),
        "heard_call_ids": tally.heard_calls,
    }


# ---- real-time load (bench/media_load.py) -------------------------------------------------------------


def _load_media_load() -> Any:
    """bench/media_load.py's ``run_media_load``, or an error string. bench/ sits beside src/ in a checkout
    (it is not part of the installed package), so it is loaded by path; blocking file I/O: run in a thread."""
    import importlib.util

    path = Path(__file__).resolve().parents[3] / "bench" / "media_load.py"
    if not path.is_file():
        return "bench/media_load.py is not there"
    name = "callwright_bench_media_load"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        return "cannot load bench/media_load.py"
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class body runs
    try:
        spec.loader.exec_module(module)
        return module.run_media_load
    except Exception as exc:  # a half-written or changed module: say so, do not stop the run
        sys.modules.pop(name, None)
        return f"{type(exc).__name__}: {exc}"[:300]


async def _realtime_load(stack: Any, plan: RobustnessPlan, note: Note) -> dict[str, Any]:
    """bench/media_load.py (real-time paced sockets with odd frames, then a question each) on this stack."""
    run_media_load = await asyncio.to_thread(_load_media_load)
    if isinstance(run_media_load, str):
        return {"available": False, "error": run_media_load}
    note(f"media: real-time load, {plan.realtime_calls} sockets for {plan.realtime_seconds:g} s (bench/media_load.py)")
    try:
        out = await run_media_load(stack, calls=plan.realtime_calls, seconds=plan.realtime_seconds)
    except Exception as exc:  # its failure is reported, the rest of the run goes on
        return {"available": True, "error": f"{type(exc).__name__}: {exc}"[:300]}
    return {"available": True, **out}
