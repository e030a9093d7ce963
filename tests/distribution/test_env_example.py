"""`.env.example` lists every setting (generated from the Settings model by tests/distribution/envexample.py)."""

from __future__ import annotations

import re
from pathlib import Path

from callwright.config import Settings

from .envexample import env_name, render

ENV_EXAMPLE = Path(__file__).resolve().parents[2] / ".env.example"


def listed() -> set[str]:
    text = ENV_EXAMPLE.read_text(encoding="utf-8")
    return set(re.findall(r"^#? ?([A-Z][A-Z0-9_]*)=", text, flags=re.MULTILINE))


def test_every_setting_is_in_env_example() -> None:
    expected = {env_name(n) for n in Settings.model_fields}
    missing = sorted(expected - listed())
    assert not missing, (
        f".env.example lacks {', '.join(missing)}; regenerate it: .venv/bin/python -m tests.distribution.envexample > .env.example"
    )


def test_env_example_names_no_setting_that_does_not_exist() -> None:
    stale = sorted(listed() - {env_name(n) for n in Settings.model_fields})
    assert not stale, f".env.example names settings Settings does not have: {', '.join(stale)}"


def test_the_generator_covers_every_setting_with_its_default() -> None:
    text = render()
    for name in Settings.model_fields:
        assert f"# {env_name(name)}=" in text
    assert "# STT_POOL_SIZE=50" in text and "# ACS_AUTH_ENABLED=true" in text
