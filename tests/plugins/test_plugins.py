"""Plug-in loading and the registries: specs, one-line failures, engines and handlers a plug-in adds."""

from __future__ import annotations

import textwrap
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from callwright.config import SettingsError, load_settings
from callwright.events.processor import CallEventProcessor
from callwright.metrics import Metrics
from callwright.plugins import Registry, ToolsetRegistry, load_plugins, parse_plugin_specs, startup_error_line
from callwright.services import build_services
from callwright.sessions.registry import CallRegistry
from callwright.sessions.store import build_store
from callwright.voice.factory import MediaHandlerFactory

from .conftest import history, plugin_stack, said

# Whole calls with a server start each: generous on a loaded two-core machine (one call takes ~30 s there).
pytestmark = pytest.mark.timeout(300)


def write_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str) -> str:
    """A plug-in module with a name of its own (modules are cached per process); returns its name."""
    name = f"plugin_{uuid.uuid4().hex[:10]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(body), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def services_for_tests(**settings: Any) -> Any:
    state = SimpleNamespace(
        processor=CallEventProcessor(),
        media_factory=MediaHandlerFactory(),
        calls=CallRegistry(10),
        store=build_store(None, prefix="t", ttl_seconds=60),
        metrics=Metrics(),
        automation=None,
    )
    return build_services(state, load_settings(**settings))


def test_specs_parse_and_bad_ones_name_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_plugin_specs(" a.b:setup, c:init ,") == ["a.b:setup", "c:init"]
    monkeypatch.setenv("CALLWRIGHT_PLUGINS", "pkg.mod:setup,other:go")
    assert load_settings().plugins == ["pkg.mod:setup", "other:go"]
    for bad in ("nocolon", "a:b:c", "a b:c", ":setup", "mod:"):
        monkeypatch.setenv("CALLWRIGHT_PLUGINS", bad)
        with pytest.raises(SettingsError) as err:
            load_settings()
        line = str(err.value)
        assert line.startswith("invalid setting CALLWRIGHT_PLUGINS:") and "\n" not in line


async def test_import_failures_and_failing_plugins_are_one_line(tmp_path, monkeypatch) -> None:
    services = services_for_tests()
    with pytest.raises(SettingsError, match=r"^invalid setting CALLWRIGHT_PLUGINS: cannot import 'no_such_mod:setup'"):
        await load_plugins(["no_such_mod:setup"], services)
    broken = write_plugin(tmp_path, monkeypatch, "import nothing_here_either\n")
    with pytest.raises(SettingsError, match="ModuleNotFoundError: No module named 'nothing_here_either'"):
        await load_plugins([f"{broken}:setup"], services)
    nofn = write_plugin(tmp_path, monkeypatch, "x = 1\n")
    with pytest.raises(SettingsError, match=f"module {nofn} has no function setup"):
        await load_plugins([f"{nofn}:setup"], services)
    raising = write_plugin(
        tmp_path, monkeypatch, "def setup(services):\n    raise RuntimeError('no database at\\nline two')\n"
    )
    with pytest.raises(SettingsError) as err:
        await load_plugins([f"{raising}:setup"], services)
    assert (
        str(err.value)
        == f"invalid setting CALLWRIGHT_PLUGINS: plug-in '{raising}:setup' failed: RuntimeError: no database at"
    )


async def test_sync_and_async_plugins_run_in_order_with_typed_services(tmp_path, monkeypatch) -> None:
    first = write_plugin(tmp_path, monkeypatch, "def setup(services):\n    services.app_state.order.append('sync')\n")
    second = write_plugin(
        tmp_path,
        monkeypatch,
        """
        async def setup(services):
            from callwright.services import Services
            assert isinstance(services, Services)
            services.app_state.order.append("async")
        """,
    )
    services = services_for_tests()
    services.app_state.order = []
    assert await load_plugins([f"{first}:setup", f"{second}:setup"], services) == [f"{first}:setup", f"{second}:setup"]
    assert services.app_state.order == ["sync", "async"]


