"""Tools both agents can call: a typed Python function becomes a JSON-schema'd tool.

A tool is a plain function (sync or async) with annotated parameters and a docstring; the first
docstring paragraph is the description, a Google-style ``Args:`` section gives parameter descriptions.
A parameter annotated :class:`ToolContext` is injected by the registry and hidden from the schema, so
tools reach the call's memo, the scenario fixture and call control without globals.

Sync tools run in a worker thread (they may touch files or databases). Bad arguments or a failing tool
never raise into the orchestrator: the result is ``{"error": "..."}``, which the LLM can read and the
scenario agent treats as a failure.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, get_type_hints

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from callwright.agents.context import ToolContext

log = logging.getLogger("callwright.agents.tools")

_TOOL_ATTR = "__callwright_tool__"


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    parameters: dict[str, Any]
    fn: Callable[..., Any]
    args_model: type[BaseModel]
    context_param: str | None

    def openai_schema(self) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }


def tool(fn: Callable[..., Any] | None = None, *, name: str | None = None, description: str | None = None) -> Any:
    """Mark a function as a tool (no global registration; add it to a :class:`ToolRegistry`)."""

    def mark(f: Callable[..., Any]) -> Callable[..., Any]:
        setattr(f, _TOOL_ATTR, {"name": name, "description": description})
        return f

    return mark(fn) if fn is not None else mark


def _parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    if not doc:
        return "", {}
    doc = inspect.cleandoc(doc)
    parts = re.split(r"\n\s*(?:Args|Arguments|Parameters):\s*\n", doc, maxsplit=1)
    summary = " ".join(parts[0].split("\n\n")[0].split())
    params: dict[str, str] = {}
    if len(parts) == 2:
        current = None
        for line in parts[1].splitlines():
            m = re.match(r"^ {0,4}(\w+)\s*(?:\([^)]*\))?:\s*(.*)", line)
            if m:
                current = m.group(1)
                params[current] = m.group(2).strip()
            elif current and line.strip():
                params[current] += " " + line.strip()
    return summary, params


def build_spec(fn: Callable[..., Any], *, name: str | None = None, description: str | None = None) -> ToolSpec:
    meta = getattr(fn, _TOOL_ATTR, {}) or {}
    name = name or meta.get("name") or fn.__name__
    summary, param_docs = _parse_docstring(fn.__doc__)
    description = description or meta.get("description") or summary or name
    hints = get_type_hints(fn)
    fields: dict[str, Any] = {}
    context_param = None
    for pname, param in inspect.signature(fn).parameters.items():
        ann = hints.get(pname, Any)
        if ann is ToolContext:
            context_param = pname
            continue
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise TypeError(f"tool {name}: *args/**kwargs are not supported")
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[pname] = (ann, Field(default, description=param_docs.get(pname)))
    model = create_model(  # type: ignore[call-overload]
        f"{name}_args", __config__=ConfigDict(extra="forbid"), **fields
    )
    schema = model.model_json_schema()
    schema.pop("title", None)
    for prop in schema.get("properties", {}).values():
        prop.pop("title", None)
    schema.setdefault("properties", {})
    schema["additionalProperties"] = False
    return ToolSpec(name, description, schema, fn, model, context_param)


class ToolRegistry:
    """Per-scenario set of tools, looked up by name by both orchestrators."""

    def __init__(self, tools: Iterable[Callable[..., Any]] = ()) -> None:
        self._tools: dict[str, ToolSpec] = {}
        for fn in tools:
            self.add(fn)

    def add(self, fn: Callable[..., Any], *, name: str | None = None, description: str | None = None) -> ToolSpec:
        spec = build_spec(fn, name=name, description=description)
        if spec.name in self._tools:
            raise ValueError(f"tool {spec.name!r} registered twice")
        self._tools[spec.name] = spec
        return spec

    def tool(self, fn: Callable[..., Any] | None = None, *, name: str | None = None) -> Any:
        """Decorator form of :meth:`add`."""

        def deco(f: Callable[..., Any]) -> Callable[..., Any]:
            self.add(f, name=name)
            return f

        return deco(fn) if fn is not None else deco

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def names(self) -> list[str]:
        return list(self._tools)

    def get(self, name: str) -> ToolSpec:
        return self._tools[name]

    def schemas(self, names: Iterable[str]) -> list[dict[str, Any]]:
        return [self._tools[n].openai_schema() for n in names if n in self._tools]

    async def call(self, name: str, arguments: dict[str, Any], ctx: ToolContext) -> Any:
        spec = self._tools.get(name)
        if spec is None:
            return {"error": f"unknown tool {name!r}"}
        try:
            args = spec.args_model.model_validate(arguments or {})
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = ".".join(str(p) for p in err["loc"]) or "arguments"
            return {"error": f"invalid argument {loc}: {err['msg']}"}
        kwargs = {k: getattr(args, k) for k in spec.args_model.model_fields}
        if spec.context_param:
            kwargs[spec.context_param] = ctx
        try:
            if inspect.iscoroutinefunction(spec.fn):
                return await spec.fn(**kwargs)
            return await asyncio.to_thread(spec.fn, **kwargs)
        except Exception as exc:  # a broken tool must not break the call
            log.exception("tool %s failed", name)
            return {"error": f"{type(exc).__name__}: {exc}"}
