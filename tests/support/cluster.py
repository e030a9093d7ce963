"""Several real ``callwright serve`` processes on Redis behind a real HAProxy, dialled by the emulator.

The same wiring as :func:`callwright.localstack.local_stack`, but every replica is its own process
(``python -m callwright.cli serve``, env ``REPLICA_ID=r0, r1, ...`` and a shared ``REDIS_URL``) and
ACS — the emulator in this process — only knows the load balancer: the callback URL, the media
WebSocket's URL and the Event Grid webhook all point at HAProxy, which round-robins every request with
no stickiness. So a call's webhook events, API requests and media socket land on different replicas.

Usage::

    async with cluster(tmp_path, replicas=2, env={"STT_ENGINE": "instant", ...}) as c:
        report = await c.call(SCRIPT)                 # like LocalStack.call (inbound, or outbound via the API)
        phone, call = await c.place(SCRIPT)           # a call left running: await phone.run(call) yourself
        c.kill("r0")                                  # SIGKILL (or c.kill("r0", signal.SIGTERM))
        await c.wait_exit("r0", 60)                   # its exit code
        await c.restart("r0")                         # same port and LB slot, REPLICA_ID "r0-r1"
        c.replica("r1").log_text()                    # its stderr/stdout (log lines)
        c.lb.servers_for("/api/v1/call-events")       # which replica took each webhook delivery
        c.redis_url, c.url, c.operator_headers, c.emulator
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import sys
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from callwright.emulator.service import Emulator
from callwright.localredis import LocalRedis
from callwright.localstack import free_port
from callwright.security.keys import hash_key, new_key
from support.haproxy import HAProxy

# Cheap engines for tests that are not about understanding: the caller's words are taken as given
# (instant STT), the agent speaks with espeak so the phone can still hear and transcribe it.
CHEAP_ENGINES: dict[str, str] = {
    "STT_ENGINE": "instant",
    "INSTANT_STT_TRANSCRIPT": "what are your opening hours",
    "STT_POOL_WARM": "0",
    "TTS_POOL_WARM": "1",
}

START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 45.0


class ClusterError(RuntimeError):
    """A replica did not start or answered badly; the message names it and its log."""


@dataclass
class Replica:
    name: str
    port: int
    log_path: Path
    env: dict[str, str]
    serve_args: list[str] = field(default_factory=list)
    process: asyncio.subprocess.Process | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    @property
    def replica_id(self) -> str:
        """Its REPLICA_ID now: the name at first, ``<name>-r<n>`` after the n-th restart (a restarted replica
        is a new one, so the calls the old process held are seen as orphaned and taken over)."""
        return self.name if self.starts <= 1 else f"{self.name}-r{self.starts - 1}"

    async def start(self) -> None:
        self.starts += 1
        cmd = [sys.executable, "-m", "callwright.cli", "serve", "--port", str(self.port), *self.serve_args]
        with self.log_path.open("ab") as log_file:
            log_file.write(f"--- start {self.starts} as {self.replica_id}: {' '.join(cmd[1:])}\n".encode())
            log_file.flush()
            self.process = await asyncio.create_subprocess_exec(
                *cmd,
                env={**self.env, "REPLICA_ID": self.replica_id},
                cwd=self.log_path.parent,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                start_new_session=True,  # a Ctrl-C on the test run is not also a SIGINT to every replica
            )

    async def wait_ready(self, http: httpx.AsyncClient, timeout: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if not self.running:
                code = self.process.returncode if self.process else None
                raise ClusterError(f"replica {self.name} exited ({code}) while starting:\n{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                resp = await http.get(f"{self.url}/ready")
                if resp.status_code == 200:
                    return
                last = f"{resp.status_code} {resp.text[:200]}"
            await asyncio.sleep(0.2)
        raise ClusterError(f"replica {self.name} not ready within {timeout:g} s (last: {last}):\n{self.log_tail()}")

    def signal(self, sig: int) -> None:
        if self.running and self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(sig)

    async def wait_exit(self, timeout: float) -> int | None:
        if self.process is None:
            return None
        return await asyncio.wait_for(self.process.wait(), timeout)

    async def stop(self, timeout: float = STOP_TIMEOUT_S) -> int | None:
        """SIGTERM (the drain), then SIGKILL if it is not gone within ``timeout``."""
        if not self.running:
            return self.process.returncode if self.process else None
        self.signal(signal.SIGTERM)
        try:
            return await self.wait_exit(timeout)
        except TimeoutError:
            self.signal(signal.SIGKILL)
            return await self.wait_exit(15)


@dataclass
class Cluster:
    emulator: Emulator
    lb: HAProxy
    replicas: list[Replica]
    redis_url: str
    secret: str
    workdir: Path
    operator_key: str = ""
    _transcriber: Any = None

    @property
    def url(self) -> str:
        """The load balancer: what ACS and operators talk to."""
        return self.lb.url

    @property
    def operator_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.operator_key}"} if self.operator_key else {}

    @property
    def transcriber(self) -> Any:
        if self._transcriber is None:
            from callwright.emulator.phone.transcribe import AgentTranscriber

            self._transcriber = AgentTranscriber()  # one decoder for all the cluster's phones
        return self._transcriber

    def replica(self, name: str | int) -> Replica:
        if isinstance(name, int):
            return self.replicas[name]
        for r in self.replicas:
            if r.name == name:
                return r
        raise KeyError(f"no replica {name!r} (have {[r.name for r in self.replicas]})")

    def logs(self) -> dict[str, str]:
        return {r.name: r.log_text() for r in self.replicas}

    def kill(self, name: str | int, sig: int = signal.SIGKILL) -> None:
        self.replica(name).signal(sig)

    async def wait_exit(self, name: str | int, timeout: float = 60.0) -> int | None:
        return await self.replica(name).wait_exit(timeout)

    async def restart(self, name: str | int, *, wait_in_rotation: bool = True) -> None:
        r = self.replica(name)
        if r.running:
            await r.stop()
        await r.start()
        async with httpx.AsyncClient(timeout=5) as http:
            await r.wait_ready(http)
        if wait_in_rotation:
            await asyncio.to_thread(self.lb.wait_states, {r.name: "UP"}, 30)

    def _phone(self, script_text: str, record_dir: Path | None, transcribe: bool | None) -> Any:
        from callwright.emulator.phone import build_phone_from_script

        return build_phone_from_script(
            script_text, record_dir=record_dir, transcribe=transcribe, transcriber=self.transcriber
        )

    async def place(
        self, script_text: str, *, record_dir: Path | None = None, transcribe: bool | None = None
    ) -> tuple[Any, Any]:
        """Dial the cluster (inbound); returns (phone, call) once connected; run it with ``phone.run(call)``."""
        phone = self._phone(script_text, record_dir, transcribe)
        spec = phone.script
        call = await self.emulator.place_inbound_call(
            phone, from_number=spec.from_number or phone.number, to_number=spec.to_number or "+15550001000"
        )
        return phone, call

    async def call(
        self,
        script_text: str,
        *,
        record_dir: Path | None = None,
        transcribe: bool | None = None,
        timeout_s: float = 120.0,
    ) -> dict[str, Any]:
        """Run one scripted call to its end (inbound, or outbound placed through the LB's API)."""
        phone = self._phone(script_text, record_dir, transcribe)
        spec = phone.script
        if spec.direction == "outbound":
            return await self._outbound(phone, timeout_s)
        call = await self.emulator.place_inbound_call(
            phone, from_number=spec.from_number or phone.number, to_number=spec.to_number or "+15550001000"
        )
        return dict(await asyncio.wait_for(phone.run(call), timeout_s))

    async def _outbound(self, phone: Any, timeout_s: float) -> dict[str, Any]:
        self.emulator.register_phone(phone.number, phone, phone.outbound_behaviour)
        try:
            waiter = self.emulator.expect_outbound_call(phone.number)
            async with httpx.AsyncClient(timeout=30) as http:
                resp = await http.post(
                    f"{self.url}/api/v1/calls", json={"target": phone.number}, headers=self.operator_headers
                )
                resp.raise_for_status()
            call = await asyncio.wait_for(waiter, timeout_s)
            if phone.outbound_behaviour.outcome != "answer":
                await call.ended.wait()
                return {"ok": True, "call_id": call.call_connection_id, "events": list(call.events_sent)}
            await call.connected.wait()
            return dict(await asyncio.wait_for(phone.run(call), timeout_s))
        finally:
            self.emulator.unregister_phone(phone.number)


def replica_env(
    base: Mapping[str, str], *, name: str, redis_url: str, emulator: Emulator, lb_url: str, secret: str, spill: Path
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "REPLICA_ID")}
    env.update({"LOG_LEVEL": "INFO", "SHUTDOWN_GRACE_SECONDS": "2", "SESSION_SPILL_DIR": str(spill)})
    env.update(base)
    env.update(
        {
            "REPLICA_ID": name,
            "REDIS_URL": redis_url,
            "ACS_CONNECTION_STRING": emulator.connection_string,
            # ACS reaches the replicas only through the load balancer, for callbacks and media alike.
            "ACS_CALLBACK_URL": lb_url,
            "ACS_JWT_AUDIENCE": emulator.resource_id,
            "ACS_OPENID_CONFIG_URL": emulator.openid_config_url,
            "EVENTGRID_SECRET": secret,
        }
    )
    return env


