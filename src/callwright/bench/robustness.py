"""``callwright bench --robustness``: attack a real local stack from outside and count what gives way.

Surfaces (issue 14, "Benchmarks"):

- **media** — ≥ 100,000 frames over real WebSockets to ``/api/v1/media/stream``, authenticated as ACS
  would be: valid 20 ms frames mixed with odd sizes, 24 kHz streams, bad base64, non-JSON, 2,000-deep
  JSON, ``sampleRate: 1e999``, unknown kinds, binary frames. Counted: upgrade 5xx, sockets the server
  closed or dropped while we were still talking (``abnormal_closes``), and **deaf calls** — at the end of
  every surviving socket real speech (flite) is streamed in real time and the call must gain a user turn.
  A per-trigger table runs each kind of bad frame on its own socket, so a failure names its cause.
- **webhook** — ≥ 10,000 bodies to ``/api/v1/call-events`` (valid, missing and wrong secrets; random,
  truncated, deep, oversize JSON; mixed good/bad batches; unknown types; lone surrogates; duplicate
  IncomingCalls; batches above Event Grid's 5,000). Counted: 5xx and dropped connections; afterwards
  ``/health``, the operator API, ``/metrics`` and a whole scripted call must still work.
- **tokens** — ≥ 1,000 forged or malformed JWTs on the webhook and on the media upgrade. Counted: 5xx
  and forgeries accepted (a 2xx, an open socket, or a call record created by the forged request), with
  genuine tokens as positive controls (they must be accepted, or the "accepted" detector is broken).
- **lost transcripts** — afterwards every call with transcript turns in memory has them in the store.
- **faults** — Redis stopped mid-call (restarted after the call ended), ACS unreachable (refused and
  black-holed) when placing an outbound call, SIGTERM mid-call (server in a child process).

The server runs in this process (``local_stack``) so its state can be inspected directly; frames are
sent faster than real time, except the speech checks, which keep real time like a phone.

Run: ``python -m callwright.bench.robustness [--size full|reduced|tiny]`` (or ``run_bench_command(...,
robustness=True)``, which ``callwright bench --robustness`` calls); the full ``callwright bench`` ends with
the reduced pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import shutil
import signal
import socket
import sys
import tempfile
import time
import uuid
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from callwright.acs.media import frame_bytes
from callwright.bench.lag import LagMonitor
from callwright.bench.robustness_inputs import (
    MediaFuzz,
    WebhookInput,
    _audio_msg,
    forged_tokens,
    media_fuzz,
    webhook_inputs,
)
from callwright.localredis import LocalRedis

Note = Callable[[str], None]

# What the instant recognizer "hears" for every utterance the server's VAD segments: a question the
# front desk answers without transferring or hanging up, so a deaf-check call is never ended by the agent.
TRANSCRIPT = "what are your opening hours"
SPEECH_TEXT = "What are your opening hours, please?"
SPEECH_VOICE = "slt"
HEARD_WAIT_S = 12.0  # after the speech ends: endpointing, a busy recognition queue, the turn queue
FORGED_CLOSE_WAIT_S = 3.0  # a refused media upgrade closes at once; open this long = accepted
SEED = 14


@dataclass(frozen=True)
class RobustnessPlan:
    media_frames: int
    media_workers: int
    sockets_per_worker: int
    triggers: tuple[str, ...] | None  # None: every trigger
    webhook_bodies: int
    big_batches: bool
    tokens: int
    faults: tuple[str, ...]
    redis_down_s: float = 35.0  # longer than the 30 s the final save used to retry for
    acs_timeout_s: float = 30.0
    pace_fps: float = 600.0  # frames per second per fuzz socket (real time is 50)
    realtime_calls: int = 0  # bench/media_load.py (real-time paced sockets), when it is importable
    realtime_seconds: float = 20.0

    @classmethod
    def full(cls) -> RobustnessPlan:
        return cls(media_frames=100_000, media_workers=8, sockets_per_worker=3, triggers=None,
                   webhook_bodies=10_000, big_batches=True, tokens=1_000, realtime_calls=6,
                   faults=("redis_restart", "acs_refused", "acs_blackhole", "sigterm"))  # fmt: skip

    @classmethod
    def reduced(cls) -> RobustnessPlan:
        """The pass inside the full ``callwright bench``: every trigger, a tenth of the volume."""
        return cls(media_frames=10_000, media_workers=4, sockets_per_worker=2, triggers=None,
                   webhook_bodies=1_000, big_batches=False, tokens=200, faults=("acs_refused",))  # fmt: skip

    @classmethod
    def tiny(cls) -> RobustnessPlan:
        """For the smoke test: every surface, as small as still yields a count."""
        return cls(media_frames=600, media_workers=2, sockets_per_worker=1,
                   triggers=("size_642", "sample_rate_1e999"), webhook_bodies=150, big_batches=False,
                   tokens=40, faults=("acs_refused",), redis_down_s=2.0, acs_timeout_s=15.0)  # fmt: skip


# ---- small utilities ---------------------------------------------------------------------------------


def _call_id(tag: str) -> str:
    return f"robust-{tag}-{uuid.uuid4()}"


def _user_turns(stack: Any, call_id: str) -> int:
    record = stack.state.calls.get(call_id)
    memo = getattr(record, "memo", None)
    if memo is None:
        return 0
    return sum(1 for m in memo.history if m.get("role") == "user")


def _ws_url(stack: Any) -> str:
    return stack.url.replace("http://", "ws://", 1) + "/api/v1/media/stream"


class _ServerLog(logging.Handler):
    """Counts what the server logs at WARNING and above (by logger and message template) and keeps the
    ERROR lines for a file, while the console stays quiet: 100,000 bad frames would otherwise be 100,000
    lines on the terminal. Lines are kept in memory and written by ``write``: uvicorn's logging setup
    (the emulator's) closes every handler it finds, so a file held open here would be closed under us."""

    def __init__(self, path: Path) -> None:
        super().__init__(logging.WARNING)
        self.counts: Counter[str] = Counter()
        self.path = path
        self._lines: list[str] = []
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.counts[f"{record.levelname} {record.name}: {str(record.msg)[:90]}"] += 1
        if record.levelno >= logging.ERROR and len(self._lines) < 2_000:
            with contextlib.suppress(Exception):
                self._lines.append(self.format(record))

    def write(self) -> None:
        with contextlib.suppress(OSError):
            self.path.write_text("\n".join(self._lines) + "\n", encoding="utf-8")

    def top(self, level: str, n: int = 12) -> dict[str, int]:
        return dict(Counter({k: v for k, v in self.counts.items() if k.startswith(level)}).most_common(n))


@contextlib.contextmanager
def _quiet_console(handler: _ServerLog) -> Any:
    root = logging.getLogger()
    consoles = [h for h in root.handlers if h.get_name() == "callwright-console"]
    levels = [h.level for h in consoles]
    for h in consoles:
        h.setLevel(logging.CRITICAL + 1)
    logging.getLogger("callwright").addHandler(handler)
    try:
        yield
    finally:
        logging.getLogger("callwright").removeHandler(handler)
        for h, lvl in zip(consoles, levels, strict=True):
            h.setLevel(lvl)
        handler.write()


# ---- speech for the deaf checks ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Speech:
    """Caller speech as ready-to-send AudioData messages, per sample rate."""

    messages: dict[int, list[str]]
    silence: dict[int, str]


def _build_speech() -> _Speech | None:
    from callwright.emulator.phone.audio import AudioSourceError, default_tts_cache_dir, flite_say_blocking, resample

    try:
        pcm16 = flite_say_blocking(SPEECH_TEXT, SPEECH_VOICE, default_tts_cache_dir())
    except AudioSourceError:
        return None
    messages: dict[int, list[str]] = {}
    silence: dict[int, str] = {}
    for rate in (16_000, 24_000):
        pcm = resample(pcm16, 16_000, rate)
        size = frame_bytes(rate)
        pcm += bytes(-len(pcm) % size)
        messages[rate] = [_audio_msg(pcm[i : i + size], silent=False) for i in range(0, len(pcm), size)]
        silence[rate] = _audio_msg(bytes(size), silent=True)
    return _Speech(messages, silence)


# ---- one media socket --------------------------------------------------------------------------------


class _MediaClient:
    """ACS's side of one media WebSocket: sends what it is told, drains the agent's audio, notices when
    the server closes or drops the connection."""

    def __init__(self, url: str, headers: dict[str, str], *, open_timeout: float = 20.0) -> None:
        self.url = url
        self.headers = headers
        self.open_timeout = open_timeout
        self.ws: Any = None
        self.agent_messages = 0
        self.first_audio = asyncio.Event()
        self.server_closed = False
        self._closing = False
        self._reader: asyncio.Task[None] | None = None

    async def open(self) -> str | None:
        """None when connected; otherwise what happened (``http_5xx``, ``http_4xx``, ``error:…``)."""
        try:
            self.ws = await websockets.connect(self.url, additional_headers=self.headers, max_size=2**24,
                                               open_timeout=self.open_timeout, compression=None,
                                               ping_interval=None, close_timeout=5)  # fmt: skip
        except InvalidStatus as exc:
            code = exc.response.status_code
            return "http_5xx" if code >= 500 else f"http_{code}"
        except TimeoutError:
            return "no_answer"  # the upgrade request was never answered
        except (OSError, websockets.exceptions.WebSocketException) as exc:
            return f"error:{type(exc).__name__}"
        self._reader = asyncio.get_running_loop().create_task(self._read())
        return None

    async def _read(self) -> None:
        try:
            async for _ in self.ws:
                self.agent_messages += 1
                self.first_audio.set()
        except ConnectionClosed:
            pass
        finally:
            self.server_closed = not self._closing

    @property
    def close_code(self) -> int | None:
        return None if self.ws is None else self.ws.close_code

    async def send(self, message: str | bytes) -> bool:
        if self.server_closed:
            return False
        try:
            await self.ws.send(message)
        except ConnectionClosed:
            return False
        return True

    async def wait_closed(self, timeout: float) -> bool:
        if self._reader is None:
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._reader), timeout)
        return self._reader.done()

    async def close(self) -> None:
        self._closing = not self.server_closed
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(), 10)
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader


