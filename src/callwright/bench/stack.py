"""The emulator (with its virtual phones) in this process, the Callwright server in a child process.

Timing is measured by the phones, tick by tick; sharing one interpreter (one GIL) with the server's
recognition threads would delay the phones' own clocks and blur every figure, so the benchmark and the
demo keep the two apart. The server is configured exactly as for real ACS — connection string, callback
URL, JWT audience, OpenID URL, Event Grid secret — with values pointing at the emulator.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from callwright.emulator.phone import build_phone_from_script
from callwright.emulator.service import Emulator
from callwright.localstack import free_port
from callwright.security.keys import hash_key, new_key

_CLK_TCK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


class StackError(RuntimeError):
    """The server could not be started or answered badly; the message says what and where its log is."""


@dataclass(frozen=True, slots=True)
class ProcSample:
    """One reading of a process from /proc: resident memory, CPU seconds used so far, threads."""

    at: float
    rss_mb: float
    cpu_s: float
    threads: int


def proc_sample(pid: int) -> ProcSample:
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        # The command name may contain spaces; fields after the closing parenthesis are fixed.
        fields = f.read().rsplit(")", 1)[1].split()
    utime, stime, threads, rss_pages = int(fields[11]), int(fields[12]), int(fields[17]), int(fields[21])
    return ProcSample(time.monotonic(), rss_pages * _PAGE / 2**20, (utime + stime) / _CLK_TCK, threads)


@dataclass
class SplitStack:
    emulator: Emulator
    process: asyncio.subprocess.Process
    url: str
    log_path: Path
    http: httpx.AsyncClient
    # The operator API key this stack made (``http`` already sends it); "" when settings_env set the keys.
    operator_key: str = ""

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def operator_headers(self) -> dict[str, str]:
        """Headers for a request to the operator API made with another client than ``http``."""
        return {"Authorization": f"Bearer {self.operator_key}"} if self.operator_key else {}

    def sample(self) -> ProcSample:
        return proc_sample(self.pid)

    async def introspect(self, *, objects: bool = False, trim: bool = False) -> dict[str, Any]:
        params = {"objects": str(objects).lower(), "trim": str(trim).lower()}
        resp = await self.http.get(f"{self.url}/bench/introspect", params=params)
        resp.raise_for_status()
        return dict(resp.json())

    async def server_call(self, call_id: str) -> dict[str, Any] | None:
        """The server's view of a call (state and transcript so far), or None when unknown."""
        resp = await self.http.get(f"{self.url}/api/v1/calls/{call_id}")
        return dict(resp.json()) if resp.status_code == 200 else None

    async def place(self, script_text: str, *, record_dir: Path | None = None, transcribe: bool | None = None,
                    from_number: str | None = None) -> tuple[Any, Any]:  # fmt: skip
        """Dial the server with a scripted phone; returns (phone, call) once the call is connected."""
        phone = build_phone_from_script(script_text, record_dir=record_dir, transcribe=transcribe)
        spec = phone.script
        call = await self.emulator.place_inbound_call(
            phone, from_number=from_number or spec.from_number, to_number=spec.to_number
        )
        return phone, call

    async def call(self, script_text: str, *, record_dir: Path | None = None, transcribe: bool | None = None,
                   from_number: str | None = None) -> dict[str, Any]:  # fmt: skip
        """Run one scripted inbound call to its end and return the phone's report (never raises for a
        failed call: the report says ``ok: false`` and why)."""
        try:
            phone, call = await self.place(
                script_text, record_dir=record_dir, transcribe=transcribe, from_number=from_number
            )
        except Exception as exc:  # refused, unanswered: a failed call, reported like any other
            return {"ok": False, "error": f"call not connected: {type(exc).__name__}: {exc}", "turns": [],
                    "barge_ins": [], "false_barge_in_probes": [], "gaps": {"count": 0, "total_ms": 0.0}}  # fmt: skip
        return dict(await phone.run(call))

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


async def _wait_ready(http: httpx.AsyncClient, url: str, process: asyncio.subprocess.Process, log: Path) -> None:
    deadline = time.monotonic() + 90
    last = "no answer"
    while time.monotonic() < deadline:
        if process.returncode is not None:
            raise StackError(f"the server exited with code {process.returncode} while starting (log: {log})")
        with contextlib.suppress(httpx.HTTPError):
            resp = await http.get(f"{url}/ready")
            if resp.status_code == 200:
                pools = resp.json().get("checks", {}).get("pools", {})
                # Warm engines first, so the first measured call does not pay for building them (pools
                # without a size, such as realtime connections, have nothing to warm).
                if all(p["size"] >= min(p.get("max_size", 0), 1) for p in pools.values() if "size" in p):
                    return
            last = f"{resp.status_code} {resp.text[:200]}"
        await asyncio.sleep(0.2)
    raise StackError(f"the server was not ready within 90 s (last /ready: {last}; log: {log})")


@contextlib.asynccontextmanager
async def split_stack(settings_env: dict[str, str] | None = None, *, log_dir: Path | None = None,
                      wrap: list[str] | None = None) -> AsyncIterator[SplitStack]:  # fmt: skip
    """Start the emulator here and the server as a child process configured by ``settings_env``
    (environment variable names, e.g. ``STT_ENGINE``). ``wrap`` prefixes the child's command line
    (a profiler such as ``py-spy record -o FILE --``)."""
    secret = secrets.token_urlsafe(16)
    async with Emulator() as emulator, httpx.AsyncClient(timeout=10) as http:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = dict(os.environ)
        env.update({"LOG_LEVEL": "WARNING", "REDIS_URL": ""})
        env.update(settings_env or {})
        key = ""
        if "OPERATOR_API_KEYS" not in (settings_env or {}):
            # The operator API (/metrics, /api/v1/calls/{id}) is locked without a key: this stack makes its
            # own and every request on ``http`` carries it.
            key = new_key()
            env["OPERATOR_API_KEYS"] = f"operator:{hash_key(key)}"
            http.headers["Authorization"] = f"Bearer {key}"
        env.update(
            {
                "ACS_CONNECTION_STRING": emulator.connection_string,
                "ACS_CALLBACK_URL": url,
                "ACS_JWT_AUDIENCE": emulator.resource_id,
                "ACS_OPENID_CONFIG_URL": emulator.openid_config_url,
                "EVENTGRID_SECRET": secret,
            }
        )
        if not env["REDIS_URL"]:
            env.pop("REDIS_URL")
        folder = log_dir or Path(tempfile.mkdtemp(prefix="callwright-bench-"))
        folder.mkdir(parents=True, exist_ok=True)
        log_path = folder / f"server-{port}.log"
        loop = os.environ.get("CALLWRIGHT_BENCH_LOOP", "auto")  # leak hunts: compare event loops
        cmd = [*(wrap or []), sys.executable, "-m", "callwright.bench.child", "--port", str(port), "--loop", loop]
        with log_path.open("wb") as log_file:
            process = await asyncio.create_subprocess_exec(
                *cmd, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=log_file, stderr=log_file
            )
        try:
            await _wait_ready(http, url, process, log_path)
            emulator.webhook_url = f"{url}/api/v1/call-events?secret={secret}"
            yield SplitStack(
                emulator=emulator, process=process, url=url, log_path=log_path, http=http, operator_key=key
            )
        finally:
            await _stop(process)


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGINT)  # uvicorn's graceful shutdown (and py-spy writes its profile)
    try:
        await asyncio.wait_for(process.wait(), timeout=20)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
