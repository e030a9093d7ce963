"""What the wheel promises: the Python versions it installs on and the references it ships."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

from packaging.specifiers import SpecifierSet

from callwright.scenarios.check import PACKAGED_DOCS

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def project() -> dict:
    return tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))


def test_python_311_to_313_are_supported() -> None:
    # 3.12 and 3.13 were checked by installing `.[dev]` into fresh venvs and running tests there.
    spec = SpecifierSet(project()["project"]["requires-python"])
    assert all(v in spec for v in ("3.11.7", "3.12.1", "3.13.0")), spec


def test_packaged_references_are_package_data() -> None:
    patterns = project()["tool"]["setuptools"]["package-data"]["callwright"]
    root = Path(__file__).resolve().parents[2] / "src" / "callwright"
    for rel in PACKAGED_DOCS.values():
        assert (root / rel).is_file(), rel
        assert any(fnmatch.fnmatch(rel, p) for p in patterns), f"{rel} matches no package-data pattern in {patterns}"
