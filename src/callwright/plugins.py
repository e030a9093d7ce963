"""Plug-ins: user code that extends a running server, and the registries it extends.

A plug-in is a function ``setup(services)`` (sync or async) named by a ``module:function`` spec in
``CALLWRIGHT_PLUGINS`` (comma-separated; ``callwright serve --app module:function`` sets it). The app's
lifespan imports and calls each one once, after the long-lived objects exist and before the speech
engines, the scenario and the orchestrators are built from the settings, so what a plug-in registers
(event handlers, toolsets, orchestrators, speech engines, media handlers) is what the server then uses.
The object passed in is :class:`callwright.services.Services`; docs/extending.md shows each plug-in point.

Start-up errors are one line naming the setting (or file) at fault: a plug-in that cannot be imported, a
plug-in that raises, an engine name nobody registered. :class:`OneLineStartupErrors` keeps uvicorn from
printing the traceback of a :class:`~callwright.config.SettingsError` raised in the lifespan.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import os
import re
import sys
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from callwright.config import SettingsError

if TYPE_CHECKING:
    from callwright.services import Services

log = logging.getLogger("callwright.plugins")

PLUGINS_SETTING = "CALLWRIGHT_PLUGINS"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_SPEC = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")

B = TypeVar("B")

PluginFunction = Callable[["Services"], "Awaitable[None] | None"]


class Registry(Generic[B]):
    """Builders by name, chosen at start-up by one setting (``setting`` names it in errors).

    One registry per app (built in the lifespan, reached through ``app.state.services``): registering
    in one server never leaks into another in the same process (tests run several).
    """

    def __init__(self, setting: str, entries: Mapping[str, B] | None = None) -> None:
        self.setting = setting
        self._entries: dict[str, B] = {}
        for name, builder in (entries or {}).items():
            self.register(name, builder)

    def register(self, name: str, builder: B, *, replace: bool = False) -> None:
        """Add ``builder`` under ``name``; ``replace=True`` swaps a built-in (otherwise a clash is an error)."""
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"{self.setting}: invalid name {name!r} (letters, digits, _ . -; at most 64)")
        if not callable(builder):
            raise TypeError(f"{self.setting}: the builder registered as {name!r} is not callable")
        if name in self._entries and not replace:
            raise ValueError(f"{self.setting}: {name!r} is already registered (pass replace=True to swap it)")
        self._entries[name] = builder

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def builder(self, name: str) -> B:
        """The builder for ``name``; a name nobody registered stops the start with one line."""
        try:
            return self._entries[name]
        except KeyError:
            raise SettingsError(
                f"invalid setting {self.setting}: unknown name {name!r} (registered: {', '.join(self.names())})"
            ) from None

    def check(self, name: str) -> None:
        self.builder(name)


class ToolsetRegistry:
    """Named toolsets (sequences of tool functions) a scenario lists under ``toolsets:``.

    Starts with the packaged ones; a plug-in adds its own with :meth:`register`. A name found nowhere is
    imported as a module exposing ``TOOLS`` (the older way, which needs the module on the import path).
    """

    def __init__(self, entries: Mapping[str, Sequence[Callable[..., Any]]] | None = None) -> None:
        self._toolsets: MutableMapping[str, tuple[Callable[..., Any], ...]] = {}
        for name, tools in (entries or {}).items():
            self.register(name, tools)

    def register(self, name: str, tools: Iterable[Callable[..., Any]], *, replace: bool = False) -> None:
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"toolset: invalid name {name!r}")
        items = tuple(tools)
        if not items or not all(callable(t) for t in items):
            raise TypeError(f"toolset {name!r}: expected a non-empty sequence of functions")
        if name in self._toolsets and not replace:
            raise ValueError(f"toolset {name!r} is already registered (pass replace=True to swap it)")
        self._toolsets[name] = items

    def names(self) -> list[str]:
        return sorted(self._toolsets)

    def __contains__(self, name: object) -> bool:
        return name in self._toolsets

    def get(self, name: str) -> tuple[Callable[..., Any], ...] | None:
        return self._toolsets.get(name)

    def as_mapping(self) -> Mapping[str, Sequence[Callable[..., Any]]]:
        return dict(self._toolsets)


def parse_plugin_specs(value: str | Iterable[str]) -> list[str]:
    """``"a.b:setup, c:init"`` → ``["a.b:setup", "c:init"]``; a malformed spec is a ValueError."""
    items = value.split(",") if isinstance(value, str) else list(value)
    specs = [s.strip() for s in items if s and s.strip()]
    for spec in specs:
        if not _SPEC.match(spec):
            raise ValueError(f"expected module:function entries, comma-separated; got {spec!r}")
    return specs


def import_plugin(spec: str) -> PluginFunction:
    """Import ``module:function``; any failure is one SettingsError line naming the setting and the spec."""
    module_name, _, attr = spec.partition(":")
    # `callwright serve` is a console script: unlike `python -m`, the working directory is not on the
    # import path. uvicorn adds it for --app-dir the same way; a plug-in module beside the .env is found.
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or anything the module raises while importing
        raise SettingsError(
            f"invalid setting {PLUGINS_SETTING}: cannot import {spec!r}: {type(exc).__name__}: {_first_line(exc)}"
        ) from None
    fn = getattr(module, attr, None)
    if fn is None or not callable(fn):
        raise SettingsError(f"invalid setting {PLUGINS_SETTING}: {spec!r}: module {module_name} has no function {attr}")
    return fn  # type: ignore[no-any-return]


async def load_plugins(specs: Sequence[str], services: Services) -> list[str]:
    """Import and run each plug-in in order; returns the specs loaded. Stops the start on the first failure."""
    loaded: list[str] = []
    for spec in specs:
        fn = import_plugin(spec)
        try:
            result = fn(services)
            if inspect.isawaitable(result):
                await result
        except SettingsError:
            raise
        except Exception as exc:
            raise SettingsError(
                f"invalid setting {PLUGINS_SETTING}: plug-in {spec!r} failed: {type(exc).__name__}: {_first_line(exc)}"
            ) from None
        log.info("plug-in %s loaded", spec)
        loaded.append(spec)
    return loaded


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "(no message)"


def startup_error_line(exc: BaseException) -> str:
    """One line for a start-up failure: the message, plus the setting a speech builder's note names."""
    notes = [n for n in getattr(exc, "__notes__", ()) if isinstance(n, str)]
    where = f" ({notes[-1]})" if notes else ""
    return f"{_first_line(exc)}{where}"


class OneLineStartupErrors:
    """ASGI middleware: a SettingsError raised while the app starts is reported as its one line.

    Starlette reports a failed lifespan start with the whole traceback as the message, which uvicorn logs
    (40 lines for a typo in a setting). A SettingsError already says what is wrong and where, so its text
    replaces the traceback; any other exception keeps it (that one is a bug worth its traceback).
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") != "lifespan":
            await self.app(scope, receive, send)
            return

        async def send_one_line(message: Any) -> None:
            if message.get("type") == "lifespan.startup.failed":
                # Called from Starlette's `except` block: the exception being handled is the start-up error.
                exc = sys.exc_info()[1]
                if isinstance(exc, SettingsError):
                    message = {**message, "message": str(exc)}
            await send(message)

        await self.app(scope, receive, send_one_line)
