"""The realtime session for a call's active agent: ``session.update`` and the greeting, per dialect.

VoiceLive (and the local server through the VoiceLive SDK) takes 16 kHz in and out, so ACS audio goes
through untouched; OpenAI GA takes 24 kHz only and the handler resamples (realtime-protocol.md §0.1, §3).
"""

from __future__ import annotations

import logging
from typing import Any

from callwright.agents.runtime import last_agent_words
from callwright.config import Settings
from callwright.voice.realtime.backends import BackendSpec

log = logging.getLogger("callwright.voice_live")

HANDOFF_PREFIX = "handoff_to_"
OPENAI_VOICES = frozenset({"alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar"})
DEFAULT_OPENAI_VOICE = "marin"
PRIOR_MESSAGES = 30  # of a resumed call's conversation, given to the model in its instructions
PRIOR_CHARS = 400  # per message
PHONE_STYLE = (
    "\n\nYou are speaking on a phone call. Reply in one to three short spoken sentences; no lists, "
    "no markdown. Digits the caller keyed on the keypad arrive as '[keypad] 1234#'."
)


class AgentView:
    """What the session needs from the call's orchestrator (the scenario agent or the LLM one)."""

    def __init__(self, orchestrator: Any, spec: BackendSpec) -> None:
        self.orch = orchestrator
        self.spec = spec
        # A call whose media came back mid-conversation (another replica took it over): the new realtime
        # session knows nothing of it, so what was said so far goes into its instructions, taken now —
        # before this session adds to the history.
        memo = getattr(orchestrator, "memo", None)
        history = list(getattr(memo, "history", None) or [])
        self._prior = prior_conversation(history) if last_agent_words(history) is not None else ""

    @property
    def scenario(self) -> Any:
        return self.orch.scenario

    @property
    def name(self) -> str:
        return str(self.orch.active_agent)

    def instructions(self) -> str:
        scenario = self.scenario
        source = scenario.instructions.get(self.name) or f"You are {self.name}."
        try:
            text = scenario.render_block(source, self.orch.template_context({}))
        except Exception:  # a template failing at render time must not cost the call
            log.exception("instructions of %s failed to render; using the raw text", self.name)
            text = source
        return text + PHONE_STYLE + self._prior

    def greeting(self) -> str:
        agent = self.scenario.agents[self.name]
        self.orch._ensure_profile()  # the greeting may name the caller (as the cascade's greeting does)
        resume = getattr(self.orch, "resume_line", None)
        line = resume() if callable(resume) else None
        if line:
            return str(line)  # the conversation goes on: an apology and the last question, not a new greeting
        return str(self.orch.render(agent.greeting or "Hello, how can I help you today?", {})).strip()

    def tool_names(self) -> list[str]:
        scenario = self.scenario
        agents = list(scenario.agents.values()) if self.spec.kind == "local" else [scenario.agents[self.name]]
        # The local server's scenario agent switches agents inside the server, so every tool of the
        # scenario stays listed there; a cloud model gets the active agent's tools only.
        names: list[str] = []
        for agent in agents:
            names.extend(agent.tools)
            for intent in agent.intents:
                if intent.tool is not None:
                    names.append(intent.tool.name)
            if agent.on_enter is not None and agent.on_enter.tool is not None:
                names.append(agent.on_enter.tool.name)
        names.extend(("transfer_call", "hang_up"))
        return [n for n in dict.fromkeys(names) if n in scenario.registry]

    def tools(self) -> list[dict[str, Any]]:
        registry = self.scenario.registry
        tools = []
        for name in self.tool_names():
            spec = registry.get(name)
            tools.append({"type": "function", "name": spec.name, "description": spec.description,
                          "parameters": spec.parameters})  # fmt: skip
        for target in self.scenario.agents[self.name].handoffs:
            desc = self.scenario.agents[target].description or target
            tools.append({
                "type": "function", "name": f"{HANDOFF_PREFIX}{target}",
                "description": f"Hand the caller to the {target} agent: {desc}",
                "parameters": {"type": "object", "properties": {"reason": {"type": "string"}}},
            })  # fmt: skip
        return tools

    def voice(self, settings: Settings) -> str | None:
        return settings.azure_voicelive_voice or getattr(self.orch, "active_voice", None)


