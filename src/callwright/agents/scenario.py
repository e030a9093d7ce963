"""Load a scenario folder (scenario.yaml + agents/*.yaml + prompts + fixture) into a :class:`Scenario`.

Loaded once at app start. Any problem raises :class:`ScenarioError` with one line naming the file, the
line and the field, e.g. ``insurance/agents/claims.yaml:12: intents[0].handoff: unknown agent 'claimz'``.
Line numbers come from the YAML node marks, so errors point at the text the author wrote.
"""

from __future__ import annotations

import importlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import yaml
from jinja2.sandbox import SandboxedEnvironment
from pydantic import BaseModel, ValidationError

from callwright.agents.lookups import TOOLSETS
from callwright.agents.models import ActionSpec, AgentSpec, IntentSpec, ScenarioSpec
from callwright.agents.telephony import TELEPHONY_TOOLS
from callwright.agents.tools import ToolRegistry

log = logging.getLogger("callwright.agents")

Path_ = tuple[str | int, ...]


class ScenarioError(Exception):
    """An invalid scenario; the message is one line naming file, line and field."""


@dataclass
class _Located:
    """Plain data from a YAML file plus the line of every key and value (1-based)."""

    data: Any
    key_lines: dict[Path_, int] = field(default_factory=dict)
    value_lines: dict[Path_, int] = field(default_factory=dict)
    block: dict[Path_, bool] = field(default_factory=dict)  # value is a | or > block scalar


def _read_yaml(path: Path, label: str) -> _Located:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"{label}: cannot read file: {exc.strerror or exc}") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.load(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        problem = exc.problem or exc.context or "invalid YAML"
        raise ScenarioError(f"{label}:{line}: invalid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{label}:1: invalid YAML: {exc}") from None
    loc = _Located(data)
    if node is not None:
        _walk(node, (), loc)
    return loc


def _walk(node: yaml.Node, path: Path_, loc: _Located) -> None:
    loc.value_lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.ScalarNode):
        loc.block[path] = node.style in ("|", ">")
    elif isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            sub = (*path, str(key.value))
            loc.key_lines[sub] = key.start_mark.line + 1
            _walk(value, sub, loc)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, (*path, i), loc)


def _field_name(path: Sequence[str | int]) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(top level)"


def _line_for(loc: _Located, path: Path_, *, key: bool = False) -> int:
    probe = tuple(path)
    while probe:
        if key and probe in loc.key_lines:
            return loc.key_lines[probe]
        if probe in loc.value_lines:
            return loc.value_lines[probe]
        probe = probe[:-1]
    return loc.value_lines.get((), 1)


def _fail(label: str, loc: _Located, path: Path_, message: str, *, key: bool = False) -> ScenarioError:
    return ScenarioError(f"{label}:{_line_for(loc, path, key=key)}: {_field_name(path)}: {message}")


def _validate(model: type[BaseModel], loc: _Located, label: str, env: jinja2.Environment) -> Any:
    if not isinstance(loc.data, dict):
        raise ScenarioError(f"{label}:1: (top level): expected a mapping of fields, got {type(loc.data).__name__}")
    try:
        return model.model_validate(loc.data, context={"jinja": env})
    except ValidationError as exc:
        err = exc.errors()[0]
        path = tuple(p for p in err["loc"] if isinstance(p, (str, int)))
        kind = err["type"]
        if kind == "missing":
            # the key is absent: point at the mapping that should hold it
            line = _line_for(loc, path[:-1])
            raise ScenarioError(f"{label}:{line}: {_field_name(path)}: required field is missing") from None
        if kind == "extra_forbidden":
            allowed = _allowed_fields(model, path[:-1])
            hint = f" (allowed: {', '.join(allowed)})" if allowed else ""
            raise _fail(label, loc, path, f"unknown field{hint}", key=True) from None
        line = _line_for(loc, path)
        ctx = err.get("ctx") or {}
        if kind == "jinja" and ctx.get("template_line"):
            line += int(ctx["template_line"]) - (0 if loc.block.get(path) else 1)
        raise ScenarioError(f"{label}:{line}: {_field_name(path)}: {err['msg']}") from None


def _allowed_fields(model: type[BaseModel], path: Path_) -> list[str]:
    current: Any = model
    for p in path:
        if isinstance(p, int):
            continue
        info = current.model_fields.get(p) if isinstance(current, type) else None
        if info is None:
            return []
        ann = info.annotation
        args = getattr(ann, "__args__", ())
        candidates = [a for a in (ann, *args) if isinstance(a, type) and issubclass(a, BaseModel)]
        if not candidates:
            return []
        current = candidates[0]
    return sorted(current.model_fields) if isinstance(current, type) else []


