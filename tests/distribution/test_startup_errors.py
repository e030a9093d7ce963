"""Every start-up error of `callwright serve` is one line naming the setting or the file — no traceback.

Real processes: the console script as an operator runs it, in an empty working directory (no .env).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from callwright.config import Settings
from callwright.localstack import free_port

CLI = Path(sys.executable).with_name("callwright")
FAST = {"STT_ENGINE": "pocketsphinx", "STT_POOL_WARM": "0", "TTS_POOL_WARM": "0", "TURN_DETECTOR": "words"}


def serve(tmp_path: Path, **env: str) -> tuple[int, str]:
    clean = {k: v for k, v in os.environ.items() if k.lower() not in Settings.model_fields}
    clean.pop("CALLWRIGHT_PLUGINS", None)
    proc = subprocess.run(
        [str(CLI), "serve", "--port", str(free_port())],
        cwd=tmp_path,
        env={**clean, **FAST, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    return proc.returncode, proc.stdout + proc.stderr


def broken_scenario(root: Path, agent_yaml: str, toolsets: str = "[]") -> Path:
    folder = root / "scenarios" / "broken"
    (folder / "agents").mkdir(parents=True)
    (folder / "scenario.yaml").write_text(f"name: broken\nstart_agent: desk\ntoolsets: {toolsets}\n", encoding="utf-8")
    (folder / "agents" / "desk.yaml").write_text(agent_yaml, encoding="utf-8")
    return root / "scenarios"


CASES = {
    "engine name": ({"STT_ENGINE": "nope"}, "invalid setting STT_ENGINE"),
    "plug-in import": ({"CALLWRIGHT_PLUGINS": "no_such_plugin_mod:setup"}, "CALLWRIGHT_PLUGINS: cannot import"),
    "llm config": ({"AGENT_ENGINE": "llm"}, "OPENAI_API_KEY"),
    "tts voice": ({"TTS_VOICE": "xx-nothing"}, "TTS_ENGINE=espeak"),
    "scenario name": ({"SCENARIO": "nope"}, "no scenario named 'nope'"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_start_up_errors_are_one_line(tmp_path: Path, case: str) -> None:
    env, expected = CASES[case]
    code, out = serve(tmp_path, **env)
    assert code != 0, out
    assert "Traceback" not in out, out
    [line] = [x for x in out.splitlines() if expected in x]
    assert len(line) < 400, line


def test_a_broken_scenario_file_is_one_line_naming_file_line_and_field(tmp_path: Path) -> None:
    scenarios = broken_scenario(tmp_path, "name: desk\nhandoffs: [nobody]\n")
    code, out = serve(tmp_path, SCENARIOS_DIR=str(scenarios), SCENARIO="broken")
    assert code != 0 and "Traceback" not in out, out
    assert "broken/agents/desk.yaml:2: handoffs[0]: handoff to unknown agent 'nobody'" in out


def test_a_toolset_that_fails_to_import_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "bad_tools.py").write_text("TOOLS = (undefined_name,)\n", encoding="utf-8")
    scenarios = broken_scenario(tmp_path, "name: desk\n", toolsets="[bad_tools]")
    code, out = serve(tmp_path, SCENARIOS_DIR=str(scenarios), SCENARIO="broken", PYTHONPATH=str(tmp_path))
    assert code != 0 and "Traceback" not in out, out
    assert "broken/scenario.yaml:3: toolsets[0]: cannot load toolset 'bad_tools': NameError" in out