def _acs_headers(stack: Any, call_id: str, authorization: str | None = None) -> dict[str, str]:
    token = stack.emulator.tokens.media_token()
    return {"Authorization": authorization if authorization is not None else f"Bearer {token}",
            "x-ms-call-connection-id": call_id, "x-ms-call-correlation-id": str(uuid.uuid4())}  # fmt: skip


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


# ---- webhook -----------------------------------------------------------------------------------------


def _secret_params(inp: WebhookInput, secret: str) -> tuple[dict[str, str], dict[str, str]]:
    params: dict[str, str] = {}
    headers = {"content-type": inp.content_type} if inp.content_type else {}
    if inp.secret == "valid":
        params["secret"] = secret
    elif inp.secret == "wrong":
        params["secret"] = secret[:-2] + "xx"
    elif inp.secret == "code":
        params["code"] = secret
    elif inp.secret == "bearer_garbage":
        headers["authorization"] = "Bearer not.a.token"
    return params, headers


WHOLE_CALL_SCRIPT = """
name: robustness whole call
direction: inbound
from: "+15552220000"
to: "+15550001000"
timeout_s: 60
transcribe: false
steps:
  - barge_in: {at_ms: 800, of: next, timeout_s: 20, say: "What are your opening hours?"}
  - silence: 3.0
  - hangup
"""


