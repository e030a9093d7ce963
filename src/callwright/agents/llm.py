"""The LLM orchestrator: streamed chat completions cut into clauses, tools, handoffs, no dead air.

Per turn: build messages (the active agent's rendered instructions + the memo history, interrupted
replies marked as heard), stream the completion, yield each clause as soon as the chunker closes it,
run any tool calls concurrently, feed results back, and repeat up to ``max_tool_steps`` times. A
``handoff_to_<agent>`` tool switches the agent in the same turn; the new agent then answers.

Failures (timeout, 429, 5xx, connection loss) before anything was said: a holding line ("One moment
please.") and one retry; a second failure: an apology and a Transfer to the scenario's human number,
or a graceful HangUp. The caller always hears something.

History contract: the user turn is appended when ``respond`` starts; tool results are appended as
``role="tool"`` entries; the assistant text is appended by the handler, as heard.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import openai

from callwright.agents.base import AgentEvent, HangUp, TextChunk, ToolInvoked, Transfer, Turn
from callwright.agents.chunker import ClauseChunker
from callwright.agents.runtime import AgentRuntime

log = logging.getLogger("callwright.agents.llm")

HANDOFF_PREFIX = "handoff_to_"
HOLDING_LINE = "One moment please."
INTERRUPTED_MARK = " [interrupted]"
_RETRYABLE = (openai.APIConnectionError, openai.RateLimitError, openai.InternalServerError, TimeoutError)
_PHONE_STYLE = (
    "\n\nYou are speaking on a phone call. Reply in one to three short spoken sentences; no lists, "
    "no markdown. Digits the caller keyed on the keypad arrive as '[keypad] 1234#'."
)


class _LLMFailure(Exception):
    def __init__(self, cause: BaseException, retryable: bool) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.retryable = retryable


@dataclass
class _ToolCall:
    id: str = ""
    name: str = ""
    arguments: str = ""


@dataclass
class _Step:
    text: list[str] = field(default_factory=list)
    calls: dict[int, _ToolCall] = field(default_factory=dict)
    spoke: bool = False


class LLMOrchestrator(AgentRuntime):
    def __init__(
        self,
        *args: Any,
        client: openai.AsyncOpenAI,
        model: str,
        timeout_seconds: float = 8.0,
        max_tool_steps: int = 5,
        temperature: float | None = 0.6,
        metrics: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.metrics = metrics  # callwright.metrics.Metrics: first-token latency and errors by kind
        self.client = client
        self.model = model
        self.timeout_seconds = timeout_seconds
        self.max_tool_steps = max_tool_steps
        self.temperature = temperature

    def expected_phrases(self) -> Sequence[str]:
        return self.base_phrases()

    # -- messages ----------------------------------------------------------------------------------
    def _system_prompt(self) -> str:
        source = self.scenario.instructions.get(self._active) or f"You are {self._active}."
        try:
            prompt = self.scenario.render_block(source, self.template_context({}))
        except Exception:
            log.exception("instructions of %s failed to render; using the raw text", self._active)
            prompt = source
        return prompt + _PHONE_STYLE

    def _messages(self) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = [{"role": "system", "content": self._system_prompt()}]
        history = self.memo.get_history() if self.memo is not None else []
        for entry in history:
            role, content = entry.get("role"), str(entry.get("content") or "")
            if role == "user":
                if entry.get("kind") == "dtmf":
                    content = f"[keypad] {content}"
                messages.append({"role": "user", "content": content})
            elif role == "assistant":
                if entry.get("interrupted"):
                    content += INTERRUPTED_MARK  # the caller heard only this much
                messages.append({"role": "assistant", "content": content})
            elif role == "tool":
                messages.append({"role": "system", "content": f"Earlier tool {entry.get('name')}: {content}"})
        return messages

    def _tools(self) -> list[dict[str, Any]]:
        agent = self.agent
        tools = self.scenario.registry.schemas(agent.tools)
        for target in agent.handoffs:
            desc = self.scenario.agents[target].description or target
            tools.append(
                {
                    "type": "function",
                    "function": {
                        "name": f"{HANDOFF_PREFIX}{target}",
                        "description": f"Hand the caller to the {target} agent: {desc}",
                        "parameters": {
                            "type": "object",
                            "properties": {"reason": {"type": "string", "description": "why, in a few words"}},
                            "additionalProperties": False,
                        },
                    },
                }
            )
        return tools

    # -- turn --------------------------------------------------------------------------------------
    async def respond(self, turn: Turn) -> AsyncIterator[AgentEvent]:
        self.record_user_turn(turn)
        messages = self._messages()
        retried = False
        steps = 0
        while True:
            step = _Step()
            try:
                async for chunk in self._stream(messages, step):
                    yield chunk
            except _LLMFailure as failure:
                log.warning("LLM request failed (%s) [call=%s]", failure, self.call.call_connection_id)
                if step.spoke:
                    # Half a reply was heard; repeating it would be worse than ending it here.
                    yield TextChunk("Sorry, I lost my train of thought. Could you say that again?")
                    return
                if failure.retryable and not retried:
                    retried = True
                    yield TextChunk(HOLDING_LINE)
                    await asyncio.sleep(_backoff(failure.cause))
                    continue
                for event in self._give_up():
                    yield event
                return
            if not step.calls:
                break
            steps += 1
            async for event in self._run_tools(step, messages):
                yield event
            if steps >= self.max_tool_steps:
                log.warning("tool step limit %d reached [call=%s]", self.max_tool_steps, self.call.call_connection_id)
                if self.tool_context.pending_action is None:
                    yield TextChunk("Sorry, that took longer than expected. How else can I help?")
                break
            if self.tool_context.pending_action is not None and not step.text:
                # hang_up/transfer called without words: one more step lets the model say goodbye
                continue
        action = self.take_pending_action()
        if action is not None:
            yield action

    async def _stream(self, messages: list[dict[str, Any]], step: _Step) -> AsyncIterator[TextChunk]:
        chunker = ClauseChunker()
        tools = self._tools()
        kwargs: dict[str, Any] = {"model": self.model, "messages": messages, "stream": True}
        if tools:
            kwargs["tools"] = tools
        if self.temperature is not None:
            kwargs["temperature"] = self.temperature
        asked = time.monotonic()
        first = True
        try:
            async with asyncio.timeout(self.timeout_seconds):
                stream = await self.client.chat.completions.create(**kwargs, timeout=self.timeout_seconds)
            async for chunk in stream:
                if first:
                    first = False
                    if self.metrics is not None:
                        self.metrics.llm_first_token_seconds.observe(time.monotonic() - asked)
                for clause in self._absorb(chunk, step, chunker):
                    step.spoke = True
                    yield TextChunk(clause)
            for clause in chunker.flush():
                step.spoke = True
                yield TextChunk(clause)
        except _RETRYABLE as exc:
            self._count_error(exc)
            raise _LLMFailure(exc, retryable=True) from exc
        except openai.APIError as exc:
            self._count_error(exc)
            raise _LLMFailure(exc, retryable=False) from exc

    def _count_error(self, exc: BaseException) -> None:
        if self.metrics is None:
            return
        if isinstance(exc, TimeoutError | openai.APITimeoutError):
            kind = "timeout"
        elif isinstance(exc, openai.RateLimitError):
            kind = "rate_limited"
        elif isinstance(exc, openai.APIConnectionError):
            kind = "connection"
        else:
            kind = "api"
        self.metrics.llm_errors_total.labels(kind).inc()

    @staticmethod
    def _absorb(chunk: Any, step: _Step, chunker: ClauseChunker) -> list[str]:
        if not chunk.choices:
            return []
        delta = chunk.choices[0].delta
        for tc in delta.tool_calls or []:
            call = step.calls.setdefault(tc.index, _ToolCall())
            call.id = tc.id or call.id
            if tc.function is not None:
                call.name += tc.function.name or ""
                call.arguments += tc.function.arguments or ""
        if delta.content:
            step.text.append(delta.content)
            return chunker.feed(delta.content)
        return []

    async def _run_tools(self, step: _Step, messages: list[dict[str, Any]]) -> AsyncIterator[AgentEvent]:
        calls = [step.calls[i] for i in sorted(step.calls)]
        messages.append(
            {
                "role": "assistant",
                "content": "".join(step.text) or None,
                "tool_calls": [
                    {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments or "{}"}}
                    for c in calls
                ],
            }
        )
        handoff = next((c for c in calls if c.name.startswith(HANDOFF_PREFIX)), None)
        regular = [c for c in calls if not c.name.startswith(HANDOFF_PREFIX)]
        results = await asyncio.gather(*(self._call_tool(c) for c in regular))
        for call, (args, result, started, ended) in zip(regular, results, strict=True):
            yield ToolInvoked(call.name, args, result, started, ended)
            content = json.dumps(result, default=str)
            messages.append({"role": "tool", "tool_call_id": call.id, "content": content})
            if self.memo is not None:
                self.memo.append_history("tool", content, agent=self._active, name=call.name)
        if handoff is None:
            return
        target = handoff.name.removeprefix(HANDOFF_PREFIX)
        if target not in self.agent.handoffs:
            messages.append({"role": "tool", "tool_call_id": handoff.id, "content": '{"error": "no such agent"}'})
            return
        messages.append({"role": "tool", "tool_call_id": handoff.id, "content": json.dumps({"handed_off_to": target})})
        for event in self.switch_agent(target):
            yield event
        # The new agent answers in this same turn, under its own instructions.
        messages[0] = {"role": "system", "content": self._system_prompt()}

    async def _call_tool(self, call: _ToolCall) -> tuple[dict[str, Any], Any, float, float]:
        started = time.monotonic()
        args, result = await self._tool_result(call)
        return args, result, started, time.monotonic()

    async def _tool_result(self, call: _ToolCall) -> tuple[dict[str, Any], Any]:
        try:
            args = json.loads(call.arguments) if call.arguments.strip() else {}
            if not isinstance(args, dict):
                raise ValueError("arguments must be a JSON object")
        except ValueError as exc:
            return {}, {"error": f"arguments are not valid JSON: {exc}"}
        if call.name not in self.agent.tools:
            return args, {"error": f"tool {call.name!r} is not available to this agent"}
        return args, await self.scenario.registry.call(call.name, args, self.tool_context)

    def _give_up(self) -> list[AgentEvent]:
        human = self.scenario.human_number
        if human:
            return [
                TextChunk("I'm sorry, I'm having trouble on my side right now."),
                TextChunk("Let me connect you to a colleague who can help."),
                Transfer(human, "language model unavailable"),
            ]
        return [
            TextChunk("I'm sorry, I'm having trouble on my side right now."),
            TextChunk("Please call us back in a few minutes. Goodbye."),
            HangUp("language model unavailable"),
        ]


def _backoff(cause: BaseException) -> float:
    """Short wait before the one retry; honours a small Retry-After, capped so the line stays alive."""
    response = getattr(cause, "response", None)
    if response is not None:
        try:
            return min(float(response.headers.get("retry-after", "0.2")), 1.0)
        except ValueError:
            pass
    return 0.2
