"""Construction API the server calls: load the scenario once, build one orchestrator per call.

Orchestrators are chosen by ``AGENT_ENGINE`` from a registry: ``scenario`` (the embedded scenario agent)
and ``llm`` are built in; a plug-in adds its own (``services.orchestrators.register("mine", builder)``,
then ``AGENT_ENGINE=mine``). A builder gets an :class:`OrchestratorRequest` and returns an
:class:`~callwright.agents.base.Orchestrator` for one call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from callwright.agents.base import CallInfo, Orchestrator
from callwright.agents.context import CallControl
from callwright.agents.scenario import Scenario, ScenarioError, load_scenario
from callwright.agents.scripted import ScenarioOrchestrator
from callwright.plugins import Registry

__all__ = [
    "OrchestratorBuilder",
    "OrchestratorRequest",
    "ScenarioError",
    "build_orchestrator",
    "load_scenario",
    "orchestrator_registry",
]


@dataclass(frozen=True)
class OrchestratorRequest:
    """Everything an orchestrator builder may use for one call."""

    settings: Any
    scenario: Scenario
    call: CallInfo
    memo: Any  # the call's MemoManager (history, context); None outside a server
    call_control: CallControl | None = None  # hang up / transfer / send DTMF on the real call
    llm_client: Any = None  # the app's long-lived LLM client when AGENT_ENGINE=llm
    metrics: Any = None  # the app's callwright.metrics.Metrics (LLM latency and errors), None outside a server


OrchestratorBuilder = Callable[[OrchestratorRequest], Orchestrator]


def _scenario_builder(req: OrchestratorRequest) -> Orchestrator:
    return ScenarioOrchestrator(req.scenario, req.call, req.memo, call_control=req.call_control)


def _llm_builder(req: OrchestratorRequest) -> Orchestrator:
    from callwright.agents.llm import LLMOrchestrator
    from callwright.agents.llm_client import make_llm_client, model_name

    settings = req.settings
    client = req.llm_client if req.llm_client is not None else make_llm_client(settings)
    return LLMOrchestrator(
        req.scenario,
        req.call,
        req.memo,
        client=client,
        model=model_name(settings),
        timeout_seconds=settings.llm_timeout_seconds,
        max_tool_steps=settings.llm_max_tool_steps,
        call_control=req.call_control,
        metrics=req.metrics,
    )


def orchestrator_registry() -> Registry[OrchestratorBuilder]:
    """The built-in orchestrators in a fresh registry (one per app; plug-ins add theirs at start-up)."""
    return Registry("AGENT_ENGINE", {"scenario": _scenario_builder, "llm": _llm_builder})


def build_orchestrator(
    settings: Any,
    scenario: Scenario,
    call: CallInfo,
    memo: Any,
    *,
    call_control: CallControl | None = None,
    llm_client: Any = None,
    registry: Registry[OrchestratorBuilder] | None = None,
    metrics: Any = None,
) -> Orchestrator:
    """One orchestrator for one call, chosen by ``settings.agent_engine`` in ``registry`` (default: built-ins).

    ``llm_client`` should be the app's long-lived ``AsyncOpenAI``/``AsyncAzureOpenAI`` (see
    :func:`callwright.agents.llm_client.make_llm_client`); without one, a client is built for this call.
    """
    registry = registry or orchestrator_registry()
    builder = registry.builder(getattr(settings, "agent_engine", "scenario"))
    return builder(OrchestratorRequest(settings, scenario, call, memo, call_control, llm_client, metrics))