@dataclass
class Scenario:
    """A validated scenario, ready to build orchestrators from (immutable after loading)."""

    spec: ScenarioSpec
    directory: Path
    agents: dict[str, AgentSpec]
    instructions: dict[str, str]  # agent -> instruction template source (inline or from its file)
    fixture: dict[str, Any]
    registry: ToolRegistry
    handoff_style: str
    jinja: jinja2.Environment

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def start_agent(self) -> str:
        return self.spec.start_agent

    @property
    def human_number(self) -> str | None:
        return self.spec.human_number

    def intents_for(self, agent: str) -> list[IntentSpec]:
        """The agent's own intents first, then the scenario-wide ones it does not override."""
        own = list(self.agents[agent].intents)
        names = {i.name for i in own}
        return own + [i for i in self.spec.intents if i.name not in names]

    def render(self, source: str, context: dict[str, Any]) -> str:
        return " ".join(self.jinja.from_string(source).render(**context).split())

    def render_block(self, source: str, context: dict[str, Any]) -> str:
        """Like :meth:`render` but keeps line breaks (system prompts)."""
        return self.jinja.from_string(source).render(**context).strip()

    def evaluate(self, expression: str, context: dict[str, Any]) -> Any:
        return self.jinja.compile_expression(expression)(**context)

    def load_caller_profile(self, number: str | None) -> dict[str, Any] | None:
        """The fixture's profile for a caller number (called by the CallConnected handler)."""
        if not number:
            return None
        callers = self.fixture.get("callers") or {}
        digits = "".join(c for c in number if c.isdigit())
        for key, profile in callers.items():
            if "".join(c for c in key if c.isdigit()) == digits and isinstance(profile, dict):
                return dict(profile)
        return None


def _make_env() -> jinja2.Environment:
    # Sandboxed because scenario files may come from people other than the operator.
    return SandboxedEnvironment(undefined=jinja2.ChainableUndefined, autoescape=False)


def _toolset(name: str, extra: Mapping[str, Sequence[Callable[..., Any]]]) -> Sequence[Callable[..., Any]]:
    if name in extra:  # registered by a plug-in (services.toolsets)
        return extra[name]
    if name in TOOLSETS:
        return TOOLSETS[name]
    module = importlib.import_module(name)  # a user module exposing TOOLS = (fn, ...)
    return tuple(module.TOOLS)


def load_scenario_dir(directory: Path, toolsets: Any = None) -> Scenario:
    """``toolsets``: extra named toolsets (a mapping or a ``ToolsetRegistry``) beside the packaged ones."""
    extra: Mapping[str, Sequence[Callable[..., Any]]] = (
        toolsets.as_mapping() if hasattr(toolsets, "as_mapping") else dict(toolsets or {})
    )
    directory = Path(directory)
    root_label = directory.name
    main = directory / "scenario.yaml"
    if not main.is_file():
        raise ScenarioError(f"{root_label}/scenario.yaml:1: (file): scenario file not found in {directory}")
    env = _make_env()
    main_label = f"{root_label}/scenario.yaml"
    main_loc = _read_yaml(main, main_label)
    spec: ScenarioSpec = _validate(ScenarioSpec, main_loc, main_label, env)

    registry = ToolRegistry(TELEPHONY_TOOLS)
    for i, name in enumerate(spec.toolsets):
        try:
            for fn in _toolset(name, extra):
                registry.add(fn)
        except Exception as exc:  # whatever a user module raises while importing: one line, not a traceback
            reason = f"{type(exc).__name__}: {exc}" if not isinstance(exc, ImportError | ValueError) else str(exc)
            raise _fail(main_label, main_loc, ("toolsets", i), f"cannot load toolset {name!r}: {reason}") from None

    fixture: dict[str, Any] = {}
    if spec.fixture:
        fpath = directory / spec.fixture
        try:
            fixture = json.loads(fpath.read_text(encoding="utf-8"))
        except OSError as exc:
            raise _fail(main_label, main_loc, ("fixture",), f"cannot read {fpath.name}: {exc.strerror}") from None
        except json.JSONDecodeError as exc:
            raise ScenarioError(f"{root_label}/{spec.fixture}:{exc.lineno}: (json): {exc.msg}") from None

    files = [directory / f for f in spec.agents] if spec.agents else sorted((directory / "agents").glob("*.y*ml"))
    agents: dict[str, AgentSpec] = {}
    locs: dict[str, tuple[str, _Located]] = {}
    instructions: dict[str, str] = {}
    for i, path in enumerate(files):
        label = (
            f"{root_label}/{path.relative_to(directory).as_posix()}" if path.is_relative_to(directory) else str(path)
        )
        if not path.is_file():
            raise _fail(main_label, main_loc, ("agents", i), f"agent file not found: {path.name}")
        loc = _read_yaml(path, label)
        agent: AgentSpec = _validate(AgentSpec, loc, label, env)
        if agent.name in agents:
            raise _fail(label, loc, ("name",), f"agent name {agent.name!r} is used twice")
        agents[agent.name] = agent
        locs[agent.name] = (label, loc)
        instructions[agent.name] = _instructions(agent, directory, label, loc, env)
    if not agents:
        raise _fail(main_label, main_loc, ("agents",), "the scenario has no agents")
    if spec.start_agent not in agents:
        raise _fail(main_label, main_loc, ("start_agent",), _unknown("agent", spec.start_agent, agents))

    for j, intent in enumerate(spec.intents):
        _check_action(intent, ("intents", j), main_label, main_loc, registry, agents, None)
    for agent in agents.values():
        label, loc = locs[agent.name]
        for j, target in enumerate(agent.handoffs):
            if target not in agents:
                raise _fail(label, loc, ("handoffs", j), "handoff to " + _unknown("agent", target, agents))
        for j, tool_name in enumerate(agent.tools):
            if tool_name not in registry:
                raise _fail(label, loc, ("tools", j), _unknown("tool", tool_name, registry.names()))
        for j, intent in enumerate(agent.intents):
            _check_action(intent, ("intents", j), label, loc, registry, agents, agent)
        if agent.on_enter:
            _check_action(agent.on_enter, ("on_enter",), label, loc, registry, agents, agent)
        intent_names = {x.name for x in agent.intents} | {x.name for x in spec.intents}
        if agent.dtmf_intent and agent.dtmf_intent not in intent_names:
            raise _fail(label, loc, ("dtmf_intent",), _unknown("intent", agent.dtmf_intent, intent_names))

    style = spec.handoff_style or "announced"
    return Scenario(spec, directory, agents, instructions, fixture, registry, style, env)


