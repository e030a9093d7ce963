"""``callwright serve --workers N`` as real processes: N workers on one port all take connections, a
killed worker is restarted by the supervisor, SIGTERM stops everything with exit code 0, and without
REDIS_URL a local redis-server is started for the workers and stopped at exit.

Which worker served a connection is read from the kernel, not from the app: the server side of a
loopback TCP connection (``/proc/net/tcp``) has a socket inode, and exactly one worker process holds
that inode among its file descriptors.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from callwright.emulator.service import Emulator
from callwright.localstack import free_port

pytestmark = pytest.mark.timeout(300)

STARTED = re.compile(r"started worker (w\d+) \(REPLICA_ID (\S+), pid (\d+)\)")
LOCAL_REDIS = re.compile(r"started a local redis-server for the workers at redis://127\.0\.0\.1:(\d+)/0")


@dataclass
class Served:
    proc: asyncio.subprocess.Process
    port: int
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def workers(self) -> dict[str, tuple[str, int]]:
        """{worker name: (REPLICA_ID, pid)} of the latest start of each worker, from the supervisor's log."""
        return {m[1]: (m[2], int(m[3])) for m in STARTED.finditer(self.log())}


async def _until(predicate, timeout: float, what: str, log: Served | None = None) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            tail = "\n".join(log.log().splitlines()[-30:]) if log else ""
            raise AssertionError(f"timed out waiting for {what}\n{tail}")
        await asyncio.sleep(0.2)


@contextlib.asynccontextmanager
async def serve(tmp_path: Path, extra_env: dict[str, str], *args: str) -> AsyncIterator[Served]:
    async with Emulator() as emulator:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "REPLICA_ID")}
        env.update(
            {
                "ACS_CONNECTION_STRING": emulator.connection_string,
                "ACS_CALLBACK_URL": f"http://127.0.0.1:{port}",
                "ACS_JWT_AUDIENCE": emulator.resource_id,
                "ACS_OPENID_CONFIG_URL": emulator.openid_config_url,
                "EVENTGRID_SECRET": "s3cret-for-workers",
                "STT_ENGINE": "instant",
                "STT_POOL_WARM": "0",
                "TTS_POOL_WARM": "0",
                "SHUTDOWN_GRACE_SECONDS": "1",
                "LOG_LEVEL": "INFO",
                **extra_env,
            }
        )
        log_path = tmp_path / "serve.log"
        with log_path.open("wb") as log_file:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "callwright.cli", "serve", "--port", str(port), *args,
                env=env, cwd=tmp_path, stdin=asyncio.subprocess.DEVNULL, stdout=log_file, stderr=log_file,
            )  # fmt: skip
        served = Served(proc, port, log_path)
        try:
            yield served
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(proc.wait(), 60)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
            for _, pid in served.workers().values():  # nothing left behind, even after a failure
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def _server_socket_inode(server_port: int, client_port: int) -> int | None:
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            next(f)
            for line in f:
                fields = line.split()
                local, remote, inode = fields[1], fields[2], int(fields[9])
                if int(local.rsplit(":", 1)[1], 16) == server_port and int(remote.rsplit(":", 1)[1], 16) == client_port:
                    return inode
    return None


def _holder(inode: int, pids: list[int]) -> int | None:
    target = f"socket:[{inode}]"
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                        return pid
    return None


