"""Logging: per-component loggers (``callwright.events``, ``callwright.media``, …) whose call-related lines
carry the callConnectionId.

The id travels in a context variable, so every line logged inside a call's task (or a lane thread that
set it) is tagged without threading the id through every call site.
"""

from __future__ import annotations

import contextvars
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from callwright.config import Settings, level_overrides

current_call_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("call_connection_id", default=None)

COMPONENTS = (
    "callwright.app",
    "callwright.events",
    "callwright.media",
    "callwright.cascade",
    "callwright.speech",
    "callwright.agents",
    "callwright.sessions",
    "callwright.auth",
    "callwright.calls",
    "callwright.emulator",
)


class CallIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "call_id"):
            record.call_id = current_call_id.get()
        record.call_tag = f" [call={record.call_id}]" if record.call_id else ""
        return True


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is now (it may be replaced after start: test capture, daemonising)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


@contextmanager
def call_scope(call_connection_id: str | None) -> Iterator[None]:
    token = current_call_id.set(call_connection_id)
    try:
        yield
    finally:
        current_call_id.reset(token)


def configure_logging(settings: Settings) -> None:
    """LOG_LEVEL sets every callwright logger; LOG_LEVELS raises or lowers single components."""
    root = logging.getLogger()
    handler_name = "callwright-console"
    if not any(h.get_name() == handler_name for h in root.handlers):
        handler = _StderrHandler()
        handler.set_name(handler_name)
        handler.addFilter(CallIdFilter())
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s%(call_tag)s: %(message)s"))
        root.addHandler(handler)
    level = logging.getLevelName(settings.log_level)
    logging.getLogger("callwright").setLevel(level)
    for name in COMPONENTS:
        logging.getLogger(name).setLevel(logging.NOTSET)
    # Libraries stay quiet unless the whole process runs at DEBUG.
    root.setLevel(level if settings.log_level == "DEBUG" else logging.WARNING)
    for name, lvl in level_overrides(settings.log_levels).items():
        logging.getLogger(name).setLevel(lvl)
