"""Hold-then-decide barge-in for the voice_live handler, as the cascade does it (README, "How barge-in works").

The service's VAD fires on short sounds too (a lone "uh-huh" did, in one run of two). So ``speech_started``
over the agent first *holds* playback (nothing more is sent; the caller hears the agent stop within the
lead, and no StopAudio is sent yet). The sound is then decided: speech past ``BARGE_IN_CONFIRM_MS``, or
words that are a request, confirm the barge-in (StopAudio, truncate, history as heard); a backchannel or
a short sound without a request resumes the reply where it stopped, and the service's response to it is
cancelled and its user item deleted, so the model never answers an "uh-huh". Events of responses the
service starts while the verdict is pending are kept back and replayed (or dropped) once it is known.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from callwright.logs import pii
from callwright.voice.cascade.heard import is_backchannel, is_short_non_interruption
from callwright.voice.realtime.backends import BackendClosed

log = logging.getLogger("callwright.voice_live")

VERDICT_TIMEOUT_SECONDS = 1.5  # after speech_stopped, the transcript must come by then (else: barge-in)


@dataclass
class Hold:
    reply: Any
    user_item: str
    onset: float
    start_ms: float | None
    end_ms: float | None = None
    timer: asyncio.TimerHandle | None = None
    responses: set[str] = field(default_factory=set)
    queued: list[dict[str, Any]] = field(default_factory=list)


class HoldMixin:
    # Provided by RealtimeHandler (declared for type checkers).
    _hold: Hold | None
    _dropped: set[str]
    _current: Any
    _stopped: bool
    _settings: Any
    _metrics: Any
    memo: Any
    playback: Any

    def _spawn(self, coro: Any, *, keep: bool = True) -> asyncio.Task[Any]: ...  # pragma: no cover

    async def _send(self, event: dict[str, Any]) -> None: ...  # pragma: no cover

    async def _dispatch(self, event: dict[str, Any]) -> None: ...  # pragma: no cover

    async def _cut(self, reply: Any) -> None: ...  # pragma: no cover

    def _held_back(self, kind: str, event: dict[str, Any]) -> bool:
        """True when ``event`` belongs to a response started during a pending verdict (kept or dropped)."""
        rid = event.get("response_id") or (event.get("response") or {}).get("id")
        if rid is None:
            return False
        if rid in self._dropped:
            return True
        hold = self._hold
        if hold is None:
            return False
        if kind == "response.created":
            hold.responses.add(str(rid))
        if rid in hold.responses:
            hold.queued.append(event)
            return True
        return False

    def _on_voice(self, event: dict[str, Any]) -> None:
        """``speech_started`` from the service: hold the reply the caller hears, and wait for a verdict."""
        reply = self._current
        if self._hold is not None or reply is None or reply.interrupted or self._stopped:
            return
        if not self.playback.audible:
            return  # nothing playing at the caller's ear: not a barge-in (the service may still cancel)
        self.playback.pause(flush=False)  # frames already sent play out (≤ the lead); nothing new is sent
        start = event.get("audio_start_ms")
        hold = self._hold = Hold(reply, str(event.get("item_id") or ""), time.monotonic(),
                                 float(start) if isinstance(start, int | float) else None)  # fmt: skip
        confirm_s = self._settings.barge_in_confirm_ms / 1000
        hold.timer = asyncio.get_running_loop().call_later(
            confirm_s, self._decide_soon, hold, True, f"speech past {self._settings.barge_in_confirm_ms} ms"
        )
        log.info("voice over the agent: reply held, deciding")

    def _on_voice_stopped(self, event: dict[str, Any]) -> None:
        hold = self._hold
        if hold is None or (hold.user_item and event.get("item_id") not in (None, hold.user_item)):
            return
        end = event.get("audio_end_ms")
        hold.end_ms = float(end) if isinstance(end, int | float) else None
        if hold.timer is not None:
            hold.timer.cancel()
        hold.timer = asyncio.get_running_loop().call_later(
            VERDICT_TIMEOUT_SECONDS, self._decide_soon, hold, True, "no transcript in time"
        )

    def _on_voice_words(self, item_id: str, text: str) -> bool:
        """The transcript of the held sound; returns True when it was a backchannel (kept out of history)."""
        hold = self._hold
        if hold is None or item_id != hold.user_item or hold.end_ms is None:
            return False
        speech_ms = int(hold.end_ms - self._settings.voicelive_vad_silence_ms - (hold.start_ms or hold.end_ms))
        confirm_ms = self._settings.barge_in_confirm_ms
        backchannel = ((not text or is_backchannel(text)) and speech_ms <= confirm_ms) or is_short_non_interruption(
            text, speech_ms
        )
        self._decide_soon(hold, not backchannel, f"{pii(text)!r} ({speech_ms} ms)")
        return backchannel

    def _decide_soon(self, hold: Hold, interruption: bool, why: str) -> None:
        if self._hold is not hold:
            return
        self._hold = None
        if hold.timer is not None:
            hold.timer.cancel()
        self._spawn(self._decided(hold, interruption, why))

    async def _decided(self, hold: Hold, interruption: bool, why: str) -> None:
        if self._stopped:
            return
        if interruption:
            log.info("barge-in confirmed by %s", why)
            with contextlib.suppress(BackendClosed):
                await self._cut(hold.reply)
            for event in hold.queued:  # the answer to the interruption, in order
                await self._dispatch(event)
            return
        log.info("not an interruption (%s); resuming the reply", why)
        self._metrics.barge_ins_total.labels("resumed").inc()
        if self.memo is not None:
            self.memo.record_metric("barge_in", outcome="resumed", why=why)
        self.playback.resume(restart_interrupted=False)
        self._dropped.update(hold.responses)
        done = {e["response"]["id"] for e in hold.queued if e.get("type") == "response.done" and e.get("response")}
        with contextlib.suppress(BackendClosed):
            for rid in hold.responses - done:  # the service's answer to the backchannel: never heard
                await self._send({"type": "response.cancel", "response_id": rid})
            if hold.user_item:
                await self._send({"type": "conversation.item.delete", "item_id": hold.user_item})