@contextlib.asynccontextmanager
async def cluster(
    workdir: Path,
    replicas: int | Sequence[str] = 2,
    *,
    env: Mapping[str, str] | None = None,
    redis_url: str | None = None,
    serve_args: Sequence[str] = (),
    check_interval_ms: int = 500,
) -> AsyncIterator[Cluster]:
    """Start Redis (unless ``redis_url``), the emulator, the replicas and HAProxy; stop all of it (bounded).

    ``env`` adds settings for every replica (defaults: :data:`CHEAP_ENGINES`, LOG_LEVEL INFO, a 2 s
    shutdown grace); ``serve_args`` are extra ``callwright serve`` options (e.g. ``["--workers", "2"]``).
    """
    names = [f"r{i}" for i in range(replicas)] if isinstance(replicas, int) else list(replicas)
    await asyncio.to_thread((workdir / "redis").mkdir, parents=True, exist_ok=True)
    redis: LocalRedis | None = None
    if redis_url is None:
        redis = LocalRedis(workdir / "redis", persistent=True)
        await asyncio.to_thread(redis.start)
        redis_url = redis.url
    secret = secrets.token_urlsafe(16)
    key = new_key() if "OPERATOR_API_KEYS" not in (env or {}) else ""
    base = {**CHEAP_ENGINES, **(env or {})}
    if key:
        base["OPERATOR_API_KEYS"] = f"operator:{hash_key(key)}"
    members: list[Replica] = []
    try:
        async with Emulator() as emulator:
            ports = {name: free_port() for name in names}
            lb = HAProxy(
                {name: f"http://127.0.0.1:{port}" for name, port in ports.items()},
                workdir / "haproxy",
                check_interval_ms=check_interval_ms,
            )
            for name in names:
                spill = workdir / f"spill-{name}"
                members.append(
                    Replica(
                        name=name,
                        port=ports[name],
                        log_path=workdir / f"replica-{name}.log",
                        env=replica_env(
                            base,
                            name=name,
                            redis_url=redis_url,
                            emulator=emulator,
                            lb_url=lb.url,
                            secret=secret,
                            spill=spill,
                        ),
                        # One process per replica unless asked: serve's default with REDIS_URL is one per core.
                        serve_args=list(serve_args) if "--workers" in serve_args else ["--workers", "1", *serve_args],
                    )
                )
            try:
                for r in members:
                    await r.start()
                async with httpx.AsyncClient(timeout=5) as http:
                    await asyncio.gather(*(r.wait_ready(http) for r in members))
                async with lb:
                    await lb.wait_up(30)
                    emulator.webhook_url = f"{lb.url}/api/v1/call-events?secret={secret}"
                    yield Cluster(
                        emulator=emulator, lb=lb, replicas=members, redis_url=redis_url, secret=secret,
                        workdir=workdir, operator_key=key,
                    )  # fmt: skip
                    # Replicas stop while the LB still routes: a draining replica's last callbacks get in.
                    await asyncio.gather(*(r.stop() for r in members), return_exceptions=True)
            finally:
                await asyncio.gather(*(r.stop() for r in members), return_exceptions=True)
    finally:
        if redis is not None:
            await asyncio.to_thread(redis.stop)
