"""Scenario files: every kind of mistake stops the start with one line naming file, line and field."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from callwright.agents.scenario import ScenarioError, load_scenario, load_scenario_dir
from callwright.config import PACKAGE_DIR

SHIPPED = PACKAGE_DIR / "scenarios"


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    target = tmp_path / "insurance"
    shutil.copytree(SHIPPED / "insurance", target)
    return target


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"test setup: {old!r} not in {path.name}"
    path.write_text(text.replace(old, new, 1))


def _line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def _error(directory: Path) -> str:
    with pytest.raises(ScenarioError) as info:
        load_scenario_dir(directory)
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("name", ["insurance", "clinic"])
def test_shipped_scenarios_load(settings, name):
    scenario = load_scenario(settings.model_copy(update={"scenario": name}))
    assert scenario.start_agent in scenario.agents
    assert all(t in scenario.registry for agent in scenario.agents.values() for t in agent.tools)


def test_bad_yaml_syntax(copy):
    agent = copy / "agents" / "claims.yaml"
    _edit(agent, "handoffs: [front_desk]", "handoffs: [front_desk")
    message = _error(copy)
    assert message.startswith("insurance/agents/claims.yaml:")
    assert "invalid YAML" in message
    line = int(message.split(":")[1])
    assert abs(line - _line_of(agent, "handoffs: [front_desk")) <= 1


def test_unknown_field(copy):
    agent = copy / "agents" / "front_desk.yaml"
    _edit(agent, "    say: >-\n      We're open", "    sya: oops\n    say: >-\n      We're open")
    message = _error(copy)
    expected = _line_of(agent, "sya: oops")
    assert message.startswith(f"insurance/agents/front_desk.yaml:{expected}: intents[0].sya: unknown field")
    assert "allowed:" in message and "say" in message


def test_missing_required_field(copy):
    agent = copy / "agents" / "front_desk.yaml"
    _edit(agent, '        prompt: "Sure, I can help', '        ask: "Sure, I can help')
    message = _error(copy)
    # the unknown 'ask' or the missing 'prompt' — either way the slot is named with its line
    assert message.startswith("insurance/agents/front_desk.yaml:")
    assert "intents[2].slots[0]" in message


def test_missing_required_top_level_field(copy):
    _edit(copy / "scenario.yaml", "start_agent: front_desk\n", "")
    message = _error(copy)
    assert message == "insurance/scenario.yaml:1: start_agent: required field is missing"


def test_handoff_to_unknown_agent(copy):
    agent = copy / "agents" / "front_desk.yaml"
    _edit(agent, "    handoff: claims", "    handoff: claimz")
    message = _error(copy)
    line = _line_of(agent, "handoff: claimz")
    assert message.startswith(f"insurance/agents/front_desk.yaml:{line}: intents[2].handoff: handoff to unknown agent")
    assert "'claimz'" in message and "claims" in message


def test_handoffs_list_names_unknown_agent(copy):
    agent = copy / "agents" / "claims.yaml"
    _edit(agent, "handoffs: [front_desk]", "handoffs: [front_desk, billing]")
    message = _error(copy)
    assert message.startswith(f"insurance/agents/claims.yaml:{_line_of(agent, 'billing')}: handoffs[1]:")


def test_bad_jinja_names_the_template_line(copy):
    agent = copy / "agents" / "claims.yaml"
    _edit(agent, "{{ result.next_step }}. Is there", "{{ result.next_step }. Is there")
    message = _error(copy)
    bad = _line_of(agent, "{{ result.next_step }. Is there")
    start = _line_of(agent, "  say: >-")
    line = int(message.split(":")[1])
    # a folded (>) block joins its lines, so the error lands inside the block, not before it
    assert start <= line <= bad
    assert message.split(":", 2)[2].startswith(" on_enter.say: bad Jinja template")


def test_bad_jinja_in_prompt_file(copy):
    _edit(copy / "prompts" / "front_desk.jinja", "{% if profile.first_name %}", "{% if profile.first_name %")
    message = _error(copy)
    assert message.startswith("insurance/prompts/front_desk.jinja:3: instructions: bad Jinja template")


def test_unknown_tool(copy):
    agent = copy / "agents" / "front_desk.yaml"
    _edit(agent, "      name: verify_policy", "      name: verify_polcy")
    message = _error(copy)
    line = _line_of(agent, "name: verify_polcy")
    assert message.startswith(f"insurance/agents/front_desk.yaml:{line}: intents[2].tool.name: unknown tool")


def test_wrong_type(copy):
    _edit(copy / "scenario.yaml", "handoff_style: announced", "handoff_style: loud")
    message = _error(copy)
    line = _line_of(copy / "scenario.yaml", "handoff_style: loud")
    assert message.startswith(f"insurance/scenario.yaml:{line}: handoff_style:")
    assert "announced" in message


def test_unknown_scenario_name(settings):
    with pytest.raises(ScenarioError, match=r"no scenario named 'nope'.*insurance"):
        load_scenario(settings.model_copy(update={"scenario": "nope"}))
