"""Log lines cannot be forged through sanitised fields, and PII stays out of INFO+ lines by default."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from callwright.config import load_settings
from callwright.logs import CallIdFilter, LogSanitizer, call_scope, configure_logging, pii

log = logging.getLogger("callwright.events")


class Sanitizers:
    """Every LogSanitizer a record meets: caplog's, and the console handler's if an earlier test's app
    configured logging (the first one a record meets formats it)."""

    def __init__(self, own: LogSanitizer) -> None:
        self.own = own

    @property
    def show_pii(self) -> bool:
        return self.own.show_pii

    @show_pii.setter
    def show_pii(self, value: bool) -> None:
        for handler in [*logging.getLogger().handlers]:
            for flt in handler.filters:
                if isinstance(flt, LogSanitizer):
                    flt.show_pii = value


@pytest.fixture
def sanitized(caplog) -> Iterator[Sanitizers]:
    """The filters configure_logging puts on the console handler, on caplog's handler as well."""
    flt = LogSanitizer()
    ids = CallIdFilter()
    caplog.handler.addFilter(ids)
    caplog.handler.addFilter(flt)
    caplog.set_level(logging.DEBUG, logger="callwright")
    handle = Sanitizers(flt)
    handle.show_pii = False
    try:
        yield handle
    finally:
        handle.show_pii = False
        caplog.handler.removeFilter(flt)
        caplog.handler.removeFilter(ids)


def test_call_id_and_string_args_cannot_forge_lines(caplog, sanitized):
    forged = "abc\n2026-11-29 12:00:00 INFO    callwright.app: admin logged in\r\x1b[31m\u2028\ud800"
    with call_scope(forged):
        log.warning("media WebSocket refused for %s", forged)
    [record] = caplog.records
    line = caplog.handler.format(record) + f" {record.call_tag}"
    assert "\n" not in line and "\r" not in line and "\x1b" not in line and "\u2028" not in line
    assert "\\x0a2026-11-29" in record.getMessage()
    assert "\\ud800" in record.call_tag
    # The line can be written anywhere (no lone surrogate left).
    line.encode("utf-8")


def test_long_args_are_capped(caplog, sanitized):
    log.info("callConnectionId=%s", "x" * 100_000)
    message = caplog.records[0].getMessage()
    assert len(message) < 1_000 and message.endswith("…(+99488 chars)")


def test_phone_numbers_and_transcripts_are_redacted_at_info(caplog, sanitized):
    log.info("answered call from %s", "4:+18447649276")
    log.info("outbound call placed to %s", "+15551230001")
    log.info("not an interruption (%r, %d ms); resuming the reply", pii("my card is 4111"), 300)
    log.warning("participants %s", ["4:+18447649276", "8:acs:x_y"])
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "8447649276" not in text and "5551230001" not in text and "4111" not in text
    assert "answered call from <phone …76>" in text
    assert "placed to <phone …01>" in text
    assert "(<redacted 15 chars>, 300 ms)" in text
    assert "8:acs:x_y" in text  # ACS user ids are not phone numbers


def test_debug_lines_and_log_pii_show_them(caplog, sanitized):
    log.debug("caller %s said %r", "+18447649276", pii("hello there"))
    sanitized.show_pii = True
    log.info("caller %s said %r", "+18447649276", pii("hello there"))
    first, second = (r.getMessage() for r in caplog.records)
    assert first == second == "caller +18447649276 said 'hello there'"


def test_pii_text_is_redacted_even_without_the_filter():
    # A handler someone adds without LogSanitizer still sees no transcript.
    assert str(pii("secret words")) == "<redacted 12 chars>"
    assert f"{pii('secret')!r}" == "<redacted 6 chars>"


def test_configure_logging_wires_sanitising_and_log_pii(capsys):
    try:
        configure_logging(load_settings(log_level="INFO"))
        with call_scope("call-1\nFORGED"):
            log.info("answered call from %s (%s)", "4:+18447649276", pii("hi"))
        err = capsys.readouterr().err
        assert "[call=call-1\\x0aFORGED]: answered call from <phone …76> (<redacted 2 chars>)" in err
        configure_logging(load_settings(log_level="INFO", log_pii=True))
        log.info("answered call from %s (%s)", "4:+18447649276", pii("hi"))
        assert "answered call from 4:+18447649276 (hi)" in capsys.readouterr().err
    finally:
        configure_logging(load_settings(log_level="INFO"))
