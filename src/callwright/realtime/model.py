"""The "model" behind a realtime session: the scenario agent (or the LLM orchestrator when configured).

Function calling goes through the one seam both orchestrators share, ``scenario.registry.call``: each
session's orchestrator gets a copy of the scenario whose registry is a :class:`ToolBridge`. A tool the
client listed in ``session.tools`` is not run here: the bridge hands a :class:`FunctionCall` to the
response in progress (which sends it as a ``function_call`` item and ends) and waits for the client's
``function_call_output``; the orchestrator then carries on in the next response, exactly as a real model
resumes after a tool result. Tools the client did not list run locally as usual.

The scenario agent's transfer and hang-up steps are actions, not tool calls: when the client lists
``transfer_call`` / ``hang_up`` they become function calls too, after the words that precede them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from callwright.agents.base import AgentEvent, HangUp, TextChunk, Transfer, Turn
from callwright.agents.context import ToolContext
from callwright.agents.tools import ToolRegistry

log = logging.getLogger("callwright.realtime")


@dataclass
class FunctionCall:
    name: str
    arguments: dict[str, Any]
    call_id: str = ""
    # None for calls whose outcome the agent does not wait for (transfer/hang-up actions)
    result: asyncio.Future[Any] | None = field(default=None, repr=False)


@dataclass
class Say:
    text: str


@dataclass
class TurnOver:
    """The orchestrator finished the turn (``ended``: it asked to end the call)."""

    ended: bool = False


Step = Say | FunctionCall | TurnOver


def realtime_tool(registry: ToolRegistry, name: str) -> dict[str, Any]:
    """A scenario tool as a realtime ``function`` tool (what a client puts in ``session.tools``)."""
    spec = registry.get(name)
    return {"type": "function", "name": spec.name, "description": spec.description, "parameters": spec.parameters}


def scenario_tools(scenario: Any) -> list[dict[str, Any]]:
    """Every tool the scenario's agents use, plus the transfer and hang-up tools, as realtime tools."""
    names: list[str] = []
    for agent in scenario.agents.values():
        names.extend(agent.tools)
        for intent in agent.intents:
            if intent.tool is not None:
                names.append(intent.tool.name)
        if agent.on_enter is not None and agent.on_enter.tool is not None:
            names.append(agent.on_enter.tool.name)
    names.extend(("transfer_call", "hang_up"))
    return [realtime_tool(scenario.registry, n) for n in dict.fromkeys(names) if n in scenario.registry]


class ToolBridge:
    """A :class:`ToolRegistry` stand-in: client-listed tools become realtime function calls."""

    def __init__(self, inner: ToolRegistry) -> None:
        self._inner = inner
        self.client_tools: frozenset[str] = frozenset()
        self.on_call: Any = None  # set by the turn running now: FunctionCall -> None
        # Arguments the "model" already knows from earlier calls (a policy number said once is reused
        # by later calls that need it, as a real model would from the conversation).
        self.known: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __contains__(self, name: object) -> bool:
        return name in self._inner

    def complete_arguments(self, name: str, arguments: dict[str, Any], ctx: ToolContext | None) -> dict[str, Any]:
        args = dict(arguments)
        if name in self._inner:
            props = self._inner.get(name).parameters.get("properties", {})
            memo = getattr(ctx, "memo", None)
            for param in props:
                if args.get(param) in (None, ""):
                    value = self.known.get(param)
                    if value is None and memo is not None:
                        value = memo.get_context(param)
                    if value is not None:
                        args[param] = value
                    else:
                        args.pop(param, None)
        self.known.update({k: v for k, v in args.items() if v not in (None, "")})
        return args

    async def call(self, name: str, arguments: dict[str, Any], ctx: ToolContext) -> Any:
        if name not in self.client_tools or self.on_call is None:
            return await self._inner.call(name, arguments, ctx)
        result: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.on_call(FunctionCall(name, self.complete_arguments(name, arguments, ctx), result=result))
        output = await result
        return parse_output(output)


def parse_output(output: Any) -> Any:
    """A ``function_call_output`` string as the tool result the agent reads (JSON when it is JSON)."""
    if not isinstance(output, str):
        return output
    try:
        value = json.loads(output)
    except ValueError:
        return {"output": output}
    return value if isinstance(value, dict) else {"output": value}


class TurnRun:
    """One orchestrator turn (or the greeting) running in its own task, producing :data:`Step` items.

    A response consumes steps until a :class:`FunctionCall` or :class:`TurnOver`; after a function call
    the run waits in the bridge for the client's output, and the next response consumes what follows.
    """

    def __init__(self, events: AsyncIterator[AgentEvent], bridge: ToolBridge) -> None:
        self._events = events
        self._bridge = bridge
        self.steps: asyncio.Queue[Step] = asyncio.Queue()
        self.pending: FunctionCall | None = None  # a call whose output the run waits for
        self.finished = False
        self._task = asyncio.get_running_loop().create_task(self._run(), name="realtime-turn")

    def _emit_call(self, call: FunctionCall) -> None:
        self.pending = call
        self.steps.put_nowait(call)

    async def _run(self) -> None:
        self._bridge.on_call = self._emit_call
        ended = False
        try:
            async for event in self._events:
                if isinstance(event, TextChunk):
                    self.steps.put_nowait(Say(event.text))
                elif isinstance(event, Transfer | HangUp):
                    ended = True
                    name = "transfer_call" if isinstance(event, Transfer) else "hang_up"
                    if name in self._bridge.client_tools:
                        args = {"target": event.target} if isinstance(event, Transfer) else {}
                        args["reason"] = event.reason
                        self.steps.put_nowait(FunctionCall(name, args))
        except Exception:
            log.exception("the agent failed during a turn; ending the response")
        finally:
            if self._bridge.on_call == self._emit_call:
                self._bridge.on_call = None
            self.finished = True
            self.steps.put_nowait(TurnOver(ended))

    def provide_output(self, call_id: str, output: Any) -> bool:
        """The client's ``function_call_output`` for the call the run waits for; False if not ours."""
        call = self.pending
        if call is None or call.call_id != call_id or call.result is None or call.result.done():
            return False
        call.result.set_result(output)
        self.pending = None
        return True

    def abandon_pending(self) -> None:
        """``response.create`` without the output: the agent carries on with an error result."""
        call = self.pending
        if call is None or not call.call_id:
            return  # not sent to the client yet (the run may have just reached it): nothing to abandon
        if call.result is not None and not call.result.done():
            call.result.set_result(json.dumps({"error": "the client sent no output for this call"}))
        self.pending = None

    async def cancel(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task


def session_scenario(scenario: Any) -> tuple[Any, ToolBridge]:
    """A per-session copy of the scenario whose registry is a fresh bridge (the original is shared)."""
    bridge = ToolBridge(scenario.registry)
    return dataclasses.replace(scenario, registry=bridge), bridge


def user_turn(text: str) -> Turn:
    return Turn(text=text.strip())
