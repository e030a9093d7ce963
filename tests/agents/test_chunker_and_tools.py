"""Clause cutting for streaming TTS, and the typed-function-to-JSON-schema tool registry."""

from __future__ import annotations

from typing import Literal

from callwright.agents.chunker import ClauseChunker, split_clauses
from callwright.agents.context import ToolContext
from callwright.agents.telephony import TELEPHONY_TOOLS
from callwright.agents.tools import ToolRegistry


def test_clauses_never_split_numbers_or_abbreviations():
    chunker = ClauseChunker(min_clause_chars=10)
    text = "Sure. Mr. Smith paid 3.5 dollars, or 1,000 cents, to Dr. J. Lee; that's all. Bye"
    out: list[str] = []
    for ch in text:  # token by token, the worst case
        out += chunker.feed(ch)
    out += chunker.flush()
    assert out == ["Sure.", "Mr. Smith paid 3.5 dollars,", "or 1,000 cents,", "to Dr. J. Lee;", "that's all.", "Bye"]


def test_short_clauses_are_not_cut_at_commas():
    assert split_clauses("Yes, sure, I can help with that, of course.") == [
        "Yes, sure, I can help with that,",
        "of course.",
    ]


async def test_registry_schema_and_call():
    registry = ToolRegistry(TELEPHONY_TOOLS)

    def lookup(ctx: ToolContext, kind: Literal["claim", "policy"], number: int, tags: list[str] | None = None) -> dict:
        """Look something up.

        Args:
            kind: what to look up.
            number: its number.
        """
        return {"kind": kind, "number": number, "tags": tags, "has_ctx": isinstance(ctx, ToolContext)}

    spec = registry.add(lookup)
    params = spec.openai_schema()["function"]["parameters"]
    assert spec.description == "Look something up."
    assert params["required"] == ["kind", "number"]
    assert params["properties"]["kind"]["enum"] == ["claim", "policy"]
    assert params["properties"]["number"] == {"type": "integer", "description": "its number."}
    assert "ctx" not in params["properties"]
    ctx = ToolContext()
    assert await registry.call("lookup", {"kind": "claim", "number": "7"}, ctx) == {
        "kind": "claim",
        "number": 7,
        "tags": None,
        "has_ctx": True,
    }
    bad = await registry.call("lookup", {"kind": "car", "number": 1}, ctx)
    assert bad["error"].startswith("invalid argument kind")
    assert "error" in await registry.call("nope", {}, ctx)


async def test_hang_up_and_transfer_only_schedule_actions():
    registry = ToolRegistry(TELEPHONY_TOOLS)
    ctx = ToolContext(human_number="+15550009999")
    result = await registry.call("transfer_call", {}, ctx)
    assert result["status"] == "scheduled"
    assert ctx.pending_action is not None and ctx.pending_action.target == "+15550009999"
    sent = await registry.call("send_dtmf", {"tones": "12#"}, ToolContext())
    assert "error" in sent  # no call control on this context: a clear error, not a crash
