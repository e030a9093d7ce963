"""``callwright scenario check PATH``: load a scenario as the server would and summarise it.

Every problem is the loader's one line naming the file, the line and the field
(``insurance/agents/claims.yaml:12: intents[0].handoff: unknown agent 'claimz' (known: ...)``). Toolsets
that a plug-in registers are found when the plug-in is named (``--app module:function`` or
``CALLWRIGHT_PLUGINS``), exactly as at server start.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace

from callwright.agents.scenario import Scenario, ScenarioError, load_scenario_dir
from callwright.config import SettingsError, load_settings
from callwright.plugins import ToolsetRegistry


def scenario_directory(path: Path) -> Path:
    """A scenario folder, or its scenario.yaml; anything else is a one-line ScenarioError."""
    path = Path(path)
    if path.is_file() and path.name in ("scenario.yaml", "scenario.yml"):
        return path.parent
    if path.is_dir():
        if not (path / "scenario.yaml").is_file():
            raise ScenarioError(f"{path}: not a scenario folder (no scenario.yaml in it)")
        return path
    raise ScenarioError(f"{path}: no such scenario folder or scenario.yaml")


async def _plugin_toolsets(specs: Sequence[str]) -> ToolsetRegistry:
    """Run the plug-ins against throwaway server objects and keep the toolsets they registered."""
    from callwright.events.processor import CallEventProcessor
    from callwright.metrics import Metrics
    from callwright.plugins import load_plugins
    from callwright.services import build_services
    from callwright.sessions.registry import CallRegistry
    from callwright.sessions.store import build_store
    from callwright.voice.factory import MediaHandlerFactory

    settings = load_settings(callwright_plugins=",".join(specs))
    store = build_store(None, prefix="check", ttl_seconds=60)
    state = SimpleNamespace(
        processor=CallEventProcessor(),
        media_factory=MediaHandlerFactory(),
        calls=CallRegistry(1),
        store=store,
        metrics=Metrics(),
        automation=None,
    )
    services = build_services(state, settings)
    try:
        await load_plugins(settings.plugins, services)
    finally:
        await services.close()
        await state.processor.close()
        await store.close()
    return services.toolsets


def check_scenario(path: Path, plugins: Sequence[str] = ()) -> Scenario:
    """Load the scenario at ``path`` (raises ScenarioError / SettingsError with one line)."""
    directory = scenario_directory(path)
    toolsets = asyncio.run(_plugin_toolsets(plugins)) if plugins else None
    return load_scenario_dir(directory, toolsets)


def summary(scenario: Scenario) -> list[str]:
    spec = scenario.spec
    agents = [f"{name} (start)" if name == spec.start_agent else name for name in scenario.agents]
    handoffs = [f"{a.name} -> {t}" for a in scenario.agents.values() for t in a.handoffs]
    per_agent = ", ".join(f"{a.name} {len(a.intents)}" for a in scenario.agents.values())
    slots = sum(len(i.slots) for a in scenario.agents.values() for i in a.intents) + sum(
        len(i.slots) for i in spec.intents
    )
    lines = [
        f"scenario {spec.name}: OK ({scenario.directory})",
        f"  agents: {', '.join(agents)}",
        f"  intents: {len(spec.intents)} scenario-wide; per agent: {per_agent}; slots: {slots}",
        f"  tools: {', '.join(scenario.registry.names())}"
        + (f" (toolsets: {', '.join(spec.toolsets)})" if spec.toolsets else ""),
        f"  handoffs: {', '.join(handoffs) or 'none'}; style {scenario.handoff_style}",
    ]
    if spec.human_number:
        lines.append(f"  transfers to: {spec.human_number}")
    if spec.fixture:
        lines.append(f"  fixture: {spec.fixture}")
    return lines


def run_check(path: Path, plugins: Sequence[str] = ()) -> tuple[int, list[str]]:
    """(exit code, lines to print): 0 and the summary, or 1 and the one-line error."""
    try:
        scenario = check_scenario(path, plugins)
    except (ScenarioError, SettingsError) as exc:
        line = str(exc)
        if not plugins and "cannot load toolset" in line:
            line += " (registered by a plug-in? name it with --app module:function)"
        return 1, [line]
    return 0, summary(scenario)


# References shipped inside the package (``callwright docs TOPIC``), so an installed Callwright carries
# its own documentation: paths relative to the callwright package.
PACKAGED_DOCS = {
    "phone-scripts": "emulator/scripts/README.md",
    "scenarios": "scenarios/GUIDE.md",
}


def packaged_doc(topic: str) -> str:
    from importlib.resources import files

    rel = PACKAGED_DOCS.get(topic)
    if rel is None:
        raise LookupError(f"unknown topic {topic!r} (topics: {', '.join(PACKAGED_DOCS)})")
    resource = files("callwright").joinpath(rel)
    if not resource.is_file():
        raise LookupError(f"{rel} is missing from this installation of callwright")
    return resource.read_text(encoding="utf-8")