async def _still_serving(stack: Any, http: httpx.AsyncClient) -> dict[str, Any]:
    """What a victim of the attack would check: liveness, the operator API, metrics, a whole call."""
    auth = dict(getattr(stack, "operator_headers", {}) or {})
    out: dict[str, Any] = {}
    for name, path in (("health", "/health"), ("calls_api", "/api/v1/calls"), ("metrics", "/metrics")):
        t = time.monotonic()
        try:
            resp = await http.get(f"{stack.url}{path}", headers=auth, timeout=30)
            out[name] = {"status": resp.status_code, "ms": round((time.monotonic() - t) * 1000),
                         "bytes": len(resp.content)}  # fmt: skip
        except httpx.HTTPError as exc:
            out[name] = {"status": None, "error": type(exc).__name__}
    out["whole_call"] = await _whole_call(stack)
    return out


async def _whole_call(stack: Any, script: str = WHOLE_CALL_SCRIPT) -> dict[str, Any]:
    from callwright.emulator.phone import build_phone_from_script

    try:
        phone = build_phone_from_script(script, transcriber=stack.transcriber)
        spec = phone.script
        call = await stack.emulator.place_inbound_call(phone, from_number=spec.from_number, to_number=spec.to_number)
        report = await asyncio.wait_for(phone.run(call), 90)
    except Exception as exc:  # a refused or broken call is the outcome being measured
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    turns = _user_turns(stack, call.call_connection_id)
    return {"ok": bool(report.get("ok")) and turns >= 1, "phone_ok": bool(report.get("ok")), "user_turns": turns,
            "call_id": call.call_connection_id}  # fmt: skip


async def post_bodies(url: str, inputs: list[WebhookInput], secret: str, *, workers: int = 12) -> dict[str, Any]:
    """Send every body (``workers`` at a time) and count the answers: the webhook surface's core."""
    statuses: Counter[str] = Counter()
    by_kind_5xx: Counter[str] = Counter()
    dropped: Counter[str] = Counter()
    accepted_unauthenticated = 0
    slowest = (0.0, "")
    it = iter(inputs)

    async def worker(http: httpx.AsyncClient) -> None:
        nonlocal accepted_unauthenticated, slowest
        for inp in it:
            params, headers = _secret_params(inp, secret)
            t = time.monotonic()
            try:
                resp = await http.request(inp.method, url, params=params, content=inp.body, headers=headers)
            except httpx.HTTPError as exc:
                dropped[f"{inp.kind}:{type(exc).__name__}"] += 1
                continue
            took = time.monotonic() - t
            if took > slowest[0]:
                slowest = (took, inp.kind)
            statuses[str(resp.status_code)] += 1
            if resp.status_code >= 500:
                by_kind_5xx[inp.kind] += 1
            if inp.secret in ("none", "wrong", "bearer_garbage") and 200 <= resp.status_code < 300:
                accepted_unauthenticated += 1

    t0 = time.monotonic()
    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=workers)) as http:
        await asyncio.gather(*(worker(http) for _ in range(workers)))
    return {
        "inputs": len(inputs),
        "http_5xx": sum(v for k, v in statuses.items() if k.startswith("5")),
        "dropped": sum(dropped.values()),
        "dropped_by_kind": dict(dropped),
        "statuses": dict(statuses),
        "5xx_by_kind": dict(by_kind_5xx),
        "accepted_without_secret": accepted_unauthenticated,
        "inputs_by_kind": dict(Counter(i.kind for i in inputs)),
        "wall_s": round(time.monotonic() - t0, 1),
        "slowest_request": {"s": round(slowest[0], 2), "kind": slowest[1]},
    }


