"""A custom tool for scenario agents (and the LLM orchestrator), registered by a plug-in.

Run it::

    cd examples
    SCENARIOS_DIR=custom_tool/scenarios SCENARIO=weather_desk callwright serve --app custom_tool.plugin:setup

The scenario lists the toolset by name (``toolsets: [weather]``) and an agent calls the tool from an
intent (``tool: {name: get_forecast, args: {city: "{{ slots.city }}"}}``). A tool is a plain typed
function: its docstring is the description the LLM sees, ``Args:`` describes the parameters, and a
parameter annotated ``ToolContext`` is filled in by Callwright (the call's memo, the scenario fixture,
call control) and hidden from the schema. Sync tools run in a worker thread, so a blocking lookup (a
database, an HTTP API with a sync client) does not stall the calls.
"""

from __future__ import annotations

from typing import Any

from callwright.agents.context import ToolContext
from callwright.services import Services

# Stands in for your back office: a real tool would query an API or a database here.
FORECASTS: dict[str, dict[str, Any]] = {
    "paris": {"city": "Paris", "summary": "sunny spells", "high_c": 21},
    "london": {"city": "London", "summary": "light rain in the afternoon", "high_c": 16},
    "seattle": {"city": "Seattle", "summary": "overcast and mild", "high_c": 14},
}


def get_forecast(ctx: ToolContext, city: str) -> dict[str, Any]:
    """Tomorrow's weather forecast for a city.

    Args:
        city: the city, e.g. Paris, London or Seattle.
    """
    forecast = FORECASTS.get(city.strip().lower())
    if forecast is None:
        return {"found": False, "city": city}
    if ctx.memo is not None:  # later turns, templates ({{ context.last_forecast_city }}) and the API see it
        ctx.memo.set_context("last_forecast_city", forecast["city"])
    return {"found": True, **forecast}


def setup(services: Services) -> None:
    services.toolsets.register("weather", [get_forecast])
