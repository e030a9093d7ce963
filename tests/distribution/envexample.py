"""Generates .env.example from the Settings model: every setting, its default and its description.

Regenerate after adding a setting: ``.venv/bin/python -m tests.distribution.envexample > .env.example``
(tests/distribution/test_env_example.py fails while a setting is missing from the file).
"""

from __future__ import annotations

import re
import sys
import textwrap
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from callwright.config import PACKAGE_DIR, Settings

CONFIG_SOURCE = Path(__file__).resolve().parents[2] / "src" / "callwright" / "config.py"
_SECTION = re.compile(r"^\s{4}# --- (.+?)(?:\s+-+)?\s*$")
_FIELD = re.compile(r"^\s{4}([a-z_][a-z0-9_]*)\s*:")

HEADER = """\
# Callwright settings: every variable the server reads, from the environment or from a .env file in the
# working directory. Copy this file to .env and uncomment what you change; the values shown are the
# defaults. An invalid value stops the start with one line naming the variable.
# Generated from callwright.config.Settings (python -m tests.distribution.envexample).
"""


def env_name(name: str) -> str:
    return name.upper()


def _default(name: str, info: Any) -> str:
    value = info.get_default(call_default_factory=True)
    if value is None or isinstance(value, SecretStr):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Path):
        return "" if value.is_absolute() and value.is_relative_to(PACKAGE_DIR) else str(value)
    return str(value)


def _sections() -> tuple[dict[str, str], dict[str, str]]:
    """From config.py's source: field name -> its `# --- section`, and -> the comment right above it."""
    sections: dict[str, str] = {}
    comments: dict[str, str] = {}
    current = "general"
    pending: list[str] = []
    for line in CONFIG_SOURCE.read_text(encoding="utf-8").splitlines():
        if m := _SECTION.match(line):
            current = m.group(1).strip()
            pending = []
        elif line.strip().startswith("#"):
            pending.append(line.strip().lstrip("#").strip())
        elif m := _FIELD.match(line):
            sections.setdefault(m.group(1), current)
            if pending:
                comments.setdefault(m.group(1), " ".join(pending))
            pending = []
        else:
            pending = []
    return sections, comments


def render() -> str:
    sections, comments = _sections()
    lines = [HEADER]
    last = None
    for name, info in Settings.model_fields.items():
        section = sections.get(name, "other")
        if section != last:
            lines.append(f"\n# === {section} ===")
            last = section
        doc = info.description or comments.get(name)
        if doc:
            lines.extend(textwrap.wrap(doc, 116, initial_indent="# ", subsequent_indent="# "))
        default = _default(name, info)
        if default == "" and info.get_default() is not None and isinstance(info.get_default(), Path):
            lines.append("# (default: inside the installed package)")
        lines.append(f"# {env_name(name)}={_quote(default)}")
    return "\n".join(lines) + "\n"


def _quote(value: str) -> str:
    return f'"{value}"' if re.search(r"[\s#'\"]", value) else value


if __name__ == "__main__":
    sys.stdout.write(render())
