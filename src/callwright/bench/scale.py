"""The scale section of ``callwright bench``: how many calls one machine sustains with 1, 2 and N worker
processes (``callwright serve --workers N`` on Redis), and how long a caller hears nothing when the
worker holding their call is killed.

Sustained calls: the density ramp of :mod:`callwright.bench.runner` (same scripts, same pass rule: every
call completed, response p95 ≤ 1 s, no gap in the agent's audio at the caller's ear), against the real
``serve`` command with its workers sharing one port and one Redis, on the embedded and the instant
engines. CPU is measured for the whole server (supervisor, workers, Redis, and HAProxy where there is
one; from /proc) and for the
load generator (this process: the emulator and every phone), so the split says what a load generator
on another machine would leave for the server. At the largest N the same ramp also runs with N
single-worker replicas behind a real HAProxy (round-robin, no stickiness; ``callwright.bench.haproxy``):
the many-machines topology, and what the load balancer costs.

Take-over (behind HAProxy by default, ``ScalePlan.takeover_topology``): rounds of concurrent calls on
2+ replicas; in each round the worker holding a call whose agent
is talking right now is SIGKILLed (its owner comes from the call directory in Redis). The figure per
call is the caller's-ear silence: the last agent audio before the drop → the first agent audio on the
new socket (the phone report's ``media_gaps[].agent_silence_ms``). Only calls whose agent was audible
at the kill are timed (others were between turns: their silence is not the take-over's); every call of
the round counts for "dropped".

Standalone: ``python -m callwright.bench.scale [--quick|--tiny] [--json] [--out F] [--markdown F]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import signal
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from callwright.bench import scripts
from callwright.bench.haproxy import HAProxy
from callwright.bench.stack import ProcSample, SplitStack, StackError, proc_sample
from callwright.bench.stats import gap_figures, p50_p95, percentile, response_latencies
from callwright.emulator.service import Emulator
from callwright.localredis import LocalRedis
from callwright.localstack import free_port
from callwright.scale.workers import usable_cores
from callwright.security.keys import hash_key, new_key

Note = Callable[[str], None]

INSTANT_TRANSCRIPT = "what are your opening hours"
RESPONSE_P95_LIMIT_MS = 1000.0
TAKEOVER_TARGET_P95_MS = 3000.0
READY_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class ScalePlan:
    worker_counts: tuple[int, ...]
    embedded_steps: tuple[int, ...]
    instant_steps: tuple[int, ...]
    takeover_calls: int  # calls timed (agent audible at the kill), at least
    takeover_batch: int  # concurrent calls per kill round
    stagger_s: float = 3.0
    # Also N single-worker replicas behind HAProxy (the many-machines topology) at the largest N: what the
    # load balancer costs; and where the take-over is measured (``haproxy`` or ``workers``).
    balanced: bool = True
    takeover_topology: str = "haproxy"

    @classmethod
    def full(cls) -> ScalePlan:
        cores = usable_cores()
        return cls(worker_counts=tuple(sorted({1, 2, cores})), embedded_steps=(5, 10, 20, 30, 40, 50, 60),
                   instant_steps=(10, 25, 50, 100, 150, 200, 300), takeover_calls=10, takeover_batch=6)  # fmt: skip

    @classmethod
    def quick(cls) -> ScalePlan:
        return cls(worker_counts=(1, 2), embedded_steps=(4,), instant_steps=(10,), takeover_calls=3,
                   takeover_batch=4)  # fmt: skip

    @classmethod
    def tiny(cls) -> ScalePlan:
        """The smallest run that still yields every figure: 2 workers, instant engines, one kill."""
        return cls(worker_counts=(2,), embedded_steps=(), instant_steps=(3,), takeover_calls=1, takeover_batch=2,
                   balanced=False)  # fmt: skip


# -- the server under test: `callwright serve --workers N` ------------------------------------------


def _children(pid: int) -> list[int]:
    out: list[int] = []
    with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as f:
        for child in f.read().split():
            out.append(int(child))
            out.extend(_children(int(child)))
    return out


def _listening(port: int, pids: set[int]) -> set[int]:
    """Which of ``pids`` hold a listening TCP socket on ``port`` (from /proc/net/tcp and each process's fds)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table, encoding="ascii") as f:
            next(f)
            for line in f:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{fields[9]}]")
    out: set[int] = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                        out.add(pid)
                        break
    return out