async def webhook_surface(stack: Any, plan: RobustnessPlan, note: Note) -> dict[str, Any]:
    note(f"webhook: {plan.webhook_bodies:,} bodies")
    inputs: list[WebhookInput] = await asyncio.to_thread(
        lambda: list(webhook_inputs(plan.webhook_bodies, SEED, big_batches=plan.big_batches))
    )
    lag = LagMonitor()  # this process's loop is the server's: its stalls are the server's
    lag.start()
    try:
        out = await post_bodies(f"{stack.url}/api/v1/call-events", inputs,
                                stack.settings.eventgrid_secret.get_secret_value())  # fmt: skip
    finally:
        out_lag = lag.take()
        await lag.stop()
    out["loop_lag_ms"] = out_lag
    note("webhook: is the server still serving?")
    async with httpx.AsyncClient() as http:
        out["after"] = await _still_serving(stack, http)
    return out


# ---- tokens ------------------------------------------------------------------------------------------


def _callback_body(call_id: str) -> bytes:
    data = {"version": "2024-04-15", "callConnectionId": call_id, "serverCallId": "c2VydmVy",
            "correlationId": str(uuid.uuid4()), "publicEventType": "Microsoft.Communication.CallConnected"}  # fmt: skip
    where = f"calling/callConnections/{call_id}"
    event = {"id": str(uuid.uuid4()), "source": where, "type": "Microsoft.Communication.CallConnected",
             "data": data, "specversion": "1.0", "time": "2026-01-01T00:00:00Z", "subject": where}  # fmt: skip
    return json.dumps([event]).encode()


async def _try_webhook(stack: Any, http: httpx.AsyncClient, authorization: str) -> tuple[str, bool]:
    """(outcome, accepted) for one callback POST carrying ``authorization`` and no Event Grid secret."""
    call_id = _call_id("forged")
    try:
        headers = {"authorization": authorization, "content-type": "application/json"}
        resp = await http.post(f"{stack.url}/api/v1/call-events", content=_callback_body(call_id), headers=headers)
    except httpx.LocalProtocolError:
        return "unsendable", False  # our HTTP client refuses the header (e.g. trailing space): never sent
    except httpx.HTTPError as exc:
        return f"dropped:{type(exc).__name__}", False
    await asyncio.sleep(0)  # handlers run in the background: give them a turn before looking
    accepted = 200 <= resp.status_code < 300 or stack.state.calls.get(call_id) is not None
    return ("5xx" if resp.status_code >= 500 else str(resp.status_code)), accepted


async def _try_media(stack: Any, authorization: str) -> tuple[str, bool]:
    call_id = _call_id("forged")
    client = _MediaClient(_ws_url(stack), _acs_headers(stack, call_id, authorization), open_timeout=6.0)
    failure = await client.open()
    if failure is not None:
        return ("5xx" if failure == "http_5xx" else failure), False
    try:
        closed = await client.wait_closed(FORGED_CLOSE_WAIT_S)
        accepted = not closed or stack.state.calls.get(call_id) is not None
        return f"close_{client.close_code}", accepted
    finally:
        await client.close()


async def token_surface(stack: Any, plan: RobustnessPlan, note: Note) -> dict[str, Any]:
    issuer = stack.emulator.tokens
    note(f"tokens: {plan.tokens:,} forged tokens on the webhook and the media upgrade")
    # The emulator's private key signs the variants whose claims (not signatures) are wrong. Reaching
    # into the emulator is the point: only the key's owner can make those, and they must still fail.
    real_key = getattr(issuer, "_key", None)
    if real_key is None:  # an emulator that hides its key: claim variants are then signed by a stranger
        from cryptography.hazmat.primitives.asymmetric import rsa

        real_key = await asyncio.to_thread(rsa.generate_private_key, public_exponent=65537, key_size=2048)
    forgeries = await asyncio.to_thread(forged_tokens, plan.tokens, SEED, real_key=real_key, kid=issuer.kid,
                                        issuer=issuer.issuer, audience=issuer.audience)  # fmt: skip
    web: Counter[str] = Counter()
    media: Counter[str] = Counter()
    accepted: Counter[str] = Counter()
    it = iter(forgeries)

    async def worker(http: httpx.AsyncClient) -> None:
        for f in it:
            outcome, ok = await _try_webhook(stack, http, f.authorization)
            web[outcome] += 1
            if ok:
                accepted[f"webhook:{f.kind}"] += 1
            outcome, ok = await _try_media(stack, f.authorization)
            media[outcome] += 1
            if ok:
                accepted[f"media:{f.kind}"] += 1

    async with httpx.AsyncClient(timeout=60) as http:
        await asyncio.gather(*(worker(http) for _ in range(16)))
        # Positive controls: genuine tokens through the same code paths must be accepted.
        controls = {"webhook": 0, "media": 0, "tried": 3}
        for _ in range(3):
            _, ok = await _try_webhook(stack, http, f"Bearer {issuer.callback_token()}")
            controls["webhook"] += ok
            _, ok = await _try_media(stack, f"Bearer {issuer.media_token()}")
            controls["media"] += ok
    five = web["5xx"] + media["5xx"]
    # A refusal is a 4xx on the upgrade or a policy close (1008, or the 4xxx application range).
    abnormal = sum(
        v for k, v in media.items() if k.startswith("close_") and not (k == "close_1008" or k.startswith("close_4"))
    )
    return {
        "inputs": len(forgeries),
        "requests": 2 * len(forgeries) - web["unsendable"],
        "http_5xx": five,
        "forgeries_accepted": sum(accepted.values()),
        "accepted_by_kind": dict(accepted),
        "abnormal_closes": abnormal,
        "unanswered_upgrades": media["no_answer"],
        "webhook_outcomes": dict(web),
        "media_outcomes": dict(media),
        "inputs_by_kind": dict(Counter(f.kind for f in forgeries)),
        "genuine_controls_accepted": controls,
    }


