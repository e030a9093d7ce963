"""The xdist run lock (tests/conftest.py): readers share it, an exclusive holder runs alone, and readers
that arrive while a writer waits queue behind it. Real processes, as xdist workers are."""

from __future__ import annotations

import fcntl
import multiprocessing as mp
import os
import queue
import time
from pathlib import Path
from typing import Any

from support.runlock import RunLock

_CTX = mp.get_context("spawn")


def _hold(folder: str, exclusive: bool, release: Any, log: Any, name: str) -> None:
    lock = RunLock(Path(folder), wait_s=60)
    with lock.hold(exclusive):
        log.put((name, "in", time.monotonic()))
        release.wait(60)
        log.put((name, "out", time.monotonic()))
    lock.close()


class Workers:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.log: Any = _CTX.Queue()
        self.marks: dict[tuple[str, str], float] = {}
        self.procs: list[Any] = []

    def start(self, name: str, exclusive: bool, release: Any) -> None:
        p = _CTX.Process(target=_hold, args=(str(self.folder), exclusive, release, self.log, name))
        p.start()
        self.procs.append(p)

    def wait_for(self, name: str, what: str, timeout: float = 30) -> float:
        deadline = time.monotonic() + timeout
        while (name, what) not in self.marks:
            left = deadline - time.monotonic()
            assert left > 0, f"{name} never logged {what!r}: {self.marks}"
            try:
                n, w, t = self.log.get(timeout=left)
            except queue.Empty:
                continue
            self.marks[(n, w)] = t
        return self.marks[(name, what)]

    def stays_out(self, name: str, seconds: float) -> bool:
        """True when ``name`` did not get the lock within ``seconds``."""
        try:
            self.wait_for(name, "in", timeout=seconds)
        except AssertionError:
            return True
        return False

    def join(self) -> None:
        for p in self.procs:
            p.join(timeout=30)
            assert p.exitcode == 0


def _gate_taken(folder: Path) -> bool:
    fd = os.open(folder / "gate.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def test_readers_share_and_a_waiting_writer_runs_alone_before_later_readers(tmp_path: Path) -> None:
    w = Workers(tmp_path)
    readers_go, writer_go, late_go = _CTX.Event(), _CTX.Event(), _CTX.Event()
    w.start("r1", False, readers_go)
    w.start("r2", False, readers_go)
    w.wait_for("r1", "in")
    w.wait_for("r2", "in")  # both hold it at once: shared

    w.start("writer", True, writer_go)
    deadline = time.monotonic() + 30
    while not _gate_taken(tmp_path):  # the writer is waiting, holding the gate
        assert time.monotonic() < deadline, "the writer never reached the gate"
        time.sleep(0.02)
    assert w.stays_out("writer", 0.5)  # not while readers hold it

    w.start("late", False, late_go)
    assert w.stays_out("late", 0.5)  # queued behind the waiting writer, not starving it

    readers_go.set()
    writer_in = w.wait_for("writer", "in")
    assert writer_in >= max(w.wait_for("r1", "out"), w.wait_for("r2", "out"))
    assert w.stays_out("late", 0.3)  # the writer is alone
    writer_go.set()
    late_in = w.wait_for("late", "in")
    assert late_in >= w.wait_for("writer", "out")
    late_go.set()
    w.wait_for("late", "out")
    w.join()
