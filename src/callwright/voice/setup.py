"""Builds what the media handlers need — speech engines, the scenario, the per-call orchestrator — and
registers a handler per mode. Runs in the app's lifespan; returns the cleanup coroutine.

Engines, orchestrators and toolsets come from the registries on ``app_state.services`` (where plug-ins
added theirs); a media handler a plug-in registered for ``media`` or ``voice_live`` is kept. Every
failure to build from the settings is a one-line SettingsError naming the setting or the file.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from callwright.acs.identifiers import display_number
from callwright.agents.base import CallInfo, Orchestrator
from callwright.agents.factory import build_orchestrator, load_scenario, orchestrator_registry
from callwright.agents.scenario import ScenarioError
from callwright.config import Settings, SettingsError
from callwright.plugins import startup_error_line
from callwright.sessions.registry import CallRecord
from callwright.speech.factory import build_engines, speech_registries
from callwright.voice.cascade.handler import SpeechCascadeHandler
from callwright.voice.cascade.recognition import RecognitionWorkers
from callwright.voice.factory import MediaHandlerFactory
from callwright.voice.realtime.handler import RealtimeHandler
from callwright.voice.realtime.service import RealtimeService

log = logging.getLogger("callwright.media")

APOLOGY = "Sorry, all our lines are busy right now. Please call again in a few minutes. Goodbye."


def _render(synthesizer: Any, text: str) -> bytes:
    chunks: list[bytes] = []
    synthesizer.synthesize(text, lambda c: chunks.append(c) or True)
    return b"".join(chunks)


async def setup_media(
    app_state: Any, factory: MediaHandlerFactory, settings: Settings
) -> Callable[[], Awaitable[None]]:
    services = getattr(app_state, "services", None)
    toolsets = services.toolsets if services is not None else None
    speech = services.speech if services is not None else speech_registries()
    orchestrators = services.orchestrators if services is not None else orchestrator_registry()
    try:
        scenario = load_scenario(settings, toolsets)
    except ScenarioError as exc:
        raise SettingsError(f"invalid scenario (SCENARIO={settings.scenario}): {exc}") from None
    # Before the engines: a missing LLM setting fails fast, with no model loaded or thread started.
    llm_client = None
    if settings.agent_engine == "llm":
        from callwright.agents.llm_client import make_llm_client

        try:
            llm_client = make_llm_client(settings)
        except Exception as exc:
            reason = startup_error_line(exc)  # make_llm_client's messages name the settings they need
            raise SettingsError(reason if "AGENT_ENGINE" in reason else f"AGENT_ENGINE=llm: {reason}") from None
    try:
        engines = build_engines(settings, settings.instant_stt_transcript, speech)
    except (Exception, SettingsError) as exc:  # a missing package, voice, key or model; an unknown name
        if llm_client is not None:
            await llm_client.close()
        if isinstance(exc, SettingsError):
            raise
        raise SettingsError(f"speech engines could not be built: {startup_error_line(exc)}") from None
    engines.start()
    app_state.speech = engines
    workers = RecognitionWorkers(settings.recognition_workers)
    workers.start()
    app_state.recognition_workers = workers
    app_state.scenario = scenario
    app_state.profile_loader = scenario.load_caller_profile
    app_state.pool_stats = lambda: {"stt": engines.stt_pool.stats(), "tts": engines.tts_pool.stats()}
    # Rendered once, so a call refused at capacity still hears a human sentence, not silence.
    synthesizer = await engines.tts_pool.acquire()
    try:
        app_state.apology_pcm = await asyncio.get_running_loop().run_in_executor(None, _render, synthesizer, APOLOGY)
    finally:
        engines.tts_pool.release(synthesizer)

    def orchestrator_for(record: CallRecord) -> Orchestrator:
        memo = record.memo
        info = CallInfo(
            call_connection_id=record.call_connection_id,
            caller=display_number(record.caller),
            callee=display_number(record.target),
            direction=record.direction,
            context=dict(memo.context) if memo is not None else {},
        )
        automation = app_state.automation
        control = (
            automation.actions(
                record.call_connection_id, record.caller if record.direction == "inbound" else record.target
            )
            if automation is not None
            else None
        )
        return build_orchestrator(
            settings, scenario, info, memo, call_control=control, llm_client=llm_client, registry=orchestrators,
            metrics=app_state.metrics,
        )  # fmt: skip

    app_state.orchestrator_factory = orchestrator_for
    factory.register_default("media", lambda record, transport, st: SpeechCascadeHandler(record, transport, st))

    # voice_live: a speech-to-speech realtime service (VoiceLive, OpenAI Realtime, or the local realtime
    # server on these same engines, started here when it is the default mode, else on the first such call).
    voice_live = RealtimeService(settings, engines, app_state.metrics)
    try:
        await voice_live.start(start_local=settings.acs_streaming_mode == "voice_live")
    except Exception as exc:
        await voice_live.close()
        raise SettingsError(f"voice_live: the realtime backend could not be set up: {exc}") from None
    app_state.voice_live = voice_live
    app_state.pool_stats = lambda: {
        "stt": engines.stt_pool.stats(), "tts": engines.tts_pool.stats(), "realtime": voice_live.stats()
    }  # fmt: skip
    factory.register_default(
        "voice_live", lambda record, transport, st: RealtimeHandler(record, transport, st, voice_live)
    )

    async def cleanup() -> None:
        # Call handlers have stopped by now, so no lane is left queued behind these.
        await voice_live.close()  # before the engines it shares
        if not await asyncio.get_running_loop().run_in_executor(None, workers.close, 2.0):
            log.error("recognition workers did not stop within 2 s")
        await engines.close()
        if llm_client is not None:
            await llm_client.close()

    return cleanup
