"""Construction API the server calls: load the scenario once, build one orchestrator per call."""

from __future__ import annotations

from typing import Any

from callwright.agents.base import CallInfo, Orchestrator
from callwright.agents.context import CallControl
from callwright.agents.scenario import Scenario, ScenarioError, load_scenario
from callwright.agents.scripted import ScenarioOrchestrator

__all__ = ["ScenarioError", "build_orchestrator", "load_scenario"]


def build_orchestrator(
    settings: Any,
    scenario: Scenario,
    call: CallInfo,
    memo: Any,
    *,
    call_control: CallControl | None = None,
    llm_client: Any = None,
) -> Orchestrator:
    """One orchestrator for one call, chosen by ``settings.agent_engine`` (scenario | llm).

    ``llm_client`` should be the app's long-lived ``AsyncOpenAI``/``AsyncAzureOpenAI`` (see
    :func:`callwright.agents.llm_client.make_llm_client`); without one, a client is built for this call.
    """
    if getattr(settings, "agent_engine", "scenario") == "llm":
        from callwright.agents.llm import LLMOrchestrator
        from callwright.agents.llm_client import make_llm_client, model_name

        client = llm_client if llm_client is not None else make_llm_client(settings)
        return LLMOrchestrator(
            scenario,
            call,
            memo,
            client=client,
            model=model_name(settings),
            timeout_seconds=settings.llm_timeout_seconds,
            max_tool_steps=settings.llm_max_tool_steps,
            call_control=call_control,
        )
    return ScenarioOrchestrator(scenario, call, memo, call_control=call_control)
