"""Agents: the Orchestrator interface, the scenario agent, the LLM orchestrator, tools and scenarios.

Server-facing API: :func:`load_scenario` once at start (raises :class:`ScenarioError`), then
:func:`build_orchestrator` per call; ``Scenario.load_caller_profile(number)`` for CallConnected.
"""

from callwright.agents.context import CallControl, PendingAction, ToolContext
from callwright.agents.factory import build_orchestrator
from callwright.agents.scenario import Scenario, ScenarioError, load_scenario
from callwright.agents.tools import ToolRegistry, tool

__all__ = [
    "CallControl",
    "PendingAction",
    "Scenario",
    "ScenarioError",
    "ToolContext",
    "ToolRegistry",
    "build_orchestrator",
    "load_scenario",
    "tool",
]
