"""``callwright serve --workers N``: N replicas of the server on one host:port, one process each.

Why processes: one replica is one event loop behind one GIL, which caps it well below what the machine's
cores can carry (issue 12 measured ~20 embedded calls on 2 cores, fewer under load). N worker processes
use N cores; they share calls through Redis exactly like replicas on different machines.

How they share the port: every worker binds its own listening socket with ``SO_REUSEPORT`` and hands it to
uvicorn (``server.run(sockets=[sock])``), so the kernel spreads new connections over the workers. A
worker that dies takes only its own accept queue with it; a restarted worker binds again. All of
:mod:`callwright.serving` still applies inside each worker (bounded edges, the call-aware drain).

The supervisor (this module's :func:`run_serve`, the ``callwright serve`` process itself):

- with no ``REDIS_URL``, starts a local ``redis-server`` (loopback, append-only file in ``--redis-dir``
  or a temporary folder) and restarts it on the same port and folder if it dies, so the workers' state
  survives; it stops it last, once every worker has saved its sessions;
- gives each worker ``REPLICA_ID=<base>-w<i>`` (``<base>`` = ``REPLICA_ID`` or ``<hostname>-<pid>``). A
  worker restarted after a crash gets a new id (``<base>-w<i>-r<n>``): reusing the dead worker's id
  would refresh its heartbeat and hide from the other replicas that its calls need taking over;
- restarts a worker that exits unexpectedly after a back-off (0.5 s doubling to 30 s; reset once a
  worker has run 60 s); a worker that keeps failing at start (5 times in a row) stops the whole server
  with exit code 1, since a bad configuration will not heal by retrying;
- forwards SIGTERM/SIGINT to every worker (each drains as a single server does); a second signal is
  forwarded too (each worker then skips its drain). It exits when every worker has, with 0 when all
  exited cleanly.

Workers run in their own process groups, so a terminal's Ctrl-C reaches only the supervisor (which
forwards it once) rather than every worker twice, and they get SIGTERM if the supervisor dies.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

log = logging.getLogger("callwright.workers")

WORKER_INDEX_ENV = "CALLWRIGHT_WORKER_INDEX"
BACKOFF_START_S = 0.5
BACKOFF_MAX_S = 30.0
STABLE_AFTER_S = 60.0  # a worker up this long is healthy: its next crash starts the back-off afresh
MAX_QUICK_FAILURES = 5
POLL_S = 0.2
LISTEN_BACKLOG = 2048
_PR_SET_PDEATHSIG = 1


def usable_cores() -> int:
    """Cores this process may use: its CPU affinity, capped by a cgroup CPU quota (a container's limit)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    with contextlib.suppress(OSError, ValueError, IndexError):
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    return max(1, cores)


def default_workers(redis_url: str | None) -> int:
    """One per usable core when Redis is configured; 1 otherwise (a single server, as before workers)."""
    return usable_cores() if redis_url else 1


def base_replica_id(configured: str | None) -> str:
    return configured or f"{socket.gethostname()}-{os.getpid()}"


def check_port_free(host: str, port: int) -> None:
    """Raise OSError with a clear message if something already listens on host:port.

    Checked without SO_REUSEPORT on purpose: the workers' own option would let them silently share the
    port with another server started the same way.
    """
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise OSError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror}") from None


def reuseport_socket(host: str, port: int, *, listen: bool = True) -> socket.socket:
    """A socket on host:port that other workers may bind too (the kernel balances connections between the
    listening ones). ``listen=False``: bound only; asyncio's server listens once the app has started, so a
    worker still loading its models (or restarting) is handed no connections meanwhile."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        if listen:
            sock.listen(LISTEN_BACKLOG)
    except BaseException:
        sock.close()
        raise
    return sock


# -- the worker process -----------------------------------------------------------------------------


def run_worker(host: str, port: int) -> int:
    """One worker: the normal app on its own SO_REUSEPORT socket (``python -m callwright.scale.workers``)."""
    from callwright.app import create_app
    from callwright.config import load_settings
    from callwright.logs import configure_logging
    from callwright.serving import ServerLimits, build_server

    sock = reuseport_socket(host, port, listen=False)  # uvicorn listens after the lifespan started
    settings = load_settings()
    server = build_server(create_app(settings), host=host, port=port, limits=ServerLimits.from_settings(settings))
    # uvicorn re-raises the exit signal after a clean shutdown (so a lone server dies "by SIGTERM"); with
    # these no-op handlers restored under it, a worker that drained and stopped exits 0 instead, which is
    # how the supervisor tells a clean stop from a crash.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    configure_logging(settings)
    log.info(
        "worker %s (REPLICA_ID %s, pid %d) starting on %s:%d",
        os.environ.get(WORKER_INDEX_ENV, "?"),
        os.environ.get("REPLICA_ID", "?"),
        os.getpid(),
        host,
        port,
    )
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    return 0 if server.started else 3  # 3: uvicorn's code for a start-up failure (the lifespan failed)


_EXIT_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def _worker_preexec() -> None:
    """In the forked child before exec: SIGTERM (drain) when the supervisor dies, however it died; and the
    exit signals the supervisor blocked around the fork unblocked again (a signal mask survives exec)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _EXIT_SIGNALS)


