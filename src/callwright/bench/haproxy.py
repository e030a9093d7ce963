"""A real HAProxy (Debian's /usr/sbin/haproxy) on a free loopback port in front of several backends, for
the scale tests (``tests/support/haproxy.py`` re-exports it) and the scale bench.

Round-robin over every request, no sticky sessions (no cookie, no ``balance source``, no
``prefer-last-server``), HTTP mode with WebSocket upgrades tunnelled for as long as a call lasts. Each
backend is health-checked on ``GET /ready`` every 500 ms with ``fall 1 rise 1``, so a draining replica
(``/ready`` → 503) leaves the rotation within about a second and a restarted one returns as fast.
A request refused at connect time (a replica just killed) is retried on another server
(``retries`` + ``option redispatch``); nothing that reached a backend is retried.

Which backend served which request is known two ways:

- every response carries ``X-Served-By: <server name>`` (also the WebSocket's ``101``);
- HAProxy logs one line per request to ``<workdir>/haproxy.log`` (``log stdout`` while running in the
  foreground); :meth:`HAProxy.requests` parses it. WebSocket upgrades are logged as soon as the tunnel is
  set up (``option logasap``), not when the call ends.

Usage (sync or async)::

    async with HAProxy({"r0": url0, "r1": url1}, tmp_path) as lb:
        await lb.wait_up()                  # every server passed a health check (optional)
        httpx.get(f"{lb.url}/health")      # lb.ws_url for WebSockets
        lb.requests()                       # [Served(server="r0", method="GET", path="/health", status=200)]
        lb.servers_for("/api/v1/call-events")  # ["r0", "r1", ...] in order
        lb.server_states()                  # {"r0": "UP", "r1": "DOWN"}
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit

from callwright.localstack import free_port

HAPROXY_BINARY = "/usr/sbin/haproxy"
LOG_TAG = "CWLB"
SERVED_BY_HEADER = "X-Served-By"


class HAProxyUnavailable(RuntimeError):
    """haproxy is not installed (``./run.sh test`` installs it), or it did not start."""


@dataclass(frozen=True)
class Served:
    """One request as HAProxy logged it. ``server`` is ``<NOSRV>`` when no backend took it."""

    server: str
    method: str
    path: str
    status: int


def _backend_address(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "ws") or not parts.hostname or not parts.port:
        raise ValueError(f"backend URL must look like http://127.0.0.1:PORT, got {url!r}")
    return f"{parts.hostname}:{parts.port}"


def render_config(
    servers: Mapping[str, str],
    *,
    port: int,
    stats_port: int,
    health_path: str = "/ready",
    check_interval_ms: int = 500,
    tunnel_timeout_s: int = 3600,
) -> str:
    """The haproxy.cfg used here (also a readable example of the deployment's load balancer)."""
    ms = check_interval_ms
    intervals = f"inter {ms}ms fastinter {ms}ms downinter {ms}ms"
    server_lines = "\n".join(f"    server {name} {_backend_address(url)}" for name, url in servers.items())
    return f"""global
    log stdout format raw local0
    maxconn 4096
    # On loopback TCP, not a Unix socket: a test's tmp path can exceed the 107-byte limit of socket paths.
    stats socket ipv4@127.0.0.1:{stats_port} level admin

defaults
    mode http
    log global
    option logasap
    log-format "{LOG_TAG} %s %HM %HP %ST"
    option forwardfor
    option redispatch 1
    retries 3
    retry-on conn-failure empty-response
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout http-request 15s
    timeout client-fin 5s
    timeout server-fin 5s
    # A media WebSocket lives as long as its call.
    timeout tunnel {tunnel_timeout_s}s

frontend callwright
    bind 127.0.0.1:{port}
    default_backend replicas

backend replicas
    balance roundrobin
    option httpchk
    http-check send meth GET uri {health_path}
    http-check expect status 200
    default-server check {intervals} fall 1 rise 1
    http-response set-header {SERVED_BY_HEADER} %[srv_name]
{server_lines}
"""


class HAProxy:
    """Start with :meth:`start` / ``with`` / ``async with``; stopped (bounded) by :meth:`stop` or on exit."""

    def __init__(
        self,
        backends: Sequence[str] | Mapping[str, str],
        workdir: Path,
        *,
        port: int | None = None,
        health_path: str = "/ready",
        check_interval_ms: int = 500,
    ) -> None:
        if isinstance(backends, Mapping):
            self.servers: dict[str, str] = dict(backends)
        else:
            self.servers = {f"s{i}": url for i, url in enumerate(backends)}
        if not self.servers:
            raise ValueError("HAProxy needs at least one backend")
        self.workdir = Path(workdir)
        self.port = port or free_port()
        self.health_path = health_path
        self.check_interval_ms = check_interval_ms
        self.config_path = self.workdir / "haproxy.cfg"
        self.log_path = self.workdir / "haproxy.log"
        self.stats_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self, timeout: float = 15.0) -> None:
        binary = HAPROXY_BINARY if os.path.exists(HAPROXY_BINARY) else shutil.which("haproxy")
        if binary is None:
            raise HAProxyUnavailable("haproxy is not installed (./run.sh test installs it)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(
            render_config(
                self.servers,
                port=self.port,
                stats_port=self.stats_port,
                health_path=self.health_path,
                check_interval_ms=self.check_interval_ms,
            )
        )
        check = subprocess.run([binary, "-c", "-q", "-f", str(self.config_path)], capture_output=True, timeout=30)
        if check.returncode != 0:
            raise HAProxyUnavailable(f"haproxy rejected {self.config_path}: {check.stderr.decode(errors='replace')}")
        log = self.log_path.open("ab")
        try:
            # -db: foreground, so "log stdout" lands in the log file and the process is ours to signal.
            self.proc = subprocess.Popen([binary, "-db", "-f", str(self.config_path)], stdout=log, stderr=log)
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                text = self.log_path.read_text(errors="replace")[-2000:]
                self.proc = None
                raise HAProxyUnavailable(f"haproxy exited at start: {text}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.3):
                return
            time.sleep(0.05)
        self.stop()
        raise HAProxyUnavailable(f"haproxy did not listen on {self.port} within {timeout:g} s")

    def stop(self, timeout: float = 10.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)  # hard stop: the tests are done with it
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)

    def __enter__(self) -> HAProxy:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> HAProxy:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.to_thread(self.stop)

    # -- what it did -------------------------------------------------------------------------------
    def requests(self) -> list[Served]:
        """Every request HAProxy logged so far, in order (a line is written when the response starts)."""
        out: list[Served] = []
        if not self.log_path.exists():
            return out
        for line in self.log_path.read_text(errors="replace").splitlines():
            at = line.find(LOG_TAG + " ")
            if at < 0:
                continue
            parts = line[at + len(LOG_TAG) + 1 :].split(" ")
            if len(parts) < 4:
                continue
            status = int(parts[3]) if parts[3].lstrip("-").isdigit() else -1
            out.append(Served(server=parts[0], method=parts[1], path=parts[2], status=status))
        return out

    backend_of_requests = requests

    def servers_for(self, path_prefix: str, method: str | None = None) -> list[str]:
        """The servers that took the requests whose path starts with ``path_prefix``, in order."""
        return [
            r.server
            for r in self.requests()
            if r.path.startswith(path_prefix) and (method is None or r.method == method.upper())
        ]

    def admin(self, command: str, timeout: float = 5.0) -> str:
        """One command on HAProxy's stats socket (e.g. ``show stat``, ``disable server replicas/r0``)."""
        with socket.create_connection(("127.0.0.1", self.stats_port), timeout=timeout) as s:
            s.sendall(command.encode() + b"\n")
            chunks: list[bytes] = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode(errors="replace")

    def server_states(self) -> dict[str, str]:
        """``{server name: "UP" | "DOWN" | "MAINT" | ...}`` as the health checks see them now."""
        text = self.admin("show stat").lstrip("# ")
        rows = csv.DictReader(io.StringIO(text))
        return {
            row["svname"]: row["status"].split(" ")[0]
            for row in rows
            if row.get("pxname") == "replicas" and row.get("svname") not in ("FRONTEND", "BACKEND")
        }

    def wait_states(self, want: Mapping[str, str], timeout: float = 30.0) -> None:
        """Block until each named server is in the wanted state (e.g. ``{"r0": "DOWN"}``); bounded."""
        deadline = time.monotonic() + timeout
        states: dict[str, str] = {}
        while time.monotonic() < deadline:
            states = self.server_states()
            if all(states.get(name) == state for name, state in want.items()):
                return
            time.sleep(0.1)
        raise TimeoutError(f"HAProxy servers did not reach {dict(want)} within {timeout:g} s (now {states})")

    async def wait_up(self, timeout: float = 30.0) -> None:
        """Wait until every server passed its health check."""
        await asyncio.to_thread(self.wait_states, dict.fromkeys(self.servers, "UP"), timeout)
