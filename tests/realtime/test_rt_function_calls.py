"""Function calling: the scenario agent's tool steps become realtime function calls the client answers."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest
from rt_support import CLIENTS, Client, Events, rt_settings

from callwright.agents.context import ToolContext
from callwright.agents.lookups import claim_status, verify_policy
from callwright.agents.scenario import load_scenario


def _client_tools() -> dict[str, Any]:
    """The client's own implementations (here: the same lookups over the scenario's fixture)."""
    fixture = load_scenario(rt_settings()).fixture
    ctx = ToolContext(fixture=fixture)
    return {
        "verify_policy": lambda args: verify_policy(ctx, **args),
        "claim_status": lambda args: claim_status(ctx, **args),
    }


async def _user_says(conn: Any, text: str) -> None:
    await conn.send(
        {"type": "conversation.item.create",
         "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}}
    )  # fmt: skip
    await conn.send({"type": "response.create"})


async def _answer(conn: Any, events: Events, done_count: int, tools: dict[str, Any]) -> dict[str, Any]:
    """Wait for the response that ends in a function call, run the tool, send the output and a new
    response.create only after that response's response.done (realtime-protocol.md §0.8)."""
    done = (await events.wait("response.done", done_count))[-1]
    calls = [o for o in done.response.output if o.type == "function_call"]
    assert len(calls) == 1, done.response.output
    call = calls[0]
    args = json.loads(call.arguments)
    result = tools[call.name](args)
    await conn.send(
        {"type": "conversation.item.create",
         "item": {"type": "function_call_output", "call_id": call.call_id, "output": json.dumps(result)}}
    )  # fmt: skip
    await conn.send({"type": "response.create"})
    return {"name": call.name, "arguments": args}


@pytest.mark.parametrize("client", CLIENTS, ids=lambda c: c.dialect)
async def test_function_call_round_trip(rt: tuple[str, Any], client: Client) -> None:
    url, _ = rt
    async with httpx.AsyncClient() as http:
        listed = (await http.get(f"{url}/v1/scenarios/insurance/tools")).json()["tools"]
    names = {t["name"] for t in listed}
    assert {"verify_policy", "claim_status", "transfer_call", "hang_up"} <= names
    tools = _client_tools()
    transcript_done = client.ev("response.audio_transcript.done")
    async with client.connect(url) as conn:
        events = Events(conn)
        await conn.send({"type": "session.update", "session": client.session(tools=listed)})
        await events.wait("session.updated")
        # natural speech asks for the claim status; the agent asks for the policy number (no tool yet)
        await client.stream(conn, client.speech("claim") + client.silence(1200))
        first = (await events.wait("response.done"))[0]
        assert first.response.status == "completed"
        assert "policy number" in events.of(transcript_done)[0].transcript

        await _user_says(conn, "my policy number is one two three four")
        verify = await _answer(conn, events, 2, tools)
        assert verify == {"name": "verify_policy", "arguments": {"policy_number": "1234"}}
        # the output item is announced before its arguments stream, and the args arrive in pieces
        kinds = events.types()
        assert kinds.index("response.output_item.added") < kinds.index("response.function_call_arguments.delta")
        status = await _answer(conn, events, 3, tools)
        # the handoff's claim lookup reuses the policy number the "model" already knows
        assert status == {"name": "claim_status", "arguments": {"policy_number": "1234"}}
        final = (await events.wait("response.done", 4))[-1]
        assert final.response.status == "completed"
        spoken = events.of(transcript_done)[-1].transcript
        assert "Jordan" in spoken and "under review" in spoken and "C 2041" in spoken

        # asking for a person: the transfer line, then a transfer_call function call in the same response
        await _user_says(conn, "I'd like to speak to a person")
        transfer = (await events.wait("response.done", 5))[-1]
        kinds_out = [o.type for o in transfer.response.output]
        assert kinds_out == ["message", "function_call"]
        call = transfer.response.output[1]
        assert call.name == "transfer_call"
        assert json.loads(call.arguments)["target"] == "+15550009999"
        assert "connecting you" in transfer.response.output[0].content[0].transcript
        await conn.send(
            {"type": "conversation.item.create",
             "item": {"type": "function_call_output", "call_id": call.call_id, "output": '{"status": "ok"}'}}
        )  # fmt: skip
        await conn.send({"type": "response.create"})
        after = (await events.wait("response.done", 6))[-1]
        assert after.response.status == "completed" and not after.response.output
        assert not events.of("error")
        await events.close()


async def test_unlisted_tools_run_on_the_server(rt: tuple[str, Any]) -> None:
    """Without tools in the session the agent runs its own lookups and just answers."""
    url, _ = rt
    client = openai.AsyncOpenAI(api_key="sk-local", base_url=f"{url}/v1")
    async with client.realtime.connect(model="callwright-scenario:insurance") as conn:
        events = Events(conn)
        await _user_says(conn, "I want to check my claim status")
        await events.wait("response.done")
        await _user_says(conn, "my policy number is one two three four")
        done = (await events.wait("response.done", 2))[-1]
        assert [o.type for o in done.response.output] == ["message"]
        assert "under review" in events.of("response.output_audio_transcript.done")[-1].transcript
        await events.close()