# ---- lost transcripts --------------------------------------------------------------------------------


async def lost_transcripts(stack: Any, also: list[str]) -> dict[str, Any]:
    """Every call with turns in memory (and every call a check heard) must have them in the store."""
    st = stack.state
    records = {r.call_connection_id: r for r in [*st.calls.active(), *st.calls.recent()]}
    ids = {cid for cid, r in records.items() if r.memo is not None and r.memo.history} | set(also)
    lost: list[dict[str, Any]] = []
    await asyncio.sleep(1.5)  # debounced saves (0.25 s) and the stop-time saves land first
    for cid in sorted(ids):
        record = records.get(cid) or st.calls.get(cid)
        in_memory = len(record.memo.history) if record is not None and record.memo is not None else 0
        try:
            doc = await st.store.load(cid)
        except Exception as exc:  # the store being down is itself the finding
            lost.append({"call": cid, "memory": in_memory, "store": f"error {type(exc).__name__}"})
            continue
        stored = len((doc or {}).get("history") or [])
        if stored < max(in_memory, 1 if cid in also else 0):
            lost.append({"call": cid, "memory": in_memory, "store": stored})
    return {"calls_with_turns": len(ids), "lost": len(lost), "examples": lost[:5], "store": st.store.kind}


# ---- faults ------------------------------------------------------------------------------------------

REDIS_CALL_SCRIPT = """
name: robustness redis fault
direction: inbound
from: "+15553330000"
to: "+15550001000"
timeout_s: 90
transcribe: false
steps:
  - barge_in: {at_ms: 800, of: next, timeout_s: 20, say: "What are your opening hours?"}
  - silence: 4.0
  - say: "Where is your office?"
  - silence: 4.0
  - hangup
"""