# -- the supervisor ---------------------------------------------------------------------------------


@dataclass
class Worker:
    index: int
    base_id: str
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0
    quick_failures: int = 0
    restart_at: float | None = None
    backoff: float = BACKOFF_START_S
    exit_codes: list[int] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"w{self.index}"

    @property
    def replica_id(self) -> str:
        rid = f"{self.base_id}-w{self.index}"
        return rid if self.restarts == 0 else f"{rid}-r{self.restarts}"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def _clean_exit(code: int) -> bool:
    return code in (0, -signal.SIGTERM, -signal.SIGINT)


class Supervisor:
    def __init__(
        self,
        host: str,
        port: int,
        workers: int,
        *,
        redis_url: str | None,
        redis_dir: Path | None,
        base_id: str,
    ) -> None:
        self.host = host
        self.port = port
        self.workers = [Worker(i, base_id) for i in range(workers)]
        self.redis_url = redis_url
        self.redis_dir = redis_dir
        self.redis: object | None = None  # LocalRedis, imported lazily
        self._made_redis_dir: Path | None = None
        self._redis_retry_at = 0.0
        self._redis_backoff = BACKOFF_START_S
        self.signals_received = 0
        self.failed = False

    # -- signals -----------------------------------------------------------------------------------
    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        self.signals_received += 1
        name = signal.Signals(sig).name
        if self.signals_received == 1:
            log.warning("%s: forwarding to %d workers (each drains its calls)", name, len(self.workers))
        else:
            log.warning("%s again: forwarding (workers skip what is left of their drain)", name)
        self._forward(sig)

    def _forward(self, sig: int) -> None:
        for w in self.workers:
            if w.alive and w.proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    w.proc.send_signal(sig)

    @property
    def stopping(self) -> bool:
        return self.signals_received > 0 or self.failed

    # -- redis -------------------------------------------------------------------------------------
    def _start_redis(self) -> str:
        from callwright.localredis import LocalRedis

        folder = self.redis_dir
        if folder is None:
            folder = self._made_redis_dir = Path(tempfile.mkdtemp(prefix="callwright-redis-"))
        folder.mkdir(parents=True, exist_ok=True)
        redis = LocalRedis(folder, persistent=True)
        redis.start()
        self.redis = redis
        log.warning("no REDIS_URL: started a local redis-server for the workers at %s (data in %s)", redis.url, folder)
        return redis.url

    def _watch_redis(self, now: float) -> None:
        redis = self.redis
        proc = getattr(redis, "proc", None)
        if redis is None or proc is None or proc.poll() is None or now < self._redis_retry_at:
            return
        log.error("the local redis-server exited (code %s): restarting it on the same port and data", proc.returncode)
        try:
            redis.start()  # type: ignore[attr-defined]
            self._redis_backoff = BACKOFF_START_S
        except Exception as exc:
            log.error("restarting the local redis-server failed: %s (retrying in %.1f s)", exc, self._redis_backoff)
            self._redis_retry_at = time.monotonic() + self._redis_backoff
            self._redis_backoff = min(self._redis_backoff * 2, BACKOFF_MAX_S)

    def _stop_redis(self) -> None:
        if self.redis is not None:
            self.redis.stop()  # type: ignore[attr-defined]
            self.redis = None
        if self._made_redis_dir is not None:
            shutil.rmtree(self._made_redis_dir, ignore_errors=True)

    # -- workers -----------------------------------------------------------------------------------
    def _spawn(self, w: Worker, redis_url: str) -> None:
        env = dict(os.environ)
        env.update({"REDIS_URL": redis_url, "REPLICA_ID": w.replica_id, WORKER_INDEX_ENV: w.name})
        cmd = [sys.executable, "-m", "callwright.scale.workers", "--host", self.host, "--port", str(self.port)]
        # A SIGTERM arriving while the worker is being created is held until w.proc is set, so the handler
        # forwards it to this worker too. preexec_fn is safe: the supervisor runs no threads.
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, _EXIT_SIGNALS)
        try:
            w.proc = subprocess.Popen(
                cmd, env=env, stdin=subprocess.DEVNULL, process_group=0, preexec_fn=_worker_preexec
            )
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        w.started_at = time.monotonic()
        w.restart_at = None
        log.info("started worker %s (REPLICA_ID %s, pid %d)", w.name, w.replica_id, w.proc.pid)

    def _reap(self, w: Worker, now: float) -> None:
        """A worker exited while the server was not stopping: schedule its restart (or give up)."""
        assert w.proc is not None
        code = w.proc.returncode
        w.exit_codes.append(code)
        lived = now - w.started_at
        if lived >= STABLE_AFTER_S:
            w.backoff, w.quick_failures = BACKOFF_START_S, 0
        w.quick_failures += 1
        w.proc = None
        if w.quick_failures >= MAX_QUICK_FAILURES:
            log.error(
                "worker %s exited with code %s %d times in a row within %g s of starting: giving up, stopping the "
                "server (check the configuration and the log above)",
                w.name, code, w.quick_failures, STABLE_AFTER_S,
            )  # fmt: skip
            self.failed = True
            self._forward(signal.SIGTERM)
            return
        log.error(
            "worker %s (REPLICA_ID %s) exited unexpectedly with code %s after %.1f s: restarting it in %.1f s",
            w.name, w.replica_id, code, lived, w.backoff,
        )  # fmt: skip
        w.restart_at = now + w.backoff
        w.backoff = min(w.backoff * 2, BACKOFF_MAX_S)
        w.restarts += 1

    def run(self) -> int:
        check_port_free(self.host, self.port)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            redis_url = self.redis_url or self._start_redis()
            for w in self.workers:
                if not self.stopping:  # a signal during the start: nothing to spawn (it would not be told)
                    self._spawn(w, redis_url)
            while True:
                now = time.monotonic()
                for w in self.workers:
                    if w.proc is not None and w.proc.poll() is not None:
                        if self.stopping:
                            w.exit_codes.append(w.proc.returncode)
                            log.info("worker %s exited (code %s)", w.name, w.proc.returncode)
                            w.proc = None
                        else:
                            self._reap(w, now)
                    elif w.proc is None and w.restart_at is not None and not self.stopping and now >= w.restart_at:
                        self._spawn(w, redis_url)
                if self.stopping and not any(w.alive for w in self.workers):
                    break
                self._watch_redis(now)
                time.sleep(POLL_S)
        finally:
            # Only reached with workers alive on an unexpected error here: do not leave them behind.
            for w in self.workers:
                if w.alive and w.proc is not None:
                    w.proc.terminate()
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        w.proc.wait(timeout=60)
                    if w.proc.poll() is None:
                        w.proc.kill()
            self._stop_redis()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if self.failed:
            return 1
        last = [w.exit_codes[-1] for w in self.workers if w.exit_codes]
        clean = all(_clean_exit(code) for code in last)
        log.warning("all workers stopped%s", "" if clean else f" (exit codes {last})")
        return 0 if clean else 1


def run_serve(host: str, port: int, workers: int | None, redis_dir: Path | None) -> int:
    """``callwright serve``: one server in this process (``--workers 1``, as ever) or a supervisor of N."""
    from callwright.config import load_settings

    settings = load_settings()
    n = workers if workers is not None else default_workers(settings.redis_url)
    if n <= 1:
        from callwright.app import create_app
        from callwright.serving import ServerLimits, build_server

        server = build_server(create_app(settings), host=host, port=port, limits=ServerLimits.from_settings(settings))
        server.run()
        return 0
    from callwright.logs import configure_logging

    configure_logging(settings)
    supervisor = Supervisor(
        host,
        port,
        n,
        redis_url=settings.redis_url,
        redis_dir=redis_dir,
        base_id=base_replica_id(settings.replica_id),
    )
    try:
        return supervisor.run()
    except OSError as exc:
        log.error("%s", exc)
        return 1


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="one worker of `callwright serve --workers N` (internal)")
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    return run_worker(args.host, args.port)


if __name__ == "__main__":
    sys.exit(main())
