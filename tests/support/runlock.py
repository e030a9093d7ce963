"""A fair readers-writer lock between the pytest-xdist workers of one run (see tests/conftest.py)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

# A test waits at most this long for its turn (an exclusive test holds everyone for its own duration).
LOCK_WAIT_S = 1800.0


class RunLock:
    """Ordinary tests hold it shared, exclusive tests alone; on two flock(2) files in ``folder``.

    Readers pass through ``gate`` then hold ``rw`` shared; a writer holds ``gate`` while it waits for
    ``rw`` exclusively, so new readers queue behind it instead of starving it (with three workers, two
    readers' tests nearly always overlap, and flock alone would let them keep the writer out for good).
    The locks belong to the open file descriptions, so each process (worker) needs its own RunLock.
    """

    def __init__(self, folder: Path, *, wait_s: float = LOCK_WAIT_S) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.wait_s = wait_s
        self._gate = os.open(folder / "gate.lock", os.O_RDWR | os.O_CREAT, 0o600)
        self._rw = os.open(folder / "rw.lock", os.O_RDWR | os.O_CREAT, 0o600)

    def _take(self, fd: int, op: int, deadline: float, what: str) -> None:
        # Polled, not blocking, so a wedged holder turns into a clear error instead of a hung worker.
        while True:
            try:
                fcntl.flock(fd, op | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"waited {self.wait_s:g} s for the {what} test lock") from None
                time.sleep(0.02)

    @contextlib.contextmanager
    def hold(self, exclusive: bool) -> Iterator[None]:
        deadline = time.monotonic() + self.wait_s
        self._take(self._gate, fcntl.LOCK_EX, deadline, "gate")
        try:
            if exclusive:
                self._take(self._rw, fcntl.LOCK_EX, deadline, "exclusive")
        finally:
            fcntl.flock(self._gate, fcntl.LOCK_UN)
        if not exclusive:
            self._take(self._rw, fcntl.LOCK_SH, deadline, "shared")
        try:
            yield
        finally:
            fcntl.flock(self._rw, fcntl.LOCK_UN)

    def close(self) -> None:
        os.close(self._gate)
        os.close(self._rw)