def test_registries_refuse_unknown_and_clashing_names() -> None:
    reg: Registry[Any] = Registry("STT_ENGINE", {"whisper": lambda s: None})
    with pytest.raises(SettingsError) as err:
        reg.builder("whispr")
    assert str(err.value) == "invalid setting STT_ENGINE: unknown name 'whispr' (registered: whisper)"
    with pytest.raises(ValueError, match="already registered"):
        reg.register("whisper", lambda s: None)
    replacement = lambda s: "mine"  # noqa: E731
    reg.register("whisper", replacement, replace=True)
    assert reg.builder("whisper") is replacement
    with pytest.raises(ValueError, match="invalid name"):
        reg.register("bad name", lambda s: None)
    with pytest.raises(TypeError):
        reg.register("ok", "not callable")  # type: ignore[arg-type]
    toolsets = ToolsetRegistry()
    with pytest.raises(TypeError):
        toolsets.register("empty", [])


def test_start_up_error_line_names_the_setting_from_the_note() -> None:
    exc = RuntimeError("voice not found\nmore detail")
    exc.add_note("TTS_ENGINE=mine")
    assert startup_error_line(exc) == "voice not found (TTS_ENGINE=mine)"


PLUGIN_ENGINES = """
from callwright.speech.factory import SttEngine
from callwright.speech.instant import InstantRecognizer

CLOSED = []


class HoursRecognizer(InstantRecognizer):
    pass


def build_stt(settings):
    return SttEngine(lambda: HoursRecognizer(default="what are your opening hours"))


def media_builder(record, transport, state):
    raise AssertionError("never used by this test's call")


async def setup(services):
    services.stt_engines.register("hours_stt", build_stt)
    services.media_factory.register("custom_mode", media_builder)

    async def cleanup():
        CLOSED.append(True)

    services.on_shutdown(cleanup)
"""

HOURS_CALL = """
name: hours
direction: inbound
from: "+15551230104"
to: "+15550001000"
timeout_s: 120
steps:
  - wait: {agent_done: 700, timeout_s: 30}
  - say: "Hello there."
  - wait: {agent_done: 700, timeout_s: 30}
  - hangup
"""


async def test_a_plugins_stt_engine_is_selected_by_name_and_hears_the_call(tmp_path, monkeypatch) -> None:
    name = write_plugin(tmp_path, monkeypatch, PLUGIN_ENGINES)
    async with plugin_stack(callwright_plugins=f"{name}:setup", unchecked={"stt_engine": "hours_stt"}) as stack:
        engines = stack.state.speech
        assert engines.describe["stt"] == "hours_stt" and engines.transcriber is None
        async with engines.stt_pool.lease() as recognizer:
            assert type(recognizer).__name__ == "HoursRecognizer"
        assert stack.state.media_factory.get("custom_mode") is not None
        assert "media" in stack.state.media_factory  # built-ins still registered beside it
        report = await stack.call(HOURS_CALL)
        assert report["ok"], report.get("error")
        entries = history(stack, report["call_id"])
        assert said(entries, "user")[0] == "what are your opening hours"  # what the plug-in's engine heard
        assert "Monday to Friday" in said(entries, "assistant")[1]
        module = __import__(name)
        assert module.CLOSED == []
    assert module.CLOSED == [True]  # the plug-in's cleanup ran at shutdown


async def test_a_media_handler_a_plugin_registers_for_a_built_in_mode_is_kept(tmp_path, monkeypatch) -> None:
    name = write_plugin(
        tmp_path,
        monkeypatch,
        """
        from callwright.voice.tone import ToneHandler

        def build(record, transport, state):
            return ToneHandler(transport)

        def setup(services):
            services.media_factory.register("media", build)
        """,
    )
    async with plugin_stack(callwright_plugins=f"{name}:setup", stt_pool_warm=0, tts_pool_warm=0) as stack:
        assert stack.state.media_factory.get("media") is __import__(name).build
        assert stack.state.services.settings.plugins == [f"{name}:setup"]