async def _wait_for(pred: Callable[[], bool], timeout: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        await asyncio.sleep(step)
    return pred()


async def fault_redis_restart(stack: Any, redis: LocalRedis | None, plan: RobustnessPlan, note: Note) -> dict[str, Any]:
    name = "redis stopped mid-call, call ends while it is down, restarted"
    if redis is None:
        return {"name": name, "outcome": "not available: redis-server is not installed", "ok": None}
    from callwright.emulator.phone import build_phone_from_script

    note(f"fault: {name} (down {plan.redis_down_s:g} s)")
    phone = build_phone_from_script(REDIS_CALL_SCRIPT, transcriber=stack.transcriber)
    call = await stack.emulator.place_inbound_call(phone, from_number="+15553330000", to_number="+15550001000")
    cid = call.call_connection_id
    run = asyncio.get_running_loop().create_task(phone.run(call))
    first = await _wait_for(lambda: _user_turns(stack, cid) >= 1, 30)
    await asyncio.sleep(0.6)  # the first turn's debounced save lands: the store holds a partial session
    await asyncio.to_thread(redis.stop)
    stopped_at = time.monotonic()
    report: dict[str, Any] = {}
    try:
        report = await asyncio.wait_for(run, 90)
    except Exception as exc:  # the call failing is an outcome
        report = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    ended_while_down = redis.proc is None
    await asyncio.sleep(max(0.0, plan.redis_down_s - (time.monotonic() - stopped_at)))
    await asyncio.to_thread(redis.start)
    record = stack.state.calls.get(cid)
    in_memory = len(record.memo.history) if record is not None and record.memo is not None else 0
    stored = 0

    async def stored_turns() -> int:
        try:
            doc = await stack.state.store.load(cid)
        except Exception:
            return -1
        return len((doc or {}).get("history") or [])

    t = time.monotonic()
    while time.monotonic() - t < 20:
        stored = await stored_turns()
        if stored >= in_memory > 0:
            break
        await asyncio.sleep(0.5)
    saved = stored >= in_memory > 0
    return {
        "name": name,
        "ok": bool(first and report.get("ok") and saved),
        "outcome": (
            f"call {'completed' if report.get('ok') else 'FAILED'}; {in_memory} history entries in "
            f"memory, {max(stored, 0)} in Redis {time.monotonic() - t:.0f} s after it came back"
            f"{'' if saved else ' — TRANSCRIPT LOST'}"
        ),
        "redis_down_s": plan.redis_down_s,
        "call_ended_while_down": ended_while_down,
        "history_in_memory": in_memory,
        "history_in_store": stored,
    }


class _Blackhole:
    """A TCP port that accepts and then never answers (a hung ACS front end)."""

    def __init__(self) -> None:
        self.server: asyncio.Server | None = None
        self.port = 0
        self._held: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> _Blackhole:
        async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self._held.append(writer)
            with contextlib.suppress(Exception):
                while await reader.read(65536):
                    pass

        self.server = await asyncio.start_server(hold, "127.0.0.1", 0)
        self.port = int(self.server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        for w in self._held:
            w.close()
        if self.server is not None:
            self.server.close()


async def fault_acs_unreachable(stack: Any, plan: RobustnessPlan, variant: str, note: Note,
                                parked: list[Any]) -> dict[str, Any]:  # fmt: skip
    name = f"ACS unreachable ({'connection refused' if variant == 'refused' else 'accepts, never answers'}) " \
           "when placing an outbound call"  # fmt: skip
    try:
        from pydantic import SecretStr

        from callwright.app import _build_automation
    except ImportError:
        return {"name": name, "ok": None, "outcome": "not available: no automation factory to point elsewhere"}
    note(f"fault: {name}")
    st = stack.state
    async with contextlib.AsyncExitStack() as ex:
        if variant == "refused":
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = int(s.getsockname()[1])  # closed again: nothing listens there
        else:
            port = (await ex.enter_async_context(_Blackhole())).port
        conn = f"endpoint=http://127.0.0.1:{port}/;accesskey={stack.emulator.access_key}"
        try:
            temp = _build_automation(stack.settings.model_copy(update={"acs_connection_string": SecretStr(conn)}))
        except Exception as exc:
            return {"name": name, "ok": None, "outcome": f"not available: {type(exc).__name__}: {exc}"[:200]}
        parked.append(temp)  # closed at the end: a request may still be using it after our client gave up
        saved, st.automation = st.automation, temp
        pending_before = len(getattr(st, "pending_outbound", {}))
        t = time.monotonic()
        try:
            async with httpx.AsyncClient(timeout=plan.acs_timeout_s) as http:
                resp = await http.post(f"{stack.url}/api/v1/calls", json={"target": "+15557654321"},
                                       headers=dict(getattr(stack, "operator_headers", {}) or {}))  # fmt: skip
            status: int | None = resp.status_code
            detail = resp.text[:160]
        except httpx.TimeoutException:
            status, detail = None, f"no answer within {plan.acs_timeout_s:g} s"
        finally:
            st.automation = saved
        took = time.monotonic() - t
        await asyncio.sleep(0.1)
        leaked = len(getattr(st, "pending_outbound", {})) - pending_before
    ok = status == 502 and took <= 15 and leaked <= 0
    return {"name": name, "ok": ok, "status": status, "seconds": round(took, 2), "pending_entries_left": leaked,
            "outcome": f"{status if status is not None else 'no answer'} after {took:.1f} s"
                       f"{'' if leaked <= 0 else f', {leaked} pending entries left behind'}: {detail}"}  # fmt: skip


SIGTERM_CALL_SCRIPT = """
name: robustness sigterm
direction: inbound
from: "+15554440000"
to: "+15550001000"
timeout_s: 120
transcribe: false
steps:
  - barge_in: {at_ms: 800, of: next, timeout_s: 20, say: "What are your opening hours?"}
  - silence: 60
  - hangup
"""
SIGTERM_GRACE_S = 4  # SHUTDOWN_GRACE_SECONDS for this scenario (default 20): the bench's time budget


@contextlib.asynccontextmanager
async def _serve_child(emulator: Any, env_extra: dict[str, str], log_path: Path) -> AsyncIterator[Any]:
    """``callwright serve`` as production runs it, in its own process (a signal to it must not reach us),
    configured for the emulator like ``local_stack``. Yields (process, url, operator headers)."""
    import secrets

    from callwright.localstack import free_port

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    secret = secrets.token_urlsafe(16)
    env = {**os.environ, "LOG_LEVEL": "WARNING", **env_extra,
           "ACS_CONNECTION_STRING": emulator.connection_string, "ACS_CALLBACK_URL": url,
           "ACS_JWT_AUDIENCE": emulator.resource_id, "ACS_OPENID_CONFIG_URL": emulator.openid_config_url,
           "EVENTGRID_SECRET": secret}  # fmt: skip
    headers: dict[str, str] = {}
    try:
        from callwright.security.keys import hash_key, new_key

        key = new_key()
        env["OPERATOR_API_KEYS"] = f"operator:{hash_key(key)}"
        headers = {"Authorization": f"Bearer {key}"}
    except ImportError:  # a tree without operator auth: the API is open
        pass
    with log_path.open("wb") as log_file:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "callwright.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
            env=env, stdin=asyncio.subprocess.DEVNULL, stdout=log_file, stderr=log_file,
        )  # fmt: skip
    try:
        async with httpx.AsyncClient(timeout=5) as http:
            deadline = time.monotonic() + 90
            while True:
                if proc.returncode is not None:
                    raise RuntimeError(f"the server exited with {proc.returncode} while starting (log {log_path})")
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"{url}/ready")).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the server was not ready within 90 s (log {log_path})")
                await asyncio.sleep(0.3)
        emulator.webhook_url = f"{url}/api/v1/call-events?secret={secret}"
        yield proc, url, headers
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        await proc.wait()


