"""`callwright --version`, `callwright scenario check PATH` and the references shipped in the package."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from callwright import __version__
from callwright.cli import app

CLI = Path(sys.executable).with_name("callwright")
REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


def test_version_from_the_installed_console_script() -> None:
    out = subprocess.run([str(CLI), "--version"], capture_output=True, text=True, timeout=60, check=True).stdout
    assert out.strip() == f"callwright {__version__}"


@pytest.mark.parametrize(
    "path", ["src/callwright/scenarios/insurance", "src/callwright/scenarios/clinic/scenario.yaml"]
)
def test_scenario_check_summarises_a_valid_scenario(path: str) -> None:
    result = runner.invoke(app, ["scenario", "check", str(REPO / path)])
    assert result.exit_code == 0, result.output
    assert ": OK (" in result.output and "agents:" in result.output and "tools:" in result.output


def test_scenario_check_names_file_line_and_field(tmp_path: Path) -> None:
    folder = tmp_path / "shop"
    (folder / "agents").mkdir(parents=True)
    (folder / "scenario.yaml").write_text("name: shop\nstart_agent: till\n", encoding="utf-8")
    (folder / "agents" / "till.yaml").write_text(
        "name: till\nintents:\n  - name: pay\n    examples: [pay]\n    tool: {name: charge_card}\n", encoding="utf-8"
    )
    result = runner.invoke(app, ["scenario", "check", str(folder)])
    assert result.exit_code == 1
    [line] = result.output.strip().splitlines()
    assert line.startswith("shop/agents/till.yaml:5: intents[0].tool.name: unknown tool 'charge_card'")
    missing = runner.invoke(app, ["scenario", "check", str(tmp_path / "nothing")])
    assert missing.exit_code == 1 and "no such scenario folder" in missing.output


def test_scenario_check_finds_a_plugins_toolset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(REPO / "examples"))
    path = str(REPO / "examples" / "custom_tool" / "scenarios" / "weather_desk")
    without = runner.invoke(app, ["scenario", "check", path])
    assert without.exit_code == 1 and "cannot load toolset 'weather'" in without.output and "--app" in without.output
    result = runner.invoke(app, ["scenario", "check", path, "--app", "custom_tool.plugin:setup"])
    assert result.exit_code == 0, result.output
    assert "get_forecast" in result.output


def test_references_ship_inside_the_package() -> None:
    scripts = runner.invoke(app, ["docs", "phone-scripts"])
    assert scripts.exit_code == 0 and "barge_in:" in scripts.output and "agent_done" in scripts.output
    guide = runner.invoke(app, ["docs", "scenarios"])
    assert guide.exit_code == 0 and "toolsets" in guide.output and "slots" in guide.output
    assert runner.invoke(app, ["docs", "nope"]).exit_code == 2
    call_help = " ".join(runner.invoke(app, ["call", "--help"]).output.split())  # rich wraps at 80 columns
    assert "callwright docs phone-scripts" in call_help