def _unknown(kind: str, name: str, known: Any) -> str:
    return f"unknown {kind} {name!r} (known: {', '.join(sorted(known)) or 'none'})"


def _instructions(agent: AgentSpec, directory: Path, label: str, loc: _Located, env: jinja2.Environment) -> str:
    if not agent.instructions_file:
        return agent.instructions
    path = directory / agent.instructions_file
    try:
        source = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise _fail(
            label, loc, ("instructions_file",), f"cannot read {agent.instructions_file}: {exc.strerror}"
        ) from None
    try:
        env.parse(source)
    except jinja2.TemplateSyntaxError as exc:
        raise ScenarioError(
            f"{directory.name}/{agent.instructions_file}:{exc.lineno}: instructions: bad Jinja template: {exc.message}"
        ) from None
    return source


def _check_action(
    action: ActionSpec,
    path: Path_,
    label: str,
    loc: _Located,
    registry: ToolRegistry,
    agents: dict[str, AgentSpec],
    agent: AgentSpec | None,
) -> None:
    if action.tool and action.tool.name not in registry:
        raise _fail(label, loc, (*path, "tool", "name"), _unknown("tool", action.tool.name, registry.names()))
    if action.tool and action.tool.retry_slot and action.tool.retry_slot not in {s.name for s in action.slots}:
        raise _fail(label, loc, (*path, "tool", "retry_slot"), f"no slot named {action.tool.retry_slot!r}")
    if action.handoff:
        if action.handoff not in agents:
            raise _fail(label, loc, (*path, "handoff"), "handoff to " + _unknown("agent", action.handoff, agents))
        if agent is not None and action.handoff not in agent.handoffs:
            raise _fail(
                label,
                loc,
                (*path, "handoff"),
                f"{action.handoff!r} is not in this agent's handoffs list {agent.handoffs}",
            )
    for k, slot in enumerate(action.slots):
        if slot.type == "choice" and not slot.options:
            raise _fail(label, loc, (*path, "slots", k, "options"), "a choice slot needs options")


def load_scenario(settings: Any, toolsets: Any = None) -> Scenario:
    """Load ``settings.scenario`` from ``settings.scenarios_dir`` (raises :class:`ScenarioError`)."""
    base = Path(settings.scenarios_dir)
    directory = base / settings.scenario
    if not directory.is_dir():
        available = sorted(p.name for p in base.iterdir() if (p / "scenario.yaml").is_file()) if base.is_dir() else []
        raise ScenarioError(
            f"{directory}:1: scenario: no scenario named {settings.scenario!r} "
            f"(available: {', '.join(available) or 'none'})"
        )
    scenario = load_scenario_dir(directory, toolsets)
    if scenario.spec.handoff_style is None:
        scenario.handoff_style = getattr(settings, "handoff_style", "announced")
    log.info("scenario %s loaded: agents %s, start %s", scenario.name, ", ".join(scenario.agents), scenario.start_agent)
    return scenario
