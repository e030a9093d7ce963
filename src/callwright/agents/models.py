"""The shape of scenario and agent files (pydantic), validated with Jinja checks on every template.

Template fields are compiled while validating (the Jinja environment arrives through pydantic's
validation context), so a broken template is reported like any other bad field: file, line, field.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from jinja2 import TemplateSyntaxError
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo
from pydantic_core import PydanticCustomError


def _check_template(value: str, info: ValidationInfo) -> str:
    env = (info.context or {}).get("jinja")
    if env is not None:
        try:
            env.parse(value)
        except TemplateSyntaxError as exc:
            raise PydanticCustomError(
                "jinja", "bad Jinja template: {msg}", {"msg": exc.message or str(exc), "template_line": exc.lineno}
            ) from None
    return value


def _check_expression(value: str, info: ValidationInfo) -> str:
    env = (info.context or {}).get("jinja")
    if env is not None:
        try:
            env.compile_expression(value)
        except TemplateSyntaxError as exc:
            raise PydanticCustomError(
                "jinja", "bad Jinja expression: {msg}", {"msg": exc.message or str(exc), "template_line": 1}
            ) from None
    return value


Template = Annotated[str, AfterValidator(_check_template)]
Expression = Annotated[str, AfterValidator(_check_expression)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SlotSpec(_Strict):
    """A value the agent must collect before it can act (asked for with ``prompt``)."""

    name: str
    type: Literal["digits", "yes_no", "choice", "text"] = "digits"
    prompt: Template
    reprompt: Template | None = None
    options: list[str] = Field(default_factory=list, description="for type=choice")
    min_digits: int = Field(1, ge=1)
    max_digits: int = Field(16, ge=1)


class ToolCallSpec(_Strict):
    name: str
    args: dict[str, Template] = Field(default_factory=dict)
    fail_when: Expression | None = Field(None, description="Jinja expression over `result`")
    fail_say: Template | None = None
    retry_slot: str | None = Field(None, description="slot to clear and ask again when the tool fails")


class ActionSpec(_Strict):
    """What happens once an intent is recognized and its slots are filled."""

    slots: list[SlotSpec] = Field(default_factory=list)
    tool: ToolCallSpec | None = None
    set_context: dict[str, Template] = Field(default_factory=dict)
    say: Template | None = None
    handoff: str | None = None
    action: Literal["transfer", "hangup"] | None = None
    transfer_to: str | None = None


class IntentSpec(ActionSpec):
    name: str
    examples: list[str] = Field(min_length=1)


class AgentSpec(_Strict):
    name: str
    description: str = ""
    greeting: Template | None = None
    announce: Template | None = Field(None, description="spoken when a handoff brings the caller here")
    voice: str | None = None
    instructions: Template = ""
    instructions_file: str | None = Field(None, description="Jinja prompt file, relative to the scenario")
    intents: list[IntentSpec] = Field(default_factory=list)
    tools: list[str] = Field(default_factory=list, description="tools the LLM orchestrator may call")
    handoffs: list[str] = Field(default_factory=list, description="agents this one may hand the caller to")
    on_enter: ActionSpec | None = Field(None, description="run right after a handoff brings the caller here")
    dtmf_intent: str | None = Field(None, description="intent started by keypad input outside a slot")
    reprompts: list[Template] = Field(
        default_factory=lambda: [
            "Sorry, I didn't catch that. Could you say it another way?",
            "I'm sorry, I still didn't get that. You can ask about our opening hours, our address, or more.",
        ]
    )
    offer_human: Template = "I'm sorry, I'm having trouble understanding. Would you like me to connect you to a person?"
    max_failures: int = Field(3, ge=1)


class ScenarioSpec(_Strict):
    name: str
    description: str = ""
    start_agent: str
    agents: list[str] | None = Field(None, description="agent files; default: every agents/*.yaml")
    handoff_style: Literal["announced", "silent"] | None = None
    human_number: str | None = Field(None, description="where transfers go when no number is given")
    fixture: str | None = Field(None, description="JSON file with the data the lookup tools read")
    toolsets: list[str] = Field(default_factory=list)
    vars: dict[str, Any] = Field(default_factory=dict, description="constants for templates, e.g. company")
    intents: list[IntentSpec] = Field(default_factory=list, description="intents every agent understands")
    goodbye: Template = "Thank you for calling. Goodbye!"
