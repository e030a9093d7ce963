"""Tools, telephony, DTMF and the failed-leg fallback of the voice_live handler (apart from handler.py).

A response's function calls run through the scenario's tool registry with the call's tool context (the
same registry and context the cascade's orchestrator uses), after that response's ``response.done``
(realtime-protocol.md §0.8). ``handoff_to_<agent>`` switches the agent and re-sends the session
(instructions, tools; the voice where the service allows it). Transfer and hang-up are performed once the
audio before them has played. A failed realtime leg ends in an apology, then a transfer or the hang-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from callwright.logs import pii
from callwright.voice import telephony
from callwright.voice.health import media_health
from callwright.voice.realtime.backends import BackendClosed
from callwright.voice.realtime.session import HANDOFF_PREFIX, AgentView, session_update, user_text

log = logging.getLogger("callwright.voice_live")

APOLOGY_TIMEOUT_SECONDS = 15.0
DTMF_INTER_DIGIT_SECONDS = 2.0


class ToolsMixin:
    # Provided by RealtimeHandler (declared for type checkers).
    orchestrator: Any
    memo: Any
    _agent: AgentView | None
    _settings: Any
    _st: Any
    _record: Any
    _transport: Any

    failure: str | None
    _stopped: bool
    _ready: bool
    _service: Any
    _metrics: Any
    _sender: Any
    _current: Any
    playback: Any
    _dtmf_digits: str
    _dtmf_timer: asyncio.TimerHandle | None
    _replies: dict[str, Any]
    _answer_keys: bool

    def _spawn(self, coro: Any, *, keep: bool = True) -> asyncio.Task[Any]: ...  # pragma: no cover

    async def _on_speech_started(self) -> None: ...  # pragma: no cover - provided by the handler

    async def _send(self, event: dict[str, Any]) -> None: ...  # pragma: no cover - provided by the handler

    async def _close_conn(self) -> None: ...  # pragma: no cover - provided by the handler

    def _record_interrupted(self, reply: Any, cleared: list[Any], *, reason: str) -> None: ...  # pragma: no cover

    # --- tools ------------------------------------------------------------------------------------
    async def _run_tools(self, reply: Any) -> Any:
        """Run the calls of a finished response through the scenario's registry, send their outputs and
        ask for the next response; returns a transfer/hang-up to perform once the audio has played."""
        orch = self.orchestrator
        agent = self._agent
        assert agent is not None
        handoff_to: str | None = None
        for call in reply.calls:
            name, call_id = str(call.get("name")), str(call.get("call_id"))
            try:
                args = json.loads(call.get("arguments") or "{}")
                if not isinstance(args, dict):
                    raise ValueError("arguments must be a JSON object")
            except ValueError as exc:
                result: Any = {"error": f"arguments are not valid JSON: {exc}"}
                args = {}
            else:
                if name.startswith(HANDOFF_PREFIX):
                    target = name.removeprefix(HANDOFF_PREFIX)
                    if target in orch.scenario.agents[orch.active_agent].handoffs:
                        handoff_to = target
                        result = {"handed_off_to": target}
                    else:
                        result = {"error": "no such agent"}
                elif name in agent.tool_names():
                    result = await orch.scenario.registry.call(name, args, orch.tool_context)
                else:
                    result = {"error": f"tool {name!r} is not available to this agent"}
            content = json.dumps(result, default=str)
            failed = isinstance(result, dict) and "error" in result
            self._st.metrics.tool_calls_total.labels("error" if failed else "ok").inc()
            log.info("tool %s ran for the realtime model", name)
            if self.memo is not None:
                self.memo.record_metric("tool", tool=name, arguments=args)
                self.memo.append_history("tool", content, agent=orch.active_agent, name=name)
            output = {"type": "function_call_output", "call_id": call_id, "output": content}
            await self._send({"type": "conversation.item.create", "item": output})
        if handoff_to is not None:
            log.info("handoff %s -> %s", orch.active_agent, handoff_to)
            orch.switch_agent(handoff_to)
            await self._send(session_update(self._settings, agent.spec, agent, first=False))
        action = orch.take_pending_action()
        if action is None:
            await self._send({"type": "response.create"})
        return action

    async def _telephony(self, action: Any) -> None:
        from callwright.agents.base import Transfer

        if isinstance(action, Transfer):
            await self._transfer(action.target)
        else:
            await self._hang_up(action.reason or "agent ended the call")

    async def _hang_up(self, reason: str) -> None:
        await telephony.hang_up(self._st, self._record.call_connection_id, self._transport, reason)

    async def _transfer(self, target: str) -> None:
        await telephony.transfer(self._st, self._record.call_connection_id, target)

    # --- DTMF -------------------------------------------------------------------------------------
    async def on_dtmf(self, tone: str) -> None:
        if self._stopped or self.failure is not None:
            return
        self._dtmf_digits += tone
        # A key press over a prompt is an unambiguous interruption, as on any IVR. (This runs in the media
        # socket's receive loop: a closed service must not end it; the session's own loop reports that.)
        with contextlib.suppress(BackendClosed):
            await self._on_speech_started()
        if self._dtmf_timer is not None:
            self._dtmf_timer.cancel()
        if tone == "#":
            self._flush_dtmf()
        else:
            self._dtmf_timer = asyncio.get_running_loop().call_later(DTMF_INTER_DIGIT_SECONDS, self._flush_dtmf)

    def _flush_dtmf(self) -> None:
        self._dtmf_timer = None
        digits, self._dtmf_digits = self._dtmf_digits, ""
        if digits and self._ready:
            log.info("DTMF input %s", pii(digits))
            if self.memo is not None:
                self.memo.append_history("user", digits, agent=self._agent.name if self._agent else None, kind="dtmf")
            self._spawn(self._send_dtmf(digits))

    async def _send_dtmf(self, digits: str) -> None:
        with contextlib.suppress(BackendClosed):
            await self._send(user_text(f"[keypad] {digits}"))
            if any(not r.done for r in self._replies.values()):
                self._answer_keys = True  # asked for once the running response is done (§0.8)
            else:
                await self._send({"type": "response.create"})

    # --- failure ----------------------------------------------------------------------------------
    async def _fail(self, reason: str, detail: str) -> None:
        """The AI leg is gone: an apology, then a transfer (the scenario has a person) or the hang-up."""
        if self.failure is not None or self._stopped:
            return
        self.failure = reason
        self._ready = False
        self._service.failures += 1
        scenario = getattr(self._st, "scenario", None)
        target = getattr(scenario, "human_number", None) if scenario is not None else None
        self._metrics.voice_live_failures_total.labels(reason).inc()
        media_health(self._st).call_degraded("transferred" if target else "ended")
        log.error("voice_live: the realtime leg failed (%s: %s); apologising, then %s",
                  reason, detail, "transferring" if target else "hanging up")  # fmt: skip
        if self._sender is not None:
            self._sender.cancel()
        await self._close_conn()
        reply = self._current
        if reply is not None and not reply.interrupted and self.playback.audible:
            reply.interrupted = True
            self._record_interrupted(reply, self.playback.clear(), reason="realtime service failed")
        else:
            self.playback.clear()
        self._record.context["voice_live_failure"] = reason  # shown by the calls API (detail view)
        if self.memo is not None:
            self.memo.set_context("voice_live_failure", {"reason": reason, "detail": detail[:200]})
            self.memo.record_metric("voice_live_failure", reason=reason)
        if self._transport.closed:
            return
        self.playback.reopen()
        pcm = self._service.apology_pcm.get("transfer" if target else "goodbye", b"")
        seg = self.playback.new_segment("apology")
        self.playback.append(seg, pcm)
        self.playback.finish(seg)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.playback.wait_played(), APOLOGY_TIMEOUT_SECONDS)
        if self.memo is not None:
            from callwright.voice.realtime.service import APOLOGY, APOLOGY_GOODBYE, APOLOGY_TRANSFER

            text = f"{APOLOGY} {APOLOGY_TRANSFER if target else APOLOGY_GOODBYE}"
            self.memo.append_history("assistant", text, agent="system", reason=f"realtime service {reason}")
            self.memo.persist_background()
        if target:
            await self._transfer(target)
        else:
            await self._hang_up(f"realtime service failed: {reason}")
