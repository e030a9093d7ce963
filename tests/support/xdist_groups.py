"""``--dist loadgroup`` that works with pytest 9, and groups files that share a costly fixture.

xdist 3.8 implements ``xdist_group`` by appending ``@group`` to each item's ``_nodeid`` on the worker;
pytest 9.2 derives ``nodeid`` from a structured id, so the suffix never reaches the scheduler and grouped
tests are silently spread over the workers (pytest-dev/pytest-xdist#1386, fix pending in #1388). Here the
workers write each grouped test's group to a file in the run's base temp folder while collecting, and the
controller's scheduler (the same LoadScopeScheduling xdist uses for loadgroup) reads them: one work unit
per group, one per test otherwise. A suffix added by a fixed xdist is stripped, so both ways agree.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

GROUPS_DIR = "xdist-groups"


def group_of(item: pytest.Item) -> str | None:
    names = sorted(
        {str(m.args[0] if m.args else m.kwargs.get("name", "default")) for m in item.iter_markers("xdist_group")}
    )
    return "_".join(names) or None


def write_groups(run_dir: Path, worker: str, items: Iterable[pytest.Item]) -> None:
    """On a worker: this worker's collection's groups, as ``nodeid<TAB>group`` lines."""
    folder = run_dir / GROUPS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    lines = [f"{item.nodeid}\t{g}\n" for item in items if (g := group_of(item)) is not None]
    tmp = folder / f".{worker}.tmp"
    tmp.write_text("".join(lines), encoding="utf-8")
    tmp.replace(folder / f"{worker}.tsv")  # whole or absent: the controller never reads half a file


def read_groups(run_dir: Path) -> dict[str, str]:
    groups: dict[str, str] = {}
    for path in sorted((run_dir / GROUPS_DIR).glob("*.tsv")):
        for line in path.read_text(encoding="utf-8").splitlines():
            nodeid, _, group = line.partition("\t")
            if group:
                groups[nodeid] = group
    return groups


def make_scheduler(config: pytest.Config, log: Any, run_dir: Path) -> Any:
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):  # type: ignore[misc]
        """LoadScopeScheduling with each test its own scope unless the workers put it in a group."""

        _groups: dict[str, str] | None = None

        def _split_scope(self, nodeid: str) -> str:
            if self._groups is None:
                # Called from schedule(), once every worker has finished collecting (and so has written
                # its file).
                self._groups = read_groups(run_dir)
            plain = nodeid.rsplit("@", 1)[0] if nodeid.rfind("@") > nodeid.rfind("]") else nodeid
            group = self._groups.get(plain)
            return f"@group:{group}" if group is not None else nodeid

    return GroupScheduling(config, log)
