"""Settings validation (one clear line), logging with call ids, and the CLI entry point."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from callwright.config import SettingsError, load_settings
from callwright.logs import call_scope, configure_logging


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"ACS_STREAMING_MODE": "video"}, "invalid setting ACS_STREAMING_MODE: accepted values: 'media' or 'voice_live'"),
        ({"LOG_LEVEL": "LOUD"}, "invalid setting LOG_LEVEL: must be one of CRITICAL, ERROR, WARNING, INFO, DEBUG"),
        ({"ACS_CALLBACK_URL": "agent.example.com"}, "invalid setting ACS_CALLBACK_URL: must be an absolute http(s) URL"),
        ({"STT_PROCESSING_TIMEOUT": "-1"}, "invalid setting STT_PROCESSING_TIMEOUT"),
        ({"ACS_CONNECTION_STRING": "garbage"}, "ACS_CONNECTION_STRING must look like"),
        ({"ACS_CONNECTION_STRING": "endpoint=https://x.communication.azure.com/;accesskey=a2V5"},
         "ACS_JWT_AUDIENCE (the ACS resource id) is required"),
        ({"LOG_LEVELS": "callwright.media"}, "invalid setting LOG_LEVELS: expected logger=LEVEL pairs"),
    ],
)  # fmt: skip
def test_invalid_settings_stop_with_one_line(monkeypatch, env, needle):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SettingsError) as err:
        load_settings()
    message = str(err.value)
    assert needle in message
    assert "\n" not in message


def test_defaults_and_derived_urls(monkeypatch):
    monkeypatch.setenv("ACS_CALLBACK_URL", "https://agent.example.com/")
    s = load_settings()
    assert s.acs_streaming_mode == "media"
    assert s.stt_processing_timeout == 30.0
    assert s.callback_url == "https://agent.example.com/api/v1/call-events"
    assert s.media_url == "wss://agent.example.com/api/v1/media/stream"


def test_component_levels_and_call_ids_in_log_lines(capsys):
    s = load_settings(log_level="WARNING", log_levels="callwright.media=DEBUG")
    configure_logging(s)
    with call_scope("call-42"):
        logging.getLogger("callwright.media").debug("frame detail")
        logging.getLogger("callwright.events").info("hidden at WARNING")
    err = capsys.readouterr().err
    assert "callwright.media [call=call-42]: frame detail" in err
    assert "hidden at WARNING" not in err
    configure_logging(load_settings(log_level="INFO"))


def test_cli_refuses_bad_settings_with_one_line():
    env = {"ACS_STREAMING_MODE": "video", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-m", "callwright.cli", "serve", "--port", "0"], env=env, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1].startswith("invalid setting ACS_STREAMING_MODE")