def _environ(pid: int) -> dict[str, str]:
    with contextlib.suppress(OSError), open(f"/proc/{pid}/environ", "rb") as f:
        pairs = (item.split(b"=", 1) for item in f.read().split(b"\0") if b"=" in item)
        return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in pairs}
    return {}


@dataclass
class ScaleStack(SplitStack):
    """``callwright serve --workers N``: one supervisor process (``process``), N workers on one port."""

    workers: int = 1
    redis: LocalRedis | None = None
    topology: str = "workers"

    def pids(self) -> list[int]:
        return [self.pid, *_children(self.pid), *self._redis_pid()]

    def _redis_pid(self) -> list[int]:
        """Redis is part of what the server costs (the bench runs it; ``worker_pids`` skips it: no REPLICA_ID)."""
        proc = getattr(self.redis, "proc", None)
        return [proc.pid] if proc is not None and proc.poll() is None else []

    def sample(self) -> ProcSample:
        """The whole server: supervisor, workers (and anything they run), summed."""
        rss = cpu = 0.0
        threads = 0
        for pid in self.pids():
            with contextlib.suppress(OSError, IndexError, ValueError):
                s = proc_sample(pid)
                rss, cpu, threads = rss + s.rss_mb, cpu + s.cpu_s, threads + s.threads
        return ProcSample(time.monotonic(), rss, cpu, threads)

    def worker_pids(self) -> dict[str, int]:
        """REPLICA_ID → pid of every live worker (the server process itself with ``--workers 1``)."""
        out: dict[str, int] = {}
        for pid in [self.pid, *_children(self.pid)]:
            rid = _environ(pid).get("REPLICA_ID")
            if rid and (self.workers == 1 or pid != self.pid):
                out[rid] = pid
        return out

    def check(self) -> None:
        if self.process.returncode is not None:
            raise StackError(f"the server exited with code {self.process.returncode} (log: {self.log_path})")

    async def revive(self) -> None:
        """Nothing to do: the supervisor restarts a worker that died."""

    async def all_in_rotation(self) -> bool:
        """Every worker listens on the port (a worker listens only once its app has started)."""
        port = int(self.url.rsplit(":", 1)[1])
        pids = set((await asyncio.to_thread(self.worker_pids)).values())
        return bool(pids) and await asyncio.to_thread(_listening, port, pids) == pids

    async def stop(self) -> None:
        await _stop(self.process)

    async def introspect(self, *, objects: bool = False, trim: bool = False) -> dict[str, Any]:
        return {}  # `serve` has no bench route; nothing here needs one


@dataclass
class _Replica:
    name: str
    port: int
    env: dict[str, str]
    log_path: Path
    process: asyncio.subprocess.Process | None = None
    starts: int = 0

    async def start(self) -> None:
        self.starts += 1
        env = dict(self.env)
        # A restarted replica is a new one: the dead one's calls must be seen as orphaned and taken over.
        env["REPLICA_ID"] = self.name if self.starts == 1 else f"{self.name}-r{self.starts - 1}"
        cmd = [sys.executable, "-m", "callwright.cli", "serve", "--port", str(self.port), "--workers", "1"]
        with self.log_path.open("ab") as log_file:
            self.process = await asyncio.create_subprocess_exec(
                *cmd, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=log_file, stderr=log_file
            )


