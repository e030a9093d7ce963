"""Builds what the media handlers need — speech engines, the scenario, the per-call orchestrator — and
registers a handler per mode. Runs in the app's lifespan; returns the cleanup coroutine."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from callwright.acs.identifiers import display_number
from callwright.agents.base import CallInfo, Orchestrator
from callwright.agents.factory import build_orchestrator, load_scenario
from callwright.agents.scenario import ScenarioError
from callwright.config import Settings, SettingsError
from callwright.sessions.registry import CallRecord
from callwright.speech.factory import build_engines
from callwright.voice.cascade.handler import SpeechCascadeHandler
from callwright.voice.cascade.recognition import RecognitionWorkers
from callwright.voice.factory import MediaHandlerFactory

log = logging.getLogger("callwright.media")

APOLOGY = "Sorry, all our lines are busy right now. Please call again in a few minutes. Goodbye."


def _render(synthesizer: Any, text: str) -> bytes:
    chunks: list[bytes] = []
    synthesizer.synthesize(text, lambda c: chunks.append(c) or True)
    return b"".join(chunks)


async def setup_media(
    app_state: Any, factory: MediaHandlerFactory, settings: Settings
) -> Callable[[], Awaitable[None]]:
    try:
        scenario = load_scenario(settings)
    except ScenarioError as exc:
        raise SettingsError(str(exc)) from None
    engines = build_engines(settings, settings.instant_stt_transcript)
    engines.start()
    app_state.speech = engines
    workers = RecognitionWorkers(settings.recognition_workers)
    workers.start()
    app_state.recognition_workers = workers
    app_state.scenario = scenario
    app_state.profile_loader = scenario.load_caller_profile
    app_state.pool_stats = lambda: {"stt": engines.stt_pool.stats(), "tts": engines.tts_pool.stats()}
    llm_client = None
    if settings.agent_engine == "llm":
        from callwright.agents.llm_client import make_llm_client

        llm_client = make_llm_client(settings)

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
        return build_orchestrator(settings, scenario, info, memo, call_control=control, llm_client=llm_client)

    app_state.orchestrator_factory = orchestrator_for
    factory.register("media", lambda record, transport, st: SpeechCascadeHandler(record, transport, st))

    def voice_live_fallback(record: CallRecord, transport: Any, st: Any) -> SpeechCascadeHandler:
        # The realtime (VoiceLive) handler is not part of this build yet; say so rather than drop the call.
        log.warning("voice_live mode is not available in this build; serving the call with the speech cascade")
        return SpeechCascadeHandler(record, transport, st)

    factory.register("voice_live", voice_live_fallback)

    async def cleanup() -> None:
        # Call handlers have stopped by now, so no lane is left queued behind these.
        if not await asyncio.get_running_loop().run_in_executor(None, workers.close, 2.0):
            log.error("recognition workers did not stop within 2 s")
        await engines.close()
        if llm_client is not None:
            await llm_client.close()

    return cleanup