def _who_serves(port: int, pids: list[int]) -> int | None:
    """GET /health on a fresh connection; the worker pid holding its server side (None: not found)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        head = s.recv(4096)
        assert head.startswith(b"HTTP/1.1 200"), head[:200]
        inode = _server_socket_inode(port, s.getsockname()[1])
        return _holder(inode, pids) if inode else None


def _listening(port: int, pids: list[int]) -> set[int]:
    """The processes among ``pids`` with a listening socket on ``port`` (a worker listens once started)."""
    inodes = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            next(f)
            for line in f:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.append(int(fields[9]))
    return {pid for pid in (_holder(i, pids) for i in inodes) if pid is not None}


async def _until_all_listen(srv: Served, n: int) -> list[int]:
    async def listening() -> bool:
        assert srv.proc.returncode is None, srv.log()
        pids = [pid for _, pid in srv.workers().values()]
        return len(pids) == n and await asyncio.to_thread(_listening, srv.port, pids) == set(pids)

    await _until(listening, 120, f"{n} workers listening", srv)
    return [pid for _, pid in srv.workers().values()]


async def _spread(port: int, pids: list[int], connections: int = 24) -> dict[int, int]:
    counts: dict[int, int] = {}
    for _ in range(connections):
        pid = await asyncio.to_thread(_who_serves, port, pids)
        if pid is not None:
            counts[pid] = counts.get(pid, 0) + 1
    return counts


async def _health(port: int) -> bool:
    try:
        async with httpx.AsyncClient(timeout=2) as http:
            return (await http.get(f"http://127.0.0.1:{port}/health")).status_code == 200
    except httpx.TransportError:
        return False


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


async def test_two_workers_share_the_port_a_killed_one_is_restarted_and_sigterm_stops_all(
    redis_server, tmp_path: Path
) -> None:
    env = {"REDIS_URL": redis_server.url, "REPLICA_ID": "box"}
    async with serve(tmp_path, env, "--workers", "2") as srv:
        pids = await _until_all_listen(srv, 2)
        workers = srv.workers()
        assert {name: rid for name, (rid, _) in workers.items()} == {"w0": "box-w0", "w1": "box-w1"}

        counts = await _spread(srv.port, pids)
        assert set(counts) == set(pids), counts  # both workers accepted connections on the one port

        # A worker killed outright is restarted, under a new REPLICA_ID (the dead one's calls get taken over).
        killed = workers["w1"][1]
        os.kill(killed, signal.SIGKILL)

        async def restarted() -> bool:
            now = srv.workers().get("w1")
            return now is not None and now[1] != killed and srv.log().count("starting on 127.0.0.1") >= 3

        await _until(restarted, 120, "worker w1 to be restarted", srv)
        await _until_all_listen(srv, 2)
        assert "worker w1 (REPLICA_ID box-w1) exited unexpectedly with code -9" in srv.log()
        assert srv.workers()["w1"][0] == "box-w1-r1"
        assert srv.proc.returncode is None  # the supervisor itself carried on
        new_pids = [pid for _, pid in srv.workers().values()]
        counts = await _spread(srv.port, new_pids)
        assert set(counts) == set(new_pids), counts

        srv.proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(srv.proc.wait(), 90)
        assert code == 0, srv.log()[-3000:]
        assert not any(_alive(pid) for pid in new_pids)
        assert "SIGTERM: forwarding to 2 workers" in srv.log()
        assert not await _health(srv.port)


async def test_two_workers_without_redis_url_run_a_local_redis_server_and_stop_it(tmp_path: Path) -> None:
    redis_dir = tmp_path / "redis-data"
    async with serve(tmp_path, {}, "--workers", "2", "--redis-dir", str(redis_dir)) as srv:
        await _until_all_listen(srv, 2)
        match = LOCAL_REDIS.search(srv.log())
        assert match, srv.log()
        redis_port = int(match[1])

        def ping() -> bytes:
            with socket.create_connection(("127.0.0.1", redis_port), timeout=5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16)

        assert (await asyncio.to_thread(ping)).startswith(b"+PONG")
        # The workers use it: each one's store is Redis (a worker's /ready says which kind it has).
        async with httpx.AsyncClient(timeout=5) as http:
            kinds = {
                (await http.get(f"http://127.0.0.1:{srv.port}/ready")).json()["checks"]["store"]["kind"]
                for _ in range(6)
            }
        assert kinds == {"redis"}
        assert any(redis_dir.rglob("*.aof*")) or (redis_dir / "appendonlydir").exists()  # persistent

        # Supervised: a redis-server that dies is started again on the same port.
        children = Path(f"/proc/{srv.proc.pid}/task/{srv.proc.pid}/children")
        pids = [int(p) for p in (await asyncio.to_thread(children.read_text)).split()]
        comms = {p: await asyncio.to_thread(Path(f"/proc/{p}/comm").read_text) for p in pids}
        redis_pid = next(p for p, comm in comms.items() if comm.strip() == "redis-server")
        os.kill(redis_pid, signal.SIGKILL)

        async def redis_back() -> bool:
            try:
                return (await asyncio.to_thread(ping)).startswith(b"+PONG") and "local redis-server exited" in srv.log()
            except OSError:
                return False

        await _until(redis_back, 60, "the local redis-server to be restarted", srv)

        srv.proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(srv.proc.wait(), 90) == 0, srv.log()[-3000:]
        with pytest.raises(OSError):
            await asyncio.to_thread(ping)  # the local redis-server went with the supervisor


async def test_one_worker_is_the_plain_server_in_one_process(redis_server, tmp_path: Path) -> None:
    async with serve(tmp_path, {"REDIS_URL": redis_server.url}, "--workers", "1") as srv:
        await _until(lambda: _health(srv.port), 120, "the server", srv)
        children_file = Path(f"/proc/{srv.proc.pid}/task/{srv.proc.pid}/children")
        children = (await asyncio.to_thread(children_file.read_text)).split()
        assert children == []  # no supervisor, no worker processes: today's server
        assert "started worker" not in srv.log()
        srv.proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(srv.proc.wait(), 60) in (0, -signal.SIGTERM)


def test_default_worker_count_follows_redis_url() -> None:
    from callwright.scale.workers import default_workers, usable_cores

    assert default_workers(None) == 1
    assert default_workers("") == 1
    assert default_workers("redis://127.0.0.1:1/0") == usable_cores()
    assert 1 <= usable_cores() <= len(os.sched_getaffinity(0))


def test_a_taken_port_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "callwright.cli", "serve", "--port", str(port), "--workers", "2"],
            env={**os.environ, "REDIS_URL": "redis://127.0.0.1:1/0"},
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
        )
    assert proc.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in proc.stderr, proc.stderr
    assert "started worker" not in proc.stderr


PLUGIN = """
import os
from pathlib import Path


