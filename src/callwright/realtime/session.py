"""One realtime session: client events in, server events out, the conversation and the turn engine.

Every client mistake becomes an ``error`` event naming it (the codes the real services use where known,
realtime-protocol.md §5) and the socket stays up. Server events get dialect names (§2) on the way out.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from callwright.agents.base import CallInfo, TextChunk, expectation_of
from callwright.agents.factory import build_orchestrator
from callwright.realtime.audio import InputFramer, decode_audio
from callwright.realtime.conversation import ConversationMixin
from callwright.realtime.listener import CommitRefused, Committed, Listener, ListenerEvent, SpeechStarted, SpeechStopped
from callwright.realtime.model import TurnRun, session_scenario, user_turn
from callwright.realtime.protocol import (
    Dialect,
    ProtocolError,
    default_session,
    derive_config,
    error_event,
    event_name,
    merge_session,
    new_id,
    scenario_from,
)
from callwright.realtime.response import AudioTrack, Response
from callwright.sessions.memo import MemoManager
from callwright.sessions.store import InMemorySessionStore

if TYPE_CHECKING:
    from callwright.realtime.server import Faults, RealtimeServer

log = logging.getLogger("callwright.realtime")


async def _static(text: str) -> AsyncIterator[Any]:
    yield TextChunk(text)


class RealtimeSession(ConversationMixin):
    def __init__(
        self,
        server: RealtimeServer,
        ws: Any,
        dialect: Dialect,
        model: str,
        scenario: Any,
        recognizer: Any,
        synthesizer: Any,
        faults: Faults,
    ) -> None:
        self.server = server
        self.ws = ws
        self.dialect = dialect
        self.id = new_id("sess")
        self.model = model
        self.raw = default_session(dialect, self.id, model)
        self.config = derive_config(dialect, self.raw)
        self.recognizer = recognizer
        self.synthesizer = synthesizer
        self.faults = faults
        self.items: dict[str, dict[str, Any]] = {}
        self.tracks: dict[str, AudioTrack] = {}
        self.encoders: dict[str, Any] = {}
        self.transcripts: dict[str, asyncio.Future[str]] = {}
        self.unanswered: list[str] = []
        self.response: Response | None = None
        self.turn_run: TurnRun | None = None
        self.greeted = False
        self.speech_item: str | None = None  # the user item a speech_started announced
        self.speech_started_at: float | None = None
        self._history: dict[str, dict[str, Any]] = {}
        self._jobs: set[asyncio.Future[Any]] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._send_lock = asyncio.Lock()
        self._socket_open = True
        self._response_tools: frozenset[str] | None = None
        self.framer = InputFramer(self.config.input_rate, self.config.input_codec)
        self.listener = Listener(
            server.engines,
            recognizer,
            server.recognition_executor,
            self._on_listen,
            turn_pause_ms=server.settings.turn_pause_ms,
        )
        self._use_scenario(scenario)

    # --- lifecycle --------------------------------------------------------------------------------
    def _use_scenario(self, scenario: Any) -> None:
        self.scenario_name = scenario.name
        scenario_copy, self.bridge = session_scenario(scenario)
        self.bridge.client_tools = self.config.tool_names
        self.memo = MemoManager(self.id, InMemorySessionStore(ttl_seconds=3600))
        call = CallInfo(call_connection_id=self.id, direction="inbound", context={"realtime": True})
        self.orchestrator = build_orchestrator(
            self.server.settings, scenario_copy, call, self.memo, llm_client=self.server.llm_client
        )
        self.listener.bias(self.orchestrator.expected_phrases(), expectation_of(self.orchestrator))

    async def start(self) -> None:
        self.listener.configure(self.config.turn_detection)
        self.listener.start()
        await self.send({"type": "session.created", "session": self.raw})

    async def close(self) -> None:
        """Stop everything the session runs and hand its engines back (within ~1 s of the close)."""
        self._socket_open = False
        if self.response is not None:
            self.response.cancel("client_disconnected")
            if self.response.task is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait({self.response.task}, timeout=1.0)
        if self.turn_run is not None:
            await self.turn_run.cancel()
        for task in list(self._tasks):
            task.cancel()
        await self.listener.close()
        pending = {j for j in self._jobs if not j.done()}
        if pending:
            await asyncio.wait(pending, timeout=1.0)
        busy = any(not j.done() for j in pending)
        self.server.release_engines(self.recognizer, self.synthesizer, synth_jobs=pending if busy else set())

    def track_job(self, job: asyncio.Future[Any]) -> None:
        self._jobs.add(job)
        job.add_done_callback(self._jobs.discard)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- sending ----------------------------------------------------------------------------------
    async def send(self, event: dict[str, Any]) -> None:
        out = {"type": event_name(event["type"], self.dialect), "event_id": new_id("event")}
        out.update((k, v) for k, v in event.items() if k != "type")
        self.server.observe_out(self, out)
        async with self._send_lock:
            if not self._socket_open:
                return
            try:
                await self.ws.send_text(json.dumps(out))
            except Exception:  # the client went away; the receive loop ends the session
                self._socket_open = False

    async def send_error(self, exc: ProtocolError, client_event_id: str | None) -> None:
        log.info("realtime client error %s: %s [session=%s]", exc.code, exc.message, self.id)
        self.server.metrics.errors.labels(exc.code).inc()
        await self.send(error_event(exc, client_event_id))

    async def close_socket(self, code: int) -> None:
        async with self._send_lock:
            if self._socket_open:
                self._socket_open = False
                with contextlib.suppress(Exception):
                    await self.ws.close(code)

    # --- client events ----------------------------------------------------------------------------
    async def handle_text(self, text: str) -> None:
        try:
            event = json.loads(text)
        except ValueError as exc:
            await self.send_error(ProtocolError("invalid_json", f"Invalid JSON: {exc}"), None)
            return
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            await self.send_error(ProtocolError("invalid_event", "An event must be an object with a 'type'."), None)
            return
        kind = event["type"]
        event_id = event.get("event_id") if isinstance(event.get("event_id"), str) else None
        self.server.observe_in(self, event)
        handler = self._handlers().get(kind)
        if handler is None or (kind == "callwright.fault" and not self.server.faults_enabled):
            await self.send_error(
                ProtocolError("invalid_event", f"Invalid value: '{kind}'. Unknown client event type.", param="type"),
                event_id,
            )
            return
        try:
            await handler(event)
        except ProtocolError as exc:
            await self.send_error(exc, event_id)
        except Exception:  # a bug must cost one event, not the caller's session
            log.exception("realtime event %s failed [session=%s]", kind, self.id)
            await self.send_error(
                ProtocolError("server_error", f"The server failed to process {kind}.", kind="server_error"), event_id
            )

    def _handlers(self) -> dict[str, Any]:
        return {
            "session.update": self._session_update,
            "input_audio_buffer.append": self._append,
            "input_audio_buffer.commit": self._commit,
            "input_audio_buffer.clear": self._clear,
            "conversation.item.create": self.item_create,
            "conversation.item.truncate": self.item_truncate,
            "conversation.item.delete": self.item_delete,
            "conversation.item.retrieve": self.item_retrieve,
            "response.create": self._response_create,
            "response.cancel": self._response_cancel,
            "callwright.fault": self._fault,
        }

    async def _session_update(self, event: dict[str, Any]) -> None:
        update = event.get("session")
        if not isinstance(update, dict):
            raise ProtocolError("missing_required_parameter", "Missing required parameter: 'session'.", param="session")
        merged = merge_session(self.raw, update)
        config = derive_config(self.dialect, merged)  # raises before anything is applied
        wanted = scenario_from(str(update.get("model") or ""), config.instructions)
        if wanted and wanted != self.scenario_name:
            if self.items:
                raise ProtocolError(
                    "invalid_value", "The scenario can only be chosen before the conversation starts.", param="model"
                )
            from callwright.agents.scenario import ScenarioError

            try:
                scenario = await self.server.scenario(wanted)
            except ScenarioError as exc:
                raise ProtocolError("invalid_value", str(exc), param="model") from None
            self._use_scenario(scenario)
        if (config.input_rate, config.input_codec) != (self.config.input_rate, self.config.input_codec):
            self.framer = InputFramer(config.input_rate, config.input_codec)
        if config.turn_detection != self.config.turn_detection:
            self.listener.configure(config.turn_detection)
        self.raw, self.config = merged, config
        self.bridge.client_tools = config.tool_names
        await self.send({"type": "session.updated", "session": self.raw})

    async def _append(self, event: dict[str, Any]) -> None:
        if "audio" not in event:
            raise ProtocolError("missing_required_parameter", "Missing required parameter: 'audio'.", param="audio")
        pcm = decode_audio(event["audio"])
        self.listener.feed(self.framer.push(pcm))

    async def _commit(self, event: dict[str, Any]) -> None:
        self.listener.commit(event.get("event_id"))

    async def _clear(self, event: dict[str, Any]) -> None:
        self.framer.clear()
        self.listener.clear()
        self.speech_item = None
        await self.send({"type": "input_audio_buffer.cleared"})

    async def _response_create(self, event: dict[str, Any]) -> None:
        overrides = event.get("response") or {}
        if not isinstance(overrides, dict):
            raise ProtocolError("invalid_type", "response must be an object", param="response")
        if self.response is not None:
            raise ProtocolError(
                "conversation_already_has_active_response",
                f"Conversation already has an active response in progress: {self.response.id}. "
                "Wait until the response is finished before creating a new one.",
            )
        self._start_response(overrides, trigger_time=None)

    async def _response_cancel(self, event: dict[str, Any]) -> None:
        wanted = event.get("response_id")
        if self.response is None or (wanted and wanted != self.response.id):
            raise ProtocolError("response_cancel_not_active", "Cancellation failed: no active response found")
        self.response.cancel("client_cancelled")

    async def _fault(self, event: dict[str, Any]) -> None:
        self.faults.apply(event)
        if event.get("fault") == "error":
            await self.send_error(
                ProtocolError("injected_fault", "an injected server error", kind="server_error"), event.get("event_id")
            )

    # --- responses --------------------------------------------------------------------------------
    def _start_response(self, overrides: dict[str, Any], trigger_time: float | None) -> None:
        from callwright.realtime.protocol import _tools, _voice

        config = self.config
        tools = overrides.get("tools")
        names = frozenset(str(t["name"]) for t in _tools(tools, "response.tools")) if tools is not None else None
        self._response_tools = self.bridge.client_tools  # restored when this response is done
        if names is not None:
            self.bridge.client_tools = names
        modalities = overrides.get("output_modalities") or overrides.get("modalities")
        text_only = ("audio" not in modalities) if isinstance(modalities, list) else config.text_only
        voice = self.server.engine_voice(_voice(overrides.get("voice")) or config.voice)
        response = Response(
            self, lambda r: self._source(r, overrides), text_only=text_only, voice=voice, trigger_time=trigger_time
        )
        self.response = response
        self.server.metrics.responses_started.inc()
        response.start()

    async def _source(self, response: Response, overrides: dict[str, Any]) -> TurnRun | None:
        """What this response says: a fixed message, the rest of a turn after a tool output, a reply to
        the caller's new words, or (first of all) the agent's greeting."""
        pre = overrides.get("pre_generated_assistant_message")
        if isinstance(pre, dict):
            texts = [c.get("text", "") for c in pre.get("content") or [] if isinstance(c, dict)]
            return TurnRun(_static(" ".join(t for t in texts if t)), self.bridge)
        run = self.turn_run
        if run is not None and not self.unanswered and (not run.finished or not run.steps.empty()):
            run.abandon_pending()  # no-op when the client did send the output
            return run
        if self.unanswered:
            ids, self.unanswered = self.unanswered, []
            # shielded: a cancelled response must not cancel the transcript the transcription events wait for
            texts = [await asyncio.shield(self.transcripts[i]) for i in ids if i in self.transcripts]
            if run is not None:
                await run.cancel()
            self.greeted = True
            self.turn_run = TurnRun(self.orchestrator.respond(user_turn(" ".join(t for t in texts if t))), self.bridge)
            return self.turn_run
        if not self.greeted:
            self.greeted = True
            self.turn_run = TurnRun(self.orchestrator.greeting(), self.bridge)
            return self.turn_run
        return None

    def note_first_audio(self, response: Response) -> None:
        if response.trigger_time is not None and response.first_audio_at is not None:
            self.server.metrics.first_audio.observe(response.first_audio_at - response.trigger_time)

    async def maybe_fault_after_audio(self, response: Response) -> None:
        if self.faults.close_mid_response:
            self.faults.close_mid_response = False
            log.warning("fault injection: closing with 1011 mid-response [session=%s]", self.id)
            response.cancel("fault_injected")
            await self.close_socket(1011)

    async def finish_response(self, response: Response) -> None:
        if self.faults.delay_done_ms:
            await asyncio.sleep(self.faults.delay_done_ms / 1000.0)
        if self._response_tools is not None:
            self.bridge.client_tools, self._response_tools = self._response_tools, None
        body = response.describe()
        body["usage"] = response.usage(input_tokens=8)
        self.server.metrics.responses_done.labels(response.status).inc()
        if response.status == "cancelled" and self.speech_started_at is not None:
            self.server.metrics.barge_in.observe(time.monotonic() - self.speech_started_at)
        if self.response is response:
            self.response = None
        for item in response.output:  # a cut-off item's resampler is not needed any more
            self.encoders.pop(item["id"], None)
        run = self.turn_run
        if run is not None and run.finished and run.steps.empty():
            self.turn_run = None
        self.listener.bias(self.orchestrator.expected_phrases(), expectation_of(self.orchestrator))
        await self.send({"type": "response.done", "response": body})

    # --- the ear ----------------------------------------------------------------------------------
    async def _on_listen(self, event: ListenerEvent) -> None:
        td = self.config.turn_detection
        if isinstance(event, SpeechStarted):
            self.speech_item = new_id("item")
            self.speech_started_at = time.monotonic()
            await self.send(
                {"type": "input_audio_buffer.speech_started", "audio_start_ms": event.audio_start_ms,
                 "item_id": self.speech_item}
            )  # fmt: skip
            if td is not None and td.auto_truncate:
                await self.auto_truncate()
            if self.response is not None and td is not None and td.interrupt_response:
                self.response.cancel("turn_detected")
        elif isinstance(event, SpeechStopped):
            item_id = self.speech_item or new_id("item")
            self.speech_item = None
            await self.send(
                {"type": "input_audio_buffer.speech_stopped", "audio_end_ms": event.audio_end_ms, "item_id": item_id}
            )
            ended_at = time.monotonic()
            await self.commit_user(item_id, event.final)
            if td is not None and td.create_response and self.response is None:
                self._start_response({}, trigger_time=ended_at)
        elif isinstance(event, Committed):
            item_id = self.speech_item or new_id("item")
            self.speech_item = None
            await self.commit_user(item_id, event.final)
        elif isinstance(event, CommitRefused):
            await self.send_error(event.error, event.event_id)
