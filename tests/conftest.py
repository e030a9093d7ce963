"""Shared fixtures: a real redis-server, the tests/support helpers on the import path, and the rules that
let the suite run under pytest-xdist (``-n 3 --dist loadgroup``).

Parallel safety. Every server, emulator and redis-server binds a free port of its own (``free_port``),
every test writes under its own ``tmp_path`` (per worker: ``<basetemp>/popen-gwN``), and session fixtures
are per worker process. What parallel runs cannot give for free is an idle CPU: a few tests measure
timing *accuracy* (the virtual phone's report to ±20 ms, event-loop lag, a deadline of a second) and
would only measure the other workers' load on two cores. Those tests are ``exclusive``: under xdist they
take a lock that every other test takes shared, so while one runs, no other test runs in any worker
(between them, workers run in parallel as usual). Mark a test or file ``pytest.mark.exclusive``, or list
it in ``EXCLUSIVE`` below. Without xdist the lock is not used.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from callwright.localredis import LocalRedis, RedisUnavailable
from support.runlock import RunLock
from support.xdist_groups import make_scheduler, write_groups

# Tests that measure timing accuracy (see the module docstring): a file (all its tests) or one test
# ("file::name", parameters ignored). Kept here rather than as marks in the files, so the policy for
# parallel runs is in one place.
EXCLUSIVE = (
    "tests/emulator/phone/test_report_timing.py",  # the phone's latency figures to ±20 ms
    "tests/emulator/phone/test_speech.py",  # a response latency to ±20 ms
    "tests/emulator/phone/test_media.py",  # a 100 ms gap measured within 60-160 ms; voiced-frame counts
    # a 1.5 s gap in fed audio is seen only if the spotter decoded the 2 s greeting before it ended
    "tests/emulator/phone/test_transcribe.py::test_a_pause_in_played_audio_ends_the_utterance",
    "tests/webhook/test_isolation.py::test_a_5000_event_delivery_neither_stalls_the_loop_nor_leaves_thousands_of_calls",
    "tests/webhook/test_jwks.py::test_valid_callback_does_not_wait_behind_a_hanging_key_endpoint",
    # no underrun in the agent's audio at the ear (gaps == 0): one gap at -n 4, none at -n 3 so far
    "tests/e2e/test_calls.py::test_inbound_call_end_to_end",
)

# Files that must share a worker, in collection order. Piper followed by in-process espeak synthesis leaves
# a process in a state where pocketsphinx decodes the phone transcriber's espeak audio as other words
# (repro: pytest tests/speech/test_piper.py tests/speech/test_tts.py
# tests/emulator/phone/test_transcribe.py::test_end_of_call_transcriber_reuses_its_decoder — fails; each
# alone passes). Serially the transcriber's tests run before piper's; grouped, they still do.
SAME_WORKER = {
    "tests/emulator/phone/test_transcribe.py": "transcriber-before-piper",
    "tests/speech/test_piper.py": "transcriber-before-piper",
}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "exclusive: measures timing accuracy; under xdist no other test runs beside it")


def _shares_a_costly_fixture(item: pytest.Item) -> bool:
    """True when a module- or class-scoped fixture (a loaded model, a decoder, a server) serves the test."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return False
    return any(defs and defs[-1].scope in ("module", "class", "package") for defs in info.name2fixturedefs.values())


# tryfirst: the marks must be on the items before xdist's own hook turns xdist_group into the node id.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    root = config.rootpath
    for item in items:
        try:
            rel = item.path.relative_to(root).as_posix()
        except ValueError:
            continue
        name = getattr(item, "originalname", None) or item.name
        if rel in EXCLUSIVE or f"{rel}::{name}" in EXCLUSIVE:
            item.add_marker(pytest.mark.exclusive)
        # --dist loadgroup hands out tests one by one (balance: a file of long calls spreads over the
        # workers) except a group, which stays on one worker: a file whose tests share a module fixture
        # builds it once, not once per worker (three whisper model loads cost more than they save).
        if rel in SAME_WORKER:
            item.add_marker(pytest.mark.xdist_group(SAME_WORKER[rel]))
        elif item.get_closest_marker("xdist_group") is None and _shares_a_costly_fixture(item):
            item.add_marker(pytest.mark.xdist_group(rel))
    # A worker runs with dist "no"; xdist leaves it the option "loadgroup" instead.
    if _is_worker(config) and getattr(config.option, "loadgroup", False):
        write_groups(_run_dir(config), config.workerinput["workerid"], items)  # type: ignore[attr-defined]


def _run_dir(config: pytest.Config) -> Path:
    """This run's base temp folder, shared by its xdist workers and by no other pytest run.

    A worker's basetemp is <run basetemp>/popen-gwN; the controller's is the run's own.
    """
    base: Path = config._tmp_path_factory.getbasetemp()  # type: ignore[attr-defined]
    return base.parent if _is_worker(config) else base


def _is_worker(config: pytest.Config) -> bool:
    # Not PYTEST_XDIST_WORKER: a pytest started by a test (tests/support) inherits it without being a worker.
    return hasattr(config, "workerinput")


@pytest.hookimpl(tryfirst=True, optionalhook=True)  # optional: runs with -p no:xdist too
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """--dist loadgroup, with groups that reach the scheduler under pytest 9 (support/xdist_groups.py)."""
    if config.getoption("dist", "no") != "loadgroup":
        return None
    return make_scheduler(config, log, _run_dir(config))


_RUN_LOCK = pytest.StashKey[RunLock]()


def _lock_for(config: pytest.Config) -> RunLock | None:
    if not _is_worker(config):
        return None
    if _RUN_LOCK not in config.stash:
        config.stash[_RUN_LOCK] = RunLock(_run_dir(config) / "xdist-locks")
    return config.stash[_RUN_LOCK]


# tryfirst: outside pytest-timeout's wrapper, so the wait for the lock does not count as the test's time.
@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    lock = _lock_for(item.config)
    if lock is None:
        yield
        return
    with lock.hold(exclusive=item.get_closest_marker("exclusive") is not None):
        yield


class RedisServer(LocalRedis):
    def start(self, timeout: float = 15.0) -> None:
        try:
            super().start(timeout)
        except RedisUnavailable as exc:
            pytest.fail(str(exc))


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    # Its own redis-server per test, on a free port, with its files under the test's tmp_path: nothing
    # shared between tests or xdist workers.
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()