@dataclass
class BalancedStack(ScaleStack):
    """N single-worker replicas, each on its own port, behind a real HAProxy (round-robin, no stickiness):
    ACS only knows the load balancer. ``process`` is the first replica's (SplitStack needs one)."""

    replicas: list[_Replica] = field(default_factory=list)
    lb: HAProxy | None = None

    def pids(self) -> list[int]:
        out: list[int] = []
        for r in self.replicas:
            if r.process is not None and r.process.returncode is None:
                out += [r.process.pid, *_children(r.process.pid)]
        if self.lb is not None and self.lb.proc is not None:
            out.append(self.lb.proc.pid)  # the load balancer is part of the deployment's cost
        return out + self._redis_pid()

    def worker_pids(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.replicas:
            if r.process is not None and r.process.returncode is None:
                rid = _environ(r.process.pid).get("REPLICA_ID")
                if rid:
                    out[rid] = r.process.pid
        return out

    def check(self) -> None:
        if self.lb is None or self.lb.proc is None or self.lb.proc.poll() is not None:
            raise StackError(f"HAProxy is not running (log: {self.lb.log_path if self.lb else '-'})")

    async def revive(self) -> None:
        for r in self.replicas:
            if r.process is not None and r.process.returncode is not None:
                await r.start()

    async def all_in_rotation(self) -> bool:
        assert self.lb is not None
        states = await asyncio.to_thread(self.lb.server_states)
        return all(states.get(r.name) == "UP" for r in self.replicas)

    async def stop(self) -> None:
        await asyncio.gather(*(_stop(r.process) for r in self.replicas if r.process is not None))
        if self.lb is not None:
            await asyncio.to_thread(self.lb.stop)


async def _ready(stack: ScaleStack, timeout: float = READY_TIMEOUT_S) -> None:
    """Every worker up: all of them listed with a REPLICA_ID, in the load balancer's rotation, and /ready
    200 on a run of fresh connections (spread over the workers by the kernel or HAProxy)."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    await stack.revive()
    while time.monotonic() < deadline:
        stack.check()
        if len(await asyncio.to_thread(stack.worker_pids)) >= stack.workers and await stack.all_in_rotation():
            ok = 0
            for _ in range(4 * stack.workers):
                with contextlib.suppress(httpx.HTTPError):
                    async with httpx.AsyncClient(timeout=3) as fresh:
                        resp = await fresh.get(f"{stack.url}/ready")
                        last = f"{resp.status_code} {resp.text[:200]}"
                        ok += resp.status_code == 200
            if ok == 4 * stack.workers:
                return
        await asyncio.sleep(0.3)
    raise StackError(
        f"the workers were not all ready within {timeout:g} s (last /ready: {last}; log: {stack.log_path})"
    )


def _flush(redis: LocalRedis) -> None:
    """A clean directory for each stack: no replica of the previous one looks dead and worth taking over."""
    with socket.create_connection(("127.0.0.1", redis.port), timeout=5) as s:
        s.sendall(b"FLUSHALL\r\n")
        s.recv(64)


@contextlib.asynccontextmanager
async def scale_stack(workers: int, settings_env: dict[str, str], *, redis: LocalRedis, log_dir: Path,
                      topology: str = "workers") -> AsyncIterator[ScaleStack]:  # fmt: skip
    """The emulator here and the server as child processes on Redis, configured like
    :func:`callwright.bench.stack.split_stack` (ACS settings pointing at the emulator).

    ``topology``: ``workers`` = one ``callwright serve --workers N`` (N processes on one port, the kernel
    spreads connections); ``haproxy`` = N ``callwright serve --workers 1`` on their own ports behind HAProxy.
    """
    if topology not in ("workers", "haproxy"):
        raise ValueError(f"topology must be workers or haproxy, got {topology!r}")
    await asyncio.to_thread(_flush, redis)
    secret = secrets.token_urlsafe(16)
    key = new_key()
    async with Emulator() as emulator, httpx.AsyncClient(timeout=10) as http:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        http.headers["Authorization"] = f"Bearer {key}"
        env = {k: v for k, v in os.environ.items() if k not in ("REPLICA_ID", "CALLWRIGHT_WORKERS")}
        env.update({"LOG_LEVEL": "WARNING", **settings_env})
        env.update(
            {
                "REDIS_URL": redis.url,
                "OPERATOR_API_KEYS": f"operator:{hash_key(key)}",
                "ACS_CONNECTION_STRING": emulator.connection_string,
                "ACS_CALLBACK_URL": url,  # the one port, or the load balancer
                "ACS_JWT_AUDIENCE": emulator.resource_id,
                "ACS_OPENID_CONFIG_URL": emulator.openid_config_url,
                "EVENTGRID_SECRET": secret,
                "SESSION_SPILL_DIR": str(log_dir / "spill"),
                # The single server's id (and the workers' base): also how worker_pids() finds them.
                "REPLICA_ID": f"bench{port}",
            }
        )
        stack: ScaleStack
        if topology == "workers":
            log_path = log_dir / f"scale-{workers}w-{port}.log"
            cmd = [sys.executable, "-m", "callwright.cli", "serve", "--port", str(port), "--workers", str(workers)]
            with log_path.open("wb") as log_file:
                process = await asyncio.create_subprocess_exec(
                    *cmd, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=log_file, stderr=log_file
                )
            stack = ScaleStack(emulator=emulator, process=process, url=url, log_path=log_path, http=http,
                               operator_key=key, workers=workers, redis=redis)  # fmt: skip
        else:
            replicas = [
                _Replica(f"bench{port}-r{i}", free_port(), env, log_dir / f"scale-lb-{port}-r{i}.log")
                for i in range(workers)
            ]
            lb = HAProxy({r.name: f"http://127.0.0.1:{r.port}" for r in replicas}, log_dir / f"haproxy-{port}",
                         port=port)  # fmt: skip
            for r in replicas:
                await r.start()
            await asyncio.to_thread(lb.start)
            assert replicas[0].process is not None
            stack = BalancedStack(emulator=emulator, process=replicas[0].process, url=url,
                                  log_path=replicas[0].log_path, http=http, operator_key=key, workers=workers,
                                  redis=redis, topology="haproxy", replicas=replicas, lb=lb)  # fmt: skip
        try:
            await _ready(stack)
            emulator.webhook_url = f"{url}/api/v1/call-events?secret={secret}"
            yield stack
        finally:
            await stack.stop()


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)  # the supervisor forwards it; every worker drains (no calls left)
    try:
        await asyncio.wait_for(process.wait(), timeout=60)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


def _engine_env(kind: str, steps: tuple[int, ...]) -> dict[str, str]:
    size = str(max((*steps, 2)) + 10)
    env = {"STT_POOL_SIZE": size, "TTS_POOL_SIZE": size, "POOL_ACQUIRE_TIMEOUT": "10"}
    if kind == "instant":
        env.update({"STT_ENGINE": "instant", "TTS_ENGINE": "instant", "INSTANT_STT_TRANSCRIPT": INSTANT_TRANSCRIPT})
    return env


# -- sustained calls ------------------------------------------------------------------------------


async def sustained_step(stack: ScaleStack, n: int, *, stagger_s: float = 3.0) -> dict[str, Any]:
    """N concurrent calls (starts spread over ``stagger_s``); pass: all completed, p95 ≤ 1 s, no gap."""
    idle = stack.sample()
    peak = idle.rss_mb
    stop = asyncio.Event()

    async def sampler() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, (await asyncio.to_thread(stack.sample)).rss_mb)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)

    async def one(i: int) -> dict[str, Any]:
        await asyncio.sleep(stagger_s * i / max(1, n))
        return await stack.call(scripts.density(1000 + i))

    watch = asyncio.create_task(sampler())
    t0, own0 = time.monotonic(), time.process_time()
    reports = await asyncio.gather(*(one(i) for i in range(n)))
    end = stack.sample()
    wall, own = end.at - t0, time.process_time() - own0
    stop.set()
    await watch
    lat = p50_p95(response_latencies(reports))
    gaps = gap_figures(reports)
    failed = [r.get("error") for r in reports if not r.get("ok")]
    passed = not failed and gaps["count"] == 0 and lat["p95"] is not None and lat["p95"] <= RESPONSE_P95_LIMIT_MS
    server_pct = (end.cpu_s - idle.cpu_s) / wall * 100
    return {
        "calls": n,
        "passed": passed,
        "failed_calls": len(failed),
        "first_failure": failed[0] if failed else None,
        "response_latency_ms": lat,
        "gaps": gaps,
        "server_cpu_pct": round(server_pct, 1),
        "server_cpu_pct_per_call": round(server_pct / n, 2),
        "load_generator_cpu_pct": round(own / wall * 100, 1),
        "load_generator_cpu_pct_per_call": round(own / wall * 100 / n, 2),
        "server_rss_mb_idle": round(idle.rss_mb, 1),
        "server_rss_mb_peak": round(peak, 1),
        "wall_s": round(wall, 1),
    }


def remote_generator_estimate(step: dict[str, Any] | None, cores: int) -> int | None:
    """Calls the server alone could carry if the phones ran on another machine: the measured server CPU
    per call against the machine's cores, kept at 80 % (the headroom the measured runs already needed is
    unknown, so this is an estimate, not a measurement)."""
    if not step or not step.get("server_cpu_pct_per_call"):
        return None
    return int(cores * 100 * 0.8 / float(step["server_cpu_pct_per_call"]))


async def sustained_ramp(stack: ScaleStack, steps: tuple[int, ...], note: Note, what: str,
                         stagger_s: float) -> dict[str, Any]:  # fmt: skip
    results: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    for n in steps:
        step = await sustained_step(stack, n, stagger_s=stagger_s)
        results.append(step)
        note(f"scale ({what}): {n} calls → {'pass' if step['passed'] else 'FAIL'} "
             f"(p95 {step['response_latency_ms']['p95']} ms, gaps {step['gaps']['count']}, failed "
             f"{step['failed_calls']}, server CPU {step['server_cpu_pct']} %, "
             f"phones {step['load_generator_cpu_pct']} %)")  # fmt: skip
        if not step["passed"]:
            break
        best = step
        await asyncio.sleep(1.0)
    return {
        "max_sustained_calls": best["calls"] if best else 0,
        "at_max": best,
        "limit_reached": bool(results) and not results[-1]["passed"],
        "calls_dropped": sum(s["failed_calls"] for s in results),
        "steps": results,
    }


# -- take-over ------------------------------------------------------------------------------------


def takeover_script(number: int) -> str:
    """A question over the greeting, a second question whose answer the kill interrupts, a third question
    once the agent is back (so the call is heard to go on), hang up. ``wait: agent_done`` keeps waiting
    across a dropped socket, so the caller stays quiet while the call is taken over."""
    q = scripts.QUESTIONS
    steps: list[object] = [
        {"barge_in": {"at_ms": 1500, "of": "next", "timeout_s": 30, "say": q[0]}},
        {"wait": {"agent_done": 800, "timeout_s": 40}},
        {"say": q[1]},
        {"wait": {"agent_done": 800, "timeout_s": 60}},  # step 4: the kill lands here
        {"say": q[2]},
        {"wait": {"agent_done": 800, "timeout_s": 40}},
        "hangup",
    ]
    return scripts._doc("bench take-over", steps, timeout_s=180, number=number)


KILL_STEP = 4


def _audible(phone: Any) -> bool:
    link = getattr(phone, "link", None)
    last = getattr(link, "last_agent_voiced_t", None)
    return link is not None and not getattr(link, "down", False) and last is not None and time.monotonic() - last < 0.1


async def _owner(redis_url: str, call_id: str) -> str | None:
    import redis.asyncio as aioredis

    client = aioredis.from_url(redis_url)
    try:
        raw = await client.get(f"callwright:owner:{call_id}")
    finally:
        await client.aclose()
    return raw.decode() if isinstance(raw, bytes) else raw


async def _round(stack: ScaleStack, batch: int, number0: int, note: Note) -> dict[str, Any]:
    """One kill: ``batch`` calls; when one of them is mid-answer, SIGKILL the worker holding it."""
    placed: list[tuple[Any, Any]] = []
    runs: list[asyncio.Task[dict[str, Any]]] = []
    for i in range(batch):
        phone, call = await stack.place(takeover_script(number0 + i))
        placed.append((phone, call))
        runs.append(asyncio.create_task(phone.run(call)))
        await asyncio.sleep(0.7)
    assert stack.redis is not None
    redis_url = stack.redis.url
    victim: str | None = None
    audible_at_kill: dict[str, bool] = {}
    owners: dict[str, str | None] = {}
    deadline = time.monotonic() + 90
    while victim is None and time.monotonic() < deadline and not all(r.done() for r in runs):
        for phone, call in placed:
            if getattr(phone, "_step_no", 0) == KILL_STEP and _audible(phone):
                await asyncio.sleep(0.3)  # well into the answer, not at its first frame
                owner = await _owner(redis_url, call.call_connection_id)
                pid = (await asyncio.to_thread(stack.worker_pids)).get(owner or "")
                if pid is None:
                    continue
                for p, c in placed:
                    owners[c.call_connection_id] = await _owner(redis_url, c.call_connection_id)
                    audible_at_kill[c.call_connection_id] = _audible(p)
                os.kill(pid, signal.SIGKILL)
                victim = owner
                note(f"take-over: killed worker {owner} (pid {pid}) mid-answer")
                break
        await asyncio.sleep(0.02)
    reports = [r if isinstance(r, dict) else {"ok": False, "error": repr(r)}
               for r in await asyncio.gather(*runs, return_exceptions=True)]  # fmt: skip
    timed: list[float] = []
    not_resumed = 0
    affected = 0
    for (_, call), report in zip(placed, reports, strict=True):
        cid = call.call_connection_id
        if victim is None or owners.get(cid) != victim:
            continue
        affected += 1
        gaps = [g for g in report.get("media_gaps") or [] if g.get("cause") == "dropped"]
        if not gaps or gaps[0].get("resumed_at_ms") is None:
            not_resumed += 1
            continue
        if audible_at_kill.get(cid) and gaps[0].get("agent_silence_ms") is not None:
            timed.append(float(gaps[0]["agent_silence_ms"]))
    return {
        "killed": victim,
        "calls": batch,
        "affected": affected,
        "timed_ms": timed,
        "not_resumed": not_resumed,
        "failed_calls": sum(1 for r in reports if not r.get("ok")),
        "first_failure": next((r.get("error") for r in reports if not r.get("ok")), None),
    }


async def takeover(stack: ScaleStack, plan: ScalePlan, note: Note) -> dict[str, Any]:
    rounds: list[dict[str, Any]] = []
    timed: list[float] = []
    max_rounds = max(2, plan.takeover_calls * 2)
    while len(timed) < plan.takeover_calls and len(rounds) < max_rounds:
        await _ready(stack)  # the killed worker is back (restarted by the supervisor) before the next kill
        r = await _round(stack, plan.takeover_batch, 5000 + len(rounds) * 100, note)
        rounds.append(r)
        timed.extend(r["timed_ms"])
        note(f"take-over round {len(rounds)}: {len(r['timed_ms'])} timed "
             f"({', '.join(f'{t:.0f} ms' for t in r['timed_ms']) or '-'}), {r['not_resumed']} not resumed, "
             f"{r['failed_calls']} failed")  # fmt: skip
    p95 = percentile(timed, 95)
    return {
        "workers": stack.workers,
        "topology": stack.topology,
        "timed_calls": len(timed),
        "agent_silence_ms": {**p50_p95(timed), "max": max(timed) if timed else None},
        "calls": sum(r["calls"] for r in rounds),
        "calls_affected": sum(r["affected"] for r in rounds),
        "calls_not_resumed": sum(r["not_resumed"] for r in rounds),
        "calls_dropped": sum(r["failed_calls"] for r in rounds),
        "first_failure": next((r["first_failure"] for r in rounds if r["first_failure"]), None),
        "target_p95_ms": TAKEOVER_TARGET_P95_MS,
        "met": None if p95 is None else p95 <= TAKEOVER_TARGET_P95_MS,
        "rounds": rounds,
    }


# -- the section ----------------------------------------------------------------------------------


async def run_scale(plan: ScalePlan, note: Note, *, log_dir: Path | None = None) -> dict[str, Any]:
    log_dir = log_dir or Path(tempfile.mkdtemp(prefix="callwright-scale-"))
    (log_dir / "redis").mkdir(parents=True, exist_ok=True)
    cores = usable_cores()
    # The machine's load average beside the figures: on a shared machine they measure the neighbours too.
    out: dict[str, Any] = {"plan": plan.__dict__.copy(), "cores": cores, "artifacts_dir": str(log_dir),
                           "loadavg_start": [round(x, 2) for x in os.getloadavg()]}  # fmt: skip
    t0 = time.monotonic()
    redis = LocalRedis(log_dir / "redis")
    await asyncio.to_thread(redis.start)
    try:
        sustained: dict[str, dict[str, Any]] = {}
        for kind, steps in (("embedded", plan.embedded_steps), ("instant", plan.instant_steps)):
            if not steps:
                continue
            runs = [(n, "workers") for n in plan.worker_counts]
            if plan.balanced:
                runs.append((max(2, *plan.worker_counts), "haproxy"))
            for workers, topology in runs:
                what = f"`callwright serve --workers {workers}`" if topology == "workers" else (
                    f"{workers} replicas behind HAProxy")  # fmt: skip
                note(f"scale: {kind} engines, {what}: starting")
                async with scale_stack(workers, _engine_env(kind, steps), redis=redis, log_dir=log_dir,
                                       topology=topology) as stack:  # fmt: skip
                    ramp = await sustained_ramp(stack, steps, note, f"{kind}, {workers} {topology}", plan.stagger_s)
                ramp.update({"engines": kind, "workers": workers, "topology": topology})
                ramp["remote_generator_estimate"] = remote_generator_estimate(ramp["at_max"], cores)
                sustained[f"{kind}_{workers}{'w' if topology == 'workers' else 'r_haproxy'}"] = ramp
        out["sustained"] = sustained
        tk_workers = max(2, *plan.worker_counts)
        note(f"scale: take-over after SIGKILL, instant engines, {tk_workers} ({plan.takeover_topology})")
        async with scale_stack(tk_workers, _engine_env("instant", (plan.takeover_batch,)), redis=redis,
                               log_dir=log_dir, topology=plan.takeover_topology) as stack:  # fmt: skip
            out["takeover"] = await takeover(stack, plan, note)
    finally:
        await asyncio.to_thread(redis.stop)
    out["calls_dropped"] = sum(r["calls_dropped"] for r in out["sustained"].values()) + out["takeover"]["calls_dropped"]
    out["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    out["wall_s"] = round(time.monotonic() - t0, 1)
    return out


def scale_lines(s: dict[str, Any] | None) -> list[str]:
    """The section as Markdown lines (also printed as is on the console)."""
    if not s:
        return []
    lines = ["", "## Scale: workers on one machine, take-over after SIGKILL", "",
             f"{s.get('cores')} usable cores; `callwright serve --workers N` on one Redis; pass = every call "
             "completed, response p95 ≤ 1 s, no gap at the ear. CPU % of one core; phones = the load generator "
             f"(emulator + every phone) on the same machine. Load average {s.get('loadavg_start')} at the start, "
             f"{s.get('loadavg_end')} at the end. A row whose first step failed shows that step's figures.", "",
             "| engines | processes | sustained calls | p95 ms | gaps | server CPU %/call | phones CPU %/call | "
             "server alone (est.) | dropped |", "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for ramp in (s.get("sustained") or {}).values():
        kind, n = ramp.get("engines", "?"), ramp.get("workers", "?")
        workers = f"{n} workers" if ramp.get("topology", "workers") == "workers" else f"{n} replicas + HAProxy"
        at = ramp.get("at_max") or (ramp.get("steps") or [{}])[-1]
        bound = "" if ramp.get("limit_reached") else " (≥)"
        shown = "" if ramp.get("at_max") else f" (failed at {at.get('calls', '-')})"
        lines.append(
            f"| {kind} | {workers} | {ramp['max_sustained_calls']}{bound}{shown} | "
            f"{(at.get('response_latency_ms') or {}).get('p95', '-')} | {(at.get('gaps') or {}).get('count', '-')} | "
            f"{at.get('server_cpu_pct_per_call', '-')} | "
            f"{at.get('load_generator_cpu_pct_per_call', '-')} | {ramp.get('remote_generator_estimate') or '-'} | "
            f"{ramp['calls_dropped']} |"
        )
    tk = s.get("takeover") or {}
    sil = tk.get("agent_silence_ms") or {}
    where = "replicas behind HAProxy" if tk.get("topology") == "haproxy" else "workers on one port"
    lines += ["", f"Take-over ({tk.get('workers')} {where}, SIGKILL mid-answer): caller's-ear silence p50 "
              f"{sil.get('p50')} ms, p95 {sil.get('p95')} ms, max {sil.get('max')} ms over {tk.get('timed_calls')} "
              f"timed calls (target p95 ≤ {tk.get('target_p95_ms', TAKEOVER_TARGET_P95_MS):.0f} ms: "
              f"{'met' if tk.get('met') else 'not met' if tk.get('met') is False else 'n/a'}); "
              f"{tk.get('calls_affected')} calls on the killed worker, {tk.get('calls_not_resumed')} not resumed, "
              f"{tk.get('calls_dropped')} dropped of {tk.get('calls')}.",
              f"Calls dropped in the whole section: {s.get('calls_dropped')}.", ""]  # fmt: skip
    return lines


def run_scale_command(size: str, as_json: bool, out: Path | None, markdown_out: Path | None) -> int:
    """``callwright bench --scale`` (size: full | quick | tiny)."""
    from rich.console import Console

    from callwright.bench.report import stamp

    err = Console(stderr=True)
    plans = {"full": ScalePlan.full, "quick": ScalePlan.quick, "tiny": ScalePlan.tiny}
    if size not in plans:
        err.print(f"[red]error:[/] size must be one of {', '.join(plans)}, got {size!r}")
        return 2

    def note(msg: str) -> None:
        err.print(f"[dim]·[/] {msg}", highlight=False)

    try:
        result = stamp({"size": size, "scale": asyncio.run(run_scale(plans[size](), note))})
    except Exception as exc:  # a stack that cannot start: say why, non-zero exit
        err.print(f"[red]error:[/] the scale bench could not run: {type(exc).__name__}: {exc}")
        return 1
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    lines = scale_lines(result["scale"])
    if markdown_out is not None:
        markdown_out.parent.mkdir(parents=True, exist_ok=True)
        markdown_out.write_text("# Callwright scale benchmark\n" + "\n".join(lines) + "\n", encoding="utf-8")
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
    else:
        print("\n".join(lines))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="a reduced run (1 and 2 workers, one step each)")
    size.add_argument("--tiny", action="store_true", help="the smallest run (2 workers, 3 calls, one kill)")
    parser.add_argument("--json", action="store_true", help="print the results alone, as one JSON object")
    parser.add_argument("--out", type=Path, help="also write the JSON results to this file")
    parser.add_argument("--markdown", type=Path, help="also write the section as Markdown")
    args = parser.parse_args(argv)
    chosen = "tiny" if args.tiny else "quick" if args.quick else "full"
    return run_scale_command(chosen, args.json, args.out, args.markdown)


if __name__ == "__main__":
    sys.exit(main())