def prior_conversation(history: list[dict[str, Any]]) -> str:
    """The conversation so far, as text for a resumed call's instructions (bounded)."""
    lines = []
    for message in history[-PRIOR_MESSAGES:]:
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            continue
        content = str(message.get("content") or "").strip()
        if not content:
            continue
        who = "Caller" if message["role"] == "user" else "You"
        cut = " (cut off by the caller)" if message.get("interrupted") else ""
        lines.append(f"{who}: {content[:PRIOR_CHARS]}{cut}")
    if not lines:
        return ""
    return (
        "\n\nThe call's audio dropped for a moment and is back now. The conversation so far:\n"
        + "\n".join(lines)
        + "\nContinue from there: do not greet the caller again."
    )


def _turn_detection(settings: Settings) -> dict[str, Any]:
    td: dict[str, Any] = {
        "type": settings.voicelive_turn_detection,
        "threshold": settings.voicelive_vad_threshold,
        "prefix_padding_ms": settings.voicelive_vad_prefix_padding_ms,
        "silence_duration_ms": settings.voicelive_vad_silence_ms,
        "create_response": True,
        "interrupt_response": True,
    }
    return td


def session_update(settings: Settings, spec: BackendSpec, agent: AgentView, *, first: bool) -> dict[str, Any]:
    """``session.update`` for the active agent; ``first`` adds the audio formats and turn detection."""
    voice = agent.voice(settings)
    if spec.dialect == "voicelive":
        session: dict[str, Any] = {"modalities": ["text", "audio"], "instructions": agent.instructions(),
                                   "tools": agent.tools(), "tool_choice": "auto"}  # fmt: skip
        if voice:
            session["voice"] = (
                voice if voice in OPENAI_VOICES else {"type": "azure-standard", "name": voice}
            )  # Azure neural voice names (en-US-AvaNeural, …) are azure-standard voices
        if first:
            session.update(
                input_audio_format="pcm16",
                input_audio_sampling_rate=16_000,
                output_audio_format="pcm16_16000hz",
                input_audio_transcription={"model": settings.voicelive_transcription_model or "azure-speech"},
                turn_detection=_turn_detection(settings),
            )
        return {"type": "session.update", "session": session}
    session = {"type": "realtime", "instructions": agent.instructions(), "tools": agent.tools(), "tool_choice": "auto"}
    if first:
        # GA: one voice per session once audio has played, so it is set here only.
        session["output_modalities"] = ["audio"]
        session["audio"] = {
            "input": {
                "format": {"type": "audio/pcm", "rate": 24_000},
                "transcription": {"model": settings.voicelive_transcription_model or "gpt-4o-mini-transcribe"},
                "turn_detection": _turn_detection(settings),
            },
            "output": {
                "format": {"type": "audio/pcm", "rate": 24_000},
                "voice": voice if voice in OPENAI_VOICES else DEFAULT_OPENAI_VOICE,
            },
        }
    return {"type": "session.update", "session": session}


def greeting_request(spec: BackendSpec, text: str) -> dict[str, Any]:
    """The greeting, spoken word for word: VoiceLive speaks a pre-generated assistant message; GA is asked
    through the response's instructions."""
    if spec.dialect == "voicelive":
        message = {"type": "message", "role": "assistant", "content": [{"type": "text", "text": text}]}
        return {"type": "response.create", "response": {"pre_generated_assistant_message": message}}
    ask = f"Greet the caller with exactly these words, nothing else: {text}"
    return {"type": "response.create", "response": {"instructions": ask}}


def user_text(text: str) -> dict[str, Any]:
    return {"type": "conversation.item.create",
            "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}}  # fmt: skip


def beta_name(kind: str) -> str:
    """GA event names mapped to the beta/VoiceLive names the handler dispatches on (§2)."""
    return _GA_NAMES.get(kind, kind)


_GA_NAMES = {
    "response.output_audio.delta": "response.audio.delta",
    "response.output_audio.done": "response.audio.done",
    "response.output_audio_transcript.delta": "response.audio_transcript.delta",
    "response.output_audio_transcript.done": "response.audio_transcript.done",
    "response.output_text.delta": "response.text.delta",
    "response.output_text.done": "response.text.done",
    "conversation.item.added": "conversation.item.created",
}