async def fault_sigterm(redis: LocalRedis | None, note: Note, log_dir: Path) -> dict[str, Any]:
    name = "SIGTERM to the server mid-call"
    from callwright.emulator.phone import build_phone_from_script
    from callwright.emulator.service import Emulator

    note(f"fault: {name} (`callwright serve` in a child process, SHUTDOWN_GRACE_SECONDS={SIGTERM_GRACE_S})")
    env = {"STT_ENGINE": "instant", "TTS_ENGINE": "instant", "INSTANT_STT_TRANSCRIPT": TRANSCRIPT,
           "SHUTDOWN_GRACE_SECONDS": str(SIGTERM_GRACE_S), "SESSION_SPILL_DIR": str(log_dir / "spill")}  # fmt: skip
    if redis is not None:
        env["REDIS_URL"] = redis.url
    try:
        async with Emulator() as emulator, _serve_child(emulator, env, log_dir / "sigterm-server.log") as child:
            proc, url, headers = child
            phone = build_phone_from_script(SIGTERM_CALL_SCRIPT, transcribe=False)
            call = await emulator.place_inbound_call(phone, from_number="+15554440000", to_number="+15550001000")
            connected_at = time.monotonic()
            cid = call.call_connection_id
            run = asyncio.get_running_loop().create_task(phone.run(call))
            turns, replied = 0, False
            async with httpx.AsyncClient(timeout=10, headers=headers) as http:
                t = time.monotonic()
                while time.monotonic() - t < 40 and not replied:  # the question asked and fully answered
                    with contextlib.suppress(httpx.HTTPError, ValueError):
                        resp = await http.get(f"{url}/api/v1/calls/{cid}")
                        roles = [m.get("role") for m in resp.json().get("transcript", [])]
                        turns = roles.count("user")
                        replied = turns >= 1 and roles[-1] == "assistant"
                    await asyncio.sleep(0.3)
            await asyncio.sleep(0.5)
            sent_at = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            ended = asyncio.ensure_future(call.ended.wait())
            exited = asyncio.ensure_future(proc.wait())
            await asyncio.wait({ended, exited}, timeout=90, return_when=asyncio.ALL_COMPLETED)
            exit_s = time.monotonic() - sent_at if exited.done() else None
            hung_up = call.state == "disconnected" and call.disconnect_reason == "app_hangup"
            reason = call.disconnect_reason or call.state
            ended.cancel()
            if call.state != "disconnected":
                call.hang_up_by_phone()  # the caller gives up on the dead air
            report: dict[str, Any] = {}
            with contextlib.suppress(Exception):
                report = await asyncio.wait_for(run, 15)
            if not run.done():
                run.cancel()
            sig_ms = (sent_at - connected_at) * 1000
            agent = [e for e in report.get("transcript", []) if e.get("speaker") == "agent"]
            goodbye = any((e.get("start_ms") or 0) > sig_ms for e in agent)
            saved: int | None = None
            if redis is not None:
                from callwright.sessions.store import build_store

                store = build_store(redis.url, prefix="callwright", ttl_seconds=3600)
                try:
                    doc = await store.load(cid)
                    saved = sum(1 for m in (doc or {}).get("history") or [] if m.get("role") == "user")
                finally:
                    await store.close()
            code = proc.returncode
    except Exception as exc:  # a stack that cannot start here is reported, not fatal to the run
        return {"name": name, "ok": None, "outcome": f"not available: {type(exc).__name__}: {exc}"[:300]}
    ok = bool(hung_up and goodbye and exit_s is not None and exit_s < 60 and (saved is None or saved >= turns >= 1))
    return {
        "name": name,
        "ok": ok,
        "outcome": (f"exit {code} after {exit_s:.1f} s" if exit_s is not None else "process still running after 90 s")
        + ("; goodbye heard" if goodbye else "; no goodbye heard")
        + (f"; call hung up by the server ({reason})" if hung_up else f"; caller left in dead air (call end: {reason})")
        + (f"; {saved} of {turns} user turns in Redis" if saved is not None else "; no Redis to check"),
        "exit_code": code,
        "exit_s": None if exit_s is None else round(exit_s, 1),
        "goodbye_heard": goodbye,
        "agent_utterances_before_after": [
            sum(1 for e in agent if (e.get("start_ms") or 0) <= sig_ms),
            sum(1 for e in agent if (e.get("start_ms") or 0) > sig_ms),
        ],
        "hung_up_by_server": hung_up,
        "user_turns_before": turns,
        "user_turns_saved": saved,
        "shutdown_grace_s": SIGTERM_GRACE_S,
    }


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


# ---- the run -----------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _maybe_redis(workdir: Path) -> AsyncIterator[LocalRedis | None]:
    if shutil.which("redis-server") is None:
        yield None
        return
    redis = LocalRedis(workdir, persistent=True)
    await asyncio.to_thread(redis.start)
    try:
        yield redis
    finally:
        await asyncio.to_thread(redis.stop)


