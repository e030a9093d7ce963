"""Logging: per-component loggers (``callwright.events``, ``callwright.media``, …) whose call-related lines
carry the callConnectionId.

The id travels in a context variable, so every line logged inside a call's task (or a lane thread that
set it) is tagged without threading the id through every call site.

Every line is sanitised on its way out (:class:`LogSanitizer`): control characters, newlines and lone
surrogates in the call id and in the formatted message are escaped and their length capped, so input such
as ``?callConnectionId=`` junk cannot forge log lines. PII stays out of INFO-and-above lines unless
``LOG_PII=true``: E.164 numbers (``+1555…``, ``4:+1555…``) are masked to their last two digits and text
wrapped in :func:`pii` (what the caller or the agent said) shows as ``<redacted N chars>``. DEBUG lines show
both, as DEBUG is for a developer's own machine.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
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


MAX_ARG_CHARS = 512
MAX_MESSAGE_CHARS = 8_192
MAX_CALL_ID_CHARS = 128
# C0/C1 controls (newline, carriage return, escape…), Unicode line/paragraph separators, lone surrogates.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
# E.164 numbers, bare or as ACS raw ids ("4:+1555…"); not inside a longer run of digits.
_PHONE = re.compile(r"(?<![\w+])(?:4:)?\+[1-9]\d{6,14}(?!\d)")


def _escape_char(m: re.Match[str]) -> str:
    code = ord(m.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def sanitize(text: str, limit: int = MAX_ARG_CHARS) -> str:
    """``text`` safe for one log line: controls escaped, capped at ``limit`` characters."""
    if len(text) > limit:
        text = f"{text[:limit]}…(+{len(text) - limit} chars)"
    return _UNSAFE.sub(_escape_char, text)


def redact_phone_numbers(text: str) -> str:
    """'+18447649276' → '<phone …76>' (the last two digits stay, to tell calls apart)."""
    return _PHONE.sub(lambda m: f"<phone …{m.group()[-2:]}>", text)


class PiiText:
    """Text that is personal data (a transcript, a reply): redacted in INFO+ lines unless LOG_PII=true.

    Redacted by default wherever it is formatted; only :class:`LogSanitizer` reveals it when allowed.
    """

    __slots__ = ("text",)

    def __init__(self, text: object) -> None:
        self.text = "" if text is None else str(text)

    def __str__(self) -> str:
        return f"<redacted {len(self.text)} chars>"

    __repr__ = __str__


def pii(text: object) -> PiiText:
    """Wrap caller or agent text for a log line: ``log.info("heard %r", pii(text))``."""
    return PiiText(text)


class CallIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "call_id"):
            record.call_id = current_call_id.get()
        call_id = record.call_id
        if call_id is not None and not isinstance(call_id, str):
            call_id = str(call_id)
        if call_id:
            call_id = sanitize(call_id, MAX_CALL_ID_CHARS)
            record.call_id = call_id
        record.call_tag = f" [call={call_id}]" if call_id else ""
        return True


class LogSanitizer(logging.Filter):
    """Formats each record once with its arguments sanitised and PII redacted (see the module docstring).

    After it, ``record.msg`` is the final text and ``record.args`` is empty, so every handler that sees
    the record (console, test capture, a log shipper) gets the same safe line.
    """

    def __init__(self, *, show_pii: bool = False) -> None:
        super().__init__()
        self.show_pii = show_pii

    def _arg(self, value: Any, reveal: bool) -> Any:
        if isinstance(value, PiiText):
            return value.text if reveal else value  # formats as "<redacted N chars>", with %s or %r
        if isinstance(value, str):
            return sanitize(value)
        return value

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_callwright_sanitized", False):
            return True
        reveal = self.show_pii or record.levelno < logging.INFO
        args = record.args
        if isinstance(args, tuple):
            record.args = tuple(self._arg(a, reveal) for a in args)
        elif isinstance(args, Mapping):
            record.args = {k: self._arg(v, reveal) for k, v in args.items()}
        elif args is not None:
            record.args = self._arg(args, reveal)  # type: ignore[assignment]
        try:
            message = record.getMessage()
        except Exception:
            return True  # a broken format string: logging reports it as it always does
        message = sanitize(message, MAX_MESSAGE_CHARS)
        if not reveal:
            message = redact_phone_numbers(message)
        record.msg = message
        record.args = None
        record._callwright_sanitized = True  # type: ignore[attr-defined]
        return True


class JsonFormatter(logging.Formatter):
    """LOG_FORMAT=json: one JSON object per line for log shippers (ts, level, logger, call_id, message, exc).
    The message is the sanitised one (LogSanitizer runs first), so PII stays redacted here too."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        call_id = getattr(record, "call_id", None)
        if call_id:
            out["call_id"] = call_id
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc"] = record.exc_text
        return json.dumps(out, ensure_ascii=False, default=str)


TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s%(call_tag)s: %(message)s"


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
    handler = next((h for h in root.handlers if h.get_name() == handler_name), None)
    if handler is None:
        handler = _StderrHandler()
        handler.set_name(handler_name)
        handler.addFilter(CallIdFilter())
        handler.addFilter(LogSanitizer())
        root.addHandler(handler)
    json_lines = getattr(settings, "log_format", "text") == "json"
    handler.setFormatter(JsonFormatter() if json_lines else logging.Formatter(TEXT_FORMAT))
    show_pii = bool(getattr(settings, "log_pii", False))
    for flt in handler.filters:
        if isinstance(flt, LogSanitizer):
            flt.show_pii = show_pii
    level = logging.getLevelName(settings.log_level)
    logging.getLogger("callwright").setLevel(level)
    for name in COMPONENTS:
        logging.getLogger(name).setLevel(logging.NOTSET)
    # Libraries stay quiet unless the whole process runs at DEBUG.
    root.setLevel(level if settings.log_level == "DEBUG" else logging.WARNING)
    for name, lvl in level_overrides(settings.log_levels).items():
        logging.getLogger(name).setLevel(lvl)


class LogLimiter:
    """At most one log line per reason per ``interval`` seconds, with the count of the ones held back: a
    stream of bad frames (50 a second) must not become 50 log lines a second."""

    def __init__(self, logger: logging.Logger, interval: float = 10.0) -> None:
        self._log = logger
        self._interval = interval
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def warning(self, reason: str, msg: str, *args: object) -> bool:
        """Log now (True) or count it for the next line about ``reason`` (False)."""
        now = time.monotonic()
        last = self._last.get(reason)
        if last is not None and now - last < self._interval:
            self._held[reason] = self._held.get(reason, 0) + 1
            return False
        held = self._held.pop(reason, 0)
        self._last[reason] = now
        suffix = f" (+{held} more like it in the last {self._interval:g} s)" if held else ""
        self._log.warning(msg + suffix, *args)
        return True
