"""--dist loadgroup as tests/conftest.py sets it up: a file whose tests share a module fixture runs on one
worker (built once), other tests spread over the workers. A real pytest -n 3 run on a small suite."""

from __future__ import annotations

import collections
import os
import subprocess
import sys
from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parent.parent

CONFTEST = f"""
import importlib.util
import sys

sys.path.insert(0, {str(TESTS_DIR)!r})
_spec = importlib.util.spec_from_file_location("callwright_tests_conftest", {str(TESTS_DIR / "conftest.py")!r})
_mod = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_mod)
pytest_configure = _mod.pytest_configure
pytest_collection_modifyitems = _mod.pytest_collection_modifyitems
pytest_xdist_make_scheduler = _mod.pytest_xdist_make_scheduler
pytest_runtest_protocol = _mod.pytest_runtest_protocol
"""

SHARED = """
import os, time
import pytest

@pytest.fixture(scope="module")
def model(tmp_path_factory):
    (tmp_path_factory.getbasetemp().parent / f"built-{os.environ['PYTEST_XDIST_WORKER']}").touch()
    return object()

def _mark(name):
    time.sleep(0.3)
    with open(os.environ["WHO_RAN"], "a") as f:
        f.write(f"{name} {os.environ['PYTEST_XDIST_WORKER']}\\n")
""" + "".join(f"\ndef test_shared_{i}(model):\n    _mark('shared{i}')\n" for i in range(4))

SOLO = """
import os, time

def _mark(name):
    time.sleep(0.5)
    with open(os.environ["WHO_RAN"], "a") as f:
        f.write(f"{name} {os.environ['PYTEST_XDIST_WORKER']}\\n")
""" + "".join(f"\ndef test_solo_{i}():\n    _mark('solo{i}')\n" for i in range(8))


def _env(**extra: str) -> dict[str, str]:
    # A clean pytest: not the xdist worker this test may itself be running in.
    return {**{k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}, **extra}


def test_shared_fixture_files_stay_on_one_worker_and_the_rest_spread(tmp_path: Path) -> None:
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "conftest.py").write_text(CONFTEST)
    (suite / "test_shared.py").write_text(SHARED)
    (suite / "test_solo.py").write_text(SOLO)
    who = tmp_path / "who.txt"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "3", "--dist", "loadgroup", "-q", "-p", "no:cacheprovider",
         "--basetemp", str(tmp_path / "bt"), "-c", os.devnull, "--rootdir", str(suite), str(suite)],
        capture_output=True, text=True, timeout=120, env=_env(WHO_RAN=str(who)), cwd=suite,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    ran = dict(line.split() for line in who.read_text().splitlines())
    assert len(ran) == 12
    shared = {w for name, w in ran.items() if name.startswith("shared")}
    solo = collections.Counter(w for name, w in ran.items() if name.startswith("solo"))
    assert len(shared) == 1, ran  # one worker ran the module's tests...
    assert len(list((tmp_path / "bt").glob("built-*"))) == 1  # ...so the fixture was built once
    assert len(solo) >= 2, ran  # tests without a shared fixture are not grouped
