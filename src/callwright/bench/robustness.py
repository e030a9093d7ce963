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

Layout: this module holds the plan, the run and the command line; each surface lives beside it
(``robustness_media``, ``_webhook``, ``_tokens``, ``_faults``, shared pieces in ``_common``, inputs in ``_inputs``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from callwright.bench.robustness_common import TRANSCRIPT, Note, _build_speech
from callwright.bench.robustness_faults import (
    fault_acs_unreachable,
    fault_redis_restart,
    fault_sigterm,
    lost_transcripts,
)
from callwright.bench.robustness_media import _realtime_load, media_surface
from callwright.bench.robustness_tokens import token_surface
from callwright.bench.robustness_webhook import post_bodies, webhook_surface
from callwright.localredis import LocalRedis

# Re-exported: callers (the command, the tests) import these from here.
__all__ = [
    "RobustnessPlan",
    "fault_acs_unreachable",
    "fault_redis_restart",
    "fault_sigterm",
    "lost_transcripts",
    "main",
    "media_surface",
    "post_bodies",
    "run_robustness",
    "summary",
    "token_surface",
    "webhook_surface",
]


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


# ---- the server's log during the run ------------------------------------------------------------------


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
