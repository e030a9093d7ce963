"""The LLM orchestrator with the real ``openai`` client over a real socket.

The HTTP server started here is a protocol stand-in for OpenAI / Azure OpenAI: a small FastAPI app on
127.0.0.1 that answers ``POST /v1/chat/completions`` with server-sent ``chat.completion.chunk`` events
(text deltas and tool_calls deltas) or with error statuses, following a per-test script. It checks the
wire protocol and the orchestrator's behaviour, not any model's intelligence.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import uvicorn
from agent_helpers import collect, say, spoken
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from callwright.agents.base import Handoff, HangUp, TextChunk, ToolInvoked, Transfer, Turn
from callwright.agents.factory import build_orchestrator
from callwright.agents.llm import HOLDING_LINE, LLMOrchestrator

Handler = Callable[[dict[str, Any]], Awaitable[Response]]


def _chunk(delta: dict[str, Any], finish: str | None = None) -> str:
    body = {
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "stand-in",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(body)}\n\n"


def sse(parts: list[str], *, gate: asyncio.Event | None = None, gate_after: int = 1) -> Response:
    """Stream text deltas; with ``gate``, pause after ``gate_after`` parts until the test opens it."""

    async def body() -> AsyncIterator[str]:
        yield _chunk({"role": "assistant", "content": ""})
        for i, part in enumerate(parts):
            if gate is not None and i == gate_after:
                await gate.wait()
            yield _chunk({"content": part})
        yield _chunk({}, "stop")
        yield "data: [DONE]\n\n"

    return StreamingResponse(body(), media_type="text/event-stream")


def sse_tools(calls: list[tuple[str, str, str]], text: str = "") -> Response:
    """Stream tool calls (id, name, JSON args), arguments split across deltas as real servers do."""

    async def body() -> AsyncIterator[str]:
        yield _chunk({"role": "assistant", "content": text or None})
        for index, (call_id, name, args) in enumerate(calls):
            head = {"index": index, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}
            yield _chunk({"tool_calls": [head]})
            for i in range(0, len(args), 5):
                yield _chunk({"tool_calls": [{"index": index, "function": {"arguments": args[i : i + 5]}}]})
        yield _chunk({}, "tool_calls")
        yield "data: [DONE]\n\n"

    return StreamingResponse(body(), media_type="text/event-stream")


def error(status: int) -> Response:
    return JSONResponse({"error": {"message": f"stand-in {status}", "type": "server_error"}}, status_code=status)


class StandIn:
    def __init__(self) -> None:
        self.script: list[Handler] = []
        self.requests: list[dict[str, Any]] = []
        self.app = FastAPI()
        self.app.post("/v1/chat/completions")(self._complete)

    async def _complete(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append(body)
        if not self.script:
            return error(500)
        return await self.script.pop(0)(body)

    def then(self, handler: Handler) -> StandIn:
        self.script.append(handler)
        return self


@pytest.fixture
async def stand_in() -> AsyncIterator[tuple[StandIn, str]]:
    server_state = StandIn()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(server_state.app, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:  # noqa: ASYNC110 - uvicorn exposes only this flag, no event
        await asyncio.sleep(0.01)
    yield server_state, f"http://127.0.0.1:{port}/v1"
    server.should_exit = True
    server.force_exit = True
    await asyncio.wait_for(task, 10)
    sock.close()


@pytest.fixture
def make_llm(settings, insurance, call, memo, stand_in):
    _server, url = stand_in

    def build(**overrides: Any) -> LLMOrchestrator:
        llm_settings = settings.model_copy(
            update={"agent_engine": "llm", "openai_base_url": url, "llm_timeout_seconds": 3.0, **overrides}
        )
        orch = build_orchestrator(llm_settings, insurance, call, memo)
        assert isinstance(orch, LLMOrchestrator)
        return orch

    return build


async def test_streams_clauses_before_the_stream_ends(make_llm, stand_in, memo):
    server, _ = stand_in
    gate = asyncio.Event()
    parts = ["We're open Monday", " to Friday, from eight", " in the morning. ", "On Saturdays", " we open at nine."]
    server.then(lambda body: _async(sse(parts, gate=gate, gate_after=3)))
    orch = make_llm()
    chunks: list[str] = []
    async for event in orch.respond(Turn("what are your opening hours")):
        assert isinstance(event, TextChunk)
        if not chunks:
            assert not gate.is_set()  # the first clause arrived while the server still held the rest
            gate.set()
        chunks.append(event.text)
    assert chunks[0] == "We're open Monday to Friday,"
    assert " ".join(chunks) == "We're open Monday to Friday, from eight in the morning. On Saturdays we open at nine."
    request = server.requests[0]
    assert request["stream"] is True
    assert request["messages"][0]["role"] == "system" and "Contoso Insurance" in request["messages"][0]["content"]
    assert request["messages"][-1] == {"role": "user", "content": "what are your opening hours"}
    assert {t["function"]["name"] for t in request["tools"]} >= {"verify_policy", "handoff_to_claims"}
    # the orchestrator records the user turn; the assistant reply is the handler's to record, as heard
    assert [m["role"] for m in memo.get_history()] == ["user"]


async def test_interrupted_reply_is_sent_as_heard(make_llm, stand_in, memo):
    server, _ = stand_in
    memo.append_history("user", "what are your hours", agent="front_desk")
    memo.append_history("assistant", "We're open Monday", agent="front_desk", interrupted=True)
    server.then(lambda body: _async(sse(["Sure."])))
    await collect(make_llm().respond(Turn("1234#", kind="dtmf")))
    messages = server.requests[0]["messages"]
    assert {"role": "assistant", "content": "We're open Monday [interrupted]"} in messages
    assert messages[-1] == {"role": "user", "content": "[keypad] 1234#"}


async def test_tool_round_trip(make_llm, stand_in):
    server, _ = stand_in
    server.then(lambda body: _async(sse_tools([("call_1", "verify_policy", '{"policy_number": "1234"}')])))

    async def answer(body: dict[str, Any]) -> Response:
        tool_msg = body["messages"][-1]
        assert tool_msg["role"] == "tool" and tool_msg["tool_call_id"] == "call_1"
        assert json.loads(tool_msg["content"])["holder"] == "Jordan Lee"
        assert body["messages"][-2]["tool_calls"][0]["function"]["name"] == "verify_policy"
        return sse(["Thanks Jordan, ", "you're verified."])

    server.then(answer)
    events = await say(make_llm(), "my policy number is one two three four")
    invoked = [e for e in events if isinstance(e, ToolInvoked)]
    assert invoked[0].name == "verify_policy" and invoked[0].result["found"] is True
    assert spoken(events) == "Thanks Jordan, you're verified."
    assert len(server.requests) == 2


async def test_parallel_tool_calls_run_concurrently(make_llm, stand_in, insurance):
    server, _ = stand_in
    barrier = asyncio.Barrier(2)

    async def first_half() -> dict[str, str]:
        """Half of a lookup that needs its sibling to run at the same time."""
        await asyncio.wait_for(barrier.wait(), 5)
        return {"part": "one"}

    async def second_half() -> dict[str, str]:
        """The other half."""
        await asyncio.wait_for(barrier.wait(), 5)
        return {"part": "two"}

    insurance.registry.add(first_half)
    insurance.registry.add(second_half)
    front = insurance.agents["front_desk"]
    insurance.agents["front_desk"] = front.model_copy(update={"tools": [*front.tools, "first_half", "second_half"]})
    server.then(lambda body: _async(sse_tools([("a", "first_half", "{}"), ("b", "second_half", "{}")])))
    server.then(lambda body: _async(sse(["Both done."])))
    events = await say(make_llm(), "do both")
    results = {e.name: e.result for e in events if isinstance(e, ToolInvoked)}
    assert results == {"first_half": {"part": "one"}, "second_half": {"part": "two"}}  # no timeout error
    tool_ids = [m["tool_call_id"] for m in server.requests[1]["messages"] if m["role"] == "tool"]
    assert tool_ids == ["a", "b"]


async def test_handoff_tool_switches_agent_and_announces(make_llm, stand_in):
    server, _ = stand_in
    server.then(
        lambda body: _async(sse_tools([("h1", "handoff_to_claims", '{"reason": "claim"}')], "Let me transfer you."))
    )

    async def claims_answer(body: dict[str, Any]) -> Response:
        assert "claims specialist" in body["messages"][0]["content"]
        assert {t["function"]["name"] for t in body["tools"]} >= {"claim_status", "handoff_to_front_desk"}
        return sse(["Your claim is under review."])

    server.then(claims_answer)
    orch = make_llm()
    events = await say(orch, "I want to check my claim status")
    assert Handoff("front_desk", "claims") in events
    after = spoken(events[events.index(Handoff("front_desk", "claims")) :])
    assert after.startswith("Hi, this is Sam from the claims team")
    assert after.endswith("Your claim is under review.")
    assert orch.active_agent == "claims"


async def test_transfer_tool_yields_transfer_after_the_words(make_llm, stand_in):
    server, _ = stand_in
    server.then(lambda body: _async(sse_tools([("t1", "transfer_call", "{}")], "Sure, connecting you now.")))
    server.then(lambda body: _async(sse(["Please hold."])))
    events = await say(make_llm(), "I'd like to speak to a person")
    assert isinstance(events[-1], Transfer) and events[-1].target == "+15550009999"
    assert spoken(events) == "Sure, connecting you now. Please hold."


async def test_timeout_then_success_speaks_a_holding_line(make_llm, stand_in):
    server, _ = stand_in

    async def hang(body: dict[str, Any]) -> Response:
        await asyncio.sleep(30)
        return sse(["too late"])

    server.then(hang).then(lambda body: _async(sse(["We're open from eight."])))
    events = await say(make_llm(llm_timeout_seconds=0.5), "what are your hours")
    assert [e.text for e in events if isinstance(e, TextChunk)] == [HOLDING_LINE, "We're open from eight."]


async def test_timeout_twice_apologizes_and_transfers(make_llm, stand_in):
    server, _ = stand_in

    async def hang(body: dict[str, Any]) -> Response:
        await asyncio.sleep(30)
        return sse(["too late"])

    server.then(hang).then(hang)
    events = await say(make_llm(llm_timeout_seconds=0.5), "what are your hours")
    assert isinstance(events[0], TextChunk) and events[0].text == HOLDING_LINE
    assert "sorry" in spoken(events[1:]).lower()
    assert isinstance(events[-1], Transfer)


async def test_429_twice_apologizes_and_transfers(make_llm, stand_in):
    server, _ = stand_in
    server.then(lambda body: _async(error(429))).then(lambda body: _async(error(429)))
    events = await say(make_llm(), "hello")
    assert events[0] == TextChunk(HOLDING_LINE)
    assert "trouble" in spoken(events)
    assert events[-1] == Transfer("+15550009999", "language model unavailable")


async def test_500_twice_without_a_human_hangs_up_gracefully(settings, insurance, call, memo, stand_in):
    server, url = stand_in
    insurance.spec = insurance.spec.model_copy(update={"human_number": None})
    server.then(lambda body: _async(error(500))).then(lambda body: _async(error(503)))
    llm_settings = settings.model_copy(update={"agent_engine": "llm", "openai_base_url": url})
    events = await say(build_orchestrator(llm_settings, insurance, call, memo), "hello")
    assert events[0] == TextChunk(HOLDING_LINE)
    assert "call us back" in spoken(events)
    assert isinstance(events[-1], HangUp)


async def test_500_then_success(make_llm, stand_in):
    server, _ = stand_in
    server.then(lambda body: _async(error(500))).then(lambda body: _async(sse(["Hello again."])))
    events = await say(make_llm(), "hello")
    assert spoken(events) == f"{HOLDING_LINE} Hello again."


async def test_tool_loop_is_bounded(make_llm, stand_in):
    server, _ = stand_in
    for i in range(3):
        server.then(lambda body, i=i: _async(sse_tools([(f"c{i}", "claim_status", '{"policy_number": "1234"}')])))
    events = await say(make_llm(llm_max_tool_steps=2), "status please")
    assert len([e for e in events if isinstance(e, ToolInvoked)]) == 2
    assert len(server.requests) == 2
    assert "longer than expected" in spoken(events)


async def _async(response: Response) -> Response:
    return response
