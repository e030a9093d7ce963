"""What a plug-in gets: the server's long-lived objects and the registries it may extend.

Built once in the app's lifespan (``app.state.services``) and passed to every plug-in named in
``CALLWRIGHT_PLUGINS`` (see :mod:`callwright.plugins` and docs/extending.md)::

    from callwright.acs.events import ACSEventTypes
    from callwright.services import Services

    def setup(services: Services) -> None:
        services.processor.register_handler(ACSEventTypes.DTMF_TONE_RECEIVED, my_custom_handler)
        services.toolsets.register("weather", [get_forecast])          # scenario: toolsets: [weather]
        services.orchestrators.register("echo", build_echo_agent)       # AGENT_ENGINE=echo
        services.stt_engines.register("my_stt", build_my_recognizer)    # STT_ENGINE=my_stt

Plug-ins run before the speech engines, the scenario and the orchestrators are built, so names they
register can be selected by the settings; what is built later (``app_state.speech``, ``.scenario``) is
on ``app_state`` once the server is ready.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from callwright.agents.factory import OrchestratorBuilder, orchestrator_registry
from callwright.agents.lookups import TOOLSETS
from callwright.config import Settings, SettingsError
from callwright.plugins import Registry, ToolsetRegistry
from callwright.speech.factory import SpeechRegistries, SttBuilder, TtsBuilder, VadBuilder, speech_registries

if TYPE_CHECKING:
    from callwright.acs.call_control import CallAutomation
    from callwright.events.processor import CallEventProcessor
    from callwright.metrics import Metrics
    from callwright.sessions.registry import CallRegistry
    from callwright.sessions.store import SessionStore
    from callwright.voice.factory import MediaHandlerFactory

Cleanup = Callable[[], Awaitable[None]]


@dataclass
class Services:
    settings: Settings
    processor: CallEventProcessor  # register_handler(event_type, async handler(CallEventContext))
    media_factory: MediaHandlerFactory  # register(mode, builder) for a call's media handler
    calls: CallRegistry  # the calls this server knows (active and recent)
    store: SessionStore  # sessions (in memory or Redis)
    metrics: Metrics  # Prometheus metrics (``metrics.registry`` for your own)
    automation: CallAutomation | None  # ACS Call Automation client; None without ACS_CONNECTION_STRING
    toolsets: ToolsetRegistry  # named toolsets a scenario's `toolsets:` lists
    orchestrators: Registry[OrchestratorBuilder]  # AGENT_ENGINE names
    stt_engines: Registry[SttBuilder]  # STT_ENGINE names
    tts_engines: Registry[TtsBuilder]  # TTS_ENGINE names
    vad_engines: Registry[VadBuilder]  # VAD_ENGINE names
    app_state: Any  # the app's state, for what is not above (built later: speech, scenario, …)
    _cleanups: list[Cleanup] = field(default_factory=list, repr=False)

    @property
    def speech(self) -> SpeechRegistries:
        return SpeechRegistries(stt=self.stt_engines, tts=self.tts_engines, vad=self.vad_engines)

    def on_shutdown(self, cleanup: Cleanup) -> None:
        """Run ``await cleanup()`` when the server stops (close a plug-in's clients, files, tasks)."""
        self._cleanups.append(cleanup)

    async def close(self) -> None:
        """Run the plug-ins' cleanups, newest first; one failing does not stop the others."""
        import logging

        while self._cleanups:
            cleanup = self._cleanups.pop()
            try:
                await cleanup()
            except Exception:
                logging.getLogger("callwright.plugins").exception("a plug-in's shutdown cleanup failed")

    def check_selection(self) -> None:
        """Every engine/orchestrator name the settings select must be registered (one line if not)."""
        s = self.settings
        self.stt_engines.check(s.stt_engine)
        self.tts_engines.check(s.tts_engine)
        self.vad_engines.check(s.vad_engine)
        self.orchestrators.check(s.agent_engine)


def build_services(app_state: Any, settings: Settings) -> Services:
    """From what the lifespan has built on ``app_state`` (processor, media_factory, calls, store, …)."""
    missing = [
        n for n in ("processor", "media_factory", "calls", "store", "metrics") if getattr(app_state, n, None) is None
    ]
    if missing:  # a programming error in the lifespan's order, not a user's
        raise RuntimeError(f"build_services: app_state lacks {', '.join(missing)}")
    speech = speech_registries()
    return Services(
        settings=settings,
        processor=app_state.processor,
        media_factory=app_state.media_factory,
        calls=app_state.calls,
        store=app_state.store,
        metrics=app_state.metrics,
        automation=getattr(app_state, "automation", None),
        toolsets=ToolsetRegistry(TOOLSETS),
        orchestrators=orchestrator_registry(),
        stt_engines=speech.stt,
        tts_engines=speech.tts,
        vad_engines=speech.vad,
        app_state=app_state,
    )


async def start_plugins(app_state: Any, settings: Settings) -> Services:
    """Build ``app_state.services``, run the plug-ins, check the selected names against the registries.

    Called by the lifespan before ``setup_media`` (which builds engines and orchestrators from them).
    """
    from callwright.plugins import load_plugins

    services = build_services(app_state, settings)
    app_state.services = services
    await load_plugins(list(getattr(settings, "plugins", None) or []), services)
    services.check_selection()
    return services


__all__ = ["Services", "SettingsError", "build_services", "start_plugins"]
