"""CallEventProcessor: the seed's V1 event processor, with what the original lacked.

- Several handlers per event type; a handler that raises is logged and does not stop the others,
  the rest of the batch or other calls.
- Deduplication by event id (and, for IncomingCall, by the call it announces), so a redelivered event
  runs once and an incoming call is never answered twice.
- Events of one call run in order; different calls run concurrently. ``process_events`` only
  enqueues, so the webhook answers at once however slow a handler is.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from callwright.acs.events import ACSEventTypes, CallEvent
from callwright.events.context import CallEventContext
from callwright.logs import call_scope
from callwright.metrics import Metrics

log = logging.getLogger("callwright.events")

EventHandler = Callable[[CallEventContext], Awaitable[None]]


@dataclass(frozen=True)
class ProcessResult:
    accepted: int
    duplicates: int
    ignored: int

    def to_dict(self) -> dict[str, int]:
        return {"accepted": self.accepted, "duplicates": self.duplicates, "ignored": self.ignored}


class _SeenIds:
    def __init__(self, limit: int) -> None:
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._limit = limit

    def add(self, key: str) -> bool:
        """True when new."""
        if key in self._ids:
            self._ids.move_to_end(key)
            return False
        self._ids[key] = None
        if len(self._ids) > self._limit:
            self._ids.popitem(last=False)
        return True


class CallEventProcessor:
    def __init__(self, *, metrics: Metrics | None = None, dedup_limit: int = 20_000) -> None:
        self._handlers: dict[str, list[EventHandler]] = {}
        self._seen = _SeenIds(dedup_limit)
        self._queues: dict[str, deque[tuple[CallEvent, Any]]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._metrics = metrics
        self._closed = False

    def register_handler(self, event_type: str, handler: EventHandler) -> None:
        handlers = self._handlers.setdefault(event_type, [])
        if handler not in handlers:
            handlers.append(handler)

    def unregister_handler(self, event_type: str, handler: EventHandler) -> None:
        if handler in self._handlers.get(event_type, []):
            self._handlers[event_type].remove(handler)

    def handlers_for(self, event_type: str) -> list[EventHandler]:
        return list(self._handlers.get(event_type, ()))

    def _count(self, event: CallEvent, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.events_total.labels(event.short_type, outcome).inc()

    def _dedup_keys(self, event: CallEvent) -> list[str]:
        keys = [f"id:{event.id}"]
        if event.type == ACSEventTypes.INCOMING_CALL:
            keys.append(f"incoming:{event.server_call_id or event.correlation_id}")
        return keys

    async def process_events(self, events: list[CallEvent], app_state: Any) -> ProcessResult:
        """Enqueue a delivery. Handlers run in the background; see :meth:`drain` to wait for them."""
        accepted = duplicates = ignored = 0
        for event in events:
            if not all([self._seen.add(k) for k in self._dedup_keys(event)]):
                duplicates += 1
                self._count(event, "duplicate")
                log.info(
                    "duplicate delivery of %s (%s) ignored",
                    event.short_type,
                    event.id,
                    extra={"call_id": event.call_connection_id},
                )
                continue
            if not self._handlers.get(event.type):
                ignored += 1
                self._count(event, "ignored")
                log.debug("no handler for %s; ignored", event.type, extra={"call_id": event.call_connection_id})
                continue
            key = event.correlation_key or f"event:{event.id}"
            self._queues.setdefault(key, deque()).append((event, app_state))
            if key not in self._workers:
                self._workers[key] = asyncio.get_running_loop().create_task(self._drain_key(key), name=f"events:{key}")
            accepted += 1
        return ProcessResult(accepted, duplicates, ignored)

    async def _drain_key(self, key: str) -> None:
        queue = self._queues[key]
        try:
            while queue:
                event, app_state = queue.popleft()
                await self._dispatch(event, app_state)
        finally:
            self._workers.pop(key, None)
            if not queue:
                self._queues.pop(key, None)

    async def _dispatch(self, event: CallEvent, app_state: Any) -> None:
        ctx = CallEventContext(event=event, app_state=app_state)
        with call_scope(event.call_connection_id):
            call = ctx.call
            if call is not None:
                call.events_seen.append(event.short_type)
            outcome = "handled"
            for handler in self.handlers_for(event.type):
                try:
                    await handler(ctx)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    outcome = "failed"
                    log.exception(
                        "handler %s failed on %s (%s)",
                        getattr(handler, "__name__", handler),
                        event.short_type,
                        event.id,
                    )
            if call is None and (created := ctx.call) is not None:  # the event created its call
                created.events_seen.append(event.short_type)
            self._count(event, outcome)

    async def drain(self, timeout: float = 10.0) -> None:
        """Wait until every queued event has been handled (tests, shutdown)."""
        async with asyncio.timeout(timeout):
            while self._workers:
                await asyncio.gather(*list(self._workers.values()), return_exceptions=True)

    async def close(self) -> None:
        self._closed = True
        try:
            await self.drain(timeout=5.0)
        except TimeoutError:
            for task in list(self._workers.values()):
                task.cancel()
            await asyncio.gather(*list(self._workers.values()), return_exceptions=True)