async def run_robustness(plan: RobustnessPlan, note: Note, *, log_dir: Path | None = None) -> dict[str, Any]:
    from callwright.localstack import local_stack

    log_dir = log_dir or Path(tempfile.mkdtemp(prefix="callwright-robustness-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    out: dict[str, Any] = {"plan": plan.__dict__.copy(), "artifacts_dir": str(log_dir)}
    speech = await asyncio.to_thread(_build_speech)
    if speech is None:
        note("flite is not installed: media sockets are sent but deaf calls cannot be checked")
    server_log = _ServerLog(log_dir / "server-errors.log")
    parked: list[Any] = []
    async with _maybe_redis(log_dir) as redis:
        pool = str(max(plan.media_workers, 6) * 2 + 20)
        overrides: dict[str, Any] = {
            "stt_engine": "instant", "tts_engine": "instant", "instant_stt_transcript": TRANSCRIPT,
            "stt_pool_size": pool, "tts_pool_size": pool, "log_level": "WARNING",
        }  # fmt: skip
        if redis is not None:
            overrides["redis_url"] = redis.url
        note(f"starting the stack (store: {'redis' if redis else 'memory'}, instant STT/TTS, real VAD)")
        async with local_stack(**overrides) as stack:
            with _quiet_console(server_log):
                surfaces: dict[str, Any] = {}
                phase = time.monotonic()
                surfaces["media"] = await media_surface(stack, plan, speech, note)
                heard = surfaces["media"].pop("heard_call_ids")
                surfaces["media"]["wall_s"] = round(time.monotonic() - phase, 1)
                if plan.realtime_calls:
                    surfaces["media"]["realtime_load"] = await _realtime_load(stack, plan, note)
                phase = time.monotonic()
                surfaces["webhook"] = await webhook_surface(stack, plan, note)
                surfaces["webhook"]["with_checks_s"] = round(time.monotonic() - phase, 1)
                phase = time.monotonic()
                surfaces["tokens"] = await token_surface(stack, plan, note)
                surfaces["tokens"]["wall_s"] = round(time.monotonic() - phase, 1)
                out["surfaces"] = surfaces
                whole = surfaces["webhook"]["after"]["whole_call"]
                known = heard + ([whole["call_id"]] if whole.get("call_id") else [])
                faults: list[dict[str, Any]] = []
                for variant in ("refused", "blackhole"):
                    if f"acs_{variant}" in plan.faults:
                        faults.append(await fault_acs_unreachable(stack, plan, variant, note, parked))
                if "redis_restart" in plan.faults:
                    faults.append(await fault_redis_restart(stack, redis, plan, note))
                note("lost transcripts: every call with turns, memory vs store")
                out["lost_transcripts"] = await lost_transcripts(stack, known)
                for temp in parked:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(temp.close(), 5)
        if "sigterm" in plan.faults:
            faults.append(await fault_sigterm(redis, note, log_dir))
    out["faults"] = faults
    out["server_log"] = {"errors": server_log.top("ERROR"), "warnings": server_log.top("WARNING"),
                         "file": str(server_log.path)}  # fmt: skip
    out["wall_s"] = round(time.monotonic() - t0, 1)
    out["summary"] = summary(out)
    return out


def summary(r: dict[str, Any]) -> dict[str, Any]:
    """The figures the issue says must be 0, and whether they are."""
    s = r["surfaces"]
    m, w, k = s["media"], s["webhook"], s["tokens"]
    after = w["after"]
    still = (after.get("health", {}).get("status") == 200 and after.get("calls_api", {}).get("status") == 200
             and bool(after.get("whole_call", {}).get("ok")))  # fmt: skip
    rows = {
        "media_http_5xx": m["http_5xx"],
        "media_abnormal_closes": m["abnormal_closes"],
        "media_deaf_calls": m["deaf_calls"],
        "webhook_http_5xx": w["http_5xx"],
        "webhook_dropped": w["dropped"],
        "token_http_5xx": k["http_5xx"],
        "forgeries_accepted": k["forgeries_accepted"],
        "lost_transcripts": r["lost_transcripts"]["lost"],
    }
    return {
        "zero_targets": {key: {"value": v, "met": None if v is None else v == 0} for key, v in rows.items()},
        "still_serving_after_webhook_attack": still,
        "faults_ok": {f["name"]: f.get("ok") for f in r.get("faults", [])},
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m callwright.bench.robustness [--size full|reduced|tiny] [--json] [--out F] [--markdown F]``."""
    import argparse

    from rich.console import Console

    from callwright.bench.report import render_robustness, robustness_markdown, stamp

    p = argparse.ArgumentParser(prog="python -m callwright.bench.robustness", description=main.__doc__)
    p.add_argument("--size", choices=("full", "reduced", "tiny"), default="full")
    p.add_argument("--json", action="store_true", help="print the results alone, as one JSON object")
    p.add_argument("--out", type=Path, help="also write the JSON results here")
    p.add_argument("--markdown", type=Path, help="also write the Markdown section here")
    args = p.parse_args(argv)
    err = Console(stderr=True)
    plans = {"full": RobustnessPlan.full, "reduced": RobustnessPlan.reduced, "tiny": RobustnessPlan.tiny}
    result = stamp({"size": args.size, "robustness": asyncio.run(
        run_robustness(plans[args.size](), lambda m: err.print(f"[dim]·[/] {m}", highlight=False)))})  # fmt: skip
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(robustness_markdown(result), encoding="utf-8")
    if args.json:
        sys.stdout.write(json.dumps(result) + "\n")
    else:
        render_robustness(Console(), result["robustness"])
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