def setup(services):
    (Path(os.environ["PLUGIN_MARKS"]) / str(os.getpid())).write_text(os.environ.get("REPLICA_ID", ""))


def broken(services):
    raise RuntimeError("this plug-in never starts")
"""


async def test_app_option_reaches_every_worker(redis_server, tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    (tmp_path / "scaleplug.py").write_text(PLUGIN)
    env = {"REDIS_URL": redis_server.url, "REPLICA_ID": "plug", "PLUGIN_MARKS": str(marks), "PYTHONPATH": str(tmp_path)}
    async with serve(tmp_path, env, "--workers", "2", "--app", "scaleplug:setup") as srv:
        await _until_all_listen(srv, 2)
        await _until(lambda: _marked(marks, 2), 30, "both workers to run the plug-in", srv)
        ran = {int(p.name): p.read_text() for p in marks.iterdir()}
        assert ran == {pid: rid for rid, pid in srv.workers().values()}
        assert sorted(ran.values()) == ["plug-w0", "plug-w1"]


async def _marked(marks: Path, n: int) -> bool:
    return len(await asyncio.to_thread(lambda: list(marks.iterdir()))) >= n


async def test_a_worker_that_cannot_start_makes_the_supervisor_give_up(redis_server, tmp_path: Path) -> None:
    (tmp_path / "scaleplug.py").write_text(PLUGIN)
    env = {"REDIS_URL": redis_server.url, "PLUGIN_MARKS": str(tmp_path), "PYTHONPATH": str(tmp_path)}
    async with serve(tmp_path, env, "--workers", "2", "--app", "scaleplug:broken") as srv:
        code = await asyncio.wait_for(srv.proc.wait(), 200)  # 5 tries each, back-off 0.5 → 4 s
        log = srv.log()
        assert code == 1, log[-3000:]
        assert "giving up, stopping the server" in log
        assert log.count("exited unexpectedly with code 3") >= 4  # restarted with a back-off before that
        assert "this plug-in never starts" in log
        assert not any(_alive(pid) for _, pid in srv.workers().values())
